"""Choosing and following the clock in the generator process.

Each loop the worker hands over the transport the callback posted (ring.Shared.transport)
and this picks the source - JACK transport with BBT from a timebase master; JACK frames at
the MIDI clock's or `--bpm` tempo; MIDI clock alone; Ableton Link, whose session this
process joins with `--link` / `--clock link`; free running - and feeds what the host
reports into a `LiveClock` (bridge/jam/time/followers.py), whose tempo map the engine's
grid reads lazily, so a tempo change lands on the next chunk.

JACK frames are the song timeline in mode 0 (`ctl[MODE]`); the other sources place their
own timeline on JACK frame time (`ctl[EXT_OFFSET]`, `ctl[EXT_ROLLING]`), which the
callback then follows. Switching sources switches timelines, so the worker forgets the
ring's audio then.
"""

from __future__ import annotations

import numpy as np

from bridge.jam.time.clock import seconds_per_quarter
from bridge.jam.time.followers import LiveClock, MidiClockFollower
from bridge.live import ring as R
from bridge.live.link import LinkFollower, LinkSession, jack_frame_at

JACK_ROLLING, JACK_STARTING = 1, 3  # jack.ROLLING, jack.STARTING (not imported here)
MODES = ("free", "midi", "jack", "link")  # --clock values that force one source
# How long a JACK position without BBT keeps the timebase master's tempo map. Measured:
# after every locate other clients see one cycle without BBT; taking that cycle for "no
# master" set the start's first bar to the fallback tempo (a 126 bpm bar in a 120 bpm song).
BBT_GRACE_S = 0.5


