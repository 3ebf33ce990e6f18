"""Musical time: where the beats and bars are, in seconds, for whatever drives the tempo.

Every clock answers the same questions, so the scheduler never knows which one it has:
- `timing(seconds)`: (bpm, beat phase, bar phase) at many frame times at once - exactly
  the per-frame conditioning `Generator.generate_chunk` takes;
- `next_boundary(seconds, unit, every)`: the next beat or bar grid point after a time,
  computed from the tempo map (absolute time, so a long grid never drifts);
- `position(seconds)` / `seconds_at_bbt(bar, beat, tick)` / quarters <-> seconds.

Conventions follow the corpus (model/corpus/piece.py): a *beat* is the meter's
denominator (a quarter in 4/4, an eighth in 6/8), `bpm` counts those beats, and a meter
change always starts a new bar. The map's own coordinate is the quarter note, MIDI's, so
a meter change never rescales it. Bars and beats in `Position` are 1-based like JACK's
BBT; phases are in [0, 1).

Sources here: `FixedClock` (one tempo, one meter) and `MidiFileClock` (a MIDI file's
tempo map, meter changes and CC events, read with mido); `followers.LiveClock` keeps a
`TempoMap` of what the host reports. `parse_meter` and `seconds_per_quarter` are the one
place that reads a meter and turns bpm into the map's seconds per quarter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from model.errors import JamstreamError

GridUnit = Literal["beat", "bar"]
TICKS_PER_BEAT = 1920  # BBT ticks, JACK's customary resolution
MAX_BPM = 400.0  # the Generator's limit (model.system.MAX_BPM)
MIDI_DEFAULT_TEMPO_US = 500_000  # 120 quarters per minute when a file sets none
_EPS = 1e-9  # in beats/bars/quarters: absorbs float error at exact grid points
METER_NUMERATORS = range(1, 17)
METER_DENOMINATORS = (1, 2, 4, 8, 16)
METER_RULE = "numerator 1-16 and denominator 1, 2, 4, 8 or 16"
_METER_SYNTAX = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


class MeterError(JamstreamError):
    """Text that is not a meter we play. `malformed`: not N/D at all (else N/D out of range),
    so a caller with its own context (a preset's file and key) can word the problem."""

    def __init__(self, text, malformed: bool):
        self.text, self.malformed = text, malformed
        if malformed:
            super().__init__(f"--meter must look like 4/4 or 6/8, not {text!r}")
        else:
            super().__init__(f"--meter {text!r}: {METER_RULE}")


def parse_meter(text: str) -> tuple[int, int]:
    """'6/8' -> (6, 8): the one reading of a meter, for presets and the command line alike."""
    match = _METER_SYNTAX.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise MeterError(text, malformed=True)
    num, den = int(match[1]), int(match[2])
    if num not in METER_NUMERATORS or den not in METER_DENOMINATORS:
        raise MeterError(text, malformed=False)
    return num, den


def seconds_per_quarter(bpm, beat_unit):
    """Seconds per quarter note at `bpm` beats of 1/`beat_unit` notes (the meter's denominator)
    per minute: how a tempo enters a TempoMap. Works on floats and numpy arrays alike."""
    return 60.0 / bpm * beat_unit / 4.0


def bpm_from_seconds_per_quarter(spq, beat_unit):
    """Inverse of `seconds_per_quarter`: beats of 1/`beat_unit` notes per minute."""
    return 60.0 / (spq * 4.0 / beat_unit)


@dataclass(frozen=True)
class ChunkLength:
    """How long a chunk is in musical time: `count` beats or bars ("1 bar", "2 beats")."""

    count: int
    unit: GridUnit

    _PATTERN = re.compile(r"^\s*(\d+)\s*(beat|beats|bar|bars)\s*$", re.IGNORECASE)

    @classmethod
    def parse(cls, text: str) -> "ChunkLength":
        """'1 bar' / '2 bars' / '2 beats' -> ChunkLength; ValueError with the fix otherwise."""
        m = cls._PATTERN.match(text) if isinstance(text, str) else None
        if not m or int(m.group(1)) < 1:
            raise ValueError(
                f'{text!r} is not a chunk length; write a whole count and a unit, like "1 bar", "2 bars" or "2 beats"'
            )
        unit = m.group(2).lower().rstrip("s")
        return cls(int(m.group(1)), unit)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.count} {self.unit}{'' if self.count == 1 else 's'}"


