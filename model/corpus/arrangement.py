"""The piece under construction: the `Ctx` a style recipe adds tracks and notes to.

It owns the two rules of model/corpus/styles.py: every draw comes from the piece's own
rng, and drum hits stay on the grid (only velocity is humanized, swing only delays
off-beat subdivisions) while pitched notes get a few milliseconds of jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from model.corpus.harmony import Chord, Timeline, parse_roman
from model.corpus.piece import Note, Track

# --- General MIDI drum keys ---------------------------------------------------------------
KICK, KICK2, STICK, SNARE, CLAP, SNARE2 = 36, 35, 37, 38, 39, 40
HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, RIDE_BELL = 42, 44, 46, 49, 51, 53
TOMS = (50, 48, 47, 45, 43, 41)  # high to low, the order a fill rolls down the kit
TAMBOURINE, COWBELL, CABASA, MARACAS, CLAVES, SHAKER = 54, 56, 69, 70, 75, 82


@dataclass
class Ctx:
    """Everything a style function needs; it only adds tracks and notes."""

    rng: random.Random
    bpm: float
    meter: tuple[int, int]
    bars: int
    tonic: int
    mode: str
    density: int  # 0 sparse, 1 medium, 2 busy
    tracks: list[Track] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    fill_windows: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def bpb(self) -> int:
        return self.meter[0]

    @property
    def total(self) -> float:
        return float(self.bars * self.bpb)

    @property
    def minor(self) -> bool:
        return self.mode == "minor"

    def pick(self, options: Sequence):
        return options[self.rng.randrange(len(options))]

    def track(self, role: str, options: Sequence[tuple[int, str]], is_drum: bool = False) -> int:
        """Add a track with one of several plausible (GM program, caption name) choices."""
        program, name = self.pick(options)
        self.tracks.append(Track(role=role, program=program, instrument=name, is_drum=is_drum))
        return len(self.tracks) - 1

    def drums(self, options: Sequence[tuple[int, str]]) -> int:
        return self.track("drums", options, is_drum=True)

    def timeline(self, bars: Sequence[str]) -> Timeline:
        """Cycle a progression (one string per bar, chords split the bar evenly)."""
        starts: list[float] = []
        durs: list[float] = []
        chords: list[Chord] = []
        for bar in range(self.bars):
            symbols = bars[bar % len(bars)].split()
            each = self.bpb / len(symbols)
            for k, sym in enumerate(symbols):
                starts.append(bar * self.bpb + k * each)
                durs.append(each)
                chords.append(parse_roman(sym, self.tonic))
        return Timeline(starts, durs, chords)

    def scale(self, intervals: Sequence[int], lo: int, hi: int) -> list[int]:
        pcs = {(self.tonic + i) % 12 for i in intervals}
        return [p for p in range(lo, hi + 1) if p % 12 in pcs]

    # notes ----------------------------------------------------------------------------------

    def _vel(self, vel: float) -> int:
        return max(1, min(127, int(round(vel + self.rng.randint(-6, 6)))))

    def add(self, track: int, start: float, dur: float, pitch: int, vel: float) -> None:
        """A pitched note, lightly humanized (a few ms, never before 0)."""
        if start >= self.total or not 0 <= pitch <= 127:
            return
        if start > 0:
            start = max(0.0, start + max(-0.012, min(0.012, self.rng.gauss(0.0, 0.006))))
        dur = min(dur, self.total - start)
        self.notes.append(Note(start, max(0.05, dur), int(pitch), self._vel(vel), track))

    def chord(
        self, track: int, start: float, dur: float, pitches: Sequence[int], vel: float, strum: float = 0.0
    ) -> None:
        for k, p in enumerate(pitches):
            self.add(track, start + k * strum, dur - k * strum, p, vel)

    def hit(self, track: int, start: float, pitch: int, vel: float, force: bool = False) -> None:
        """A drum hit exactly on its grid position; only velocity is humanized."""
        if start >= self.total - 1e-9:
            return
        if not force and any(a - 1e-9 <= start < b - 1e-9 for a, b in self.fill_windows.get(track, ())):
            return  # the fill owns this stretch of the bar
        self.notes.append(Note(start, 0.25, pitch, self._vel(vel), track))

    def grid(
        self, track: int, start: float, pattern: str, pitch: int, vel: float = 90, subdiv: int = 4, swing: float = 0.5
    ) -> None:
        """Drum hits from a step string: X accent, x hit, o ghost, . rest.

        Steps are `subdiv` per beat; a pattern may span several bars. `swing` is the share
        of a beat the first eighth takes (0.5 straight, 2/3 triplet); only off-beat
        eighths (or off-beat sixteenths, on a 16th grid) move.
        """
        for i, ch in enumerate(pattern):
            if ch == "." or ch == " ":
                continue
            t = start + swung(i / subdiv, swing, 0.5 if subdiv <= 2 else 1.0 / subdiv)
            self.hit(track, t, pitch, vel * {"X": 1.2, "x": 1.0, "o": 0.42}[ch])

    def plan_fills(self, track: int, triplet: bool = False, crash: int = CRASH) -> None:
        """Fills close every 4- or 8-bar phrase; a crash lands on the next downbeat.

        Called before the groove so the groove's hits inside a fill window are dropped.
        """
        phrase = self.pick((4, 8)) if self.bars >= 9 else 4
        subdiv = (3 if triplet else 4) if self.meter[1] <= 4 else 2
        for bar in range(phrase - 1, self.bars - 1, phrase):
            if self.meter[1] > 4:
                n_beats = self.bpb // 2
            else:
                n_beats = min(self.bpb - 1, (1, self.pick((1, 2)), 2)[self.density])
            end = (bar + 1) * self.bpb
            start = end - n_beats
            self.fill_windows.setdefault(track, []).append((start, end))
            steps = int(round(n_beats * subdiv))
            style = self.pick(("toms", "snare", "mixed"))
            for s in range(steps):
                if self.density == 0 and s % 2 == 1 and s != steps - 1:
                    continue
                t = start + s / subdiv
                if style == "snare":
                    pitch = SNARE
                elif style == "toms":
                    pitch = TOMS[min(len(TOMS) - 1, s * len(TOMS) // steps)]
                else:
                    pitch = SNARE if s % 2 == 0 else TOMS[min(len(TOMS) - 1, s * len(TOMS) // steps)]
                self.hit(track, t, pitch, 70 + 45 * s / max(1, steps - 1), force=True)
            self.hit(track, end, crash, 112, force=True)
            self.hit(track, end, KICK, 105, force=True)

    def finish(self) -> list[Note]:
        """Drop duplicates (a fill's kick on top of the groove's), sort by time."""
        seen: set[tuple[int, int, int]] = set()
        out: list[Note] = []
        for n in sorted(self.notes, key=lambda n: (n.start, n.track, n.pitch, -n.velocity)):
            if n.start >= self.total:
                continue
            k = (n.track, n.pitch, int(round(n.start * 480)))
            if k in seen:
                continue
            seen.add(k)
            out.append(n)
        return out


def swung(t: float, ratio: float, unit: float = 0.5) -> float:
    """Delay odd subdivisions of size `unit` so the pair splits `ratio` : 1 - ratio."""
    if ratio == 0.5:
        return t
    pos = t / unit
    if abs(pos - round(pos)) < 1e-6 and int(round(pos)) % 2 == 1:
        return t + (ratio - 0.5) * 2 * unit
    return t
