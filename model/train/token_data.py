"""The corpus as the LM sees it: codec tokens, per-frame timing and style tokens.

Style tokens come from both towers: the clip's own audio embedding and the text
embeddings of its caption variants (caption, "<genre> music", tag paraphrases). The
style space has a modality gap - a prompt's first-level style codes never occur among
audio-derived codes (measured: 0 of 18 genre prompts' level-1 codes in 356 audio codes) -
so an LM trained on audio tokens alone would meet every text prompt as unseen tokens.

Tokenizing is the expensive part of LM training data (a codec encode of every clip),
so it happens once and is cached under `<corpus>/.cache/tokens-<key>.pt`, where the key
hashes the manifest rows and the codec and style weights: retraining either model
invalidates the cache instead of silently mixing token vocabularies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.codec.network import FRAME_RATE, Codec
from model.corpus.manifest import ClipRow, read_manifest
from model.errors import JamstreamError
from model.io.atomic import save_torch
from model.io.audio import load_audio
from model.progress import progress


def frame_timing(beats: list[float], downbeats: list[float], frames: int, frame_rate: int = FRAME_RATE) -> np.ndarray:
    """[frames, 3] = (bpm, beat phase, bar phase) at each frame's start, from beat times.

    Between annotated marks the phase is linear; past the last one the last interval is
    extrapolated, so a clip's tail keeps its grid.
    """
    t = np.arange(frames) / frame_rate
    out = np.zeros((frames, 3), dtype=np.float32)
    beat_period, out[:, 1] = _phase(np.asarray(beats, dtype=np.float64), t)
    out[:, 0] = 60.0 / beat_period
    _, out[:, 2] = _phase(np.asarray(downbeats, dtype=np.float64), t)
    return out


def _phase(marks: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(period, phase in [0, 1)) of times `t` against a grid of marks."""
    if marks.size < 2:
        first = marks[0] if marks.size else 0.0
        marks = np.array([first, first + 0.5])
    last_period = marks[-1] - marks[-2]
    extra = max(0, int(np.ceil((t.max(initial=0.0) - marks[-1]) / last_period)) + 1)
    grid = np.concatenate([marks, marks[-1] + last_period * np.arange(1, extra + 1)])
    idx = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, grid.size - 2)
    period = grid[idx + 1] - grid[idx]
    return period, ((t - grid[idx]) / period) % 1.0


@dataclass
class TokenClip:
    id: str
    split: str
    genre: str
    tokens: torch.Tensor  # int16 [frames, levels]
    timing: torch.Tensor  # float32 [frames, 3]
    style: torch.Tensor  # int64 [12] style tokens of the clip's own audio
    text_style: torch.Tensor | None = None  # int64 [n, 12] style tokens of its caption variants


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]


def cache_key(rows: list[ClipRow], codec_path: Path, style_path: Path, levels: int) -> str:
    h = hashlib.sha1()
    for r in rows:
        h.update(f"{r.id}:{r.duration}:{r.split}\n".encode())
    h.update(f"{_file_digest(codec_path)}:{_file_digest(style_path)}:{levels}:text-styles".encode())
    return h.hexdigest()[:12]


def tokenize_corpus(
    corpus_dir: str | Path, codec: Codec, codec_path: Path, style_model, style_path: Path, levels: int = 16
) -> list[TokenClip]:
    """Every clip of every split, tokenized once and cached."""
    corpus_dir = Path(corpus_dir)
    rows = read_manifest(corpus_dir)
    if not rows:
        raise JamstreamError(f"{corpus_dir}: the manifest has no clips")
    cache = corpus_dir / ".cache" / f"tokens-{cache_key(rows, Path(codec_path), Path(style_path), levels)}.pt"
    if cache.is_file():
        return [TokenClip(**d) for d in torch.load(cache, weights_only=False)]
    clips = []
    for r in progress(rows, desc="tokenize", unit="clip"):
        audio = load_audio(r.path)
        tokens = codec.encode(torch.from_numpy(audio), levels=levels)[0].to(torch.int16)
        timing = torch.from_numpy(frame_timing(r.beats, r.downbeats, tokens.shape[0]))
        with torch.inference_mode():
            style = style_model.quantize(style_model.embed_audio(audio, 48_000)).reshape(-1).long()
        clips.append(TokenClip(r.id, r.split, r.genre, tokens, timing, style, text_style_tokens(style_model, r)))
    save_torch([c.__dict__ for c in clips], cache)
    return clips


def text_style_tokens(style_model, row: ClipRow) -> torch.Tensor:
    """[n, 12] style tokens of the clip's caption variants (see the module docstring)."""
    from model.train.style_data import caption_variants

    with torch.inference_mode():
        emb = style_model.embed_text(caption_variants(row))
        return torch.stack([style_model.quantize(e).reshape(-1) for e in emb]).long()


def load_token_clips(
    corpus: str | Path, codec_path: str | Path | None, style_path: str | Path | None, levels: int
) -> list[TokenClip]:
    """The corpus tokenized by the given (or shipped) codec and style model, cached."""
    from model.codec.network import load_codec
    from model.style.network import load_style
    from model.weights import default_weight_path

    codec_file = Path(codec_path) if codec_path else default_weight_path("codec")
    style_file = Path(style_path) if style_path else default_weight_path("style")
    return tokenize_corpus(corpus, load_codec(codec_file), codec_file, load_style(style_file), style_file, levels)
