"""The generator process: runs the Engine ahead of the playhead and fills the ring.

torch lives here, in a separate process, so a long tensor op holding this process's
GIL can never stall the JACK callback (DESIGN.md, real-time model). The worker reads
what the callback posts in shared memory (bridge/live/ring.py) - transport, MIDI, the
playhead - and answers with audio placed at song frames:

- **Clock.** Each loop it picks the source (JACK transport with BBT from a timebase
  master; JACK frames at the MIDI clock's or `--bpm` tempo; MIDI clock alone; Ableton
  Link, whose session this process joins with `--link` / `--clock link`; free
  running) and feeds what the host reports into a `LiveClock` (bridge/jam/time/followers.py),
  whose tempo map the engine's grid reads lazily, so a tempo change lands on the next
  chunk.
- **Streams.** A start, locate or slow-sync request the ring does not already cover
  starts a new engine stream at that song time; the ring's valid range is re-marked
  first so the callback never plays stale audio.
- **Ahead.** While rolling it generates the next chunk once the playhead reaches its
  decision time (start - lookahead) less 1.5x the time generating it is expected to
  take at the measured real-time factor - just in time, so a CC reaches the audio
  within one chunk + lookahead when the CPU keeps up; while stopped it prepares the first chunk at the stop/locate
  position, which is what lets the slow-sync callback report ready. If the next chunk
  could not be ready in time (measured real-time factor) it rejoins the grid further on
  instead of playing late.
- **MIDI.** CCs and program changes go to the engine stamped with the song time at
  which they arrived; MIDI clock bytes go to the MidiClockFollower.
- **Reload.** SIGHUP (relayed by the parent) or a program change re-reads the preset
  file and swaps the engine at the next chunk boundary, carrying the LM context over,
  so the audio does not stop.
- **Rates.** Audio is made at 48 kHz; at another server rate a pedalboard
  StreamResampler per stream converts it before it enters the ring.
"""

from __future__ import annotations