@dataclass(frozen=True)
class Position:
    """A point in musical time. bar/beat are 1-based (JACK BBT), tick 0..TICKS_PER_BEAT-1."""

    seconds: float
    quarters: float  # quarter notes since the song's start: the tempo map's coordinate
    bar: int
    beat: int
    tick: int
    bpm: float  # beats of the meter's denominator per minute
    meter: tuple[int, int]
    beat_phase: float
    bar_phase: float


@runtime_checkable
class Clock(Protocol):
    """What the scheduler and the engine need from any source of musical time."""

    def position(self, seconds: float) -> Position: ...

    def timing(self, seconds: np.ndarray) -> np.ndarray: ...

    def next_boundary(self, seconds: float, unit: GridUnit, every: int = 1) -> float: ...

    def quarters_at(self, seconds: float) -> float: ...

    def seconds_at_quarters(self, quarters: float) -> float: ...

    def seconds_at_bbt(self, bar: int, beat: int = 1, tick: int = 0) -> float: ...


class TempoMap:
    """Piecewise-constant tempo and meter, both placed in quarter notes.

    `tempos`: (quarters, seconds per quarter) - the first is moved to quarter 0;
    `meters`: (quarters, numerator, denominator) - likewise. Later entries at the same
    quarter replace earlier ones (as in a MIDI file). Before 0 and after the last change
    the nearest segment is extrapolated, so any time has a position.
    """

    def __init__(self, tempos: Sequence[tuple[float, float]], meters: Sequence[tuple[float, int, int]]):
        t = _dedupe_sorted([(float(q), float(spq)) for q, spq in tempos] or [(0.0, 0.5)])
        m = _dedupe_sorted([(float(q), int(n), int(d)) for q, n, d in meters] or [(0.0, 4, 4)])
        t[0] = (0.0, t[0][1])
        m[0] = (0.0, m[0][1], m[0][2])
        for _, spq in t:
            if not spq > 0 or not math.isfinite(spq):
                raise JamstreamError(f"a tempo must be a positive number of seconds per quarter, got {spq}")
        for _, n, d in m:
            if n < 1 or d < 1:
                raise JamstreamError(f"a meter must be N/D with N, D >= 1, got {n}/{d}")
        self.t_q = np.array([q for q, _ in t])
        self.t_spq = np.array([s for _, s in t])
        self.t_s = np.concatenate([[0.0], np.cumsum(np.diff(self.t_q) * self.t_spq[:-1])])
        self.m_q = np.array([q for q, _, _ in m])
        self.m_num = np.array([n for _, n, _ in m])
        self.m_den = np.array([d for _, _, d in m])
        bars = [0]
        for j in range(1, len(m)):
            bar_q = self.m_num[j - 1] * 4.0 / self.m_den[j - 1]
            bars.append(bars[-1] + math.ceil((self.m_q[j] - self.m_q[j - 1]) / bar_q - _EPS))
        self.m_bar = np.array(bars)  # 0-based index of the bar each meter starts

    # ------------------------------------------------------------ time <-> quarters
    def quarters_at(self, seconds):
        s = np.asarray(seconds, dtype=np.float64)
        i = np.clip(np.searchsorted(self.t_s, s, side="right") - 1, 0, None)
        q = self.t_q[i] + (s - self.t_s[i]) / self.t_spq[i]
        return float(q) if q.ndim == 0 else q

    def seconds_at(self, quarters):
        q = np.asarray(quarters, dtype=np.float64)
        i = np.clip(np.searchsorted(self.t_q, q, side="right") - 1, 0, None)
        s = self.t_s[i] + (q - self.t_q[i]) * self.t_spq[i]
        return float(s) if s.ndim == 0 else s

    # ------------------------------------------------------------ musical position
    def _meter_index(self, q):
        return np.clip(np.searchsorted(self.m_q, np.asarray(q) + _EPS, side="right") - 1, 0, None)

    def _beats_bars(self, q: np.ndarray):
        """(meter index, beats since the meter's start, bars since song start) at quarters q."""
        j = self._meter_index(q)
        beat_q = 4.0 / self.m_den[j]
        beats = _snap((q - self.m_q[j]) / beat_q)
        bars = self.m_bar[j] + _snap(beats / self.m_num[j])
        return j, beats, bars

    def timing(self, seconds) -> np.ndarray:
        """[n, 3] float32 = (bpm, beat phase, bar phase) at each time: the LM's conditioning."""
        s = np.atleast_1d(np.asarray(seconds, dtype=np.float64))
        q = np.asarray(self.quarters_at(s))
        j, beats, bars = self._beats_bars(q)
        i = np.clip(np.searchsorted(self.t_s, s, side="right") - 1, 0, None)
        bpm = bpm_from_seconds_per_quarter(self.t_spq[i], self.m_den[j])
        return np.stack([bpm, beats % 1.0, bars % 1.0], axis=-1).astype(np.float32)

    def position(self, seconds: float) -> Position:
        q = float(self.quarters_at(float(seconds)))
        j, beats, bars = (np.asarray(x).item() for x in self._beats_bars(np.asarray(q)))
        num, den = int(self.m_num[j]), int(self.m_den[j])
        beat_in_bar = beats - (bars - self.m_bar[j]) // 1 * num
        tick = min(int((beat_in_bar % 1.0) * TICKS_PER_BEAT), TICKS_PER_BEAT - 1)
        spq = float(self.t_spq[max(0, int(np.searchsorted(self.t_s, float(seconds), side="right")) - 1)])
        return Position(
            seconds=float(seconds),
            quarters=q,
            bar=int(math.floor(bars)) + 1,
            beat=int(math.floor(beat_in_bar)) + 1,
            tick=tick,
            bpm=bpm_from_seconds_per_quarter(spq, den),
            meter=(num, den),
            beat_phase=beats % 1.0,
            bar_phase=bars % 1.0,
        )

    def seconds_at_bbt(self, bar: int, beat: int = 1, tick: int = 0) -> float:
        """Seconds at a 1-based bar and beat (and tick): how a host's locate arrives."""
        j = max(0, int(np.searchsorted(self.m_bar, bar - 1, side="right")) - 1)
        beat_q = 4.0 / self.m_den[j]
        q = self.m_q[j] + ((bar - 1 - self.m_bar[j]) * self.m_num[j] + (beat - 1) + tick / TICKS_PER_BEAT) * beat_q
        return self.seconds_at(float(q))

    def next_boundary(self, seconds: float, unit: GridUnit, every: int = 1) -> float:
        """The first grid point strictly after `seconds`: every `every` beats or bars.

        Beats count from the start of the meter in force; bars are numbered from the song's
        start (bar 1 is index 0) and a grid of N bars falls on indices divisible by N. A
        meter change is always a boundary. Computed from the map, never by adding lengths.
        """
        if every < 1:
            raise JamstreamError(f"a grid step must be >= 1 {unit}, got {every}")
        q = float(self.quarters_at(float(seconds)))
        j = int(self._meter_index(q))
        beat_q = 4.0 / self.m_den[j]
        if unit == "beat":
            step = every * beat_q
            k = math.floor((q - self.m_q[j]) / step + _EPS) + 1
            cand = self.m_q[j] + k * step
        elif unit == "bar":
            bar_q = self.m_num[j] * beat_q
            cur = self.m_bar[j] + (q - self.m_q[j]) / bar_q
            n = (math.floor((cur + _EPS) / every) + 1) * every
            cand = self.m_q[j] + (n - self.m_bar[j]) * bar_q
        else:
            raise JamstreamError(f"a grid unit is 'beat' or 'bar', not {unit!r}")
        if j + 1 < len(self.m_q) and self.m_q[j + 1] < cand - _EPS:
            cand = self.m_q[j + 1]
        return float(self.seconds_at(float(cand)))


