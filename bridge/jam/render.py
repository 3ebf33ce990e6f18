"""Offline bounce: a MIDI file's tempo map, meter and CC automation drive the engine.

The file is the clock (`MidiFileClock`) and its CC events are queued into the engine at
their song times, exactly as the live worker queues what arrives on its MIDI port; the
engine then runs chunk after chunk as fast as the CPU allows and the blocks are laid
end to end on the song's sample timeline. Same seed, same file, same audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from bridge.jam.engine import SAMPLE_RATE, Block, Engine
from bridge.jam.time.clock import Clock, MidiFileClock


@dataclass
class Bounce:
    audio: np.ndarray  # float32 [2, samples], song time 0 at sample 0
    bars: list[dict]  # per bar: {"bar", "seconds", "weights"} at the bar's first chunk
    blocks: int


def bounce(
    engine: Engine, clock: Clock, end_seconds: float, on_block: Callable[[Block], None] | None = None
) -> Bounce:
    """Render [0, end_seconds) of the song through `engine`.

    A MidiFileClock's CC automation is queued at its song times; any other clock (a
    FixedClock for `generate`) plays the preset's initial knobs throughout."""
    engine.start(0.0, end_seconds)  # first: a start applies whatever is already queued
    for ev in clock.cc_events if isinstance(clock, MidiFileClock) else ():
        engine.feed_cc(ev.channel, ev.number, ev.value, ev.seconds)
    total = int(round(end_seconds * SAMPLE_RATE))
    out = np.zeros((2, total), dtype=np.float32)
    bars: dict[int, dict] = {}
    blocks = 0
    while engine.peek() is not None:
        block = engine.next_block()
        _place(out, block.audio, block.start_sample)
        bars.setdefault(
            block.bar,
            {
                "bar": block.bar,
                "seconds": round(block.chunk.start_seconds(), 4),
                "weights": {k: round(v, 4) for k, v in block.weights.items()},
            },
        )
        blocks += 1
        if on_block is not None:
            on_block(block)
    start, tail = engine.finish()
    _place(out, tail, start)
    return Bounce(out, [bars[k] for k in sorted(bars)], blocks)


def _place(out: np.ndarray, audio: np.ndarray, start: int) -> None:
    """Add `audio` at sample `start`, clipped to [0, len(out))."""
    lo, hi = max(0, start), min(out.shape[1], start + audio.shape[1])
    if hi > lo:
        out[:, lo:hi] += audio[:, lo - start : hi - start]