import dataclasses
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.jam.time.followers import LiveClock, MidiClockFollower
from bridge.live import ring as R
from bridge.live.link import LinkFollower, LinkSession, jack_frame_at

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 1920
JACK_ROLLING, JACK_STARTING = 1, 3  # jack.ROLLING, jack.STARTING (not imported here)
LIVE_SLOT = "live"


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
    def __init__(self, cfg: WorkerConfig, spec: dict, status_q):
        from bridge.jam.presets import find_preset

        self.cfg = cfg
        self.sh = R.Shared(**spec)
        self.ctl = self.sh.ctl
        self.status_q = status_q
        self.rate = int(self.ctl[R.RATE_SLOT]) or SAMPLE_RATE
        self.writer = RateWriter(self.rate)
        self.preset = self._with_live_slot(find_preset(cfg.preset))
        self.preset_path = str(self.preset.path)
        self.clock = LiveClock(cfg.bpm or self.preset.bpm, self.preset.meter)
        self.midi_clock = MidiClockFollower(self.rate)
        self.link = (
            LinkSession(cfg.bpm or self.preset.bpm, self.preset.meter[0]) if cfg.link or cfg.clock == "link" else None
        )
        self.link_follower = LinkFollower(self.clock, self.rate)
        self._load_models()
        self._warm_up()
        self.engine = self._new_engine(self.preset)
        self.stream_live = False
        self.stream_chunks = 0
        self._next_start: float | None = None
        self._last_chunk_s = 2.0
        from bridge.jam.engine import PIECE_FRAMES  # here, not at import: the engine brings torch

        self._piece_s = PIECE_FRAMES / 25.0
        self._target_seq = -1  # act on whatever the callback posted while we loaded
        self._reload_seq = int(self.ctl[R.RELOAD_SEQ])
        self._program_seen = 0
        self._midi_events_seen = self.midi_clock.events
        self._source = "stopped"
        self._kind: str | None = None
        self._prepared_changes = -1
        self._free_started = False
        self._last_status = 0.0
        self._live_at = 0.0
        self.reloads = 0
        self.last_error: str | None = None
        self.max_gen = 0.0
        self.last_weights: dict[str, float] = self.engine.controls.style_weights()
        # (first, end) ring frame and slot weights of the latest chunks: lets a tool time
        # when a CC's mix is first heard (scripts/soak_jam.py) without listening for style
        self.chunk_log: deque[tuple[int, int, dict[str, float]]] = deque(maxlen=24)

    # ------------------------------------------------------------------ setup
    def _with_live_slot(self, preset):
        if not self.cfg.live_input:
            return preset
        from bridge.jam.presets import CCBinding, StyleSlot

        channel = preset.slots[0].cc.channel
        slot = StyleSlot(LIVE_SLOT, "prompt", "live input", CCBinding(channel, self.cfg.live_cc), 0.0)
        return dataclasses.replace(preset, slots=tuple(preset.slots) + (slot,))

    def _load_models(self) -> None:
        if self.cfg.metronome:
            from bridge.live.metronome import MetronomeGenerator, MetronomeStyle

            self.generator, self.style_model, self.adapters = MetronomeGenerator(), MetronomeStyle(), None
            return
        import torch

        torch.set_num_threads(max(1, self.cfg.threads))
        from bridge.jam.stack import load_stack

        base = dataclasses.replace(
            self.preset,
            slots=tuple(s for s in self.preset.slots if s.name != LIVE_SLOT)
            if self.cfg.live_input
            else self.preset.slots,
        )
        stack = load_stack(base, lm=self.cfg.lm, codec=self.cfg.codec, style=self.cfg.style, adapter=self.cfg.adapter)
        self.generator, self.style_model, self.adapters = stack.generator, stack.style_model, stack.adapters
        self._stack_styles = stack.slot_styles

    def _warm_up(self) -> None:
        """One throwaway second of music before reporting ready: the first torch calls are
        slow, and the real-time factor the scheduler plans with should not count them."""
        if self.cfg.metronome:
            return
        from bridge.jam.engine import Engine
        from bridge.jam.time.clock import FixedClock

        warm = Engine(
            self.generator,
            self.style_model,
            self.preset,
            FixedClock(self.preset.bpm, self.preset.meter),
            seed=self.cfg.seed,
            slot_styles=self._slot_styles(self.preset),
            adapters=self.adapters,
        )
        warm.start(0.0, 1.0)
        while warm.peek() is not None:
            warm.next_block()

    def _slot_styles(self, preset):
        if self.cfg.metronome:
            from bridge.live.metronome import MetronomeSlots

            return MetronomeSlots(len(preset.slots))
        import torch

        from bridge.jam.engine import SlotStyles

        base = dataclasses.replace(preset, slots=tuple(s for s in preset.slots if s.name != LIVE_SLOT))
        adapter_styles = self.adapters.styles() if self.adapters is not None else None
        styles = SlotStyles(self.style_model, base, adapter_styles)
        if self.cfg.live_input:  # a placeholder row until the input has sound: the first slot's style
            styles.embeddings = torch.cat([styles.embeddings, styles.embeddings[:1]], dim=0)
        return styles

    def _new_engine(self, preset):
        from bridge.jam.engine import Engine

        return Engine(
            self.generator,
            self.style_model,
            preset,
            self.clock,
            seed=self.cfg.seed,
            slot_styles=self._slot_styles(preset),
            adapters=self.adapters,
        )

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

    # ------------------------------------------------------------------ clock
    def _choose_source(self, tp: np.ndarray) -> str:
        state = int(tp[R.TP_STATE])
        jack_moving = state in (JACK_ROLLING, JACK_STARTING)
        mc = self.midi_clock
        mode = self.cfg.clock
        if mode == "free":
            return "free"
        if mode == "midi":
            return "midi"
        if mode == "jack":
            return "jack"
        if mode == "link":
            return "link"
        if jack_moving:
            return "jack"
        if mc.running:
            return "midi"
        if self.link is not None:  # --link: Link plays whenever neither the transport nor MIDI clock moves
            return "link"
        return "jack"

    def _invalidate(self) -> None:
        """Forget the ring's audio: it was placed by another clock (source switched)."""
        self.ctl[R.VALID_END] = self.ctl[R.VALID_START]
        self.stream_live = False
        self._next_start = None

    def _update_clock(self, tp: np.ndarray, source: str) -> None:
        ctl = self.ctl
        meter = self.clock.meter
        if source != self._kind:  # JACK frames / MIDI clock / Link / free: different song timelines
            if self._kind is not None:
                self._invalidate()
            self._kind = source
            self._placed = False  # an external source places its timeline anew
            self._free_started = False
            self.link_follower.forget()
        if source == "jack":
            ctl[R.MODE] = 0
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
                self._source = "jack-bbt"
            else:
                bpm = self.midi_clock.bpm if self.midi_clock.active(int(tp[R.TP_JACK_TIME])) else None
                self._source = "jack+midi-tempo" if bpm else "jack"
                target = bpm or self.cfg.bpm or self.preset.bpm
                if abs(self.clock.bpm(self.seconds(frame)) - target) > 1e-3 * target:
                    self.clock.set_tempo(self.seconds(frame), target)
            return
        ctl[R.MODE] = 1
        if source == "free":
            self._source = "free"
            if not self._free_started:
                self._free_started = True
                ctl[R.EXT_OFFSET] = -int(tp[R.TP_JACK_TIME])
                ctl[R.EXT_ROLLING] = 1
            return
        if source == "link":
            self._source = "link"
            self._update_link(tp)
            return
        # MIDI clock
        mc = self.midi_clock
        self._source = "midi"
        if mc.events != self._midi_events_seen:
            self._midi_events_seen = mc.events
            self._placed = False
            if not mc.running:
                ctl[R.EXT_ROLLING] = 0
        if mc.placed:
            bpm = mc.bpm or self.cfg.bpm or self.preset.bpm
            if not getattr(self, "_placed", False):
                self._placed = True
                spq = 60.0 / bpm * meter[1] / 4.0
                seconds = mc.quarters_at_tick * spq
                self.clock.reset(bpm, meter, seconds, mc.quarters_at_tick)
                ctl[R.EXT_OFFSET] = int(round(seconds * self.rate - mc.fitted_tick_time))
                ctl[R.EXT_ROLLING] = 1
            elif mc.bpm is not None:
                s_tick = self.seconds(mc.fitted_tick_time + int(ctl[R.EXT_OFFSET]))
                # MIDI clock jitters: a tempo within 0.2% is the same tempo; phase drift of
                # the fitted line beyond 2 ms re-anchors the map on the ticks.
                self.clock.observe(s_tick, mc.quarters_at_tick, mc.bpm, meter, tempo_tolerance=0.002)

    def _update_link(self, tp: np.ndarray) -> None:
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

    # ------------------------------------------------------------------ MIDI
    def _drain_midi(self) -> None:
        for frame_time, song, data, n in self.sh.drain_midi():
            if not data:
                continue
            status = data[0]
            if (status >= 0xF8 or status == 0xF2) and self.midi_clock.feed(status, data[1:], frame_time):
                continue
            if n > R.MIDI_BYTES:
                data = data[:-1]  # a cut sysex: Controls counts it as malformed
            self.engine.feed_midi(data, max(0.0, self.seconds(song)))

    # ------------------------------------------------------------------ reload
    def _maybe_reload(self) -> None:
        seq = int(self.ctl[R.RELOAD_SEQ])
        program = self.engine.controls.reload_requested
        if seq == self._reload_seq and program == self._program_seen:
            return
        self._reload_seq, self._program_seen = seq, program
        from bridge.jam.presets import find_preset
        from model.errors import JamstreamError

        try:
            preset = self._with_live_slot(find_preset(self.preset_path))
            engine = self._new_engine(preset)
        except JamstreamError as exc:
            self.last_error = f"reload failed, keeping the old preset: {exc}"
            return
        old = self.engine
        engine.stats = old.stats  # counters run on across reloads
        if self.stream_live and old._state is not None:
            nxt = old.peek()
            engine.start(nxt.start_seconds() if nxt is not None else 0.0)
            # Carry the LM context across: the new preset continues the music, no gap.
            engine._state, engine._fresh = old._state, False
            self._next_start = nxt.start_seconds() if nxt is not None else 0.0
        self.engine = engine
        self._program_seen = engine.controls.reload_requested
        self.preset = preset
        self.reloads += 1
        self.last_error = None

    # ------------------------------------------------------------------ live input
    def _update_live_style(self) -> None:
        if not self.cfg.live_input or self.cfg.metronome:
            return
        now = time.monotonic()
        if now - self._live_at < 2.0 or self.engine.controls.target_weights().get(LIVE_SLOT, 0.0) <= 0:
            return
        self._live_at = now
        audio = self.sh.read_live(min(self.sh.live_capacity, 10 * self.rate))
        if audio.shape[1] < self.rate or float(np.abs(audio).max()) < 1e-4:
            return
        import torch

        emb = self.style_model.embed_audio(audio, self.rate)
        self.engine.styles.embeddings[-1] = torch.nn.functional.normalize(
            torch.as_tensor(emb, dtype=torch.float32).reshape(-1), dim=0
        )

    # ------------------------------------------------------------------ generation
    def _maybe_generate(self, rolling: bool, playhead: float) -> bool:
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
        if engine.peek() is None:
            return False
        self._update_live_style()
        gen = 0.0
        for block in engine.next_pieces():  # each piece reaches the ring as soon as it exists
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
        if self.engine.controls.reload_requested != self._program_seen:
            self._maybe_reload()
        return True

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

    # ------------------------------------------------------------------ status
    def status(self, playhead_frame: int, rolling: bool) -> dict:
        seconds = self.seconds(playhead_frame)
        pos = self.clock.position(seconds)
        ve = int(self.ctl[R.VALID_END])
        stats = self.engine.stats
        return {
            "bar": pos.bar,
            "beat": pos.beat,
            "bpm": round(pos.bpm, 3),
            "meter": f"{pos.meter[0]}/{pos.meter[1]}",
            "clock": self._source if rolling or self._source != "jack" else "stopped",
            "rolling": bool(rolling),
            "seconds": round(seconds, 3),
            "weights": {k: round(v, 3) for k, v in self.last_weights.items()},
            "target_weights": {k: round(v, 3) for k, v in self.engine.controls.target_weights().items()},
            "buffer_seconds": round(max(0, ve - playhead_frame) / self.rate, 3),
            "rtf": round(stats.rtf(), 3),
            "chunks": stats.chunks,
            "rejoins": stats.rejoins,
            "streams": int(self.ctl[R.STREAM]),
            "max_chunk_seconds": round(self.max_gen, 3),
            "cc": dict(self.engine.controls.stats),
            "preset": self.preset.name,
            "reloads": self.reloads,
            "error": self.last_error,
            "clock_reanchors": self.clock.reanchors,
            "sample_rate": self.rate,
            "link_peers": self.link_follower.peers if self.link is not None else None,
            "link_placements": self.link_follower.placements,
            "link_offset": self.link_follower.offset,
            "link_last": self.link_follower.last,
            "recent_chunks": [list(c) for c in self.chunk_log],
        }

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        ctl = self.ctl
        ctl[R.WORKER_READY] = 1
        self.status_q.put({"ready": True})
        while ctl[R.QUIT] == 0:
            rate = int(ctl[R.RATE_SLOT])
            if rate and rate != self.rate:  # the server came back at another rate
                self.rate = rate
                self.writer = RateWriter(rate)
                self.midi_clock.sample_rate = rate
                self.stream_live = False
            tp = self.sh.transport()
            if tp is None:
                time.sleep(0.001)
                continue
            self._drain_midi()
            self._maybe_reload()
            self._update_clock(tp, self._choose_source(tp))
            seq = int(ctl[R.TARGET_SEQ])
            playhead = int(ctl[R.PLAY_FRAME])
            rolling = bool(ctl[R.ROLLING])
            if seq != self._target_seq:
                self._target_seq = seq
                target = int(ctl[R.TARGET_FRAME])
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
            worked = self._maybe_generate(rolling, self.seconds(playhead))
            now = time.monotonic()
            if now - self._last_status >= 0.25:
                self._last_status = now
                try:
                    self.status_q.put_nowait(self.status(playhead, rolling))
                except Exception:
                    pass
            if not worked:
                time.sleep(0.002)


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
