"""Parts several style recipes share: a wandering melody, a walking bass, tempo-aware swing."""

from __future__ import annotations

from typing import Sequence

from model.corpus.arrangement import Ctx, swung
from model.corpus.harmony import Timeline, nearest


def melody(
    ctx: Ctx,
    track: int,
    tl: Timeline,
    scale: Sequence[int],
    lo: int,
    hi: int,
    rate: float,
    durs: Sequence[float],
    vel: float = 80,
    swing: float = 0.5,
    start_bar: int = 0,
) -> None:
    """A wandering line: chord tones on beats, scale steps between, rests by `rate`.

    Good enough for bells, leads and fills; no one is asked to hum it back.
    """
    pitches = ctx.scale(scale, lo, hi)
    prev = pitches[len(pitches) // 2]
    t = float(start_bar * ctx.bpb)
    while t < ctx.total - 0.25:
        dur = ctx.pick(durs)
        if ctx.rng.random() < rate:
            chord = tl.at(t)
            if abs(t - round(t)) < 1e-6:
                options = [p for p in pitches if p % 12 in chord.pcs and abs(p - prev) <= 7] or pitches
            else:
                i = pitches.index(prev) if prev in pitches else len(pitches) // 2
                options = [pitches[j] for j in (i - 2, i - 1, i + 1, i + 2) if 0 <= j < len(pitches)]
            prev = ctx.pick(options)
            ctx.add(track, swung(t, swing), dur * 0.95, prev, vel)
        t += dur


def walking_bass(ctx: Ctx, track: int, tl: Timeline, swing: float) -> None:
    """Quarter notes: root on each change, chromatic approach into the next, chord tones between."""
    lo, hi = 28, 52
    prev = nearest(tl.chords[0].root, 36, lo, hi)
    for i in range(int(ctx.total)):
        t = float(i)
        chord = tl.at(t)
        change = tl.next_change(t)
        if any(abs(s - t) < 1e-6 for s in tl.starts):
            pitch = nearest(chord.root, prev, lo, hi)
        elif abs(change - (t + 1)) < 1e-6:
            target = nearest(tl.at(change).root, prev, lo + 2, hi - 2)
            pitch = (
                target + ctx.pick((-1, 1, 1, -2, 2))
                if ctx.rng.random() < 0.8
                else nearest((tl.at(change).root + 7) % 12, prev, lo, hi)
            )
        else:
            options = [nearest(pc, prev, lo, hi) for pc in chord.pcs[1:]]
            options = [p for p in options if p != prev] or options
            pitch = ctx.pick(options)
        on_one = i % ctx.bpb == 0
        ctx.add(track, t, 0.92, pitch, 92 if on_one else 82)
        if ctx.density == 2 and ctx.rng.random() < 0.12 and not abs(change - (t + 1)) < 1e-6:
            ctx.add(track, t + swing, 1 - swing, pitch + ctx.pick((-1, 1)), 60)  # skip note
        prev = pitch


def swing_ratio(ctx: Ctx, lo: float, hi: float) -> float:
    """Swing straightens as tempo rises, as it does with real players."""
    fast = min(1.0, max(0.0, (ctx.bpm - 90) / 90))
    return round(ctx.rng.uniform(lo, hi) - 0.06 * fast, 3)
