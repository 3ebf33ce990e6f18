"""Shared memory between the JACK process callback and the generator worker.

One `multiprocessing.shared_memory` block holds numpy views of everything the two
sides exchange, each field written by exactly one side (single producer, single
consumer), so nothing takes a lock:

- `audio` float32 [2, capacity]: a *time-addressed* ring at the server's rate. Song
  frame f lives at column f % capacity; `ctl[VALID_START]..ctl[VALID_END]` (worker-
  written) say which song frames hold audio of the current stream. The callback reads
  the frames of its period from there - whatever position the transport is at - so a
  block is heard exactly at its song time and a locate needs no flush: the worker
  re-marks the valid range, the callback sees the period is not covered and fades.
  The worker writes data first and publishes `VALID_END` after (x86-64: stores are
  seen in order; an aligned int64 is one store).
- `ctl` int64 slots (names below): transport facts the callback posts every period,
  counters (underruns, xruns, MIDI overflow), and what the worker publishes.
- `tp` float64: the host's transport and BBT of the latest period, under a sequence
  counter (`ctl[TP_SEQ]` odd while the callback writes) so the worker reads a
  consistent snapshot.
- a MIDI event ring: jack frame time, song frame and up to 16 bytes per event.
- `live` float32 [2, live_capacity]: the last seconds of the optional stereo input,
  written by the callback, read by the worker for the live-input style slot.
- a JACK time reference (`ctl[REF_*]`, main thread, under its own sequence counter): a
  JACK frame time and the CLOCK_MONOTONIC instant of it, so the worker can put an
  instant of another clock (Ableton Link's) on JACK frames. The worker cannot ask JACK
  itself (it has no client; libjack's clock calls crash without one) and the callback
  should not do it every period.

Capacity is a power of two (index = frame & mask) and is the latency ceiling: the
worker never writes further than `capacity - 1 period` ahead of the playhead.
"""

from __future__ import annotations

from multiprocessing import shared_memory

import numpy as np

# ctl slots -------------------------------------------------------------- callback writes
PERIODS = 0  # process cycles run
PLAY_FRAME = 1  # song frame at the start of the latest period
ROLLING = 2  # 1 while the playhead moves
TARGET_FRAME = 3  # song frame of the latest start/locate/sync request
TARGET_SEQ = 4  # bumped with every TARGET_FRAME
STARTS = 5  # stopped -> rolling transitions
UNDERRUNS = 6  # times the audio ran dry after it had played (not pre-roll)
STARVED_PERIODS = 7  # rolling periods with any sample missing (pre-roll included)
XRUNS = 8  # written by the xrun callback (JACK's notification thread)
MIDI_W = 9  # MIDI ring write index (monotonic)
MIDI_OVERFLOW = 10
TP_SEQ = 11  # seqlock for tp[]
LIVE_W = 12  # live-input ring write index (frames, monotonic)
SYNC_WAITS = 13  # slow-sync calls answered "not ready"
RATE_SLOT = 14  # server sample rate (Hz)
PERIOD = 15  # server period (frames)
LOCATES = 16  # playhead jumps seen by the callback
CB_MAX_US = 17  # longest process callback, microseconds
CB_SLOW = 18  # callbacks that took more than half a period
CB_ENTRY_MAX = 19  # most frames of a period gone before the callback's Python began (GIL, wake-up)
# ------------------------------------------------------------------------ worker writes
VALID_START = 20
VALID_END = 21
MODE = 22  # 0: follow JACK transport frames; 1: external clock (MIDI clock / free) offset
EXT_ROLLING = 23
EXT_OFFSET = 24  # song frame = jack frame time + offset (external clocks)
WORKER_READY = 25
MIDI_R = 26  # MIDI ring read index
STREAM = 27  # stream counter (new stream = engine.start)
LOOKAHEAD_FRAMES = 28  # the lookahead in use (server frames): the latency the ports report
# ------------------------------------------------------------------------ callback writes (plugin)
FREEWHEEL = 29  # 1 while the host renders offline (LV2 freewheel): the plugin waits for the worker
# ------------------------------------------------------------------------ main writes
QUIT = 30
RELOAD_SEQ = 31
REF_SEQ = 32  # seqlock for the two below (odd while the main thread writes)
REF_FRAME = 33  # a JACK frame time ...
REF_MONO_NS = 34  # ... and its CLOCK_MONOTONIC instant, ns
# ------------------------------------------------------------------------ callback writes (plugin)
HOST_LATENCY = 35  # the latency (frames) the LV2 plugin reports and plays behind the host's frame
FREEWHEEL_TIMEOUTS = 36  # freewheel cycles the plugin stopped waiting for the worker (10 s each)
# ------------------------------------------------------------------------ worker writes (plugin)
FREEWHEEL_READY = 37  # the TARGET_SEQ an export stream was begun for (-1: none); the plugin waits for it
# ------------------------------------------------------------------------ callback writes (jam)
REPEATED_CYCLES = 38  # periods JACK ran again at the frame time of the one before (after a late client)
MIDI_REPEATS = 39  # MIDI events such a period delivered a second time: not posted again
N_CTL = 40
LAYOUT_VERSION = 1  # bumped when the block's layout changes: bridge/lv2/jamstream.c mirrors it

