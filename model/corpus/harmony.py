"""Harmony for the style recipes: chord symbols, voicings, scales and a chord timeline.

Everything here is pure music theory with no randomness, so a recipe's rng draws are
all its own (see model/corpus/styles.py for why that matters).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

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
