"""Procedural style generators: a seed in, a captioned `Piece` out.

Scores alone give us chorales and folk tunes; these generators give the corpus the
contemporary styles a jam partner is asked for (jazz, bossa, techno, rock...), with
captions that are true by construction because the generator chose every attribute.

Two rules matter downstream:
  * Determinism: each piece draws only from its own `random.Random(seed)`, so a
    piece_id ("gen:<style>:<seed>") fully reproduces the clip.
  * The beat grid is sacred: drum hits are never time-humanized, and swing only delays
    off-beat subdivisions, so audio onsets on the beats line up with the MIDI tempo map
    (a later test checks they sit within 30 ms of it). Only pitched parts get timing
    jitter, and that is a few milliseconds.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from model.corpus.piece import Note, Piece, Track, key_name

# --- General MIDI drum keys ---------------------------------------------------------------
KICK, KICK2, STICK, SNARE, CLAP, SNARE2 = 36, 35, 37, 38, 39, 40
HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, RIDE_BELL = 42, 44, 46, 49, 51, 53
TOMS = (50, 48, 47, 45, 43, 41)  # high to low, the order a fill rolls down the kit
TAMBOURINE, COWBELL, CABASA, MARACAS, CLAVES, SHAKER = 54, 56, 69, 70, 75, 82

DENSITIES = ("sparse", "medium", "busy")

# --- harmony -------------------------------------------------------------------------------

_DEGREE = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
_ROMAN = re.compile(r"^(b|#)?(VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(.*)$")
# suffix -> (intervals when the numeral is upper case, intervals when lower case)
_QUALITY: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "": ((0, 4, 7), (0, 3, 7)),
    "7": ((0, 4, 7, 10), (0, 3, 7, 10)),
    "maj7": ((0, 4, 7, 11), (0, 4, 7, 11)),
    "maj9": ((0, 4, 7, 11, 14), (0, 4, 7, 11, 14)),
    "9": ((0, 4, 7, 10, 14), (0, 3, 7, 10, 14)),
    "13": ((0, 4, 10, 14, 21), (0, 3, 10, 14, 21)),
    "6": ((0, 4, 7, 9), (0, 3, 7, 9)),
    "add9": ((0, 4, 7, 14), (0, 3, 7, 14)),
    "sus2": ((0, 2, 7), (0, 2, 7)),
    "sus4": ((0, 5, 7), (0, 5, 7)),
    "ø7": ((0, 3, 6, 10), (0, 3, 6, 10)),
    "dim": ((0, 3, 6), (0, 3, 6)),
    "5": ((0, 7), (0, 7)),
}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
MAJOR_PENTA = (0, 2, 4, 7, 9)
MINOR_PENTA = (0, 3, 5, 7, 10)


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class 0..11
    intervals: tuple[int, ...]  # semitones above the root, root included as 0
    symbol: str

    @property
    def pcs(self) -> list[int]:
        return [(self.root + i) % 12 for i in self.intervals]


def parse_roman(symbol: str, tonic: int) -> Chord:
    """'bVImaj7' in C -> A-flat major 7.

    Numerals are relative to the tonic's *major* scale (jazz-chart convention), so minor
    keys spell their borrowed degrees explicitly (bIII, bVI, bVII) and nothing depends on
    which minor scale a style assumes. Case decides the third unless the suffix does.
    """
    m = _ROMAN.match(symbol)
    if not m:
        raise ValueError(f"bad chord symbol {symbol!r}")
    accidental, numeral, suffix = m.groups()
    if suffix not in _QUALITY:
        raise ValueError(f"unknown chord quality {suffix!r} in {symbol!r}")
    root = tonic + _DEGREE[numeral.upper()] + {"b": -1, "#": 1, None: 0}[accidental]
    upper, lower = _QUALITY[suffix]
    return Chord(root % 12, upper if numeral.isupper() else lower, symbol)


def place(pc: int, floor: int) -> int:
    """The lowest pitch of class `pc` at or above `floor`."""
    return floor + (pc - floor) % 12


def nearest(pc: int, ref: float, lo: int, hi: int) -> int:
    """The pitch of class `pc` in [lo, hi] closest to `ref`: smooth lines for free."""
    options = [p for p in range(lo, hi + 1) if p % 12 == pc % 12]
    return min(options, key=lambda p: (abs(p - ref), p))


def voice(chord: Chord, floor: int, rootless: bool = False, max_notes: int = 4) -> list[int]:
    """Close position above `floor`.

    Keeping every voicing inside one octave above a fixed floor gives reasonable voice
    leading without a search. Rootless voicings (the bass has the root) drop the root and
    then the fifth, the two tones a jazz pianist leaves out first.
    """
    ints = [i for i in chord.intervals if not (rootless and i == 0 and len(chord.intervals) > 3)]
    while len(ints) > max_notes and 7 in ints:
        ints.remove(7)
    ints = ints[:max_notes] if len(ints) > max_notes else ints
    return sorted({place((chord.root + i) % 12, floor) for i in ints})


def power_chord(chord: Chord, floor: int = 40) -> list[int]:
    root = place(chord.root, floor)
    return [root, root + 7, root + 12]


@dataclass
class Timeline:
    """Chords laid over the whole clip, so every part asks the same question: what now?"""

    starts: list[float]
    durations: list[float]
    chords: list[Chord]

    def at(self, t: float) -> Chord:
        return self.chords[max(0, bisect.bisect_right(self.starts, t + 1e-6) - 1)]

    def spans(self) -> list[tuple[float, float, Chord]]:
        return list(zip(self.starts, self.durations, self.chords))

    def next_change(self, t: float) -> float:
        i = bisect.bisect_right(self.starts, t + 1e-6)
        return self.starts[i] if i < len(self.starts) else math.inf


# --- the piece under construction ------------------------------------------------------------


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


# --- shared parts ---------------------------------------------------------------------------


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


# --- styles ---------------------------------------------------------------------------------


def _jazz(ctx: Ctx) -> None:
    """Swing trio: walking bass, ride with hats on 2 and 4, rootless comping on ii-V-I."""
    sw = swing_ratio(ctx, 0.62, 0.67)
    if ctx.minor:
        prog = ctx.pick(
            [
                ["iiø7", "V7", "i7", "i7"],
                ["i7", "iv7", "iiø7", "V7"],
                ["i7", "bVImaj7", "iiø7", "V7"],
                ["iiø7 V7", "i7", "iv7", "iiø7 V7"],
            ]
        )
    else:
        prog = ctx.pick(
            [
                ["ii7", "V7", "Imaj7", "Imaj7"],
                ["Imaj7", "vi7", "ii7", "V7"],
                ["iii7", "vi7", "ii7", "V7"],
                ["Imaj7", "VI7", "ii7", "V7"],
                ["ii7 V7", "Imaj7", "ii7 V7", "Imaj7"],
                ["Imaj7", "I7", "IVmaj7", "iv7"],
            ]
        )
    if ctx.bpb == 3:  # a waltz breathes slower: a bar per chord, two for a whole-bar chord
        prog = [c for bar in prog for c in (bar.split() if " " in bar else [bar, bar])]
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(32, "upright bass"), (32, "acoustic bass"), (32, "double bass")])
    drums = ctx.drums([(40, "brushed drums"), (32, "jazz drums"), (32, "drum kit")])
    comp = ctx.track("keys", [(0, "piano"), (0, "grand piano"), (26, "jazz guitar"), (4, "Rhodes electric piano")])
    brushes = ctx.tracks[drums].instrument == "brushed drums"
    ctx.plan_fills(drums, triplet=True)
    walking_bass(ctx, bass, tl, sw)
    hat_beats = (1, 3) if ctx.bpb == 4 else (1, 2)
    skip_beats = (1, 3) if ctx.bpb == 4 else (1,)
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        for b in range(ctx.bpb):
            ctx.hit(drums, s + b, RIDE, 88 if b in hat_beats else 76)
            if b in skip_beats:
                ctx.hit(drums, s + b + sw, RIDE, 62)
            if b in hat_beats:
                ctx.hit(drums, s + b, PEDAL_HAT, 70)
            if ctx.density >= 1:
                ctx.hit(drums, s + b, KICK, 34)  # feathered
            if brushes:
                ctx.hit(drums, s + b, SNARE, 30)  # the sweep, felt more than heard
            if ctx.rng.random() < (0.1, 0.2, 0.35)[ctx.density]:
                ctx.hit(drums, s + b + sw, SNARE, 48)  # comping chatter on the "and"
        # comping: Charleston, pushes, or held chords
        hits = ctx.pick(
            ([(0, 1.0), (1.5, 0.5)], [(1.5, 1.5)], [(0, 0.5), (2.5, 1.0)], [(0.5, 1.0), (2.5, 0.5)], [(0, 2.0)])
            if ctx.bpb == 4
            else ([(0, 1.0)], [(1.5, 1.0)], [(0, 0.5), (1.5, 0.5)])
        )
        if ctx.density == 2 and ctx.bpb == 4:
            hits = hits + [(3.5, 0.4)]
        if ctx.density == 0:
            hits = hits[:1]
        for pos, dur in hits:
            t = s + swung(pos, sw)
            chord = tl.at(t + 0.5 if pos % 1 else t)  # an "and" anticipates the next chord
            ctx.chord(comp, t, dur, voice(chord, 50, rootless=True), 66)


def _bossa(ctx: Ctx) -> None:
    """Nylon guitar syncopation over a surdo-like bass and cross-stick clave."""
    if ctx.minor:
        prog = ctx.pick(
            [
                ["i7", "i7", "iv7", "iv7", "iiø7", "V7", "i7", "i7"],
                ["i7", "iv7", "bVIImaj7", "bIIImaj7"],
                ["i7", "bII7", "i7", "V7"],
            ]
        )
    else:
        prog = ctx.pick(
            [
                ["Imaj7", "Imaj7", "II7", "II7", "ii7", "V7", "Imaj7", "Imaj7"],
                ["Imaj7", "vi7", "ii7", "V7"],
                ["ii7", "V7", "Imaj7", "VI7"],
                ["Imaj7", "IVmaj7", "iii7", "VI7"],
            ]
        )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(32, "acoustic bass"), (33, "electric bass"), (32, "upright bass")])
    drums = ctx.drums([(40, "brushed drums"), (0, "light drum kit"), (0, "drum kit")])
    gtr = ctx.track("guitar", [(24, "nylon-string guitar"), (24, "classical guitar")])
    extra = ctx.track("keys", [(0, "piano"), (73, "flute"), (11, "vibraphone")]) if ctx.density == 2 else None
    ctx.plan_fills(drums)
    clave = ctx.pick(["x..x..x...x..x..", "x..x..x...x.x...", "..x..x..x..x..x."])  # 2 bars of 8ths
    comp = ctx.pick(["x.xx.x.x.x.xx.x.", "x..x..x.x.x..x..", "x.x..x.xx.x..x.x", ".x.xx.x.x.x.x..x"])
    kick = ctx.pick(["x..xx..x", "x...x..x", "x..xx..."])
    hats = ("x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo", "xxxxxxxxxxxxxxxx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        half = (bar % 2) * 8
        ctx.grid(drums, s, clave[half : half + 8], STICK, 80, subdiv=2)
        ctx.grid(drums, s, kick, KICK, 72, subdiv=2)
        ctx.grid(drums, s, hats, SHAKER if ctx.density else HAT, 50, subdiv=4)
        for pos, dur, fifth in ((0, 1.4, False), (1.5, 0.45, True), (2, 1.4, True), (3.5, 0.45, False)):
            chord = tl.at(s + pos + (0.5 if pos == 3.5 else 0))
            pc = (chord.root + 7) % 12 if fifth else chord.root
            ctx.add(bass, s + pos, dur, nearest(pc, 38, 28, 47), 84 if pos == 0 else 70)
        for i, ch in enumerate(comp[half : half + 8]):
            if ch == "x":
                t = s + i / 2
                ctx.chord(gtr, t, 0.45, voice(tl.at(t + 0.25), 52, rootless=True), 64, strum=0.01)
    if extra is not None:
        melody(ctx, extra, tl, MINOR_SCALE if ctx.minor else MAJOR_SCALE, 67, 86, 0.55, (0.5, 1.0, 1.5), 70)


def _techno(ctx: Ctx) -> None:
    """Four on the floor, off-beat open hats, a one-bar 16th bass riff; harmony kept minimal."""
    tl = ctx.timeline(ctx.pick([["i"], ["i", "i", "i", "bVI"], ["i7", "i7", "bVII", "bVII"]]))
    bass = ctx.track("bass", [(38, "analog synth bass"), (39, "acid synth bass"), (87, "synth bass lead")])
    drums = ctx.drums([(25, "808 kit"), (24, "909 drum machine"), (24, "drum machine")])
    stab = ctx.track("synth", [(81, "saw synth stab"), (90, "polysynth"), (50, "synth strings")])
    ctx.plan_fills(drums)
    riff = [
        (k, ctx.pick((0, 0, 0, 12, 7, 10, 3)))
        for k in range(16)
        if k % 4 != 0 and ctx.rng.random() < (0.35, 0.5, 0.65)[ctx.density]
    ] or [(2, 0)]
    closed = ("..x...x...x...x.", "x.x.x.x.x.x.x.x.", "xxXxxxXxxxXxxxXx")[ctx.density]
    clap = ctx.rng.random() < 0.7
    stab_pattern = ctx.pick(["..x.......x.....", "...x......x..x..", "......x.......x."])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x...x...x...", KICK, 115)
        ctx.grid(drums, s, "..x...x...x...x.", OPEN_HAT, 80)
        ctx.grid(drums, s, closed, HAT, 60)
        if clap:
            ctx.grid(drums, s, "....x.......x...", CLAP, 90)
        chord = tl.at(s)
        for k, iv in riff:
            if bar % 4 == 3 and k >= 12:
                iv += 12  # variation: the riff lifts at the end of each phrase
            ctx.add(bass, s + k / 4, 0.22, nearest(chord.root, 36, 31, 43) + iv, 96 if k % 2 == 0 else 80)
        if ctx.density >= 1 or bar % 2 == 1:
            for i, ch in enumerate(stab_pattern):
                if ch == "x":
                    ctx.chord(stab, s + i / 4, 0.3, voice(chord, 57), 62)


def _house(ctx: Ctx) -> None:
    """Four on the floor with claps on 2 and 4, syncopated piano/organ stabs, off-beat bass."""
    prog = ctx.pick(
        [["i7", "iv7"], ["i7", "bVIImaj7", "bVImaj7", "bVII"], ["i9", "i9", "iv9", "bVII"]]
        if ctx.minor
        else [
            ["vi7", "IVmaj7", "Imaj7", "V"],
            ["ii7", "V7", "Imaj7", "vi7"],
            ["Imaj7", "IVmaj7"],
            ["IV", "V", "iii7", "vi7"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(38, "synth bass"), (39, "deep synth bass"), (33, "electric bass")])
    drums = ctx.drums([(24, "drum machine"), (25, "909 kit"), (0, "house drum kit")])
    keys = ctx.track("keys", [(0, "house piano"), (1, "bright piano"), (16, "organ"), (17, "percussive organ")])
    ctx.plan_fills(drums)
    stabs = ctx.pick(["x..x..x.........", "..x..x....x..x..", "x.....x...x.....", "...x..x...x..x.."])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x...x...x...", KICK, 112)
        ctx.grid(drums, s, "....x.......x...", CLAP, 95)
        ctx.grid(drums, s, "..x...x...x...x.", OPEN_HAT if ctx.density != 1 else HAT, 75)
        if ctx.density >= 1:
            ctx.grid(drums, s, "xoxoxoxoxoxoxoxo", SHAKER, 55)
        for b in range(4):
            chord = tl.at(s + b)
            up = 12 if ctx.density == 2 and b == 3 else 0
            ctx.add(bass, s + b + 0.5, 0.4, nearest(chord.root, 38, 31, 45) + up, 92)
        for i, ch in enumerate(stabs):
            if ch == "x":
                t = s + i / 4
                ctx.chord(keys, t, 0.35, voice(tl.at(t), 58, max_notes=4), 78)


def _rock(ctx: Ctx) -> None:
    """Backbeat drums, power chords, root-eighth bass; also in 3/4 and 6/8."""
    prog = ctx.pick(
        [["i5", "bVII5", "bVI5", "bVII5"], ["i5", "bVI5", "bIII5", "bVII5"], ["i5", "i5", "iv5", "bVII5"]]
        if ctx.minor
        else [
            ["I5", "V5", "vi5", "IV5"],
            ["I5", "IV5", "V5", "IV5"],
            ["I5", "bVII5", "IV5", "I5"],
            ["I5", "I5", "IV5", "V5"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (34, "picked bass"), (33, "bass guitar")])
    drums = ctx.drums([(0, "rock drum kit"), (16, "power drum kit"), (8, "drum kit")])
    gtr = ctx.track("guitar", [(30, "distorted guitar"), (29, "overdriven guitar"), (30, "heavy guitar")])
    ctx.plan_fills(drums)
    six8 = ctx.meter == (6, 8)
    cymbal = RIDE if ctx.rng.random() < 0.3 else HAT
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        if six8:
            ctx.grid(drums, s, "x.....", KICK, 110, subdiv=1)
            ctx.grid(drums, s, "...x..", SNARE, 110, subdiv=1)
            ctx.grid(drums, s, "Xxxxxx", cymbal, 75, subdiv=1)
            if ctx.density == 2:
                ctx.grid(drums, s, ".....x", KICK, 85, subdiv=1)
        elif ctx.bpb == 3:
            ctx.grid(drums, s, "x.....", KICK, 110, subdiv=2)
            ctx.grid(drums, s, "..x.x.", SNARE, 105, subdiv=2)
            ctx.grid(drums, s, "XxxxXx" if ctx.density else "x.x.x.", cymbal, 75, subdiv=2)
        else:
            kick = ("x.......x.......", "x.......x.x.....", "x.....x.x.x.....")[ctx.density]
            ctx.grid(drums, s, kick, KICK, 112)
            ctx.grid(drums, s, "....x.......x...", SNARE, 112)
            ctx.grid(drums, s, ("x.x.x.x.x.x.x.x.", "X.x.X.x.X.x.X.x.", "XxxxXxxxXxxxXxxx")[ctx.density], cymbal, 78)
        step = 1.0 if six8 else 0.5
        n = int(ctx.bpb / step)
        for k in range(n):
            t = s + k * step
            chord = tl.at(t)
            root = nearest(chord.root, 38, 28, 43)
            ctx.add(bass, t, step * 0.9, root, 92 if k == 0 else 80)
            if ctx.density == 0 and k % (2 if six8 else 4) != 0:
                continue
            hold = step * (2 if six8 else 4) if ctx.density == 0 else step
            ctx.chord(gtr, t, hold * 0.9, power_chord(chord, 40), 95 if k % 2 == 0 else 78)


def _funk(ctx: Ctx) -> None:
    """16th syncopation everywhere: ghosted snare, slap bass riff, scratch guitar on dominant 9ths."""
    prog = ctx.pick(
        [["i9"], ["i7", "IV9"], ["i9", "i9", "IV9", "IV9"]]
        if ctx.minor
        else [["I9"], ["I9", "IV9"], ["I9", "I9", "IV9", "I9"], ["I9", "bVII9"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(36, "slap bass"), (37, "slap bass"), (33, "finger bass")])
    drums = ctx.drums([(0, "funk drum kit"), (8, "tight drum kit"), (0, "drum kit")])
    gtr = ctx.track("guitar", [(27, "clean electric guitar"), (28, "muted funk guitar"), (7, "clavinet")])
    ctx.plan_fills(drums)
    kick = ctx.pick(["x..x..x...x..x..", "x.x...x..x.x....", "x..x....x.x..x..", "x......x..x..x.."])
    snare = ("....x.......x...", "....X..o.o..X..o", "..o.X.ooo.o.X.oo")[ctx.density]
    hats = ("x.x.x.x.x.x.x.x.", "XoxoXoxoXoxoXoxo", "XxxxXxxxXxxxXx.x")[ctx.density]
    riff = [(0, 0, 100, 0.4)]
    for k in range(2, 16):
        if ctx.rng.random() < (0.3, 0.42, 0.55)[ctx.density]:
            ghost = ctx.rng.random() < 0.25
            riff.append((k, ctx.pick((0, 12, 10, 7, 12, 5)), 45 if ghost else 88, 0.08 if ghost else 0.2))
    scratch = [k for k in range(16) if ctx.rng.random() < (0.3, 0.5, 0.7)[ctx.density]]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 108)
        ctx.grid(drums, s, snare, SNARE, 105)
        ctx.grid(drums, s, hats, HAT, 72)
        if ctx.density >= 1:
            ctx.grid(drums, s, "..............x.", OPEN_HAT, 70)
        chord = tl.at(s)
        root = nearest(chord.root, 35, 28, 40)
        for k, iv, vel, dur in riff:
            ctx.add(bass, s + k / 4, dur, root + iv, vel)
        v9 = [place((chord.root + i) % 12, 60) for i in (4, 10, 14)] + [place((chord.root + 7) % 12, 67)]
        for k in scratch:
            accent = k % 4 == 2 or k in (6, 14)
            ctx.chord(gtr, s + k / 4, 0.15 if accent else 0.07, sorted(v9), 88 if accent else 40)


def _lofi(ctx: Ctx) -> None:
    """Lazy swung boom-bap under Rhodes 7ths and a mellow bass."""
    sw = ctx.rng.uniform(0.56, 0.62)
    prog = ctx.pick(
        [["i9", "iv9", "bVIImaj7", "bIIImaj7"], ["i7", "iv7", "v7", "i7"], ["ii7", "V7", "i9", "i9"]]
        if ctx.minor
        else [
            ["ii7", "V7", "Imaj7", "vi7"],
            ["Imaj7", "iii7", "vi7", "IVmaj7"],
            ["IVmaj7", "iii7", "ii7", "Imaj7"],
            ["Imaj9", "vi9", "ii9", "V13"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "mellow electric bass"), (32, "upright bass"), (38, "soft synth bass")])
    drums = ctx.drums([(0, "dusty drum kit"), (25, "boom-bap drums"), (0, "lo-fi drums")])
    keys = ctx.track("keys", [(4, "Rhodes electric piano"), (5, "electric piano"), (0, "mellow piano")])
    lead = ctx.track("lead", [(11, "vibraphone"), (26, "jazz guitar"), (73, "flute")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums)
    kick = ctx.pick(["x.........x.x...", "x......x..x.....", "x.......x.x....."])
    hats = ("x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x.", "xxx.x.xxx.x.x.xx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 100, subdiv=4, swing=sw)
        ctx.grid(drums, s, "....x.......x...", SNARE, 95)
        ctx.grid(drums, s, hats, HAT, 58, subdiv=4, swing=sw)
        for start, dur, chord in tl.spans():
            if s <= start < s + 4:
                ctx.chord(keys, start, dur * 0.97, voice(chord, 53, rootless=True), 58, strum=0.03)
                ctx.add(bass, start, 1.6, nearest(chord.root, 38, 28, 45), 80)
                if ctx.density >= 1:
                    ctx.add(
                        bass,
                        start + 2.5 if dur >= 4 else start + 1.5,
                        0.9,
                        nearest((chord.root + 7) % 12, 38, 28, 45),
                        66,
                    )
    if lead is not None:
        melody(ctx, lead, tl, MINOR_PENTA if ctx.minor else MAJOR_PENTA, 67, 84, 0.45, (0.5, 1.0, 1.5), 64, sw)


def _reggae(ctx: Ctx) -> None:
    """One drop (kick and rim together on 3), skank on 2 and 4, organ bubble, melodic bass."""
    prog = ctx.pick(
        [["i", "iv"], ["i", "bVII"], ["i", "i", "iv", "v"], ["i", "bIII", "bVII", "iv"]]
        if ctx.minor
        else [["I", "IV"], ["I", "V", "vi", "IV"], ["ii", "V"], ["I", "IV", "V", "IV"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (33, "deep reggae bass"), (38, "dub bass")])
    drums = ctx.drums([(0, "one-drop drum kit"), (0, "drum kit"), (8, "rimshot drums")])
    gtr = ctx.track("guitar", [(27, "skank guitar"), (28, "muted guitar"), (27, "clean electric guitar")])
    organ = ctx.track("keys", [(16, "organ"), (17, "bubble organ")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums, triplet=True)
    sw = 0.5 if ctx.rng.random() < 0.5 else 0.6
    third = 3 if ctx.minor else 4
    riff_options = [
        [(0.5, 0.5, 0), (1, 1.0, 7), (2.5, 0.5, 12), (3, 0.5, 10 if ctx.minor else 9), (3.5, 0.5, 7)],
        [(0, 1.0, 0), (1.5, 0.5, third), (2, 1.0, 7), (3, 0.5, 5), (3.5, 0.5, third)],
        [(1, 0.5, 0), (1.5, 0.5, 0), (2, 1.0, 7), (3, 1.0, 12)],
    ]
    riff = ctx.pick(riff_options)
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "....x...", KICK, 105, subdiv=2)
        ctx.grid(drums, s, "....x...", STICK, 100, subdiv=2)
        ctx.grid(drums, s, ("x.x.x.x.", "xxxxxxxx", "xxxxxxxo")[ctx.density], HAT, 62, subdiv=2, swing=sw)
        if ctx.density == 2:
            ctx.grid(drums, s, "......x.", OPEN_HAT, 60, subdiv=2, swing=sw)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 28, 40)
        for pos, dur, iv in riff:
            ctx.add(bass, s + swung(pos, sw), dur * 0.9, root + iv, 90)
        for b in (1, 3):
            ctx.chord(gtr, s + b, 0.2, voice(tl.at(s + b), 60), 80)
        if organ is not None:
            for b in range(4):
                ctx.chord(organ, s + swung(b + 0.5, sw), 0.3, voice(tl.at(s + b), 55), 55)


def _dnb(ctx: Ctx) -> None:
    """Two-step break at 160-180: kick 1 and the and of 3, snare 2 and 4, sub bass under pads."""
    tl = ctx.timeline(ctx.pick([["i", "i", "bVI", "bVII"], ["i7", "bVImaj7"], ["i", "iv", "bVI", "v"]]))
    bass = ctx.track("bass", [(39, "sub bass"), (38, "reese synth bass"), (39, "deep sub bass")])
    drums = ctx.drums([(0, "breakbeat drums"), (25, "drum machine"), (8, "amen-style break")])
    pad = ctx.track("pad", [(89, "warm pad"), (50, "synth strings"), (91, "choir pad")])
    ctx.plan_fills(drums)
    kicks = [
        ctx.pick(["x.........x.....", "x.x.......x....."]),
        ctx.pick(["x.........x..x..", "x......x..x.....", "..x.......x....."]),
    ]
    snare = ("....x.......x...", "....x..o....x..o", "....x..o.o..x.oo")[ctx.density]
    hats = ("x.x.x.x.x.x.x.x.", "x.xxx.x.x.xxx.x.", "xxxxxxxxxxxxxxxx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kicks[bar % 2], KICK, 112)
        ctx.grid(drums, s, snare, SNARE, 110)
        ctx.grid(drums, s, hats, RIDE if ctx.density == 2 else HAT, 64)
        chord = tl.at(s)
        root = nearest(chord.root, 33, 26, 38)
        ctx.add(bass, s, 2.4, root, 100)
        ctx.add(bass, s + 2.5, 1.4, root + (0 if bar % 2 == 0 else ctx.pick((0, 7, 12))), 92)
        if bar % 2 == 0 or chord != tl.at(s - 4):
            ctx.chord(pad, s, ctx.bpb * (2 if tl.at(s + 4) == chord else 1) - 0.1, voice(chord, 55, max_notes=4), 52)


def _ambient(ctx: Ctx) -> None:
    """Long pads over a low drone; soft kick and shaker keep the pulse audible for the beat labels."""
    prog = ctx.pick(
        [["iadd9", "bVImaj7", "bIIImaj7", "bVII"], ["i9", "i9", "iv9", "iv9"]]
        if ctx.minor
        else [["Imaj7", "IVmaj7"], ["Iadd9", "vi7", "IVmaj9", "Isus2"], ["Imaj9", "Imaj9", "iii7", "IVmaj7"]]
    )
    tl = ctx.timeline(prog)
    low = ctx.track("bass", [(89, "low synth drone"), (39, "deep pad bass"), (48, "low strings")])
    drums = ctx.drums([(0, "soft percussion"), (0, "soft kick and shaker")])
    pad = ctx.track("pad", [(89, "warm pad"), (88, "new age pad"), (94, "halo pad"), (95, "sweep pad")])
    bell = ctx.track(
        "lead", [(8, "celesta"), (9, "glockenspiel"), (11, "vibraphone"), (0, "soft piano"), (98, "crystal bells")]
    )
    shaker = ctx.pick((SHAKER, MARACAS, CABASA))
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        ctx.hit(drums, s, KICK, 66)
        if ctx.bpb == 4 and ctx.density >= 1:
            ctx.hit(drums, s + 2, KICK, 48)
        for b in range(ctx.bpb):
            ctx.hit(drums, s + b, shaker, 46 if b else 56)
            if ctx.density == 2:
                ctx.hit(drums, s + b + 0.5, shaker, 30)
    for start, dur, chord in tl.spans():
        ctx.add(low, start, dur, nearest(chord.root, 36, 28, 43), 70)
        ctx.chord(pad, start, dur, voice(chord, 55, max_notes=4), 55)
    melody(
        ctx,
        bell,
        tl,
        MINOR_PENTA if ctx.minor else MAJOR_PENTA,
        72,
        91,
        (0.25, 0.4, 0.55)[ctx.density],
        (1.0, 2.0, 1.5),
        60,
    )


def _synthwave(ctx: Ctx) -> None:
    """80s: gated-snare backbeat, 8th-note arpeggiated synth bass, pads and a saw lead."""
    tl = ctx.timeline(
        ctx.pick(
            [
                ["i", "bVI", "bIII", "bVII"],
                ["i", "bVII", "bVI", "bVII"],
                ["i", "i", "bVI", "v"],
                ["bVI", "bVII", "i", "i"],
            ]
        )
    )
    bass = ctx.track("bass", [(38, "analog synth bass"), (39, "arpeggiated synth bass")])
    drums = ctx.drums([(24, "LinnDrum-style drum machine"), (16, "gated-reverb drums"), (25, "electronic drums")])
    pad = ctx.track("pad", [(90, "polysynth pad"), (89, "warm pad"), (50, "synth strings")])
    lead = ctx.track("lead", [(81, "saw lead"), (80, "square lead"), (81, "analog lead synth")])
    ctx.plan_fills(drums)
    arp = ctx.pick(
        [
            (0, 0, 12, 0, 0, 12, 0, 12),
            (0, 12, 0, 12, 0, 12, 0, 12),
            (0, 7, 12, 7, 0, 7, 12, 7),
            (0, 0, 0, 0, 0, 0, 12, 7),
        ]
    )
    kick = "x...x...x...x..." if ctx.rng.random() < 0.5 else "x.......x.x....."
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 110)
        ctx.grid(drums, s, "....x.......x...", SNARE, 118)
        ctx.grid(drums, s, "....x.......x...", CLAP, 80)  # layered for the big gated crack
        ctx.grid(drums, s, ("x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx")[ctx.density], HAT, 62)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 29, 41)
        for k, iv in enumerate(arp):
            ctx.add(bass, s + k / 2, 0.45, root + iv, 92 if k % 2 == 0 else 80)
        ctx.chord(pad, s, 3.95, voice(chord, 57, max_notes=3), 50)
    if ctx.density == 2:
        for start, dur, chord in tl.spans():
            tones = voice(chord, 67)
            for k in range(int(dur * 4)):
                ctx.add(lead, start + k / 4, 0.22, tones[k % len(tones)] + (12 if (k // len(tones)) % 2 else 0), 66)
    else:
        melody(
            ctx,
            lead,
            tl,
            MINOR_SCALE,
            67,
            86,
            (0.45, 0.6, 0.6)[ctx.density],
            (0.5, 1.0, 1.0, 2.0),
            78,
            start_bar=min(2, ctx.bars // 3),
        )


def _blues(ctx: Ctx) -> None:
    """Twelve-bar shuffle: triplet-swung hats, boogie bass, 5-6 rhythm figure."""
    sw = ctx.rng.uniform(0.64, 0.67)
    quick = ctx.rng.random() < 0.5
    tl = ctx.timeline(["I7", "IV7" if quick else "I7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7"])
    bass = ctx.track("bass", [(33, "electric bass"), (32, "upright bass")])
    drums = ctx.drums([(0, "shuffle drum kit"), (0, "drum kit")])
    comp = ctx.track(
        "guitar", [(29, "overdriven guitar"), (0, "boogie piano"), (16, "Hammond organ"), (27, "clean electric guitar")]
    )
    ctx.plan_fills(drums, triplet=True)
    walk = ctx.pick([(0, 4, 7, 9, 10, 9, 7, 4), (0, 0, 7, 7, 9, 9, 7, 7), (0, 4, 7, 9, 12, 9, 7, 4)])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x..." if ctx.density else "x.......", KICK, 100, subdiv=2)
        ctx.grid(drums, s, "..x...x.", SNARE, 105, subdiv=2)
        ctx.grid(drums, s, "xxxxxxxx", RIDE if ctx.density == 2 else HAT, 70, subdiv=2, swing=sw)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 28, 40)
        for k, iv in enumerate(walk):
            ctx.add(bass, s + swung(k / 2, sw), 0.45, root + iv, 90 if k % 2 == 0 else 74)
            r = place(chord.root, 45)
            sixth = 9 if (k // 2) % 2 else 7
            if ctx.density == 2 and k == 6:
                sixth = 10
            ctx.chord(comp, s + swung(k / 2, sw), 0.4, [r, r + sixth], 84 if k % 2 == 0 else 66)


def _afrobeat(ctx: Ctx) -> None:
    """Fela-style afrobeat: bell and shekere ostinati, interlocking muted guitars, a horn riff on a vamp.

    Held out of the default corpus (see HELD_OUT_STYLES): the style fine-tuning is measured on.
    """
    prog = ctx.pick(
        [["i7"], ["i7", "i7", "iv7", "iv7"], ["i9", "bVII"], ["i7", "IV7"]]
        if ctx.minor
        else [["I7"], ["I7", "I7", "IV7", "IV7"], ["ii7", "ii7", "V7", "V7"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (34, "picked bass")])
    drums = ctx.drums([(0, "afrobeat drum kit"), (0, "drum kit"), (8, "tight drum kit")])
    gtr = ctx.track("guitar", [(28, "muted tenor guitar"), (27, "clean electric guitar")])
    horns = ctx.track("horns", [(61, "brass section"), (66, "tenor saxophone"), (56, "trumpet section")])
    organ = ctx.track("keys", [(16, "organ"), (17, "percussive organ")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums)
    bell = ctx.pick(["x.x.xx.x.x.xx.x.", "x.x.x.x.xx.x.x.x", "x..x.x.xx..x.x.x"])
    kick = ctx.pick(["x.....x...x.....", "x..x......x..x..", "x.....x.x......x"])
    snare = ("....x.......x...", "....x..o..o.x...", "..o.x..o.oo.x.o.")[ctx.density]
    shekere = ("x.x.x.x.x.x.x.x.", "XoxoXoxoXoxoXoxo", "Xxxxxxxxxxxxxxxx")[ctx.density]
    # a two-bar syncopated bass ostinato, in scale steps from the root
    third = 3 if ctx.minor else 4
    riff = ctx.pick(
        [
            [(0, 0), (0.75, 0), (1.5, 7), (2.5, 10), (3, 12), (3.5, 10), (4.5, 7), (5.5, third), (6, 5), (7, 7)],
            [(0, 0), (1, 0), (1.75, 3 if ctx.minor else 2), (2.5, 5), (4, 7), (4.75, 5), (5.5, third), (6.5, 0)],
            [(0, 0), (0.5, 12), (1.5, 10), (2, 7), (3, 5), (4, 0), (4.5, 0), (5.5, 7), (6.5, 10)],
        ]
    )
    picks = [k for k in range(16) if k % 2 == 1 or ctx.rng.random() < 0.4]  # off-16ths carry the pluck
    horn_riff = [(0.0, 0.4, 0), (0.5, 0.4, 0), (1.5, 0.9, third), (2.5, 0.4, 5), (3.0, 0.9, 7)]
    horn_bars = ctx.pick((2, 4))
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 104)
        ctx.grid(drums, s, snare, SNARE, 98)
        ctx.grid(drums, s, "x...x...x...x...", PEDAL_HAT, 60)
        ctx.grid(drums, s, ".x.x.x.x.x.x.x.x", HAT, 56)
        ctx.grid(drums, s, bell, COWBELL, 70)
        ctx.grid(drums, s, shekere, CABASA, 52)
        chord = tl.at(s)
        root = nearest(chord.root, 38, 31, 43)
        for pos, iv in riff:
            if bar % 2 == pos // 4:
                ctx.add(bass, s + pos % 4, 0.35, root + iv, 94 if pos % 1 == 0 else 80)
        seventh = next((i for i in chord.intervals if i in (10, 11)), 10)
        tones = [place((chord.root + i) % 12, 64) for i in (0, 7, seventh)]
        for n, k in enumerate(picks):
            ctx.add(gtr, s + k / 4, 0.12, tones[n % len(tones)], 78 if k % 4 == 2 else 62)
        if organ is not None and bar % 2 == 1:
            ctx.chord(organ, s + 2.5, 1.4, voice(chord, 55, max_notes=4), 58)
        if bar % horn_bars == horn_bars - 1 or (ctx.density == 2 and bar % 2 == 1):
            hroot = place(chord.root, 58)
            for pos, dur, iv in horn_riff:
                ctx.chord(horns, s + pos, dur, [hroot + iv, hroot + iv + 12], 96)


# --- registry -------------------------------------------------------------------------------

Meter = tuple[int, int]


@dataclass(frozen=True)
class Style:
    """What a genre allows: tempo per meter (weights pick the meter), modes, moods, ensemble."""

    write: Callable[[Ctx], None]
    tempi: tuple[tuple[Meter, int, int, float], ...]  # (meter, bpm lo, bpm hi, weight)
    modes: tuple[str, ...]
    moods: tuple[str, ...]
    ensemble: str


_REGISTRY: dict[str, Style] = {
    "swing jazz": Style(
        _jazz,
        (((4, 4), 100, 180, 1.0),),
        ("major", "major", "minor"),
        ("laid-back", "swinging", "smoky", "late-night", "relaxed", "warm"),
        "swing jazz trio",
    ),
    "jazz waltz": Style(
        _jazz,
        (((3, 4), 120, 180, 1.0),),
        ("major", "minor"),
        ("lilting", "gentle", "wistful", "elegant"),
        "jazz waltz trio",
    ),
    "bossa nova": Style(
        _bossa,
        (((4, 4), 110, 145, 1.0),),
        ("major", "major", "minor"),
        ("breezy", "gentle", "sunny", "intimate", "smooth"),
        "bossa nova trio",
    ),
    "techno": Style(
        _techno,
        (((4, 4), 122, 145, 1.0),),
        ("minor",),
        ("driving", "hypnotic", "dark", "relentless", "pulsing"),
        "techno track",
    ),
    "house": Style(
        _house,
        (((4, 4), 118, 128, 1.0),),
        ("major", "minor"),
        ("uplifting", "groovy", "warm", "euphoric", "soulful"),
        "house track",
    ),
    "rock": Style(
        _rock,
        (((4, 4), 95, 160, 0.7), ((3, 4), 100, 150, 0.1), ((6, 8), 140, 180, 0.2)),
        ("major", "minor"),
        ("driving", "energetic", "gritty", "anthemic", "raw"),
        "rock band",
    ),
    "funk": Style(
        _funk,
        (((4, 4), 90, 118, 1.0),),
        ("major", "minor"),
        ("greasy", "tight", "groovy", "punchy", "strutting"),
        "funk band",
    ),
    "lofi hip hop": Style(
        _lofi,
        (((4, 4), 70, 90, 1.0),),
        ("major", "minor"),
        ("mellow", "laid-back", "dusty", "nostalgic", "chill"),
        "lofi hip hop beat",
    ),
    "reggae": Style(
        _reggae,
        (((4, 4), 66, 90, 1.0),),
        ("major", "minor"),
        ("laid-back", "sunny", "easy", "rootsy", "warm"),
        "reggae band",
    ),
    "drum and bass": Style(
        _dnb,
        (((4, 4), 160, 180, 1.0),),
        ("minor",),
        ("driving", "frantic", "dark", "energetic", "rolling"),
        "drum and bass track",
    ),
    "ambient": Style(
        _ambient,
        (((4, 4), 60, 80, 0.8), ((3, 4), 60, 80, 0.2)),
        ("major", "minor"),
        ("dreamy", "calm", "ethereal", "spacious", "meditative"),
        "ambient piece",
    ),
    "synthwave": Style(
        _synthwave,
        (((4, 4), 90, 120, 1.0),),
        ("minor",),
        ("nostalgic", "neon", "driving", "moody", "retro"),
        "synthwave track",
    ),
    "blues shuffle": Style(
        _blues, (((4, 4), 90, 140, 1.0),), ("major",), ("gritty", "bouncy", "soulful", "swaggering"), "blues band"
    ),
}

# Styles no default corpus build draws (model/corpus/build.py plans from STYLES only): the
# shipped models never heard them, so fine-tuning (model/train/finetune.py) is measured on them.
# Render them explicitly: `jamstream corpus build --styles afrobeat ...`.
_HELD_OUT: dict[str, Style] = {
    "afrobeat": Style(
        _afrobeat,
        (((4, 4), 100, 126, 1.0),),
        ("minor", "minor", "major"),
        ("hypnotic", "driving", "hot", "interlocking", "political"),
        "afrobeat band",
    ),
}

STYLES: tuple[str, ...] = tuple(_REGISTRY)
HELD_OUT_STYLES: tuple[str, ...] = tuple(_HELD_OUT)
ALL_STYLES: tuple[str, ...] = STYLES + HELD_OUT_STYLES


def choose_bars(bpm: float, meter: Meter, target_seconds: float) -> int:
    """Bars closest to the target length, never under 10 s nor over 30 s."""
    bar_seconds = meter[0] * 60.0 / bpm
    lo = math.ceil(10.0 / bar_seconds - 1e-9)
    hi = math.floor(30.0 / bar_seconds + 1e-9)
    return max(lo, min(hi, round(target_seconds / bar_seconds)))


# Bounds of a spread tempo range: slow ambient and fast drum and bass, not beyond.
SPREAD_BPM = (56, 190)


def spread_tempo_range(lo: int, hi: int, spread: float) -> tuple[int, int]:
    """The genre's range widened by `spread` each way (lo / spread .. hi * spread), kept in SPREAD_BPM."""
    return max(SPREAD_BPM[0], min(lo, round(lo / spread))), min(SPREAD_BPM[1], max(hi, round(hi * spread)))


