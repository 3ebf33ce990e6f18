"""The chunk grid: which 40 ms frames each `generate_chunk` call covers, and their timing.

Chunks end on the clock's beats or bars (the preset's `chunk`, e.g. "1 bar"), rounded to
25 Hz frames. Every boundary is the rounding of an exact time the clock computes from
its tempo map - never the previous boundary plus a rounded length - so rounding error
stays under half a frame at bar 10 000 as at bar 1, and a tempo change moves the grid
with it: each chunk ends at the next boundary under the tempo in force.

Frames are numbered from song time 0 (frame f starts at f / 25 s), so a locate maps to
the same frames whatever came before: after a jump, start a new grid at the new time.
The grid is lazy - each chunk asks the clock when it is produced - so a live clock whose
tempo changes is honoured from the next chunk on, as the design asks.

Pure scheduling: no Generator here. The engine feeds `chunk.timing` (float32 [n, 3] =
bpm, beat phase, bar phase at each frame's start, the LM's conditioning) and
`chunk.n_frames` to `Generator.generate_chunk`, and writes its n_frames * 1920 samples
at `chunk.start_sample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from bridge.jam.time.clock import ChunkLength, Clock
from model.codec.network import FRAME_RATE, FRAME_SAMPLES


@dataclass(frozen=True)
class Chunk:
    index: int
    start_frame: int
    n_frames: int
    timing: np.ndarray  # float32 [n_frames, 3] = (bpm, beat phase, bar phase) per frame
    end_seconds: float  # the exact time the chunk ends on (a grid point unless cut short)
    on_grid: bool  # False when cut by max_frames or the end of the render

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.n_frames

    @property
    def start_sample(self) -> int:
        return self.start_frame * FRAME_SAMPLES

    @property
    def n_samples(self) -> int:
        return self.n_frames * FRAME_SAMPLES

    def start_seconds(self, frame_rate: int = FRAME_RATE) -> float:
        return self.start_frame / frame_rate


def frame_at(seconds: float, frame_rate: int = FRAME_RATE) -> int:
    """The frame whose start is nearest `seconds` (halves round up, not to even)."""
    return math.floor(seconds * frame_rate + 0.5)


def frame_timing(clock: Clock, start_frame: int, n_frames: int, frame_rate: int = FRAME_RATE) -> np.ndarray:
    """[n_frames, 3] float32 timing at the starts of frames start_frame.. (one clock call)."""
    return clock.timing((start_frame + np.arange(n_frames, dtype=np.float64)) / frame_rate)


def chunk_grid(
    clock: Clock,
    length: ChunkLength,
    start_seconds: float = 0.0,
    end_seconds: float | None = None,
    frame_rate: int = FRAME_RATE,
    min_frames: int = 1,
    max_frames: int | None = None,
) -> Iterator[Chunk]:
    """Chunks from `start_seconds` (rounded to a frame) to `end_seconds` (or forever).

    A chunk ends at the next `length` boundary whose frame is at least `min_frames` after
    its start (a boundary closer than that - e.g. a start just before a bar line - is
    merged into the next chunk), or after `max_frames` if given (a very slow bar must
    not outgrow the LM's 10 s context; the grid picks up at its next boundary).
    """
    if min_frames < 1 or (max_frames is not None and max_frames < min_frames):
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    cur = frame_at(start_seconds, frame_rate)
    last = None if end_seconds is None else frame_at(end_seconds, frame_rate)
    index = 0
    while last is None or cur < last:
        t = cur / frame_rate
        while True:  # the first grid point far enough after this chunk's start
            t = clock.next_boundary(t, length.unit, length.count)
            end = frame_at(t, frame_rate)
            if end - cur >= min_frames:
                break
        on_grid = True
        if max_frames is not None and end - cur > max_frames:
            end, t, on_grid = cur + max_frames, (cur + max_frames) / frame_rate, False
        if last is not None and end > last:
            end, t, on_grid = last, end_seconds, False
        n = end - cur
        yield Chunk(index, cur, n, frame_timing(clock, cur, n, frame_rate), float(t), on_grid)
        cur, index = end, index + 1