def _dedupe_sorted(items: list[tuple]) -> list[tuple]:
    """Sort by the first field; where several share it, the last one given wins."""
    out: dict[float, tuple] = {}
    for item in items:
        out[item[0]] = item
    return [out[k] for k in sorted(out)]


def _snap(x):
    """Pull values within _EPS of an integer onto it: a boundary time is on its beat."""
    r = np.rint(x)
    return np.where(np.abs(x - r) < _EPS * np.maximum(1.0, np.abs(r)), r, x)


class MapClock:
    """A clock backed by a TempoMap: the Clock protocol, delegated to the map."""

    def __init__(self, tempo_map: TempoMap):
        self.map = tempo_map

    def position(self, seconds: float) -> Position:
        return self.map.position(seconds)

    def timing(self, seconds: np.ndarray) -> np.ndarray:
        return self.map.timing(seconds)

    def next_boundary(self, seconds: float, unit: GridUnit, every: int = 1) -> float:
        return self.map.next_boundary(seconds, unit, every)

    def quarters_at(self, seconds: float) -> float:
        return float(self.map.quarters_at(float(seconds)))

    def seconds_at_quarters(self, quarters: float) -> float:
        return float(self.map.seconds_at(float(quarters)))

    def seconds_at_bbt(self, bar: int, beat: int = 1, tick: int = 0) -> float:
        return self.map.seconds_at_bbt(bar, beat, tick)

    def bpm(self, seconds: float) -> float:
        return self.position(seconds).bpm

    def meter(self, seconds: float) -> tuple[int, int]:
        return self.position(seconds).meter