def generate(style: str, seed: int, target_seconds: float, tempo_spread: float = 1.0) -> Piece:
    """One clip of `style`, reproducible from (style, seed, tempo_spread).

    With `tempo_spread` > 1 half the clips (by a seeded coin) draw their tempo from the
    genre's range widened by that factor each way. Why: in a corpus where each genre has
    its own tempo band, tempo alone names the genre, and an LM asked for reggae at a
    techno tempo plays techno (measured: the techno-dub preset at 124 bpm, 0/7 bars moved
    toward reggae). The native half keeps what musicians usually play. Spread 1 draws
    exactly as before, so existing corpora rebuild bit-for-bit.
    """
    spec = _REGISTRY.get(style) or _HELD_OUT.get(style)
    if spec is None:
        raise ValueError(f"unknown style {style!r}; known styles: {', '.join(ALL_STYLES)}")
    if not tempo_spread >= 1.0:
        raise ValueError(f"tempo_spread must be >= 1 (got {tempo_spread})")
    rng = random.Random(f"{style}:{seed}")  # seeded per style, so styles don't share choices
    meter, lo, hi, _ = rng.choices(spec.tempi, weights=[t[3] for t in spec.tempi])[0]
    if tempo_spread > 1.0 and rng.random() < 0.5:
        lo, hi = spread_tempo_range(lo, hi, tempo_spread)
    bpm = float(rng.randint(lo, hi))
    mode = rng.choice(spec.modes)
    tonic = rng.randrange(12)
    density = rng.randrange(3)
    bars = choose_bars(bpm, meter, target_seconds)
    moods = rng.sample(spec.moods, rng.choice((1, 1, 2)))
    ctx = Ctx(rng=rng, bpm=bpm, meter=meter, bars=bars, tonic=tonic, mode=mode, density=density)
    spec.write(ctx)
    return Piece(
        piece_id=f"gen:{style}:{seed}",
        source="generator",
        genre=style,
        bpm=bpm,
        meter=meter,
        key=key_name(tonic, mode),
        bars=bars,
        tracks=ctx.tracks,
        notes=ctx.finish(),
        mood=", ".join(moods),
        ensemble=spec.ensemble,
        extra_tags={"density": DENSITIES[density]},
    )
