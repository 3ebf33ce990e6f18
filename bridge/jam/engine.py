"""The jam engine: a clock, time-stamped MIDI and the Generator in, audio blocks out.

Live (JACK) and offline (a MIDI file) are two ways of driving this one class, so a
bounce is what the live rig would have played. The contract:

- **Streams.** `start(seconds)` begins a stream at a song time: a fresh generator
  context (seeded from the engine seed and the stream's index) and a chunk grid from
  that time. A locate is a new stream; so is rejoining after falling behind.
- **Chunks.** Each `next_block()` generates the next chunk of the grid (one beat or bar
  of the preset, at most 10 s), with the clock's per-frame bpm and beat/bar phase as the
  LM's conditioning, and returns a `Block`: audio after gain and the preset's effect
  chain, and the song sample where it starts. The codec decoder holds one frame back,
  so a block starts one frame (40 ms) before its chunk; a stream's first block opens
  with that frame silent, and `finish()` returns the held-back frame at the end.
- **When a CC counts.** A chunk's style and knobs are decided at its *decision time*:
  its start minus the preset's lookahead - when the live worker, keeping the lookahead,
  generates it. Events are stamped in song seconds; those stamped at or before the
  decision time are applied (in order, the one-pole smoothing advanced between them),
  later ones wait. Offline and live therefore apply a CC to the same chunk whenever the
  live worker keeps to its schedule, and CC-to-audible latency is at most one chunk
  plus the lookahead.
- **Falling behind.** The live caller `peek()`s the next chunk before generating; when
  it could not be ready before the playhead passes it, it calls `rejoin(playhead)`, which
  keeps the LM's context but moves the grid to the next boundary far enough ahead; the
  audio side has already faded to silence and counted the underrun. The first block
  after a rejoin or locate is marked `fresh` and fades in over a few ms: never a click.

No JACK, no threads here: the live bridge runs this in its worker process.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from bridge.jam.controls import Controls
from bridge.jam.presets import Preset
from bridge.jam.time.clock import Clock
from bridge.jam.time.grid import Chunk, chunk_grid
from model.codec.network import FRAME_RATE, FRAME_SAMPLES
from model.errors import JamstreamError
from model.generator import Generator, GeneratorState, flush

SAMPLE_RATE = 48_000
MAX_CHUNK_FRAMES = 250  # the LM's 10 s context: a very slow bar is cut there
# Frames the generator produces per call (0.48 s); see Engine.next_pieces.
PIECE_FRAMES = 12
FADE_SAMPLES = 240  # 5 ms fades at stream starts and before silence
STREAM_SEED_STRIDE = 1_000_003


@dataclass
class Block:
    """One generated chunk's audio, placed on the song's sample timeline (48 kHz)."""

    chunk: Chunk
    start_sample: int  # song sample of audio[:, 0]; one frame before the chunk's start
    audio: np.ndarray  # float32 [2, n], after gain, effects and limiter
    weights: dict[str, float]  # smoothed slot weights this chunk was generated with
    bar: int  # 1-based bar the chunk starts in
    fresh: bool  # first block of a stream (start, locate, rejoin): it fades in
    gen_seconds: float  # wall time spent generating it

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.audio.shape[1]


@dataclass
class EngineStats:
    chunks: int = 0
    frames: int = 0
    streams: int = 0
    rejoins: int = 0
    gen_seconds: float = 0.0
    cc: dict[str, int] = field(default_factory=dict)

    def rtf(self) -> float:
        """Seconds of music generated per second of wall time (0 before any)."""
        return self.frames / FRAME_RATE / self.gen_seconds if self.gen_seconds > 0 else 0.0


class SlotStyles:
    """Each style slot's embedding, computed once: text through the text tower, audio
    files through the audio tower, adapters from their captured style."""

    def __init__(self, style_model, preset: Preset, adapter_styles: dict[str, torch.Tensor] | None = None):
        from model.io.audio import load_audio

        rows = []
        for slot in preset.slots:
            if slot.kind == "prompt":
                rows.append(style_model.embed_text([slot.value])[0])
            elif slot.kind == "audio":
                rows.append(style_model.embed_audio(load_audio(slot.value), SAMPLE_RATE))
            else:
                if adapter_styles is None or slot.value not in adapter_styles:
                    raise JamstreamError(
                        f"{preset.path}: slot {slot.name!r} names adapter {slot.value!r}, which is not loaded"
                    )
                rows.append(torch.as_tensor(adapter_styles[slot.value], dtype=torch.float32).reshape(-1))
        self.embeddings = torch.stack([torch.nn.functional.normalize(r.float(), dim=0) for r in rows])


class Engine:
    """Generates a preset's music on a clock's grid, steered by time-stamped MIDI."""

    def __init__(
        self,
        generator: Generator,
        style_model,
        preset: Preset,
        clock: Clock,
        seed: int = 0,
        slot_styles: SlotStyles | None = None,
        adapters=None,
    ):
        self.generator = generator
        self.style_model = style_model
        self.preset = preset
        self.clock = clock
        self.seed = int(seed)
        self.styles = slot_styles or SlotStyles(style_model, preset)
        self.adapters = adapters  # optional: .set_strengths({slot: weight}) before each chunk
        self.controls = Controls(preset)
        self.chain = preset.effect_chain()
        self.lookahead_s = preset.lookahead_ms / 1000.0
        self.stats = EngineStats()
        self._events: list[tuple[float, int, bytes]] = []  # (seconds, order, raw MIDI)
        self._order = 0
        self._stream = -1
        self._end: float | None = None
        self._last_end_sample = 0
        self._state: GeneratorState | None = None
        self._grid: Iterator[Chunk] | None = None
        self._pending: Chunk | None = None
        self._control_time = 0.0
        self._gain = self.controls.gain()
        self._fresh = False

    # ------------------------------------------------------------------ input
    def feed_midi(self, data, seconds: float) -> None:
        """Queue raw MIDI bytes (or a mido message) stamped at a song time."""
        to_bytes = getattr(data, "bytes", None)
        raw = bytes(to_bytes()) if callable(to_bytes) and not getattr(data, "is_meta", False) else data
        bisect.insort(self._events, (float(seconds), self._order, raw), key=lambda e: (e[0], e[1]))
        self._order += 1

    def feed_cc(self, channel: int, number: int, value: int, seconds: float) -> None:
        """Queue one CC (channel 1-16) at a song time: how a MIDI file's automation arrives."""
        if not (1 <= channel <= 16 and 0 <= number <= 127 and 0 <= value <= 127):
            self.controls.stats["malformed"] += 1
            return
        self.feed_midi(bytes([0xB0 | (channel - 1), number, value]), seconds)

    def _apply_events_until(self, seconds: float) -> None:
        while self._events and self._events[0][0] <= seconds:
            t, _, raw = self._events.pop(0)
            self.controls.advance(max(0.0, t - self._control_time))
            self._control_time = max(self._control_time, t)
            self.controls.feed(raw)
        self.controls.advance(max(0.0, seconds - self._control_time))
        self._control_time = max(self._control_time, seconds)

    # ------------------------------------------------------------------ streams
    def start(self, seconds: float = 0.0, end_seconds: float | None = None) -> None:
        """Begin a stream at a song time: fresh context, a new grid from there (to
        `end_seconds`, where the last chunk is cut, or forever).

        Events queued before a jump are applied now (the knobs keep their positions
        across a locate); smoothing restarts from the new time."""
        if not math.isfinite(seconds) or seconds < 0:
            raise JamstreamError(f"cannot start at {seconds} s: give a time >= 0")
        for _, _, raw in self._events:
            self.controls.feed(raw)
        self._events.clear()
        self._stream += 1
        self.stats.streams += 1
        guided = self.preset.sampling.guidance > 0 or "guidance" in self.preset.controls
        self._state = self.generator.new_state(self.seed + STREAM_SEED_STRIDE * self._stream, guided=guided)
        self._end = end_seconds
        self._grid = self._new_grid(seconds)
        self._pending = None
        self._control_time = seconds
        self._fresh = True

    def _new_grid(self, seconds: float) -> Iterator[Chunk]:
        return chunk_grid(self.clock, self.preset.chunk, seconds, self._end, max_frames=MAX_CHUNK_FRAMES)

    def peek(self) -> Chunk | None:
        """The chunk `next_block` will generate; None once a bounded stream is done."""
        if self._grid is None:
            raise JamstreamError("the engine has not been started: call start(seconds) first")
        if self._pending is None:
            self._pending = next(self._grid, None)
        return self._pending

    def rejoin(self, playhead_seconds: float, margin_seconds: float = 0.0) -> Chunk:
        """Move the grid to the first boundary whose audio starts after playhead + margin.

        The LM keeps its context (the music continues, with a gap); the chunk that could
        not be ready in time is skipped whole, so the stream lands back on the grid."""
        self.stats.rejoins += 1
        length = self.preset.chunk
        t = self.clock.next_boundary(
            playhead_seconds + margin_seconds + FRAME_SAMPLES / SAMPLE_RATE, length.unit, length.count
        )
        self._grid = self._new_grid(t)
        self._pending = None
        self._fresh = True
        return self.peek()

    def take_over(self, old: Engine, keep_stream: bool) -> float | None:
        """Replace `old` mid-performance (a preset reload): its counters run on, and with
        `keep_stream`, if `old` has a stream, this engine continues it at old's next chunk with
        old's LM context - the new preset continues the music, no gap. Returns the song time
        where that chunk starts, or None when no stream was carried over."""
        self.stats = old.stats
        if not keep_stream or old._state is None:
            return None
        nxt = old.peek()
        start = nxt.start_seconds() if nxt is not None else 0.0
        self.start(start)
        self._state, self._fresh = old._state, False
        return start

    # ------------------------------------------------------------------ generation
    def style_tokens(self) -> torch.Tensor:
        """The style mix quantized, cut to the style levels the generator's LM reads."""
        mix = self.controls.mix_embedding(self.styles.embeddings)
        return self.style_model.quantize(mix).reshape(-1)[: self.generator.style_token_count]

    def next_block(self) -> Block:
        """Generate the next chunk of the grid (decision time = its start - lookahead): its
        pieces joined, so a bounce is sample for sample what the live worker hands over."""
        pieces = list(self.next_pieces())
        first = pieces[0]
        if len(pieces) == 1:
            return first
        return Block(
            first.chunk,
            first.start_sample,
            np.concatenate([b.audio for b in pieces], axis=1),
            first.weights,
            first.bar,
            first.fresh,
            sum(b.gen_seconds for b in pieces),
        )

    def next_pieces(self) -> Iterator[Block]:
        """The next chunk as consecutive pieces of PIECE_FRAMES frames.

        Why pieces: the chunk's style, knobs and seed are still decided once, at its start
        minus the lookahead, but the live worker hands each piece to the ring as soon as it
        exists, so it starts a chunk only one piece's generation time before the decision
        time, not a whole chunk's - a CC is heard within one chunk + the lookahead. The
        codec's streaming decoder is not split-invariant (each push decodes with a few
        frames of context), so offline and live decode in the same pieces."""
        chunk = self.peek()
        if chunk is None:
            raise JamstreamError("the stream has ended: start a new one")
        self._pending = None
        t0 = chunk.start_seconds()
        self._apply_events_until(max(self._control_time, t0 - self.lookahead_s))
        weights = self.controls.style_weights()
        if self.adapters is not None:
            self.adapters.set_strengths(weights)
        sampling = self.controls.sampling()
        tokens = self.style_tokens()
        timing = torch.from_numpy(chunk.timing)
        g1 = self.controls.gain()
        ramp = np.linspace(self._gain, g1, chunk.n_frames * FRAME_SAMPLES, dtype=np.float32)  # no zipper noise
        self._gain = g1
        bar = self.clock.position(t0).bar
        total = 0.0
        for f0 in range(0, chunk.n_frames, PIECE_FRAMES):
            f1 = min(chunk.n_frames, f0 + PIECE_FRAMES)
            start = time.perf_counter()
            audio, self._state = self.generator.generate_chunk(self._state, tokens, timing[f0:f1], f1 - f0, sampling)
            elapsed = time.perf_counter() - start
            total += elapsed
            yield self._finish_piece(
                chunk, f0, audio.numpy(), ramp[f0 * FRAME_SAMPLES : f1 * FRAME_SAMPLES], weights, bar, elapsed
            )
        self.stats.chunks += 1
        self.stats.frames += chunk.n_frames
        self.stats.gen_seconds += total
        self.stats.cc = dict(self.controls.stats)
        self._last_end_sample = chunk.start_sample + chunk.n_samples

    def _finish_piece(
        self,
        chunk: Chunk,
        f0: int,
        audio: np.ndarray,
        ramp: np.ndarray,
        weights: dict[str, float],
        bar: int,
        elapsed: float,
    ) -> Block:
        audio = np.array(audio, dtype=np.float32)
        fresh = self._fresh and f0 == 0
        if fresh:  # the held-back frame is silence (new stream) or belongs before a gap
            audio[:, :FRAME_SAMPLES] = 0.0
            n = min(FADE_SAMPLES, audio.shape[1] - FRAME_SAMPLES)
            if n > 0:
                audio[:, FRAME_SAMPLES : FRAME_SAMPLES + n] *= np.linspace(
                    0.0, 1.0, n, endpoint=False, dtype=np.float32
                )
            self._fresh = False
        audio *= ramp
        audio = self.chain(audio, SAMPLE_RATE, reset=False)
        start = chunk.start_sample - FRAME_SAMPLES + f0 * FRAME_SAMPLES
        return Block(chunk, start, np.ascontiguousarray(audio, dtype=np.float32), weights, bar, fresh, elapsed)

    def finish(self) -> tuple[int, np.ndarray]:
        """(song sample, audio): the held-back last frame, faded out, through gain and
        effects - the end of a render."""
        if self._state is None:
            return 0, np.zeros((2, 0), dtype=np.float32)
        tail = flush(self.generator, self._state).numpy() * self._gain
        audio = np.ascontiguousarray(self.chain(tail.astype(np.float32), SAMPLE_RATE, reset=False), dtype=np.float32)
        return self._last_end_sample - FRAME_SAMPLES, audio