class FixedClock(MapClock):
    """One tempo and one meter forever: the preset's default when nothing else sets time."""

    def __init__(self, bpm: float, meter: tuple[int, int] = (4, 4)):
        if not 0 < bpm <= MAX_BPM:
            raise JamstreamError(f"bpm must be in (0, {MAX_BPM:g}], got {bpm:g}")
        num, den = meter
        super().__init__(TempoMap([(0.0, seconds_per_quarter(bpm, den))], [(0.0, num, den)]))
        self.fixed_bpm = float(bpm)
        self.fixed_meter = (int(num), int(den))


@dataclass(frozen=True)
class CCEvent:
    seconds: float
    channel: int  # 1-16
    number: int
    value: int


class MidiFileClock(MapClock):
    """A MIDI file's tempo map and meters, its CC events in seconds, and its length."""

    def __init__(self, tempo_map: TempoMap, cc_events: list[CCEvent], length_seconds: float, path: Path | None = None):
        super().__init__(tempo_map)
        self.cc_events = cc_events
        self.length_seconds = length_seconds
        self.path = path

    @classmethod
    def from_file(
        cls, path, default_bpm: float | None = None, default_meter: tuple[int, int] | None = None
    ) -> "MidiFileClock":
        """Read `path`. A file with no tempo (meter) uses the defaults, else MIDI's 120 bpm 4/4."""
        import mido

        path = Path(path)
        if not path.is_file():
            raise JamstreamError(f"{path}: no such MIDI file")
        try:
            mid = mido.MidiFile(path)
        except EOFError:
            raise JamstreamError(f"{path}: not a valid MIDI file (truncated: it ends inside a chunk)") from None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise JamstreamError(f"{path}: not a valid MIDI file ({exc or type(exc).__name__})") from None
        if mid.type == 2:
            raise JamstreamError(f"{path}: not a supported MIDI file (type 2 has no shared tempo map; use type 0 or 1)")
        tpq = mid.ticks_per_beat
        if not isinstance(tpq, int) or tpq <= 0:
            raise JamstreamError(f"{path}: not a supported MIDI file (SMPTE time division; use ticks per quarter)")

        tempos: list[tuple[int, float]] = []
        meters: list[tuple[int, int, int]] = []
        ccs: list[tuple[int, int, int, int]] = []
        end_tick = 0
        for track in mid.tracks:
            tick = 0
            for msg in track:
                tick += msg.time
                if msg.type == "set_tempo":
                    tempos.append((tick, msg.tempo))
                elif msg.type == "time_signature":
                    meters.append((tick, msg.numerator, msg.denominator))
                elif msg.type == "control_change":
                    ccs.append((tick, msg.channel + 1, msg.control, msg.value))
            end_tick = max(end_tick, tick)
        tempos.sort(key=lambda e: e[0])  # stable: same tick keeps file order
        meters.sort(key=lambda e: e[0])
        if not tempos:
            beat_unit = (default_meter or (4, 4))[1]
            spq0 = seconds_per_quarter(default_bpm, beat_unit) if default_bpm else MIDI_DEFAULT_TEMPO_US / 1e6
            tempo_list = [(0.0, spq0)]
        else:
            tempo_list = [(t / tpq, us / 1e6) for t, us in tempos]
        meter_list = [(t / tpq, n, d) for t, n, d in meters] or [(0.0, *(default_meter or (4, 4)))]
        tempo_map = TempoMap(tempo_list, meter_list)
        ccs.sort(key=lambda e: e[0])
        events = [CCEvent(float(tempo_map.seconds_at(t / tpq)), ch, num, val) for t, ch, num, val in ccs]
        return cls(tempo_map, events, float(tempo_map.seconds_at(end_tick / tpq)), path)
