"""Conductor MIDI files: a tempo map, a meter and CC automation, no notes.

What `jamstream render` follows, written by code: benchmarks and evals sweep a preset's
knobs with these, and a musician can start a song file from one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

TICKS_PER_QUARTER = 480


def write_conductor(
    path: str | Path,
    tempos: Sequence[tuple[float, float]],
    bars: int,
    ccs: Sequence[tuple[float, int, int]] = (),
    meter: tuple[int, int] = (4, 4),
    channel: int = 1,
) -> Path:
    """Write a type-0 file: tempos [(quarter, bpm)], CCs [(quarter, number, value)] on
    `channel` (1-16), ending after `bars` bars of `meter`."""
    import mido

    events = [(float(q), 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))) for q, bpm in tempos]
    events.append((0.0, 0, mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1])))
    events += [
        (float(q), 1, mido.Message("control_change", channel=channel - 1, control=n, value=v)) for q, n, v in ccs
    ]
    events.append((bars * meter[0] * 4.0 / meter[1], 2, mido.MetaMessage("end_of_track")))
    track, last = mido.MidiTrack(), 0
    for q, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = int(round(q * TICKS_PER_QUARTER))
        track.append(msg.copy(time=tick - last))
        last = tick
    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_QUARTER)
    mid.tracks.append(track)
    path = Path(path)
    mid.save(path)
    return path


def crossfade_ccs(
    a_cc: int, b_cc: int, start_quarter: float, quarters: float, steps: int = 32
) -> list[tuple[float, int, int]]:
    """A full sweep from slot A (127 -> 0) to slot B (0 -> 127), starting at start_quarter."""
    out = [(0.0, a_cc, 127), (0.0, b_cc, 0)]
    for i in range(steps + 1):
        q = start_quarter + quarters * i / steps
        v = round(127 * i / steps)
        out += [(q, a_cc, 127 - v), (q, b_cc, v)]
    return out


def sweep_clock(preset, bpm: float, bars: int, sweep_start_quarter: float, sweep_quarters: float):
    """A MidiFileClock for `bars` bars of the preset's meter at `bpm` (beats of the meter's
    denominator) with a full slot A -> B sweep: what evals and benches bounce."""
    import tempfile

    from bridge.jam.time.clock import MidiFileClock

    a, b = preset.slots[0], preset.slots[1]
    den = preset.meter[1]
    ccs = crossfade_ccs(a.cc.number, b.cc.number, sweep_start_quarter, sweep_quarters)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_conductor(
            Path(tmp) / "sweep.mid", [(0.0, bpm * 4.0 / den)], bars, ccs, preset.meter, channel=a.cc.channel
        )
        return MidiFileClock.from_file(path)
