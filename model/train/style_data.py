"""What style training reads: cached log-mels of every clip and cached frozen text embeddings.

A training step should cost only the audio tower and the projection, so both expensive
inputs are computed once and kept under `<corpus>/.cache/`:
- `style-mels-<split>-<hash>.pt`: each clip's 16 kHz mono log-mels (float16), decoded
  and resampled exactly as `StyleModel.embed_audio` does at inference;
- `style-text-<split>-<hash>.pt`: the frozen MiniLM embedding of every caption variant.
The hash covers the manifest rows (ids, captions, tags, durations, file sizes) and the
settings that shape the features, so a rebuilt corpus or a new template set never reads
stale features. Files are written to a temp name and renamed: never half a cache.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from model.corpus.manifest import ClipRow, read_manifest
from model.errors import JamstreamError
from model.io.atomic import save_torch
from model.io.audio import SAMPLE_RATE, load_audio
from model.progress import progress
from model.style.network import LogMel, StyleConfig, audio_log_mels, encode_sentences, genre_prompt

TEMPLATE_VERSION = 2


def _mood(row: ClipRow) -> str:
    first = row.caption.split()[0].strip(",") if row.caption.strip() else ""
    return first if first and first.lower() not in row.genre.lower().split() else ""


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption_variants(row: ClipRow) -> list[str]:
    """The clip's caption plus paraphrases built from its tags (deterministic per clip).

    Short prompts ("techno", "techno music") teach the zero-shot case; tag subsets teach
    that a partial description still points at the clip; the full caption keeps detail.
    """
    rng = random.Random(f"{TEMPLATE_VERSION}:{row.id}")
    genre, tags = row.genre, row.tags
    instruments = [str(i) for i in tags.get("instruments", [])] or ["instruments"]
    mood = _mood(row)
    bpm = int(round(float(tags.get("bpm", 0)))) if tags.get("bpm") else None
    key, meter, density = tags.get("key"), tags.get("meter"), tags.get("density")
    subset = rng.sample(instruments, rng.randint(1, len(instruments)))
    variants = [
        row.caption,
        genre_prompt(genre),
        genre,
        f"{mood} {genre}".strip(),
        f"{genre} with {_join(subset)}",
        f"{mood} {genre} with {_join(instruments)}".strip(),
        f"music with {_join(rng.sample(instruments, min(2, len(instruments))))}",
        f"a {genre} track",
    ]
    if bpm:
        variants.append(f"{genre} at {bpm} bpm" + (f" in {key}" if key else ""))
    if meter:
        variants.append(f"{genre} in {meter}")
    if density:
        variants.append(f"{density} {genre}")
    parts = [p.strip() for p in row.caption.split(",") if p.strip()]
    if len(parts) > 2:  # the caption with some of its comma parts dropped
        keep = sorted(rng.sample(range(len(parts)), rng.randint(1, len(parts) - 1)))
        variants.append(", ".join(parts[i] for i in keep))
    out: list[str] = []
    for v in variants:
        v = " ".join(v.split())
        if v and v not in out:
            out.append(v)
    return out


def _rows_key(rows: list[ClipRow], settings: dict) -> str:
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for r in rows:
        size = r.path.stat().st_size if r.path.is_file() else -1
        h.update(json.dumps([r.id, r.caption, r.tags, r.duration, size], sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def _atomic_save(obj, path: Path) -> None:
    save_torch(obj, path)


@dataclass
class StyleData:
    rows: list[ClipRow]
    mels: list[torch.Tensor]  # per clip [n_mels, frames], float16
    texts: list[str]  # every caption variant
    text_emb: torch.Tensor  # [n_texts, text_dim] frozen sentence embeddings
    text_clip: torch.Tensor  # [n_texts] which clip a variant describes
    variants: list[list[int]]  # per clip: indices into texts
    genres: list[str]  # sorted genres present
    by_genre: dict[str, list[int]]


def load_style_data(
    corpus: str | Path, config: StyleConfig, split: str = "train", show_progress: bool = True
) -> StyleData:
    corpus = Path(corpus)
    rows = read_manifest(corpus, split)
    if not rows:
        raise JamstreamError(f"{corpus}: the {split} split is empty; build a larger corpus")
    cache = corpus / ".cache"
    mel_settings = {"what": "style-mels", "n_mels": config.n_mels, "n_fft": config.n_fft, "hop": config.hop}
    mel_path = cache / f"style-mels-{split}-{_rows_key(rows, mel_settings)}.pt"
    if mel_path.is_file():
        mels = torch.load(mel_path, weights_only=True)["mels"]
    else:
        frontend = LogMel(config.n_mels, config.n_fft, config.hop)
        mels = []
        for r in progress(rows, desc=f"log-mels {split}", unit="clip", enabled=show_progress):
            audio = load_audio(r.path)
            mels.append(audio_log_mels(frontend, audio, SAMPLE_RATE).half())
        _atomic_save({"mels": mels}, mel_path)
    variants = [caption_variants(r) for r in rows]
    texts, text_clip, index = [], [], []
    for clip, vs in enumerate(variants):
        index.append(list(range(len(texts), len(texts) + len(vs))))
        texts += vs
        text_clip += [clip] * len(vs)
    text_settings = {"what": "style-text", "encoder": config.text_encoder, "templates": TEMPLATE_VERSION}
    text_path = cache / f"style-text-{split}-{_rows_key(rows, text_settings)}.pt"
    if text_path.is_file():
        text_emb = torch.load(text_path, weights_only=True)["emb"]
    else:
        text_emb = encode_sentences(texts, config.text_encoder)
        _atomic_save({"emb": text_emb, "texts": texts}, text_path)
    by_genre: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_genre.setdefault(r.genre, []).append(i)
    return StyleData(rows, mels, texts, text_emb, torch.tensor(text_clip), index, sorted(by_genre), by_genre)


def random_crop(mel: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random `frames`-long crop; a shorter clip is looped to length (as at inference)."""
    n = mel.shape[-1]
    if n < frames:
        mel = mel.repeat(1, -(-frames // n))
        n = mel.shape[-1]
    start = int(torch.randint(0, n - frames + 1, (1,), generator=generator))
    return mel[:, start : start + frames]
