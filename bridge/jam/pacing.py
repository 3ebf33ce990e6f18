"""How finely the engine decides and how far ahead of the playhead it works.

A *piece* is the frames one `Generator.generate_chunk` call makes; its style mix, knobs,
gain target and per-frame timing are decided at its *decision time*: the piece's first
audio sample minus the *lookahead*. A CC is therefore heard after lookahead + up to one
piece (+ the preset's smoothing), and the lookahead must cover generating one piece plus
the machine's jitter. Both numbers trade response for safety, so by default they come
from the measured generation speed (`live_pacing`); a preset's `piece_frames` /
`lookahead_ms` override them.

Offline (`render`, `generate`, the evals) nothing has a deadline, so "auto" means no
lookahead at all: a CC in a MIDI file lands at its own time, as it would live from a
host that compensates the latency jamstream reports. To reproduce a live take sample for
sample, render with the piece and lookahead its status showed.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.codec.network import FRAME_RATE

DEFAULT_PIECE_FRAMES = 3  # 120 ms: offline, and live on a machine fast enough for it
# Live auto pieces by measured real-time factor: shorter pieces answer sooner but pay the
# decoder's per-call context (measured on the 2-core CPU: 27.5 ms/frame at 3-4 frames per
# call vs 24.9 at 12), which matters only when the margin is thin.
PIECES_BY_RTF = ((1.25, 3), (1.12, 4), (1.05, 6), (0.0, 12))
LEAD_FACTOR = 1.5  # a piece's expected generation time x this (from a mean alone) ...
LEAD_FACTOR_P95 = 1.25  # ... or its 95th percentile x this, once pieces have been timed ...
JITTER_S = 0.02  # ... + this + one period: the auto lookahead
MIN_AUTO_LOOKAHEAD_S = 0.05  # even a generator that costs nothing waits on the worker's loop and the OS
MAX_AUTO_LOOKAHEAD_S = 2.0
GROW_FACTOR = 1.1  # a late piece grows an auto lookahead by what it lacked, + this much


@dataclass(frozen=True)
class Pacing:
    piece_frames: int
    lookahead_s: float

    def describe(self) -> str:
        ms = self.piece_frames * 1000 // FRAME_RATE
        return f"{self.piece_frames}-frame pieces ({ms} ms), lookahead {self.lookahead_s * 1000:.0f} ms"


def offline_pacing(preset) -> Pacing:
    """The preset's numbers, "auto" read as the default piece and no lookahead."""
    piece = preset.piece_frames or DEFAULT_PIECE_FRAMES
    lookahead = 0.0 if preset.lookahead_ms is None else preset.lookahead_ms / 1000.0
    return Pacing(piece, lookahead)


def auto_piece_frames(seconds_per_frame: float) -> int:
    rtf = (1.0 / FRAME_RATE) / seconds_per_frame if seconds_per_frame > 0 else float("inf")
    return next(p for floor, p in PIECES_BY_RTF if rtf >= floor)


def auto_lookahead_s(
    piece_frames: int, seconds_per_frame: float, period_s: float, p95_seconds_per_frame: float | None = None
) -> float:
    """Just enough to generate one piece at the measured speed, plus jitter and one period
    (the callback reads a whole period ahead)."""
    if p95_seconds_per_frame is not None:
        lead = LEAD_FACTOR_P95 * piece_frames * p95_seconds_per_frame
    else:
        lead = LEAD_FACTOR * piece_frames * seconds_per_frame
    need = period_s + lead + JITTER_S
    return min(MAX_AUTO_LOOKAHEAD_S, max(MIN_AUTO_LOOKAHEAD_S, need))


def live_pacing(
    preset, seconds_per_frame: float, period_s: float, p95_seconds_per_frame: float | None = None
) -> Pacing:
    """The preset's numbers where it gives them, else chosen from the measured seconds of
    generation per 40 ms frame (LM, codec and effects together; the mean picks the piece,
    the 95th percentile, once known, the lookahead)."""
    piece = preset.piece_frames or auto_piece_frames(seconds_per_frame)
    if preset.lookahead_ms is not None:
        return Pacing(piece, preset.lookahead_ms / 1000.0)
    return Pacing(piece, auto_lookahead_s(piece, seconds_per_frame, period_s, p95_seconds_per_frame))


def grown(pacing: Pacing, late_s: float) -> Pacing:
    """An auto lookahead after a piece was `late_s` late: enough for that, and 10 % more."""
    return Pacing(pacing.piece_frames, min(MAX_AUTO_LOOKAHEAD_S, (pacing.lookahead_s + late_s) * GROW_FACTOR))
