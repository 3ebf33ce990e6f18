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
- **Ahead.** While rolling it generates the next chunk once the playhead reaches its
  decision time (start - lookahead) less 1.5x the time generating it is expected to
  take at the measured real-time factor - just in time, so a CC reaches the audio
  within one chunk + lookahead when the CPU keeps up; while stopped it prepares the first chunk at the stop/locate
  position, which is what lets the slow-sync callback report ready. If the next chunk
  could not be ready in time (measured real-time factor) it rejoins the grid further on
  instead of playing late.
- **MIDI.** CCs and program changes go to the engine stamped with the song time at
  which they arrived; MIDI clock bytes go to the MidiClockFollower.
- **Reload.** SIGHUP (relayed by the parent) or a program change swaps the engine at the
  next chunk boundary, carrying the LM context over, so the audio does not stop.
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
from bridge.live.live_input import LiveInputStyle, with_live_slot
from bridge.live.models import LiveModels
from bridge.live.reload import PresetReload
from bridge.live.sources import JACK_STARTING, ClockSources
from bridge.live.status import worker_status

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 1920


@dataclass
class WorkerConfig:
    preset: str
    lm: str | None = None
    codec: str | None = None
    style: str | None = None
    adapter: str | None = None
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

    def __init__(self, cfg: WorkerConfig, spec: dict, status_q):
        from bridge.jam.presets import find_preset

        self.cfg = cfg
        self.sh = R.Shared(**spec)
        self.ctl = self.sh.ctl
        self.status_q = status_q
        self.rate = int(self.ctl[R.RATE_SLOT]) or SAMPLE_RATE
        self.writer = RateWriter(self.rate)
        self.preset = with_live_slot(find_preset(cfg.preset), cfg.live_input, cfg.live_cc)
        self.sources = ClockSources(
            self.sh, cfg.clock, cfg.bpm or self.preset.bpm, self.preset.meter, self.rate, cfg.link
        )
        self.clock = self.sources.clock
        self.models = LiveModels(cfg, self.preset)
        self.models.warm_up(self.preset)
        self.engine = self.models.engine(self.preset, self.clock)
        self.live_style = (
            LiveInputStyle(self.sh, self.models.style_model) if cfg.live_input and not cfg.metronome else None
        )
        self.stream_live = False
        self.stream_chunks = 0
        self._next_start: float | None = None
        self._last_chunk_s = 2.0
        from bridge.jam.engine import PIECE_FRAMES  # here, not at import: the engine brings torch

        self._piece_s = PIECE_FRAMES / 25.0
        self._target_seq = -1  # act on whatever the callback posted while we loaded
        self.reload = PresetReload(self.models, str(self.preset.path), int(self.ctl[R.RELOAD_SEQ]))
        self._prepared_changes = -1
        self._last_status = 0.0
        self.max_gen = 0.0
        self.last_weights: dict[str, float] = self.engine.controls.style_weights()
        # (first, end) ring frame and slot weights of the latest chunks: lets a tool time
        # when a CC's mix is first heard (scripts/soak_jam.py) without listening for style
        self.chunk_log: deque[tuple[int, int, dict[str, float]]] = deque(maxlen=24)

    # ------------------------------------------------------------------ helpers
    def seconds(self, frame: int) -> float:
        return frame / self.rate

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

    def _first_piece_s(self) -> float:
        return min(self._last_chunk_s, self._piece_s)

    def _margin(self, audio_seconds: float | None = None) -> float:
        """How far ahead of a moving playhead a chunk of `audio_seconds` (default: the
        last chunk's length) must start to be ready in time, at the measured real-time
        factor (2x assumed before the first chunk)."""
        rtf = self.engine.stats.rtf() or 2.0
        d = self._last_chunk_s if audio_seconds is None else audio_seconds
        return d / rtf + 2 * int(self.ctl[R.PERIOD] or 256) / self.rate + 0.01

    def _restart(self, frame: int, rolling: bool = False) -> None:
        """A new stream at `frame`; while rolling, from where its first chunk can be ready
        (mid-bar is fine: the grid picks up at the next boundary), not a whole chunk later."""
        seconds = max(
            0.0, self.seconds(frame) + (min(self._margin(self._first_piece_s()) + 0.06, 10.0) if rolling else 0.0)
        )  # + held frame, rounding
        self.engine.start(seconds)
        self.stream_live = True
        self.stream_chunks = 0
        chunk = self.engine.peek()
        self._next_start = chunk.start_seconds()
        self._mark(self.writer.frame(chunk.start_sample - FRAME_SAMPLES))
        self.ctl[R.STREAM] += 1

    def _invalidate(self) -> None:
        """Forget the ring's audio: it was placed by another clock (source switched)."""
        self.ctl[R.VALID_END] = self.ctl[R.VALID_START]
        self.stream_live = False
        self._next_start = None

    # ------------------------------------------------------------------ MIDI, reload
    def _drain_midi(self) -> None:
        for frame_time, song, data, n in self.sh.drain_midi():
            if not data:
                continue
            status = data[0]
            if (status >= 0xF8 or status == 0xF2) and self.sources.midi_clock.feed(status, data[1:], frame_time):
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
        self.engine, self.preset, start = swapped
        if start is not None:
            self._next_start = start

    # ------------------------------------------------------------------ generation
    def _due(self, rolling: bool, playhead: float) -> bool:
        """Whether to generate the next chunk now (rejoining the grid further on first if it
        could not be ready in time)."""
        if not self.stream_live:
            return False
        engine = self.engine
        # Peek (which fixes a chunk's length and timing from the clock) only when it is
        # time to generate it, so a tempo change reaches the very next chunk.
        start = self._next_start
        if start is None:
            return False
        if rolling:
            # Just in time: start when the chunk's decision time (start - lookahead) is
            # reached, or earlier by what generating its first piece is expected to take
            # (x1.5); the later pieces are generated faster than they play.
            if start - playhead > engine.lookahead_s + 1.5 * self._margin(self._first_piece_s()):
                return False
            chunk = engine.peek()
            need = self._margin(chunk.n_frames / 25.0) if chunk is not None else 0.0
            # The ring is time-addressed, so a chunk that arrives late still plays in time
            # from the playhead on (the callback fades over the missing head). Skip to the
            # grid further on only when even its tail could not be ready.
            if chunk is not None and chunk.end_frame / 25.0 <= playhead + need:
                chunk = engine.rejoin(playhead, need)
                self._mark(self.writer.frame(chunk.start_sample - FRAME_SAMPLES))
        elif self.stream_chunks > 0:
            return False  # stopped: the first chunk is ready for the start
        return engine.peek() is not None

    def _generate(self, rolling: bool) -> None:
        """The next chunk, piece by piece into the ring."""
        if self.live_style is not None:
            self.live_style.update(self.engine, self.rate)
        gen = 0.0
        for block in self.engine.next_pieces():  # each piece reaches the ring as soon as it exists
            gen += block.gen_seconds
            self._write_block(block)
        self._next_start = block.chunk.end_frame / 25.0
        self._last_chunk_s = block.chunk.n_frames / 25.0
        self.max_gen = max(self.max_gen, gen)
        self.last_weights = block.weights
        c = block.chunk
        self.chunk_log.append(
            (
                int(self.writer.frame(c.start_sample - FRAME_SAMPLES)),
                int(self.writer.frame(c.start_sample - FRAME_SAMPLES + c.n_samples)),
                {k: round(v, 3) for k, v in block.weights.items()},
            )
        )
        self.stream_chunks += 1
        if not rolling:
            self._prepared_changes = self.clock.changes
        if self.reload.program_changed(self.engine):
            self._maybe_reload()

    def _write_block(self, block) -> None:
        start, audio = self.writer.convert(block.start_sample, block.audio)
        ve = int(self.ctl[R.VALID_END])
        if start != ve:  # not contiguous (first block after a mark): start the range here
            self._mark(start, new_stream=False)
        end = start + audio.shape[1]
        low = end - self.sh.capacity + 1
        if int(self.ctl[R.VALID_START]) < low:
            self.ctl[R.VALID_START] = low
        self.sh.write_audio(start, audio)
        self.ctl[R.VALID_END] = end

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.ctl[R.WORKER_READY] = 1
        self.status_q.put({"ready": True})
        while self.ctl[R.QUIT] == 0:
            idle = self.step()
            if idle:
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
        self._drain_midi()
        self._maybe_reload()
        if self.sources.follow(tp, self.cfg.bpm or self.preset.bpm):
            self._invalidate()
        seq = int(ctl[R.TARGET_SEQ])
        playhead = int(ctl[R.PLAY_FRAME])
        rolling = bool(ctl[R.ROLLING])
        if seq != self._target_seq:
            posted_before_us = self._target_seq < 0
            self._target_seq = seq
            target = int(ctl[R.TARGET_FRAME])
            if rolling and posted_before_us:  # a restarted worker: the playhead has moved on since that locate
                target = max(target, playhead)
            if not self._covers(target):
                self._restart(target, rolling)
        elif not self.stream_live and (rolling or int(tp[R.TP_STATE]) == JACK_STARTING):
            self._restart(playhead, rolling)
        if (
            not rolling
            and self.stream_live
            and self.stream_chunks > 0
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