# tp slots
TP_STATE, TP_FRAME, TP_JACK_TIME, TP_BBT, TP_BAR, TP_BEAT, TP_TICK, TP_TPB, TP_BPB, TP_BEAT_TYPE, TP_BPM, TP_RATE = (
    range(12)
)
N_TP = 16

MIDI_BYTES = 16


def _pow2(n: int) -> int:
    return 1 << max(10, int(n - 1).bit_length())


class Shared:
    """Numpy views over one shared-memory block; create in the parent, attach in the worker."""

    def __init__(self, capacity: int, midi_slots: int = 4096, live_capacity: int = 1 << 19, name: str | None = None):
        self.capacity = _pow2(capacity)
        self.mask = self.capacity - 1
        self.midi_slots = _pow2(midi_slots)
        self.live_capacity = _pow2(live_capacity)
        layout = [
            ("ctl", np.int64, (N_CTL,)),
            ("tp", np.float64, (N_TP,)),
            ("midi_time", np.int64, (self.midi_slots,)),
            ("midi_song", np.int64, (self.midi_slots,)),
            ("midi_len", np.int32, (self.midi_slots,)),
            ("midi_data", np.uint8, (self.midi_slots, MIDI_BYTES)),
            ("audio", np.float32, (2, self.capacity)),
            ("live", np.float32, (2, self.live_capacity)),
        ]
        size = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for _, dt, shape in layout)
        self.owner = name is None
        self.shm = (
            shared_memory.SharedMemory(create=True, size=size) if self.owner else shared_memory.SharedMemory(name=name)
        )
        offset = 0
        for field, dt, shape in layout:
            arr = np.ndarray(shape, dtype=dt, buffer=self.shm.buf, offset=offset)
            if self.owner:
                arr.fill(0)
            setattr(self, field, arr)
            offset += arr.nbytes

    @property
    def name(self) -> str:
        return self.shm.name

    def spec(self) -> dict:
        """What a worker needs to attach: pass to `Shared(**spec)`."""
        return {
            "capacity": self.capacity,
            "midi_slots": self.midi_slots,
            "live_capacity": self.live_capacity,
            "name": self.name,
        }

    # -------------------------------------------------------------- worker side
    def transport(self) -> np.ndarray | None:
        """A consistent copy of tp[] (None if the callback kept writing)."""
        for _ in range(100):
            s0 = self.ctl[TP_SEQ]
            if s0 & 1:
                continue
            snap = self.tp.copy()
            if self.ctl[TP_SEQ] == s0:
                return snap
        return None

    def time_ref(self) -> tuple[int, int] | None:
        """(JACK frame time, CLOCK_MONOTONIC ns of it) as the main thread last posted it;
        None before the first post or if the main thread kept writing."""
        for _ in range(100):
            s0 = int(self.ctl[REF_SEQ])
            if s0 & 1:
                continue
            frame, mono = int(self.ctl[REF_FRAME]), int(self.ctl[REF_MONO_NS])
            if int(self.ctl[REF_SEQ]) == s0:
                return (frame, mono) if s0 > 0 else None
        return None

    def drain_midi(self):
        """Yield (jack frame time, song frame, bytes) for events the callback posted."""
        r, w = int(self.ctl[MIDI_R]), int(self.ctl[MIDI_W])
        if w - r > self.midi_slots:  # cannot happen unless the callback overran; skip ahead
            r = w - self.midi_slots
        m = self.midi_slots - 1
        while r < w:
            i = r & m
            n = int(self.midi_len[i])
            yield int(self.midi_time[i]), int(self.midi_song[i]), bytes(self.midi_data[i, : min(n, MIDI_BYTES)]), n
            r += 1
            self.ctl[MIDI_R] = r

    def write_audio(self, start_frame: int, audio: np.ndarray) -> None:
        """Copy `audio` [2, n] to song frames start_frame.. (no bookkeeping)."""
        n = audio.shape[1]
        i = start_frame & self.mask
        k = min(n, self.capacity - i)
        self.audio[:, i : i + k] = audio[:, :k]
        if k < n:
            self.audio[:, : n - k] = audio[:, k:]

    def read_audio(self, start_frame: int, n: int) -> np.ndarray:
        """A copy of song frames start_frame..+n as the ring holds them (valid or not)."""
        idx = (start_frame + np.arange(n)) & self.mask
        return self.audio[:, idx].copy()

    def read_live(self, frames: int) -> np.ndarray:
        """The last `frames` frames of the live input (a copy)."""
        w = int(self.ctl[LIVE_W])
        frames = min(frames, self.live_capacity, w)
        idx = np.arange(w - frames, w) & (self.live_capacity - 1)
        return self.live[:, idx].copy()

    # -------------------------------------------------------------- main side
    def post_time_ref(self, frame: int, mono_ns: int) -> None:
        """Publish that JACK frame time `frame` happened at CLOCK_MONOTONIC `mono_ns`."""
        self.ctl[REF_SEQ] += 1
        self.ctl[REF_FRAME] = frame
        self.ctl[REF_MONO_NS] = mono_ns
        self.ctl[REF_SEQ] += 1

    def close(self) -> None:
        for field in ("ctl", "tp", "midi_time", "midi_song", "midi_len", "midi_data", "audio", "live"):
            setattr(self, field, None)
        self.shm.close()
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
