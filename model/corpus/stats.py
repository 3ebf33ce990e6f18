"""Summary of a corpus: what we have, per split, genre, source and tempo."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from model.corpus.manifest import SPLITS, read_manifest

BPM_BIN = 20


def corpus_stats(corpus_dir: str | Path) -> dict:
    rows = read_manifest(corpus_dir)
    splits = {s: {"clips": 0, "minutes": 0.0} for s in SPLITS}
    genres: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    bpm_hist: Counter[str] = Counter()
    for r in rows:
        splits[r.split]["clips"] += 1
        splits[r.split]["minutes"] += r.duration / 60.0
        genres[r.genre] += 1
        sources[r.tags.get("source", "?")] += 1
        low = int(r.bpm // BPM_BIN * BPM_BIN)
        bpm_hist[f"{low}-{low + BPM_BIN - 1}"] += 1
    for s in splits.values():
        s["minutes"] = round(s["minutes"], 3)
    return {
        "corpus": str(corpus_dir),
        "clips": len(rows),
        "minutes": round(sum(r.duration for r in rows) / 60.0, 3),
        "splits": splits,
        "genres": dict(sorted(genres.items())),
        "sources": dict(sorted(sources.items())),
        "bpm_histogram": dict(sorted(bpm_hist.items(), key=lambda kv: int(kv[0].split("-")[0]))),
    }


def format_stats(stats: dict) -> str:
    """A plain-text table: readable in a terminal and pasteable into a note."""
    lines = [f"corpus {stats['corpus']}: {stats['clips']} clips, {stats['minutes']:.1f} min"]
    lines.append("split      clips   minutes")
    for name, s in stats["splits"].items():
        lines.append(f"{name:<10} {s['clips']:>5}   {s['minutes']:>7.2f}")
    lines.append("genre                    clips")
    for g, n in stats["genres"].items():
        lines.append(f"{g:<24} {n:>5}")
    lines.append("source                   clips")
    for g, n in stats["sources"].items():
        lines.append(f"{g:<24} {n:>5}")
    lines.append("bpm        clips")
    for b, n in stats["bpm_histogram"].items():
        lines.append(f"{b:<10} {n:>5}  {'#' * n}")
    return "\n".join(lines)
