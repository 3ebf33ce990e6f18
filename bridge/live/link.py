"""Ableton Link as a clock of the live bridge: Link's beats -> JACK frames -> a LiveClock.

Link is a session of peers on the local network sharing one beat timeline and tempo
(and, with start/stop sync, a play state). It is an optional dependency (the `link`
extra: aalink, a binding of Ableton's library); without it `--clock link` is a one-line
error and `--clock auto` never picks Link.

How its beats reach the engine's grid (the generator process owns the session; the
JACK callback never sees it):

1. `LinkSession.sample()` reads Link's beat and tempo now, bracketed by two
   CLOCK_MONOTONIC readings, so the sample has a CLOCK_MONOTONIC instant without
   assuming which clock Link runs on.
2. `jack_frame_at()` puts that instant on JACK frame time with the reference the parent
   posts (a JACK frame and its CLOCK_MONOTONIC instant, bridge/live/jack_time.py).
3. `LinkFollower.update()` keeps the external timeline (song frame = JACK frame time +
   offset, as for MIDI clock) and feeds the LiveClock so song quarter q is Link beat
   `origin + q` (origin a whole bar: quantum = beats per bar, so Link's bars are ours).
   A tempo change is put where the old and new beat lines cross - Link keeps the beat
   continuous at the change, so that is where the peer made it, even when it reaches us
   late - and appended there as a tempo segment. Beat numbers that jump by whole bars (a
   peer re-numbered the timeline, phase kept) only move the origin; a phase that jumps
   re-places the timeline (a new stream, like a locate).

Start/stop: Link's play state is shared only among peers with start/stop sync on, and
a session without them reads "stopped" forever. So the follower plays free on Link's
beat grid until it has seen the session playing once; from then on it starts and
stops with it, like a transport.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bridge.jam.time.followers import PHASE_TOLERANCE_S, LiveClock

REPLACE_S = 0.010  # a phase error beyond this (after tempo/bar handling) re-places the timeline
MAX_BRACKET_NS = 500_000  # a sample whose bracketing readings are further apart was preempted: retry
AALINK_HINT = "install the optional Link support: pip install 'jamstream[link]' (aalink)"


@dataclass(frozen=True)
class LinkSample:
    """What Link said at one instant."""

    beat: float  # Link beat (quantum = beats per bar)
    tempo: float  # bpm, beats as the meter's denominator
    mono_ns: int  # CLOCK_MONOTONIC instant of the reading
    playing: bool  # Link's start/stop state
    peers: int


def aalink_available() -> bool:
    try:
        import aalink  # noqa: F401
    except ImportError:
        return False
    return True


def jack_frame_at(mono_ns: int, ref: tuple[int, int], rate: int) -> float:
    """The JACK frame time (fractional) of a CLOCK_MONOTONIC instant, from a reference
    (JACK frame time, its CLOCK_MONOTONIC ns) posted at most a fraction of a second ago:
    the nominal rate over that span errs by far less than a sample."""
    frame, ref_ns = ref
    return frame + (mono_ns - ref_ns) * rate / 1e9


class LinkSession:
    """One Link peer (aalink) in this process, enabled, with start/stop sync on.

    aalink's constructor wants a running asyncio loop (it schedules its callbacks there);
    we only poll properties, so a private loop runs just for the construction."""

    def __init__(self, bpm: float, quantum: float):
        import asyncio

        from aalink import Link

        self._loop = asyncio.new_event_loop()

        async def make():
            return Link(float(bpm))

        self.link = self._loop.run_until_complete(make())
        self.link.quantum = float(quantum)
        self.link.start_stop_sync_enabled = True
        self.link.enabled = True

    @property
    def quantum(self) -> float:
        return float(self.link.quantum)

    @quantum.setter
    def quantum(self, value: float) -> None:
        self.link.quantum = float(value)

    def sample(self, tries: int = 3) -> LinkSample | None:
        """Beat and tempo now, stamped with CLOCK_MONOTONIC; None if every try was preempted."""
        link = self.link
        for _ in range(tries):
            m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            beat = link.beat
            m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if m1 - m0 <= MAX_BRACKET_NS:
                return LinkSample(
                    float(beat), float(link.tempo), (m0 + m1) // 2, bool(link.playing), int(link.num_peers)
                )
        return None

    def close(self) -> None:
        self.link.enabled = False
        self._loop.close()


class LinkFollower:
    """Keeps a LiveClock and the external timeline's offset on Link's beat grid.

    `update(sample, jack_frame)` after each reading; read `offset` (song frame = JACK
    frame time + offset; None until placed), `rolling`, and `placements` (bumped when
    the timeline was re-placed, i.e. the song frame jumps)."""

    def __init__(self, clock: LiveClock, rate: int):
        self.clock = clock
        self.rate = rate
        self.offset: int | None = None
        self.origin = 0.0  # Link beat of song quarter 0 (a whole bar)
        self.rolling = True
        self.follows_start_stop = False  # set once the session was seen playing
        self.placements = 0
        self.peers = 0
        self.last: tuple[float, float, float] | None = None  # (beat, tempo, JACK frame time) of the latest reading
        self._was_playing = False
        self._meter = clock.meter

    def forget(self) -> None:
        """Another source drove the external timeline meanwhile: place anew next time."""
        self.offset = None

    def _quarters_per_beat(self) -> float:
        return 4.0 / self.clock.meter[1]

    def _place(self, beat: float, tempo: float, jack_frame: float) -> None:
        """Bar 1 of the song = the bar Link is in now; the song frame of now follows."""
        bpb = self.clock.meter[0]
        qpb = self._quarters_per_beat()
        self.origin = math.floor(beat / bpb) * bpb
        quarters = (beat - self.origin) * qpb
        spq = 60.0 / tempo / qpb
        self.offset = int(round(quarters * spq * self.rate - jack_frame))
        self.clock.reset(tempo, self.clock.meter, (jack_frame + self.offset) / self.rate, quarters)
        self._meter = self.clock.meter
        self.placements += 1

    def update(self, s: LinkSample, jack_frame: float) -> None:
        self.peers = s.peers
        self.last = (s.beat, s.tempo, jack_frame)
        if s.playing:
            self.follows_start_stop = True
        started = s.playing and not self._was_playing
        self._was_playing = s.playing
        self.rolling = s.playing or not self.follows_start_stop
        if not (math.isfinite(s.beat) and math.isfinite(s.tempo) and s.tempo > 0):
            return
        if (
            self.offset is None
            or self.clock.meter != self._meter
            or jack_frame + self.offset < 0
            or (started and self.placements > 0)
        ):
            self._place(s.beat, s.tempo, jack_frame)  # first reading, meter change, new JACK server, a start
            return
        clock = self.clock
        qpb = self._quarters_per_beat()
        bpb = clock.meter[0]
        seconds = (jack_frame + self.offset) / self.rate
        spb = 60.0 / s.tempo  # seconds per Link beat, new tempo
        error = s.beat - (self.origin + clock.quarters_at(seconds) / qpb)  # Link beats ahead of our map
        bars = round(error / bpb)
        if bars and abs(error - bars * bpb) * spb <= REPLACE_S:
            self.origin += bars * bpb  # renumbered by whole bars, phase kept
            error -= bars * bpb
        old_bpm = clock.bpm(seconds)
        if abs(old_bpm - s.tempo) > 1e-4 * s.tempo:
            # The beat lines cross where the tempo changed: old + (t - now) * old_rate = new + ...
            rate_diff = (s.tempo - old_bpm) / 60.0
            change = seconds - error / rate_diff
            change = min(seconds, max(change, clock.seconds_at_quarters(clock.last_change_quarters)))
            clock.observe(change, clock.quarters_at(change), s.tempo, clock.meter)
            error = s.beat - (self.origin + clock.quarters_at(seconds) / qpb)
        if abs(error) * spb > REPLACE_S or s.beat < self.origin:
            self._place(s.beat, s.tempo, jack_frame)
        elif abs(error) * spb > PHASE_TOLERANCE_S:
            clock.observe(
                seconds, (s.beat - self.origin) * qpb, s.tempo, clock.meter
            )  # small drift: re-anchor in place
