"""Live clock sources: what the host reports, kept as a TempoMap the engine can ask.

`LiveClock` implements the `Clock` protocol over a `TempoMap` of what the host said:
every report is (song seconds, host quarters since bar 1, tempo, meter). A report the
map already predicts changes nothing; a new tempo at a consistent position appends a
tempo segment there (so the grid already handed out stays valid and the next chunk
follows the new tempo); a report the map cannot explain (a locate in a song with a
tempo map, a meter change, a host whose bar 1 is not at frame 0) re-anchors the map at
that point. The map lives in its own time coordinate, shifted from song seconds by
`shift`, so the host's bar 1 can sit anywhere on the song timeline.

Sources feed it:
- JACK transport BBT (a timebase master): `observe_bbt` with bar/beat/tick, meter and bpm;
- `MidiClockFollower`: MIDI clock (24 PPQN) on the MIDI in - start, continue, stop, song
  position pointer - gives the quarters at each tick and a line fitted to the last two
  beats of ticks (median slope and median offset, so ticks that a stalled cycle delivers
  late and bunched move neither the tempo nor the phase);
- Ableton Link: `bridge/live/link.py`'s LinkFollower, with Link's beats put on JACK frames;
- neither: the `--bpm` / preset tempo, fixed.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

import numpy as np

from bridge.jam.time.clock import MAX_BPM, GridUnit, Position, TempoMap, seconds_per_quarter

PHASE_TOLERANCE_S = 0.002  # a report within this of the map's prediction is consistent
# A report off the map by no more than GLITCH_S re-anchors only when the reports stay off for
# GLITCH_CONFIRM_S of song time: JACK can hand a client that runs before the timebase master
# in the cycle a BBT a period or two stale (measured: off by 5.344-5.479 ms = 256 frames + a
# tick's rounding, on and off, 3-29 times in a 5 s take under load), and each re-anchor would
# remake the queued pieces. A locate moves far more than this and re-anchors at once.
GLITCH_S = 0.025
GLITCH_CONFIRM_S = 0.05
TEMPO_TOLERANCE = 1e-4  # relative: a smaller bpm change is the same tempo


def quarters_from_bbt(
    bar: int, beat: int, tick: float, ticks_per_beat: float, beats_per_bar: float, beat_type: float
) -> float:
    """JACK BBT (1-based bar and beat) -> quarter notes since bar 1 under the meter in force."""
    beats = (bar - 1) * beats_per_bar + (beat - 1) + (tick / ticks_per_beat if ticks_per_beat > 0 else 0.0)
    return beats * 4.0 / beat_type


class LiveClock:
    """A Clock over a TempoMap that grows (or re-anchors) as the host reports its time."""

    def __init__(self, bpm: float, meter: tuple[int, int] = (4, 4)):
        self.changes = 0  # bumped whenever the map changes
        self.reanchors = 0
        self.last_reanchor: tuple[float, float] | None = None  # (song s, how far off the map, ms)
        self._doubted: tuple[float, float] | None = None  # song times of the first and latest small off-map reports
        self._rolling = False
        self._seconds = 0.0
        self.reset(bpm, meter)

    # -------------------------------------------------------------- updates
    def reset(self, bpm: float, meter: tuple[int, int], seconds: float = 0.0, quarters: float = 0.0) -> None:
        """One tempo and meter, with `quarters` at song time `seconds`."""
        bpm = min(MAX_BPM, max(1.0, float(bpm)))
        self.meter = (int(meter[0]), int(meter[1]))
        spq = seconds_per_quarter(bpm, self.meter[1])
        self._tempos = [(0.0, spq)]
        self.shift = quarters * spq - seconds  # map time = song seconds + shift
        self.map = TempoMap(self._tempos, [(0.0, *self.meter)])
        self.changes += 1

    def observe(
        self,
        seconds: float,
        quarters: float,
        bpm: float,
        meter: tuple[int, int],
        tempo_tolerance: float = TEMPO_TOLERANCE,
        confirm_small: bool = False,
    ) -> bool:
        """The host says: at song `seconds` it is `quarters` since bar 1, at `bpm` in `meter`.
        A tempo within `tempo_tolerance` (relative) of the map's is the same tempo. With
        `confirm_small` (JACK BBT), a report at most GLITCH_S off the map waits GLITCH_CONFIRM_S
        for reports that agree before it re-anchors.
        Returns True when the map changed."""
        if not (math.isfinite(bpm) and bpm > 0 and math.isfinite(quarters) and quarters >= 0):
            return False
        meter = (int(meter[0]), int(meter[1]))
        bpm = min(MAX_BPM, float(bpm))
        spq = seconds_per_quarter(bpm, meter[1])
        t = seconds + self.shift
        q_pred = float(self.map.quarters_at(t))
        spq_now = float(self.map.t_spq[max(0, int(np.searchsorted(self.map.t_s, t, side="right")) - 1)])
        in_phase = abs(q_pred - quarters) * spq <= PHASE_TOLERANCE_S
        same_tempo = abs(spq_now - spq) <= tempo_tolerance * spq
        if meter != self.meter or not in_phase or quarters < self._tempos[-1][0]:
            small = (
                confirm_small
                and meter == self.meter
                and quarters >= self._tempos[-1][0]
                and abs(q_pred - quarters) * spq <= GLITCH_S
            )
            if self._doubted is not None and not 0 <= seconds - self._doubted[1] <= GLITCH_CONFIRM_S:
                self._doubted = None  # not a run of reports: start doubting afresh
            if small and (self._doubted is None or seconds - self._doubted[0] < GLITCH_CONFIRM_S):
                # first sighting (a stale report, or a real shift?), or not yet long enough off
                self._doubted = (seconds if self._doubted is None else self._doubted[0], seconds)
                return False
            self._doubted = None
            self.reanchors += 1
            self.last_reanchor = (round(seconds, 4), round((quarters - q_pred) * spq * 1000, 3))  # (s, ms off)
            self.reset(bpm, meter, seconds, quarters)
            return True
        self._doubted = None
        if same_tempo:
            return False
        start = self._change_point(q_pred, quarters, spq / spq_now) if confirm_small else quarters
        self._tempos.append((start, spq))  # a new segment where the tempo changed
        self.map = TempoMap(self._tempos, [(0.0, *self.meter)])
        self.changes += 1
        return True

    def observe_bbt(
        self,
        seconds: float,
        bar: int,
        beat: int,
        tick: float,
        ticks_per_beat: float,
        beats_per_bar: float,
        beat_type: float,
        bpm: float,
    ) -> bool:
        num = max(1, int(round(beats_per_bar)))
        den = max(1, int(round(beat_type)))
        quarters = quarters_from_bbt(bar, beat, tick, ticks_per_beat, beats_per_bar, beat_type)
        return self.observe(seconds, quarters, bpm, (num, den), confirm_small=True)  # JACK BBT: see GLITCH_S

    def _change_point(self, q_pred: float, q_reported: float, ratio: float) -> float:
        """Where (quarters) a tempo change a BBT report shows began, so that the map runs on
        from the old tempo and passes through the report itself. A host reports the change
        at the first cycle it sees it, which may be a period or more after it happened (an
        LV2 host sends a position only when something changes); starting the new tempo at
        the reported quarter instead put every later beat 1.3 ms late (jalv + klick, 120 ->
        150 bpm). `ratio` is new / old seconds per quarter; the reported quarter when the
        solution falls outside the current segment (a report too far off to place)."""
        start = (q_pred - ratio * q_reported) / (1.0 - ratio)
        low = self._tempos[-1][0]
        if not (math.isfinite(start) and low <= start <= max(q_pred, q_reported)):
            return q_reported
        return start

    def set_tempo(self, seconds: float, bpm: float) -> bool:
        """A new tempo from `seconds` on, keeping the musical position (MIDI clock, --bpm)."""
        return self.observe(seconds, self.quarters_at(seconds), bpm, self.meter)

    @property
    def last_change_quarters(self) -> float:
        """Where the map's last tempo segment begins (quarters): no change can go before it."""
        return float(self._tempos[-1][0])

    # -------------------------------------------------------------- Clock protocol
    def position(self, seconds: float) -> Position:
        return dataclasses.replace(self.map.position(seconds + self.shift), seconds=float(seconds))

    def timing(self, seconds: np.ndarray) -> np.ndarray:
        return self.map.timing(np.asarray(seconds, dtype=np.float64) + self.shift)

    def next_boundary(self, seconds: float, unit: GridUnit, every: int = 1) -> float:
        return self.map.next_boundary(seconds + self.shift, unit, every) - self.shift

    def quarters_at(self, seconds: float) -> float:
        return float(self.map.quarters_at(float(seconds) + self.shift))

    def seconds_at_quarters(self, quarters: float) -> float:
        return float(self.map.seconds_at(float(quarters))) - self.shift

    def seconds_at_bbt(self, bar: int, beat: int = 1, tick: int = 0) -> float:
        return self.map.seconds_at_bbt(bar, beat, tick) - self.shift

    def bpm(self, seconds: float) -> float:
        return self.position(seconds).bpm

    def set_transport(self, rolling: bool, seconds: float) -> None:
        self._rolling, self._seconds = bool(rolling), float(seconds)


