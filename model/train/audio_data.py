"""A corpus split as one int16 array in memory, for random crops at training speed.

Decoding FLAC for every crop would cost more than the codec's own step, so a split is
decoded once into `<corpus>/.cache/audio-<split>-<hash>.npy` (int16, [2, total]) and
memory-mapped on later runs; the hash covers the clip list and sizes, so a rebuilt or
extended corpus gets a fresh cache instead of stale audio.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.corpus.manifest import ClipRow, read_manifest
from model.errors import JamstreamError
from model.io.atomic import atomic_path
from model.io.audio import SAMPLE_RATE, load_audio
from model.progress import progress


@dataclass
class AudioSplit:
    audio: np.ndarray  # int16 [2, total]
    starts: np.ndarray  # clip start offsets into `audio`
    lengths: np.ndarray  # clip lengths in samples
    rows: list[ClipRow]

    def crops(self, batch: int, samples: int, generator: torch.Generator) -> torch.Tensor:
        """[batch, 2, samples] float32: random clip (by length), random offset inside it."""
        usable = np.maximum(self.lengths - samples, 0)
        weights = torch.as_tensor(usable + 1, dtype=torch.float64)
        clips = torch.multinomial(weights, batch, replacement=True, generator=generator).numpy()
        out = np.zeros((batch, 2, samples), dtype=np.float32)
        for i, c in enumerate(clips):
            offset = int(torch.randint(0, int(usable[c]) + 1, (1,), generator=generator))
            start = int(self.starts[c]) + offset
            take = min(samples, int(self.lengths[c]) - offset)
            out[i, :, :take] = self.audio[:, start : start + take] / 32768.0
        return torch.from_numpy(out)


def _cache_key(rows: list[ClipRow]) -> str:
    h = hashlib.sha1()
    for r in rows:
        h.update(f"{r.id}:{r.duration}:{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


def load_split(corpus_dir: str | Path, split: str = "train", show_progress: bool = True) -> AudioSplit:
    corpus_dir = Path(corpus_dir)
    rows = read_manifest(corpus_dir, split)
    if not rows:
        raise JamstreamError(f"{corpus_dir}: the {split} split is empty; build a larger corpus")
    cache_dir = corpus_dir / ".cache"
    cache = cache_dir / f"audio-{split}-{_cache_key(rows)}.npy"
    lengths = np.array([int(round(r.duration * SAMPLE_RATE)) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    if not cache.is_file():
        with atomic_path(cache, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(2, int(lengths.sum())))
            for r, s, n in progress(
                list(zip(rows, starts, lengths)), desc=f"decode {split}", unit="clip", enabled=show_progress
            ):
                audio = load_audio(r.path)[:, :n]
                out[:, s : s + audio.shape[1]] = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
            out.flush()
            del out
    audio = np.load(cache, mmap_mode="r")
    return AudioSplit(audio=audio, starts=starts, lengths=lengths, rows=rows)


def join_splits(splits: list[AudioSplit]) -> AudioSplit:
    """Several corpora's splits as one (crops draw from all, by length). One split is
    returned as is, so the single-corpus path keeps its memory map."""
    if len(splits) == 1:
        return splits[0]
    audio = np.concatenate([np.asarray(s.audio) for s in splits], axis=1)
    lengths = np.concatenate([s.lengths for s in splits])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return AudioSplit(audio=audio, starts=starts, lengths=lengths, rows=[r for s in splits for r in s.rows])


def load_splits(corpora: str | Path | list, split: str = "train", show_progress: bool = True) -> AudioSplit:
    """One split of one corpus or of several joined (`--corpus A B`)."""
    corpora = [corpora] if isinstance(corpora, (str, Path)) else list(corpora)
    return join_splits([load_split(c, split, show_progress) for c in corpora])
