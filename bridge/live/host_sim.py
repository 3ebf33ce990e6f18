"""A DAW stand-in on JACK: timebase master, transport, MIDI out, a recorder.

`make run`'s demo, the soak script and the tests drive `jamstream jam` with it the way
REAPER or Ardour would: it is JACK's timebase master (BBT from a tempo list it owns, so
tempo changes are exact), starts/stops/locates the transport, sends scheduled MIDI (CC
automation, MIDI clock with start/stop/song position) from its `midi_out`, and records
its `in_L`/`in_R` - connected to jamstream's outputs - into a preallocated buffer along
with the transport frame of every period, so what was heard can be laid on the song's
timeline and compared with the host's own beat frames.
"""

from __future__ import annotations

import math
import threading

import numpy as np

TICKS_PER_BEAT = 1920.0


class HostSim:
    def __init__(
        self,
        name: str = "host",
        server: str | None = None,
        bpm: float = 120.0,
        meter: tuple[int, int] = (4, 4),
        record_seconds: float = 60.0,
        timebase: bool = True,
    ):
        import jack

        self.jack = jack
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.rate = self.client.samplerate
        self.meter = meter
        self._segments = [(0, 0.0, float(bpm))]  # (start frame, beats at that frame, bpm)
        self._lock = threading.Lock()
        self.midi_out = self.client.midi_outports.register("midi_out")
        self.in_l = self.client.inports.register("in_L")
        self.in_r = self.client.inports.register("in_R")
        self.rec = np.zeros((2, int(record_seconds * self.rate)), np.float32)
        n_periods = self.rec.shape[1] // self.client.blocksize + 2
        self.rec_frame = np.full(n_periods, -1, np.int64)  # transport frame of each recorded period
        self.rec_rolling = np.zeros(n_periods, np.int8)
        self.rec_time = np.zeros(n_periods, np.int64)  # JACK frame time of each recorded period
        self.rec_periods = 0
        self.recording = False
        self.events: list = []  # (jack frame time, bytes), kept sorted
        self._ev_lock = threading.Lock()
        self.clock_bpm: float | None = None  # send MIDI clock ticks at this tempo when set
        self._next_tick = None
        self._clock_start: bytes | None = None  # sent right before the next tick
        self.clock_start_time: int | None = None  # JACK frame time of the first tick after it
        self.xruns = 0  # every xrun JACK reported to this client (any client's, the server's)
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        if timebase:
            self.client.set_timebase_callback(self._timebase, conditional=False)
        self.client.activate()

    # ------------------------------------------------------------------ tempo map
    def set_tempo(self, bpm: float, at_frame: int) -> None:
        """From transport frame `at_frame` on, play at `bpm` (beats continue)."""
        with self._lock:
            beats = self.beats_at(at_frame)
            segs = [s for s in self._segments if s[0] < at_frame]
            self._segments = segs + [(int(at_frame), beats, float(bpm))]

    def _segment(self, frame: int):
        seg = self._segments[0]
        for s in self._segments:
            if s[0] <= frame:
                seg = s
        return seg

    def beats_at(self, frame: int) -> float:
        f0, b0, bpm = self._segment(frame)
        return b0 + (frame - f0) / self.rate * bpm / 60.0

    def bpm_at(self, frame: int) -> float:
        return self._segment(frame)[2]

    def beat_frames(self, start: int, end: int) -> np.ndarray:
        """Transport frames of every beat in [start, end)."""
        out = []
        b = math.ceil(self.beats_at(start) - 1e-9)
        while True:
            f = self.frame_at_beats(b)
            if f >= end:
                break
            out.append(f)
            b += 1
        return np.array(out, dtype=np.float64)

    def frame_at_beats(self, beats: float) -> float:
        seg = self._segments[0]
        for s in self._segments:
            if s[1] <= beats + 1e-9:
                seg = s
        f0, b0, bpm = seg
        return f0 + (beats - b0) * 60.0 / bpm * self.rate

    def frame_at_bar(self, bar: int) -> int:
        return int(round(self.frame_at_beats((bar - 1) * self.meter[0])))

    # ------------------------------------------------------------------ callbacks
    def _timebase(self, state, blocksize, pos, new_pos):
        beats = self.beats_at(pos.frame)
        num, den = self.meter
        bar, in_bar = divmod(beats, num)
        pos.valid = self.jack._lib.JackPositionBBT
        pos.bar = int(bar) + 1
        pos.beat = int(in_bar) + 1
        pos.tick = int((in_bar % 1.0) * TICKS_PER_BEAT)
        pos.bar_start_tick = bar * num * TICKS_PER_BEAT
        pos.beats_per_bar = float(num)
        pos.beat_type = float(den)
        pos.ticks_per_beat = TICKS_PER_BEAT
        pos.beats_per_minute = self.bpm_at(pos.frame)

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1

    def _process(self, n):
        now = self.client.last_frame_time
        self.midi_out.clear_buffer()
        out = []  # (offset, order, bytes): JACK wants each period's events in time order
        if self._ev_lock.acquire(blocking=False):
            try:
                ev = self.events
                while ev and ev[0][0] < now + n:
                    t, data = ev.pop(0)
                    out.append((max(0, t - now), len(out), data))
            finally:
                self._ev_lock.release()
        if self.clock_bpm:
            step = self.rate * 60.0 / (self.clock_bpm * 24)
            if self._next_tick is None or self._next_tick < now - self.rate:  # (re)start the clock
                self._next_tick = float(now)
            while self._next_tick < now + n:
                at = max(0, int(self._next_tick) - now)  # a late period sends its ticks at once
                if self._clock_start is not None:
                    out.append((at, len(out), self._clock_start))
                    self._clock_start = None
                    self.clock_start_time = int(self._next_tick)
                out.append((at, len(out), b"\xf8"))
                self._next_tick += step
        for at, _, data in sorted(out):
            self.midi_out.write_midi_event(at, data)
        if self.recording and self.rec_periods < len(self.rec_frame):
            p = self.rec_periods
            off = p * n
            if off + n <= self.rec.shape[1]:
                state, pos = self.client.transport_query_struct()
                self.rec[0, off : off + n] = self.in_l.get_array()
                self.rec[1, off : off + n] = self.in_r.get_array()
                self.rec_frame[p] = pos.frame
                self.rec_rolling[p] = state == self.jack.ROLLING
                self.rec_time[p] = now
                self.rec_periods = p + 1

    # ------------------------------------------------------------------ control
    def midi_clock_start(self, message: bytes = b"\xfa") -> None:
        """Send MIDI clock start (or continue, b"\xfb") right before the next tick."""
        self.clock_start_time = None
        self._clock_start = message

    def _queue(self, items) -> None:
        with self._ev_lock:
            self.events = sorted(self.events + list(items), key=lambda e: e[0])

    def send(self, data: bytes, delay_s: float = 0.0) -> None:
        self._queue([(self.client.frame_time + int(delay_s * self.rate), bytes(data))])

    def send_at(self, events) -> None:
        """Queue (JACK frame time, bytes) events: a caller that times what it sends (the
        latency bench) picks the frames itself rather than read them back from `send`."""
        self._queue((int(t), bytes(data)) for t, data in events)

    def schedule_cc_sweep(
        self,
        channel: int,
        number: int,
        start_s: float,
        seconds: float,
        lo: int = 0,
        hi: int = 127,
        rate_hz: float = 20.0,
    ):
        """Queue a linear CC ramp lo -> hi starting `start_s` from now, `rate_hz` messages a second."""
        t0 = self.client.frame_time + int(start_s * self.rate)
        n = max(2, int(seconds * rate_hz))
        self._queue(
            (
                t0 + int(i * seconds / (n - 1) * self.rate),
                bytes([0xB0 | (channel - 1), number, int(round(lo + (hi - lo) * i / (n - 1)))]),
            )
            for i in range(n)
        )

    def connect_from(self, client_name: str = "jamstream") -> None:
        self.client.connect(f"{client_name}:out_L", self.in_l)
        self.client.connect(f"{client_name}:out_R", self.in_r)
        self.client.connect(self.midi_out, f"{client_name}:midi_in")

    def start_recording(self) -> None:
        self.rec_periods = 0
        self.rec_frame.fill(-1)
        self.recording = True

    def stop_recording(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(audio [2, n], transport frame per period, rolling per period); `rec_time` has
        each period's JACK frame time."""
        self.recording = False
        p = self.rec_periods
        n = self.client.blocksize
        return self.rec[:, : p * n].copy(), self.rec_frame[:p].copy(), self.rec_rolling[:p].copy()

    def skipped_periods(self) -> int:
        """Cycles the last recording lacks: JACK frame times of consecutive recorded periods more
        than a period apart mean the server ran cycles without this client (it was late), so a
        stretch of what was played is not in the take."""
        p = self.rec_periods
        if p < 2:
            return 0
        gaps = np.diff(self.rec_time[:p]) // self.client.blocksize - 1
        return int(np.maximum(gaps, 0).sum())

    def on_timeline(self, audio: np.ndarray, frames: np.ndarray, rolling: np.ndarray, song_frames: int) -> np.ndarray:
        """Recorded audio laid on the song timeline (rolling periods only): [2, song_frames]."""
        n = self.client.blocksize
        out = np.zeros((2, song_frames), np.float32)
        for p, f in enumerate(frames):
            if rolling[p] and 0 <= f and f + n <= song_frames:
                out[:, f : f + n] = audio[:, p * n : (p + 1) * n]
        return out

    def on_jack_time(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Recorded audio laid on JACK frame time from the first recorded period, and a mask
        of the samples no period covered. A cycle the server skipped leaves a hole there
        instead of pulling everything after it early, as reading the periods back to back would."""
        n = self.client.blocksize
        p = audio.shape[1] // n
        times = self.rec_time[:p] - self.rec_time[0]
        out = np.zeros((audio.shape[0], int(times.max()) + n), np.float32)
        covered = np.zeros(out.shape[1], bool)
        for k, f in enumerate(times):
            out[:, f : f + n] = audio[:, k * n : (k + 1) * n]
            covered[f : f + n] = True
        return out, ~covered

    def close(self) -> None:
        try:
            self.client.deactivate()
        except Exception:
            pass
        self.client.close()