class MidiClockFollower:
    """MIDI clock on the MIDI in: 24 ticks per quarter, start/continue/stop, song position.

    `feed(status, data, frame_time)` with the event's JACK frame time; read `running`,
    `bpm` (None until two ticks), `quarters_at_tick` (the position of the latest tick),
    `tick_time` (its frame time) and `events` (a counter bumped on start/continue/stop/SPP
    so the caller can re-place the stream). By the MIDI spec the first tick after a
    start or continue is the position itself (bar 1 after a start)."""

    PPQN = 24

    def __init__(self, sample_rate: int, window: int = 48):
        self.sample_rate = sample_rate
        self._times: deque[int] = deque(maxlen=window + 1)
        self._index: deque[int] = deque(maxlen=window + 1)  # each tick's number in its train, drops counted
        self.dropped = 0  # ticks the server lost, found by the gaps around them
        self.running = False
        self.spp_quarters = 0.0
        self.ticks = -1  # ticks since start/continue; -1 until the first tick
        self.tick_time = 0
        self.quarters_at_tick = 0.0
        self.events = 0
        self.last_seen = None  # frame time of the last clock-related byte
        self._fit: tuple[float, float] | None = None  # (frames per tick, fitted latest tick); None: refit

    def _line(self) -> tuple[float, float] | None:
        """(frames per tick, fitted frame time of the latest tick), or None before two ticks.

        Why medians: a JACK cycle the server skipped delivers its ticks late, all at frame
        0 of the next cycle. A least-squares line bends towards them - in CI a stall bent
        the tempo 1.5% and re-anchored the phase 40 ms off. The slope is the median of
        one-beat spans (lag up to 24 ticks) and the phase the median of the last beat's
        offsets from that slope, so late ticks are outvoted until they are the majority;
        a real tempo change wins within about one and a half beats of a 2-beat window."""
        if self._fit is not None:
            return self._fit
        n = len(self._times)
        if n < 2:
            return None
        t = np.asarray(self._times, dtype=np.float64)
        k = np.asarray(self._index, dtype=np.float64)
        lag = min(self.PPQN, n - 1)
        slope = float(np.median((t[lag:] - t[:-lag]) / (k[lag:] - k[:-lag])))
        if slope <= 0:
            return None
        recent = slice(max(0, n - self.PPQN), n)
        offset = float(np.median(t[recent] - slope * k[recent]))
        self._fit = (slope, offset + slope * k[-1])
        return self._fit

    @property
    def bpm(self) -> float | None:
        """Tempo from the robust line through the last `window` ticks (up to 2 beats)."""
        line = self._line()
        if line is None:
            return None
        return 60.0 / (line[0] / self.sample_rate * self.PPQN)

    @property
    def fitted_tick_time(self) -> float:
        """Where the latest tick belongs on the fitted line (its frame time when on time):
        the phase to place the map by, immune to a late tick."""
        line = self._line()
        return float(self.tick_time) if line is None else line[1]

    def feed(self, status: int, data: bytes, frame_time: int) -> bool:
        """One MIDI message; True when it was a clock message."""
        if status == 0xF8:
            if self._times and self._new_train(frame_time - self._times[-1]):
                self._times.clear()
                self._index.clear()
            self._index.append(self._index[-1] + 1 if self._index else 0)
            self._times.append(frame_time)
            self._fit = None
            if self.running:
                self.ticks += 1
                self.tick_time = frame_time
            self._count_dropped()
            if self.running:
                self.quarters_at_tick = self.spp_quarters + self.ticks / self.PPQN
        elif status == 0xFA:  # start: from the top
            self.spp_quarters = 0.0
            self._go()
        elif status == 0xFB:  # continue from the song position
            self._go()
        elif status == 0xFC:
            if self.running:
                self.spp_quarters = self.quarters_at_tick if self.ticks >= 0 else self.spp_quarters
            self.running = False
            self.events += 1
        elif status == 0xF2 and len(data) >= 2:  # song position pointer, in sixteenths
            self.spp_quarters = ((data[1] << 7) | data[0]) / 4.0
            self.events += 1
        else:
            return False
        self.last_seen = frame_time
        return True

    def _count_dropped(self) -> None:
        """Count the ticks a stalled server lost, so the position does not fall behind.

        Measured (jackd2 1.9.21, dummy driver): after a stall jackd runs the missed cycles
        back to back and one cycle's MIDI between clients is lost, so a tick never arrives;
        counting ticks would leave the position one tick (25 ms at 100 bpm) late for good.
        A lost tick shows as one gap of m whole periods followed by on-time ticks; ticks a
        stall delivers late instead bunch up (a long gap, then ~0), and a real slow-down
        keeps every later gap long too, so neither is mistaken for a drop. Deciding three
        ticks later than the gap keeps both of those out."""
        n = len(self._times)
        line = self._line() if n >= 5 else None
        if line is None:
            return
        t = np.asarray(self._times, dtype=np.float64)[-5:]
        gaps = np.diff(t) / line[0]
        lost = int(round(gaps[0])) - 1
        if not 1 <= lost <= 8 or abs(gaps[0] - (lost + 1)) > 0.25 or np.any(np.abs(gaps[1:] - 1.0) > 0.25):
            return
        for i in range(n - 4, n):
            self._index[i] += lost
        self.dropped += lost
        self._fit = None
        if self.running and self.ticks >= 4:  # the gap lies inside this take
            self.ticks += lost

    def _new_train(self, gap: int) -> bool:
        """Do the ticks before this gap belong to another train? After > 1 s, always.
        While stopped, also after a gap of over three ticks: a master that stops its clock
        at the stop starts a new train, at its own phase, when it plays again, and the old
        ticks would pull the fitted phase off the new ones for the first beats (seen: the
        second MIDI-clock take of a test run, its first beats 100 ms off). While running,
        a gap is a stalled server, whose late ticks the medians outvote: keep them."""
        if gap > self.sample_rate:
            return True
        line = None if self.running else self._line()
        return line is not None and gap > 3 * line[0]

    def _go(self) -> None:
        self.running = True
        self.ticks = -1
        self.quarters_at_tick = self.spp_quarters
        self.events += 1

    @property
    def placed(self) -> bool:
        """Running and the first tick has fixed where the position sits in time."""
        return self.running and self.ticks >= 0

    def active(self, frame_time: int, timeout_s: float = 1.0) -> bool:
        """A clock byte within the last `timeout_s`. A byte stamped *after* `frame_time`
        belongs to another server's frame count (a restarted server counts from 0 again):
        that clock is gone, not active."""
        if self.last_seen is None:
            return False
        return 0 <= frame_time - self.last_seen <= timeout_s * self.sample_rate
