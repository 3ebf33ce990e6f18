"""Plan, render and index a captioned corpus; resumable and deterministic for a seed.

The plan (which clips, from which score or generator seed, which split) depends only on
the seed and is prefix-stable: a bigger `--minutes` keeps every clip of a smaller build
and appends more. Each clip is finished by writing its row file last, atomically, so a
clip whose row exists is done and anything else - a crash mid-render included - is
redone on the next run.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from dataclasses import dataclass
from pathlib import Path

from model.corpus import scores
from model.corpus.manifest import MANIFEST_NAME
from model.corpus.piece import Piece, beat_times, to_midi
from model.corpus.synth import check_synth, render_midi
from model.errors import JamstreamError
from model.io.atomic import write_text
from model.io.audio import SAMPLE_RATE, loudness_normalize, write_audio
from model.progress import progress

BUILD_VERSION = 1
VAL_SLOT, TEST_SLOT = 4, 9  # of every ten planned clips: one to validation, one to test
CANDIDATES_PER_SCORE = 4  # fallbacks for a score music21 can't excerpt


@dataclass(frozen=True)
class ClipSpec:
    clip_id: str
    index: int
    source: str  # "music21" | "generator"
    genre: str
    seed: int
    target_seconds: float
    split: str
    candidates: tuple[str, ...] = ()  # music21 corpus paths, first usable one wins
    tempo_spread: float = 1.0  # generator clips: see styles.generate


def all_genres() -> tuple[str, ...]:
    from model.corpus.styles import STYLES

    return scores.GENRES + tuple(STYLES)


def check_genres(genres) -> tuple[str, ...]:
    """Validate an explicit genre list (e.g. `--styles afrobeat`): default ones or held-out styles."""
    from model.corpus.styles import HELD_OUT_STYLES

    known = all_genres() + HELD_OUT_STYLES
    out = tuple(dict.fromkeys(g.strip() for g in genres if g.strip()))
    if not out:
        raise JamstreamError("--styles is empty: name at least one style, e.g. --styles afrobeat")
    unknown = [g for g in out if g not in known]
    if unknown:
        raise JamstreamError(f"unknown style {unknown[0]!r}; known: {', '.join(known)}")
    return out


def plan_clips(
    seed: int, minutes: float, genres: tuple[str, ...] | None = None, tempo_spread: float = 1.0
) -> list[ClipSpec]:
    """Clips until their planned length reaches `minutes`; genres dealt round-robin.

    Dealing genres from a reshuffled deck (rather than sampling) guarantees that even a
    ten-minute corpus covers every genre once before any repeats. `genres` None is the
    default mix (every score family and every style except the held-out ones); a list
    restricts the deck, e.g. to a held-out style for fine-tuning experiments.
    """
    rng = random.Random(seed)
    genres = all_genres() if genres is None else check_genres(genres)
    score_genres = set(scores.GENRES)
    used_paths: set[str] = set()
    deck: list[str] = []
    specs: list[ClipSpec] = []
    planned = 0.0
    index = 0
    while planned < minutes * 60.0:
        if not deck:
            deck = list(genres)
            rng.shuffle(deck)
        genre = deck.pop()
        clip_seed = rng.randrange(2**31)
        target = rng.uniform(12.0, 28.0)
        split = "val" if index % 10 == VAL_SLOT else "test" if index % 10 == TEST_SLOT else "train"
        candidates: tuple[str, ...] = ()
        if genre in score_genres:
            pool = [p for p in scores.family_paths(genre) if p not in used_paths]
            if len(pool) < CANDIDATES_PER_SCORE:
                continue  # family exhausted (only in enormous corpora): deal the next genre
            candidates = tuple(rng.sample(pool, CANDIDATES_PER_SCORE))
            used_paths.update(candidates)
        specs.append(
            ClipSpec(
                clip_id=f"s{seed}-{index:05d}",
                index=index,
                source="music21" if genre in score_genres else "generator",
                genre=genre,
                seed=clip_seed,
                target_seconds=target,
                split=split,
                candidates=candidates,
                tempo_spread=tempo_spread,
            )
        )
        planned += target
        index += 1
    return specs


def make_piece(spec: ClipSpec) -> Piece:
    if spec.source == "generator":
        from model.corpus.styles import generate

        return generate(spec.genre, spec.seed, spec.target_seconds, spec.tempo_spread)
    errors = []
    for offset, path in enumerate(spec.candidates):
        try:
            return scores.score_to_piece(path, spec.seed + offset, spec.target_seconds)
        except scores.ScoreUnusable as exc:
            errors.append(str(exc))
    raise scores.ScoreUnusable("; ".join(errors))


def build_clip(spec: ClipSpec, out_dir: Path, soundfont: str) -> dict:
    """Render one clip and write audio, MIDI, then (last) its row. Returns the row."""
    piece = make_piece(spec)
    mid = to_midi(piece)
    seconds = piece.seconds
    audio = render_midi(mid, seconds, soundfont)
    audio = loudness_normalize(audio, SAMPLE_RATE)
    audio_rel = Path("audio") / f"{spec.clip_id}.flac"
    midi_rel = Path("midi") / f"{spec.clip_id}.mid"
    write_audio(out_dir / audio_rel, audio)
    (out_dir / midi_rel).parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(out_dir / midi_rel))
    beats, downbeats = beat_times(mid, seconds)
    row = {
        "id": spec.clip_id,
        "path": str(audio_rel),
        "midi": str(midi_rel),
        "duration": round(audio.shape[1] / SAMPLE_RATE, 6),
        "sample_rate": SAMPLE_RATE,
        "channels": int(audio.shape[0]),
        "caption": piece.caption(),
        "tags": piece.tags(),
        "beats": beats,
        "downbeats": downbeats,
        "split": spec.split,
        "piece_id": piece.piece_id,
        "build_version": BUILD_VERSION,
    }
    write_text(out_dir / "rows" / f"{spec.clip_id}.json", json.dumps(row))
    return row


def _row_path(out_dir: Path, spec: ClipSpec) -> Path:
    return out_dir / "rows" / f"{spec.clip_id}.json"


def _is_done(out_dir: Path, spec: ClipSpec) -> bool:
    row = _row_path(out_dir, spec)
    return row.is_file() and (out_dir / "audio" / f"{spec.clip_id}.flac").is_file()


def _worker(args: tuple[ClipSpec, str, str]) -> tuple[ClipSpec, dict | None, str | None]:
    spec, out_dir, soundfont = args
    try:
        return spec, build_clip(spec, Path(out_dir), soundfont), None
    except scores.ScoreUnusable as exc:
        return spec, None, f"{spec.clip_id} ({spec.genre}): {exc}"


def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("audio", "midi", "rows"):
            (out_dir / sub).mkdir(exist_ok=True)
        probe = out_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise JamstreamError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc


@dataclass
class BuildResult:
    out_dir: Path
    clips: int
    built: int
    skipped: int
    failed: list[str]
    audio_seconds: float


def build_corpus(
    out_dir: str | Path,
    minutes: float,
    seed: int = 0,
    jobs: int = 1,
    soundfont: str | None = None,
    genres: tuple[str, ...] | None = None,
    tempo_spread: float = 1.0,
) -> BuildResult:
    """Build (or finish building) a corpus of about `minutes` of audio under `out_dir`."""
    from model.corpus.synth import default_soundfont

    if not minutes > 0:
        raise JamstreamError(f"--minutes must be > 0 (got {minutes})")
    if jobs < 1:
        raise JamstreamError(f"--jobs must be >= 1 (got {jobs})")
    if not tempo_spread >= 1.0:
        raise JamstreamError(f"--tempo-spread must be >= 1 (got {tempo_spread}); 1 keeps each genre's own tempo range")
    soundfont = soundfont or default_soundfont()
    check_synth(soundfont)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    _check_same_plan(out_dir, seed, tempo_spread)
    specs = plan_clips(seed, minutes, genres, tempo_spread)
    pending = [s for s in specs if not _is_done(out_dir, s)]
    failed: list[str] = []
    tasks = [(s, str(out_dir), soundfont) for s in pending]
    bar = _progress_bar(len(specs), len(specs) - len(pending))
    try:
        if jobs == 1 or len(tasks) <= 1:
            for spec, row, err in map(_worker, tasks):
                _account(bar, row, err, failed)
        else:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(min(jobs, len(tasks))) as pool:
                for spec, row, err in pool.imap_unordered(_worker, tasks):
                    _account(bar, row, err, failed)
    finally:
        bar.close()
    rows = write_manifest(out_dir, specs)
    info = {"build_version": BUILD_VERSION, "seed": seed, "minutes": minutes, "clips": len(rows)}
    if genres is not None:
        info["genres"] = list(check_genres(genres))
    if tempo_spread != 1.0:
        info["tempo_spread"] = tempo_spread
    write_text(out_dir / "corpus.json", json.dumps(info))
    return BuildResult(
        out_dir=out_dir,
        clips=len(rows),
        built=len(pending) - len(failed),
        skipped=len(specs) - len(pending),
        failed=failed,
        audio_seconds=sum(r["duration"] for r in rows),
    )


def _check_same_plan(out_dir: Path, seed: int, tempo_spread: float) -> None:
    """Extending a corpus with another seed or spread would mix two plans under one set of clip ids."""
    path = out_dir / "corpus.json"
    if not path.is_file():
        return
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # unreadable info is rewritten at the end of this build
    was = (info.get("seed", seed), float(info.get("tempo_spread", 1.0)))
    if was != (seed, tempo_spread):
        raise JamstreamError(
            f"{out_dir} was built with --seed {was[0]} --tempo-spread {was[1]:g}; "
            f"extend it with those, or build --seed {seed} --tempo-spread {tempo_spread:g} into a new --out"
        )


def _progress_bar(total: int, done: int):
    return progress(total=total, initial=done, unit="clip", desc="corpus")


def _account(bar, row: dict | None, err: str | None, failed: list[str]) -> None:
    if err:
        failed.append(err)
        bar.write(f"skipped {err}")
    bar.update(1)


def write_manifest(out_dir: Path, specs: list[ClipSpec]) -> list[dict]:
    """Assemble the manifest from finished rows in plan order, one piece per split.

    A score that two clips happened to fall back to is kept only in its first clip, so
    no piece ever sits in two splits.
    """
    rows: list[dict] = []
    seen_pieces: set[str] = set()
    for spec in specs:
        path = _row_path(out_dir, spec)
        if not path.is_file():
            continue
        row = json.loads(path.read_text(encoding="utf-8"))
        if row["piece_id"] in seen_pieces:
            continue
        seen_pieces.add(row["piece_id"])
        rows.append(row)
    write_text(out_dir / MANIFEST_NAME, "".join(json.dumps(row) + "\n" for row in rows))
    return rows