class ClockSources:
    """The LiveClock and the followers that move it; `follow()` once per worker loop."""

    def __init__(self, shared: R.Shared, mode: str, bpm: float, meter: tuple[int, int], rate: int, link: bool):
        self.sh = shared
        self.ctl = shared.ctl
        self.mode = mode  # auto | jack | midi | link | free
        self.rate = rate
        self.clock = LiveClock(bpm, meter)
        self.midi_clock = MidiClockFollower(rate)
        self.link = LinkSession(bpm, meter[0]) if link or mode == "link" else None
        self.link_follower = LinkFollower(self.clock, rate)
        self.name = "stopped"  # what the status reports: jack-bbt, jack+midi-tempo, jack, midi, link, free
        self._kind: str | None = None
        self._placed = False
        self._free_started = False
        self._midi_events_seen = self.midi_clock.events
        self._bbt_seen_at: int | None = None  # JACK frame time of the last position with BBT

    def set_rate(self, rate: int) -> None:
        """The server came back at another rate."""
        self.rate = rate
        self.midi_clock.sample_rate = rate

    def seconds(self, frame: int) -> float:
        return frame / self.rate

    def choose(self, tp: np.ndarray) -> str:
        """The source that drives now: the forced one, else a moving JACK transport, else a
        running MIDI clock, else Link with --link, else JACK (stopped)."""
        if self.mode in MODES:
            return self.mode
        if int(tp[R.TP_STATE]) in (JACK_ROLLING, JACK_STARTING):
            return "jack"
        if self.midi_clock.running:
            return "midi"
        if self.link is not None:  # --link: Link plays whenever neither the transport nor MIDI clock moves
            return "link"
        return "jack"

    def follow(self, tp: np.ndarray, fallback_bpm: float) -> bool:
        """Choose the source and feed it to the clock; `fallback_bpm` (--bpm or the preset's)
        is the tempo where the source gives none. True when the source switched from another
        one: the ring's audio was placed on the other's timeline."""
        source = self.choose(tp)
        switched = source != self._kind and self._kind is not None
        if source != self._kind:  # JACK frames / MIDI clock / Link / free: different song timelines
            self._kind = source
            self._placed = False  # an external source places its timeline anew
            self._free_started = False
            self.link_follower.forget()
        if source == "jack":
            self.ctl[R.MODE] = 0
            self._follow_jack(tp, fallback_bpm)
            return switched
        self.ctl[R.MODE] = 1
        if source == "free":
            self.name = "free"
            if not self._free_started:
                self._free_started = True
                self.ctl[R.EXT_OFFSET] = -int(tp[R.TP_JACK_TIME])
                self.ctl[R.EXT_ROLLING] = 1
        elif source == "link":
            self.name = "link"
            self._follow_link()
        else:
            self.name = "midi"
            self._follow_midi_clock(fallback_bpm)
        return switched

    def _follow_jack(self, tp: np.ndarray, fallback_bpm: float) -> None:
        frame = int(tp[R.TP_FRAME])
        if tp[R.TP_BBT] > 0 and tp[R.TP_BPM] > 0:
            self.clock.observe_bbt(
                self.seconds(frame),
                int(tp[R.TP_BAR]),
                int(tp[R.TP_BEAT]),
                tp[R.TP_TICK],
                tp[R.TP_TPB],
                tp[R.TP_BPB],
                tp[R.TP_BEAT_TYPE],
                tp[R.TP_BPM],
            )
            self.name = "jack-bbt"
            self._bbt_seen_at = int(tp[R.TP_JACK_TIME])
            return
        if self._bbt_seen_at is not None and 0 <= tp[R.TP_JACK_TIME] - self._bbt_seen_at <= BBT_GRACE_S * self.rate:
            return  # a cycle without BBT (a locate): the master's map still holds
        bpm = self.midi_clock.bpm if self.midi_clock.active(int(tp[R.TP_JACK_TIME])) else None
        self.name = "jack+midi-tempo" if bpm else "jack"
        target = bpm or fallback_bpm
        if abs(self.clock.bpm(self.seconds(frame)) - target) > 1e-3 * target:
            self.clock.set_tempo(self.seconds(frame), target)

    def _follow_midi_clock(self, fallback_bpm: float) -> None:
        ctl = self.ctl
        mc = self.midi_clock
        meter = self.clock.meter
        if mc.events != self._midi_events_seen:
            self._midi_events_seen = mc.events
            self._placed = False
            if not mc.running:
                ctl[R.EXT_ROLLING] = 0
        if not mc.placed:
            return
        bpm = mc.bpm or fallback_bpm
        if not self._placed:
            self._placed = True
            spq = seconds_per_quarter(bpm, meter[1])
            seconds = mc.quarters_at_tick * spq
            self.clock.reset(bpm, meter, seconds, mc.quarters_at_tick)
            ctl[R.EXT_OFFSET] = int(round(seconds * self.rate - mc.fitted_tick_time))
            ctl[R.EXT_ROLLING] = 1
        elif mc.bpm is not None:
            s_tick = self.seconds(mc.fitted_tick_time + int(ctl[R.EXT_OFFSET]))
            # MIDI clock jitters: a tempo within 0.2% is the same tempo; phase drift of
            # the fitted line beyond 2 ms re-anchors the map on the ticks.
            self.clock.observe(s_tick, mc.quarters_at_tick, mc.bpm, meter, tempo_tolerance=0.002)

    def _follow_link(self) -> None:
        """Read Link now, put the reading on JACK frames and let the follower move the
        LiveClock and the external timeline (ctl[EXT_OFFSET], ctl[EXT_ROLLING])."""
        follower = self.link_follower
        follower.rate = self.rate
        if self.link.quantum != self.clock.meter[0]:
            self.link.quantum = self.clock.meter[0]  # phase = bar phase (a reload may change the meter)
        ref = self.sh.time_ref()
        sample = self.link.sample()
        if ref is None or sample is None or abs(sample.mono_ns - ref[1]) > 2_000_000_000:
            if follower.offset is None:
                self.ctl[R.EXT_ROLLING] = 0  # not placed yet: nothing may play on another clock's offset
            return  # no fresh JACK time reference (reconnecting) or a preempted reading: wait
        follower.update(sample, jack_frame_at(sample.mono_ns, ref, self.rate))
        if follower.offset is not None:
            self.ctl[R.EXT_OFFSET] = follower.offset
            self.ctl[R.EXT_ROLLING] = int(follower.rolling)
