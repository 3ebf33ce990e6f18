"""The generator process: runs the Engine ahead of the playhead and fills the ring.

torch lives here, in a separate process, so a long tensor op holding this process's
GIL can never stall the JACK callback (DESIGN.md, real-time model). The worker reads
what the callback posts in shared memory (bridge/live/ring.py) - transport, MIDI, the
playhead - and answers with audio placed at song frames. This module is the scheduling
loop; its helpers each have a module: the clock source (sources.py), the models and
engines (models.py), preset reload (reload.py), the live-input slot (live_input.py) and
the status it reports (status.py).

- **Streams.** A start, locate or slow-sync request the ring does not already cover
  starts a new engine stream at that song time; the ring's valid range is re-marked
  first so the callback never plays stale audio. So does a switch of clock source
  (another song timeline).
- **Pacing.** After the warm-up it measures how long a frame takes to generate and picks
  the piece length and lookahead from that (bridge/jam/pacing.py) unless the preset
  gives them; an auto lookahead grows when a piece lands later than a period before the
  playhead. Both are published (ctl[LOOKAHEAD_FRAMES], the status).
- **Just in time.** It generates each piece when the playhead reaches the piece's
  decision time (its first audio sample - lookahead), never earlier: everything the
  callback posted up to that song time has been drained by then and nothing later is
  applied, so the live take equals a render of the same MIDI with the same pacing, and
  a CC is heard lookahead + at most one piece later. Stopped, the playhead stands at the
  stop/locate position, so the same rule prepares the pieces the start needs (what lets
  the slow-sync callback report ready). If the next piece could not be ready in time
  (measured speed) it rejoins the grid further on instead of playing late.
- **Tempo.** When the clock's map changes while rolling (JACK BBT, MIDI clock, Link),
  the queued pieces that can still be made again in time (those starting at least one
  piece's generation time past the playhead) are dropped (`Engine.rewind`) and made again
  on the new grid from the generator state before them; the ring's valid end is pulled
  back there and the new audio crossfades over the old for 5 ms.
- **MIDI.** CCs and program changes go to the engine stamped with the song time at
  which they arrived; MIDI clock bytes go to the MidiClockFollower.
- **Reload.** SIGHUP (relayed by the parent) or a program change swaps the engine at the
  next piece, carrying the LM context over, so the audio does not stop.
- **Freewheel.** Under the LV2 plugin a host's export runs faster or slower than real
  time and the plugin waits for the ring (ctl[FREEWHEEL]). Then the worker is a bounce:
  `jamstream render`'s pacing (`offline_pacing`), no rejoining, no lookahead growing, and each stream
  starts at the host's song frame with the same seed, so two exports of one session are
  identical whatever this machine's speed.
- **Macros.** The plugin's 8 automatable knobs arrive as 0xF4 events; each moves the
  preset's k-th CC binding (bridge/live/macros.py).
- **Memory.** Between pieces, every 10 s, the heap's free pages go back to the kernel
  (bridge/live/heap.py): the RSS a long set gains is glibc's fragmentation, not a leak.
- **Rates.** Audio is made at 48 kHz; at another server rate a pedalboard
  StreamResampler per stream converts it before it enters the ring.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.live import ring as R
from bridge.live.heap import process_trimmer
from bridge.live.live_input import LiveInputStyle, with_live_slot
from bridge.live.macros import MACRO_STATUS, macro_messages
from bridge.live.models import LiveModels
from bridge.live.reload import PresetReload
from bridge.live.sources import JACK_STARTING, ClockSources
from bridge.live.status import worker_status

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 1920
REWIND_FADE = 240  # 5 ms at 48 kHz
REPACE_WINDOW = 30  # auto pacing is re-chosen from the last this many pieces made on time ...
REPACE_EVERY = 15  # ... every this many
ON_TIME_S = 0.012  # a piece begun within this of its decision time was made on schedule
GROW_COOLDOWN = 8  # pieces after growing the lookahead before a late one grows it again
FLOOR_MEMORY = 400  # pieces (about a minute) a grown lookahead is kept after the latest late piece:
# this VM's speed swings 1.5-2x over tens of seconds (the same warm-up: 25 or 47 ms a frame)


FREEWHEEL_STREAM = 1  # the stream index (seed) every freewheel stream starts with


@dataclass
class WorkerConfig:
    preset: str
    lm: str | None = None
    codec: str | None = None
    style: str | None = None
    adapter: str | None = None
    speculative: bool = False
    draft: str | None = None
    seed: int = 0
    bpm: float | None = None
    clock: str = "auto"  # auto | jack | midi | link | free
    link: bool = False  # join an Ableton Link session (auto: Link drives when nothing else moves)
    metronome: bool = False
    threads: int = 1
    live_input: bool = False
    live_cc: int = 22


class RateWriter:
    """48 kHz blocks -> server-rate frames; contiguous blocks share one StreamResampler."""

    def __init__(self, rate: int):
        self.rate = rate
        self._rs = None
        if rate != SAMPLE_RATE:
            from pedalboard.io import StreamResampler

            self._rs = StreamResampler(SAMPLE_RATE, rate, 2)
        self._next_in: int | None = None
        self._out = 0

    def frame(self, sample48: int) -> int:
        return sample48 if self._rs is None else int(round(sample48 * self.rate / SAMPLE_RATE))

    def reset(self) -> None:
        self._next_in = None

    def convert(self, start48: int, audio: np.ndarray) -> tuple[int, np.ndarray]:
        if self._rs is None:
            return start48, audio
        if self._next_in != start48:
            self._rs.reset()
            self._out = self.frame(start48)
        out = np.ascontiguousarray(self._rs.process(np.ascontiguousarray(audio, dtype=np.float32)), dtype=np.float32)
        pos = self._out
        self._out += out.shape[1]
        self._next_in = start48 + audio.shape[1]
        return pos, out


class Worker:
    """The scheduling loop over one attached `Shared` block; `run()` until ctl[QUIT]."""

    def __init__(self, cfg: WorkerConfig, spec: dict | R.Shared, status_q, models: LiveModels | None = None):
        """`models`: already loaded ones to share (`jamstream serve` loads each stack once
        for all its plugin instances); else this worker loads its own."""
        from bridge.jam.presets import find_preset

        self.cfg = cfg
        self.sh = spec if isinstance(spec, R.Shared) else R.Shared(**spec)  # serve passes its block
        self.ctl = self.sh.ctl
        self.status_q = status_q
        self.rate = int(self.ctl[R.RATE_SLOT]) or SAMPLE_RATE
        self.writer = RateWriter(self.rate)
        self.preset = with_live_slot(find_preset(cfg.preset), cfg.live_input, cfg.live_cc)
        self.sources = ClockSources(
            self.sh, cfg.clock, cfg.bpm or self.preset.bpm, self.preset.meter, self.rate, cfg.link
        )
        self.clock = self.sources.clock
        self.models = models if models is not None else LiveModels(cfg, self.preset)
        self.freewheel = False
        self._host_latency = 0
        self.ctl[R.FREEWHEEL_READY] = -1
        self.seconds_per_frame = self.models.warm_up(self.preset)
        self.engine = self.models.engine(self.preset, self.clock)
        self._set_pacing(self._measured_pacing(self.preset))
        self.live_style = (
            LiveInputStyle(self.sh, self.models.style_model) if cfg.live_input and not cfg.metronome else None
        )
        self.stream_live = False
        self.stream_pieces = 0
        self._seen_changes = self.clock.changes
        self._crossfade_at: int | None = None  # ring frame where new audio replaces old (a rewind)
        self.margins: deque[float] = deque(maxlen=100)  # seconds a piece landed ahead of the playhead
        self.late_pieces = 0
        self.last_rewind: tuple[int, int, int] | None = None  # (playhead, ring frame, clock re-anchors) at the latest
        self.piece_gen: deque[float] = deque(maxlen=200)  # seconds each recent piece took (the status's piece_ms)
        self._timed: deque[float] = deque(maxlen=REPACE_WINDOW)  # seconds per frame of on-time pieces
        self._floor_s = 0.0  # an auto lookahead once grown never shrinks below this
        self._grow_after = 0  # piece count before which a late piece does not grow it again
        self._last_late = -FLOOR_MEMORY  # piece count at the latest late piece
        self._target_seq = -1  # act on whatever the callback posted while we loaded
        self.reload = PresetReload(self.models, str(self.preset.path), int(self.ctl[R.RELOAD_SEQ]))
        self.heap = process_trimmer()  # freed pages back to the kernel in idle time (heap.py)
        self._prepared_changes = -1
        self._last_status = 0.0
        self.max_gen = 0.0
        self.last_weights: dict[str, float] = self.engine.controls.style_weights()
        # (first, end) ring frame, slot weights, bpm and whether it ends its chunk, of the
        # latest pieces: lets a tool time when a CC's mix or a tempo is first heard
        # (scripts/soak_jam.py, bench latency) without listening for style
        self.chunk_log: deque[tuple[int, int, dict[str, float], float, bool]] = deque(maxlen=48)

    # ------------------------------------------------------------------ helpers
    def seconds(self, frame: int) -> float:
        return frame / self.rate

    def period_s(self) -> float:
        return int(self.ctl[R.PERIOD] or 256) / self.rate

    def _measured_pacing(self, preset):
        from bridge.jam.pacing import live_pacing

        spf = self.engine.stats.seconds_per_frame() if self.engine.stats.frames >= 50 else self.seconds_per_frame
        return live_pacing(preset, spf, self.period_s())

    def _pacing_now(self):
        """Exporting, `jamstream render`'s pacing (the preset's, else 3-frame pieces and no
        lookahead: the plugin posts the end of what its cycle needs as the playhead, so each
        piece is due exactly when it is needed); live, the measured one."""
        from bridge.jam.pacing import offline_pacing

        return offline_pacing(self.preset) if self.freewheel else self._measured_pacing(self.preset)

    def _set_pacing(self, pacing) -> None:
        """Pace by `pacing`; under the LV2 plugin, which plays the ring its reported latency
        behind the host (and gets automation that much early), decide at least that far
        ahead - less one period - so automation is applied where the host put it."""
        from bridge.jam.pacing import Pacing

        self._host_latency = int(self.ctl[R.HOST_LATENCY])
        if self._host_latency > 0 and not self.freewheel:
            floor = max(0, self._host_latency - int(self.ctl[R.PERIOD] or 256)) / self.rate
            if pacing.lookahead_s < floor:
                pacing = Pacing(pacing.piece_frames, floor)
        self.engine.set_pacing(pacing)
        self.ctl[R.LOOKAHEAD_FRAMES] = int(round(pacing.lookahead_s * self.rate))

    def _mark(self, frame: int, new_stream: bool = True) -> None:
        """Empty the ring's valid range and start it at `frame` (before writing there)."""
        self.ctl[R.VALID_END] = self.ctl[R.VALID_START]
        self.ctl[R.VALID_START] = frame
        self.ctl[R.VALID_END] = frame
        if new_stream:
            self.writer.reset()

    def _covers(self, frame: int) -> bool:
        vs, ve = int(self.ctl[R.VALID_START]), int(self.ctl[R.VALID_END])
        return self.stream_live and vs <= frame < ve - int(self.ctl[R.PERIOD] or 256)

    def _need(self) -> float:
        """How long before its audio starts a piece must be begun to be ready in time, at
        the measured speed (the warm-up's before the first pieces), + two periods."""
        spf = self.engine.stats.seconds_per_frame() or self.seconds_per_frame or 0.04
        return self.engine.piece_frames * spf + 2 * self.period_s() + 0.01

    def _restart(self, frame: int, rolling: bool = False) -> None:
        """A new stream at `frame`. Live and rolling, a lookahead ahead (mid-bar is fine: the
        grid picks up at the next boundary), so its first piece is decided now and lands with
        the whole lookahead to spare - a stream that began closer would have to catch up piece
        by piece, each at risk, which on a machine near real time it barely does. Exporting,
        at the host's song frame (the playhead + `HOST_LATENCY`, which the plugin posts as 0
        then), with effects reset and the same stream seed every time, whatever played before."""
        if self.freewheel:
            self.engine.reset_effects()
            host = max(0, frame + int(self.ctl[R.HOST_LATENCY]))
            self.engine.start(self.seconds(host), stream=FREEWHEEL_STREAM)
        else:
            ahead = min(self.engine.lookahead_s + 0.06, 10.0) if rolling else 0.0  # + the held frame, rounding
            self.engine.start(max(0.0, self.seconds(frame) + ahead))
        self.stream_live = True
        self.stream_pieces = 0
        self._mark(self.writer.frame(self.engine.piece_start_sample()))
        self.ctl[R.STREAM] += 1

    def _invalidate(self) -> None:
        """Forget the ring's audio: it was placed by another clock (source switched)."""
        self.ctl[R.VALID_END] = self.ctl[R.VALID_START]
        self.stream_live = False

    def _follow_clock_change(self, playhead: int) -> None:
        """The tempo map moved while rolling: every queued piece that can still be made again
        before the playhead reaches it is, on the new grid (none, when the change does not
        move them). That is all of them but the one playing: at most a lookahead plays on
        at the old tempo."""
        cut = self.engine.rewind(self.seconds(playhead) + self._need())
        if cut is None:
            return
        frame = self.writer.frame(cut)
        self.last_rewind = (playhead, int(frame), self.clock.reanchors)
        if int(self.ctl[R.VALID_END]) > frame:
            self.ctl[R.VALID_END] = max(int(self.ctl[R.VALID_START]), frame)
            self._crossfade_at = frame

    # ------------------------------------------------------------------ MIDI, reload
    def _drain_midi(self) -> None:
        for frame_time, song, data, n in self.sh.drain_midi():
            if not data:
                continue
            status = data[0]
            if status == MACRO_STATUS:
                data = macro_messages(self.preset, data)
                if not data:
                    continue
            elif (status >= 0xF8 or status == 0xF2) and self.sources.midi_clock.feed(status, data[1:], frame_time):
                continue
            if n > R.MIDI_BYTES:
                data = data[:-1]  # a cut sysex: Controls counts it as malformed
            self.engine.feed_midi(data, max(0.0, self.seconds(song)))

    def _maybe_reload(self) -> None:
        seq = int(self.ctl[R.RELOAD_SEQ])
        if not self.reload.due(seq, self.engine):
            return
        swapped = self.reload.reload(seq, self.engine, self.clock, keep_stream=self.stream_live)
        if swapped is None:
            return
        self.engine, self.preset, _ = swapped
        self._set_pacing(self._measured_pacing(self.preset))

    # ------------------------------------------------------------------ generation
    def _due(self, rolling: bool, playhead: float) -> bool:
        """Whether to generate the next piece now: its decision time has come (rejoining the
        grid further on first if it could not be ready in time)."""
        if not self.stream_live:
            return False
        engine = self.engine
        decision = engine.decision_sample()
        if decision is None or round(playhead * SAMPLE_RATE) < decision:
            return False
        if rolling and not self.freewheel:  # freewheeling, the plugin waits for every piece
            need = self._need()
            end = engine.piece_start_sample() + engine.piece_frames * FRAME_SAMPLES
            # The ring is time-addressed, so a piece that arrives late still plays in time
            # from the playhead on (the callback fades over the missing head). Skip to the
            # grid further on only when even its tail could not be ready.
            if end / SAMPLE_RATE <= playhead + need:
                engine.rejoin(playhead, max(need, engine.lookahead_s))
                self._mark(self.writer.frame(engine.piece_start_sample()))
        return engine.peek() is not None

    def _generate(self, rolling: bool) -> None:
        """The next piece, into the ring as soon as it exists."""
        if self.live_style is not None:
            self.live_style.update(self.engine, self.rate)
        begun = int(self.ctl[R.PLAY_FRAME])
        late_start = self.seconds(begun) - self.engine.decision_time()
        block = self.engine.next_piece()
        first = self._write_block(block)
        self.max_gen = max(self.max_gen, block.gen_seconds)
        self.piece_gen.append(block.gen_seconds)
        self.last_weights = block.weights
        weights = {k: round(v, 3) for k, v in block.weights.items()}
        end = int(self.writer.frame(block.end_sample))
        ends_chunk = block.end_sample == (block.chunk.end_frame - 1) * FRAME_SAMPLES
        self.chunk_log.append((first, end, weights, round(block.bpm, 3), ends_chunk))
        self.stream_pieces += 1
        if rolling and not self.freewheel:
            self._check_margin(block, first, int(self.ctl[R.PLAY_FRAME]), late_start)
        else:
            self._prepared_changes = self.clock.changes
        if self.reload.program_changed(self.engine):
            self._maybe_reload()

    def _check_margin(self, block, first: int, playhead: int, late_start: float) -> None:
        """How far ahead of the playhead the piece landed. For a piece begun on schedule (at
        its decision time - not one of the pieces a new stream makes to catch up), an auto
        lookahead grows when that was under one period (the callback had to, or nearly had
        to, fade), and the auto pacing is re-chosen from such pieces now and then: the
        warm-up's speed is only a first guess at what the machine gives while JACK runs."""
        margin = (first - playhead) / self.rate
        self.margins.append(margin)
        period = self.period_s()
        if margin < 0:
            self.late_pieces += 1
        if self.preset.lookahead_ms is not None:
            return
        from bridge.jam.pacing import grown, live_pacing

        pieces = self.engine.stats.pieces
        if margin < period:  # late: grow, then give the new lookahead a few pieces to show itself
            if pieces >= self._grow_after:
                self._set_pacing(grown(self.engine.pacing, period - margin))
                self._floor_s = self.engine.lookahead_s  # not below what was once too little ...
                self._grow_after = pieces + GROW_COOLDOWN
            self._last_late = pieces
            return
        if late_start > ON_TIME_S:
            return
        n = (block.end_sample - block.start_sample) // FRAME_SAMPLES
        self._timed.append(block.gen_seconds / max(1, n))
        if len(self._timed) == REPACE_WINDOW and pieces % REPACE_EVERY == 0:
            timed = np.asarray(self._timed)
            pacing = live_pacing(self.preset, float(timed.mean()), period, float(np.percentile(timed, 95)))
            if pacing.lookahead_s < self._floor_s and pieces - self._last_late < FLOOR_MEMORY:  # ... for a while
                pacing = type(pacing)(pacing.piece_frames, self._floor_s)
            self._set_pacing(pacing)

    def _write_block(self, block) -> int:
        """Place a piece at its ring frame (returned); after a rewind, crossfade it in over
        the old audio it replaces."""
        start, audio = self.writer.convert(block.start_sample, block.audio)
        ve = int(self.ctl[R.VALID_END])
        if start != ve:  # not contiguous (first block after a mark): start the range here
            self._mark(start, new_stream=False)
        if self._crossfade_at == start:
            audio = self._crossfade(start, audio)
        self._crossfade_at = None
        end = start + audio.shape[1]
        low = end - self.sh.capacity + 1
        if int(self.ctl[R.VALID_START]) < low:
            self.ctl[R.VALID_START] = low
        self.sh.write_audio(start, audio)
        self.ctl[R.VALID_END] = end
        return start

    def _crossfade(self, start: int, audio: np.ndarray) -> np.ndarray:
        """The first 5 ms of `audio` faded in over what the ring held there (a rewound piece:
        its decoder context is continuous, but the effects' state ran on past this point)."""
        n = min(REWIND_FADE, audio.shape[1])
        old = self.sh.read_audio(start, n)
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        audio = audio.copy()
        audio[:, :n] = old * (1.0 - ramp) + audio[:, :n] * ramp
        return audio

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.ctl[R.WORKER_READY] = 1
        self.status_q.put({"ready": True, "pacing": self.engine.pacing.describe()})
        while self.ctl[R.QUIT] == 0:
            idle = self.step()
            if idle:
                self.heap.maybe(time.monotonic())
                time.sleep(idle)

    def step(self) -> float:
        """One pass: read what the callback posted, follow the clock, (re)start streams,
        generate what is due, report. Returns how long to sleep before the next pass (0
        after generating a chunk)."""
        ctl = self.ctl
        rate = int(ctl[R.RATE_SLOT])
        if rate and rate != self.rate:  # the server came back at another rate
            self.rate = rate
            self.writer = RateWriter(rate)
            self.sources.set_rate(rate)
            self.stream_live = False
        tp = self.sh.transport()
        if tp is None:
            return 0.001
        # the playhead first: every MIDI event stamped up to it is in the ring by now
        seq = int(ctl[R.TARGET_SEQ])
        playhead = int(ctl[R.PLAY_FRAME])
        rolling = bool(ctl[R.ROLLING])
        self._drain_midi()
        self._maybe_reload()
        self._follow_freewheel()
        if int(ctl[R.HOST_LATENCY]) != self._host_latency:  # the plugin posts its latency (0 exporting)
            self._set_pacing(self._pacing_now())
        if self.sources.follow(tp, self.cfg.bpm or self.preset.bpm):
            self._invalidate()
        if self.clock.changes != self._seen_changes:
            self._seen_changes = self.clock.changes
            if rolling and self.stream_live:
                self._follow_clock_change(playhead)
        if seq != self._target_seq:
            posted_before_us = self._target_seq < 0
            self._target_seq = seq
            target = int(ctl[R.TARGET_FRAME])
            if rolling and posted_before_us and not self.freewheel:  # a restarted worker: the playhead moved on
                target = max(target, playhead)
            if self.freewheel or not self._covers(target):  # an export restarts at every locate: its
                self._restart(target, rolling)  # stream must begin where the export does, not run on
            if self.freewheel:
                ctl[R.FREEWHEEL_READY] = seq  # the waiting plugin may play this stream now
        elif not self.stream_live and (rolling or int(tp[R.TP_STATE]) == JACK_STARTING):
            self._restart(playhead, rolling)
        if (
            not rolling
            and self.stream_live
            and self.stream_pieces > 0
            and int(tp[R.TP_STATE]) != JACK_STARTING
            and self._prepared_changes != self.clock.changes
        ):
            self._restart(playhead)  # the tempo map moved since the start was prepared: prepare again
        self.clock.set_transport(rolling, self.seconds(playhead))
        worked = self._due(rolling, self.seconds(playhead))
        if worked:
            self._generate(rolling)
        self._post_status(playhead, rolling)
        return 0.0 if worked else 0.002

    def _follow_freewheel(self) -> None:
        """The host began or ended an export: pace for it (or for live again) and start the
        next stream afresh."""
        freewheel = bool(self.ctl[R.FREEWHEEL])
        if freewheel == self.freewheel:
            return
        self.freewheel = freewheel
        self.ctl[R.FREEWHEEL_READY] = -1
        self._set_pacing(self._pacing_now())
        self._invalidate()
        self._target_seq = -2  # whatever the playhead is doing, begin where it is

    def _post_status(self, playhead: int, rolling: bool) -> None:
        now = time.monotonic()
        if now - self._last_status < 0.25:
            return
        self._last_status = now
        try:
            self.status_q.put_nowait(worker_status(self, playhead, rolling))
        except Exception:
            pass


def worker_main(cfg: WorkerConfig, spec: dict, status_q) -> None:
    """Process entry point: the parent handles signals and tells us to quit via ctl[QUIT]."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from model.errors import JamstreamError

    try:
        Worker(cfg, spec, status_q).run()
    except JamstreamError as exc:
        status_q.put({"fatal": str(exc), "bad_input": True})
    except BaseException:  # a bug: the parent prints it and exits
        status_q.put({"fatal": traceback.format_exc(), "bad_input": False})
