"""The JACK side of `jamstream jam`: ports, the process callback, transport, latency.

Everything here runs in the parent process, which runs no torch code (bridge.presets
imports torch through model.sampling, so it is loaded, ~300 MB, but idle). The process
callback is the only code on the audio thread and does one thing per period (the
habit of jackclient-python's examples): post the transport and MIDI to shared memory
and copy this period's song frames out of the time-addressed ring (bridge/live/ring.py).
It takes no lock, never waits, and allocates no buffers: every array it touches is
preallocated (the per-sample gain curve too), numpy works `out=` in place and MIDI
bytes are copied with `ffi.memmove`; what Python itself allocates is small scalar and
view objects from its free lists. Where the ring does not cover the period (worker
behind, a locate, the transport stopping) the gain curve fades to silence over
`FADE_SAMPLES` *before* the data runs out - never a click - and the first such period
after audio had played counts one underrun. Periods without audio right after a start
or locate are pre-roll (`STARVED_PERIODS`), not underruns.

The slow-sync callback answers "ready" only once the ring holds the period the
transport wants to start at, so a host's play waits for the first chunk (up to the
server's sync timeout). The xrun callback counts xruns; the shutdown callback only
records the reason, which the main loop acts on (message, or `--reconnect`).

JACK-Client wraps neither `jack_port_set_latency_range` nor the latency callback, so a
few lines of cffi declare them: the MIDI and audio inputs report playback latency
lookahead + one period more than the outputs (a host that compensates sends its CC
automation that much earlier); outputs pass the inputs' capture latency through,
because their audio is already placed at its song frame.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from bridge.live import ring as R
from bridge.live.jack_time import libjack

FADE_SAMPLES = 240  # 5 ms at 48 kHz
MAX_PERIOD = 8192

_LATENCY_CDEF = """
typedef struct { uint32_t min; uint32_t max; } jack_latency_range_t;
typedef void (*JackLatencyCallback)(int mode, void *arg);
void jack_port_get_latency_range(void *port, int mode, jack_latency_range_t *range);
void jack_port_set_latency_range(void *port, int mode, jack_latency_range_t *range);
int jack_set_latency_callback(void *client, JackLatencyCallback cb, void *arg);
int jack_recompute_total_latencies(void *client);
"""
CAPTURE, PLAYBACK = 0, 1  # JackCaptureLatency, JackPlaybackLatency


class JackBridge:
    """One JACK client "jamstream" over a `Shared` block; `open()` / `close()` may repeat
    (reconnect) with the same shared memory and worker."""

    def __init__(
        self,
        shared: R.Shared,
        name: str = "jamstream",
        server: str | None = None,
        live_input: bool = False,
        lookahead_s: float = 0.4,
        connect: list[str] | None = None,
        midi_from: list[str] | None = None,
        input_from: list[str] | None = None,
        sync_timeout_s: float | None = None,
    ):
        self.sh = shared
        self.ctl = shared.ctl
        self.name = name
        self.server = server
        self.live_input = live_input
        self.lookahead_s = lookahead_s
        self.connect_to = connect or []
        self.midi_from = midi_from or []
        self.input_from = input_from or []
        self.sync_timeout_s = sync_timeout_s
        self.client = None
        self.shutdown_reason: str | None = None
        self.shutdown_event = threading.Event()
        # preallocated for the callback
        self._g = np.zeros(MAX_PERIOD, np.float32)
        self._h = np.zeros(MAX_PERIOD, np.float32)
        self._ramp1 = np.arange(1, MAX_PERIOD + 1, dtype=np.float32) / FADE_SAMPLES
        self._ramp0 = np.arange(0, MAX_PERIOD, dtype=np.float32) / FADE_SAMPLES
        self._reset_callback_state()
        import time

        self._clock_ns = time.perf_counter_ns

    def _reset_callback_state(self) -> None:
        self._level = 0.0
        self._frame = 0
        self._expect = None
        self._last_now = None  # the JACK frame time of the previous period
        self._last_midi: list[tuple[int, bytes]] = []  # (offset, bytes) that period posted
        self._rolling = False
        self._played = False
        self._starving = False
        self._sync_frame = -1

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Connect to the server, register ports and callbacks, activate, connect ports.
        Raises jack.JackOpenError when no server runs."""
        import jack

        self.shutdown_reason = None
        self.shutdown_event.clear()
        self._reset_callback_state()
        client = jack.Client(self.name, no_start_server=True, servername=self.server)
        self.client = client
        if client.blocksize > MAX_PERIOD:
            raise RuntimeError(f"JACK period {client.blocksize} is larger than {MAX_PERIOD} frames")
        self.out_l = client.outports.register("out_L")
        self.out_r = client.outports.register("out_R")
        self.midi_in = client.midi_inports.register("midi_in")
        self.in_l = self.in_r = None
        if self.live_input:
            self.in_l = client.inports.register("in_L")
            self.in_r = client.inports.register("in_R")
        self.ctl[R.RATE_SLOT] = client.samplerate
        self.ctl[R.PERIOD] = client.blocksize
        self._bind_constants()
        client.set_process_callback(self._process)
        client.set_sync_callback(self._sync)
        client.set_xrun_callback(self._xrun)
        client.set_shutdown_callback(self._shutdown)
        client.set_blocksize_callback(self._blocksize)
        self._install_latency_callback()
        client.activate()
        if self.sync_timeout_s:
            try:
                client.set_sync_timeout(int(self.sync_timeout_s * 1e6))
            except jack.JackError:
                pass
        self.recompute_latency()
        self._auto_connect()

    def _bind_constants(self) -> None:
        """What the process callback reads from JACK-Client's module, looked up once here."""
        import jack

        self._bbt_flag = jack._lib.JackPositionBBT
        self._rolling_state = jack.ROLLING
        self._midi_ptr = jack._ffi.cast("uint8_t *", jack._ffi.from_buffer(self.sh.midi_data))
        self._memmove = jack._ffi.memmove

    def close(self) -> None:
        client = self.client
        if client is None:
            return
        if self.shutdown_reason is None:  # after a server shutdown only close() is allowed
            try:
                client.deactivate()  # first: the process callback reads self.client until it returns
            except Exception:
                pass
        self.client = None
        try:
            client.close()  # unregisters our ports
        except Exception:
            pass

    @property
    def period(self) -> int:
        return int(self.ctl[R.PERIOD])

    @property
    def rate(self) -> int:
        return int(self.ctl[R.RATE_SLOT])

    def latency_frames(self) -> int:
        """Playback latency reported to the host: lookahead + one period. (A CC is heard up to one
        chunk + one piece's generation lead after that; see docs/ARCHITECTURE.md, engine.)"""
        published = int(self.ctl[R.LOOKAHEAD_FRAMES])  # the worker's measured pacing, once it has one
        return (published or int(round(self.lookahead_s * self.rate))) + self.period

    # ------------------------------------------------------------------ connections
    def _auto_connect(self) -> None:
        client = self.client

        def matches(pattern: str, **kw):
            if pattern == "system":
                kw["is_physical"] = True
                return client.get_ports(**kw)
            return [p for p in client.get_ports(**kw) if re.search(pattern, p.name)]

        for pattern in self.connect_to:
            targets = [
                p for p in matches(pattern, is_audio=True, is_input=True) if not p.name.startswith(client.name + ":")
            ]
            for src, dst in zip((self.out_l, self.out_r), targets[:2]):
                client.connect(src, dst)
        for pattern in self.midi_from:
            for src in matches(pattern, is_midi=True, is_output=True):
                if not src.name.startswith(client.name + ":"):
                    client.connect(src, self.midi_in)
        if self.live_input:
            for pattern in self.input_from:
                sources = [
                    p
                    for p in matches(pattern, is_audio=True, is_output=True)
                    if not p.name.startswith(client.name + ":")
                ]
                for src, dst in zip(sources[:2], (self.in_l, self.in_r)):
                    client.connect(src, dst)

    # ------------------------------------------------------------------ latency
    def _ptr(self, port):
        import jack

        ffi, _ = libjack(_LATENCY_CDEF)
        return ffi.cast("void *", int(jack._ffi.cast("uintptr_t", port._ptr)))

    def _install_latency_callback(self) -> None:
        import jack

        ffi, lib = libjack(_LATENCY_CDEF)
        client_ptr = ffi.cast("void *", int(jack._ffi.cast("uintptr_t", self.client._ptr)))

        @ffi.callback("void(int, void *)")
        def on_latency(mode, _arg):
            try:
                self._set_latency(mode)
            except Exception:
                pass

        self._latency_cb = on_latency  # keep alive
        lib.jack_set_latency_callback(client_ptr, on_latency, ffi.NULL)
        self._client_ptr = client_ptr

    def _set_latency(self, mode: int) -> None:
        ffi, lib = libjack(_LATENCY_CDEF)
        r = ffi.new("jack_latency_range_t *")
        ins = [p for p in (self.midi_in, self.in_l, self.in_r) if p is not None]
        outs = (self.out_l, self.out_r)
        if mode == PLAYBACK:  # inputs: the outputs' downstream latency + ours
            lo = hi = 0
            for p in outs:
                lib.jack_port_get_latency_range(self._ptr(p), PLAYBACK, r)
                lo, hi = max(lo, r.min), max(hi, r.max)
            extra = self.latency_frames()
            r.min, r.max = lo + extra, hi + extra
            for p in ins:
                lib.jack_port_set_latency_range(self._ptr(p), PLAYBACK, r)
        else:  # outputs: the audio sits at its song frame, so pass the inputs' capture latency
            lo = hi = 0
            for p in ins:
                lib.jack_port_get_latency_range(self._ptr(p), CAPTURE, r)
                lo, hi = max(lo, r.min), max(hi, r.max)
            r.min, r.max = lo, hi
            for p in outs:
                lib.jack_port_set_latency_range(self._ptr(p), CAPTURE, r)

    def recompute_latency(self) -> None:
        _, lib = libjack(_LATENCY_CDEF)
        lib.jack_recompute_total_latencies(self._client_ptr)

    # ------------------------------------------------------------------ callbacks
    def _xrun(self, delayed_usecs: float) -> None:
        self.ctl[R.XRUNS] += 1

    def _shutdown(self, status, reason: str) -> None:
        self.shutdown_reason = reason or str(status)
        self.shutdown_event.set()

    def _blocksize(self, blocksize: int) -> None:
        self.ctl[R.PERIOD] = blocksize

    def _sync(self, state: int, pos) -> bool:
        ctl = self.ctl
        if ctl[R.MODE] != 0:
            return True
        frame = pos.frame
        ready = ctl[R.VALID_START] <= frame and frame + ctl[R.PERIOD] + FADE_SAMPLES <= ctl[R.VALID_END]
        if not ready:
            if frame != self._sync_frame:
                self._sync_frame = frame
                ctl[R.TARGET_FRAME] = frame
                ctl[R.TARGET_SEQ] += 1
            ctl[R.SYNC_WAITS] += 1
        return bool(ready)

    def _process(self, n: int) -> None:
        t0 = self._clock_ns()
        entry = self.client.frames_since_cycle_start
        self._process_period(n)
        us = (self._clock_ns() - t0) // 1000
        ctl = self.ctl
        if entry > ctl[R.CB_ENTRY_MAX]:
            ctl[R.CB_ENTRY_MAX] = entry
        if us > ctl[R.CB_MAX_US]:
            ctl[R.CB_MAX_US] = us
        if us * 2 * ctl[R.RATE_SLOT] > n * 1_000_000:
            ctl[R.CB_SLOW] += 1

    # One period, in the order the worker reads it: the transport, where the playhead is,
    # MIDI and live input, then the ring's audio out. Split in steps that hand each other
    # state through attributes (self._frame, self._rolling), not return tuples.
    def _process_period(self, n: int) -> None:
        state, pos = self.client.transport_query_struct()
        now = self.client.last_frame_time
        self.ctl[R.PERIODS] += 1
        # After a late client jackd 1.9.21 runs the cycle it caught up on twice, at one frame
        # time, and the second run hands us the first run's MIDI again (measured: a sender
        # 30 ms late; in CI one MIDI clock tick counted twice put the grid a tick, 25 ms, early)
        rerun = now == self._last_now
        if rerun:
            self.ctl[R.REPEATED_CYCLES] += 1
        self._post_transport(state, pos, now)
        self._follow_playhead(state, pos, now, n, rerun)
        self._post_midi(now, rerun)
        self._last_now = now
        if self.in_l is not None:
            self._post_live_input(n)
        self._play(n)

    def _post_transport(self, state, pos, now) -> None:
        """The host's transport -> the worker (tp[], under the TP_SEQ seqlock)."""
        ctl = self.ctl
        tp = self.sh.tp
        ctl[R.TP_SEQ] += 1
        tp[R.TP_STATE] = state
        tp[R.TP_FRAME] = pos.frame
        tp[R.TP_JACK_TIME] = now
        if pos.valid & self._bbt_flag:
            tp[R.TP_BBT] = 1.0
            tp[R.TP_BAR] = pos.bar
            tp[R.TP_BEAT] = pos.beat
            tp[R.TP_TICK] = pos.tick
            tp[R.TP_TPB] = pos.ticks_per_beat
            tp[R.TP_BPB] = pos.beats_per_bar
            tp[R.TP_BEAT_TYPE] = pos.beat_type
            tp[R.TP_BPM] = pos.beats_per_minute
        else:
            tp[R.TP_BBT] = 0.0
        ctl[R.TP_SEQ] += 1

    def _follow_playhead(self, state, pos, now, n: int, rerun: bool = False) -> None:
        """Where the playhead is this period (JACK transport, or the external clock's
        timeline the worker placed), into self._frame / self._rolling; a jump is a locate.
        A period run again (`rerun`) is expected where its first run was, not a period on."""
        ctl = self.ctl
        if ctl[R.MODE] == 0:
            rolling = state == self._rolling_state
            frame = pos.frame
        else:
            rolling = ctl[R.EXT_ROLLING] != 0
            frame = now + ctl[R.EXT_OFFSET] if rolling else self._frame
        expect = self._frame if rerun else self._expect
        if expect is not None and frame != expect:
            ctl[R.TARGET_FRAME] = frame
            ctl[R.TARGET_SEQ] += 1
            ctl[R.LOCATES] += 1
            self._played = False
        if rolling and not self._rolling:
            ctl[R.STARTS] += 1
            self._played = False
        self._rolling = rolling
        self._frame = frame
        self._expect = frame + n if rolling else frame
        ctl[R.PLAY_FRAME] = frame
        ctl[R.ROLLING] = rolling

    def _post_midi(self, now, rerun: bool = False) -> None:
        """This period's MIDI -> the worker's ring, stamped with JACK time and song frame.
        In a period run again, events its first run posted (same offset, same bytes) are
        the same events delivered twice and are only counted."""
        ctl = self.ctl
        sh = self.sh
        frame, rolling = self._frame, self._rolling
        mslots = sh.midi_slots
        first_run = set(self._last_midi) if rerun else ()
        posted = self._last_midi if rerun else []
        for t, buf in self.midi_in.incoming_midi_events():
            data = bytes(buf)
            if (t, data) in first_run:
                ctl[R.MIDI_REPEATS] += 1
                continue
            posted.append((t, data))
            w = ctl[R.MIDI_W]
            if w - ctl[R.MIDI_R] >= mslots:
                ctl[R.MIDI_OVERFLOW] += 1
                continue
            j = w & (mslots - 1)
            size = len(buf)
            sh.midi_time[j] = now + t
            sh.midi_song[j] = frame + t if rolling else frame
            sh.midi_len[j] = size
            self._memmove(self._midi_ptr + j * R.MIDI_BYTES, buf, size if size < R.MIDI_BYTES else R.MIDI_BYTES)
            ctl[R.MIDI_W] = w + 1
        self._last_midi = posted

    def _post_live_input(self, n: int) -> None:
        """in_L/in_R -> the live ring (the live-input style slot)."""
        ctl = self.ctl
        sh = self.sh
        w = ctl[R.LIVE_W]
        i = w & (sh.live_capacity - 1)
        k = min(n, sh.live_capacity - i)
        a, b = self.in_l.get_array(), self.in_r.get_array()
        sh.live[0, i : i + k] = a[:k]
        sh.live[1, i : i + k] = b[:k]
        if k < n:
            sh.live[0, : n - k] = a[k:]
            sh.live[1, : n - k] = b[k:]
        ctl[R.LIVE_W] = w + n

    def _play(self, n: int) -> None:
        """The ring's frames of this period -> out_L/out_R, faded where it does not cover
        them; counts starved periods and underruns."""
        ctl = self.ctl
        sh = self.sh
        frame, rolling = self._frame, self._rolling
        out_l, out_r = self.out_l.get_array(), self.out_r.get_array()
        level = self._level
        if not rolling and level <= 0.0:
            out_l.fill(0.0)
            out_r.fill(0.0)
            return
        vs, ve = ctl[R.VALID_START], ctl[R.VALID_END]
        audio = sh.audio
        i = frame & sh.mask
        k = min(n, sh.capacity - i)
        out_l[:k] = audio[0, i : i + k]
        out_r[:k] = audio[1, i : i + k]
        if k < n:
            out_l[k:] = audio[0, : n - k]
            out_r[k:] = audio[1, : n - k]
        g = self._g[:n]
        if rolling:
            np.add(self._ramp1[:n], level, out=g)  # fade in from the current level
            h = self._h[:n]
            np.subtract((ve - frame) / FADE_SAMPLES, self._ramp0[:n], out=h)  # ... and out before the data ends
            np.minimum(g, h, out=g)
        else:  # stopped: fade out over the stop position's audio
            np.subtract(level, self._ramp1[:n], out=g)
            if frame + n > ve:
                np.subtract((ve - frame) / FADE_SAMPLES, self._ramp0[:n], out=self._h[:n])
                np.minimum(g, self._h[:n], out=g)
        if frame < vs:
            g[: min(n, vs - frame)] = 0.0
        np.clip(g, 0.0, 1.0, out=g)
        out_l *= g
        out_r *= g
        self._level = float(g[n - 1])
        if rolling:
            if frame < vs or frame + n > ve:
                ctl[R.STARVED_PERIODS] += 1
                if self._played and not self._starving:
                    ctl[R.UNDERRUNS] += 1
                self._starving = True
            else:
                self._starving = False
                self._played = True
