"""The jam engine: a clock, time-stamped MIDI and the Generator in, audio pieces out.

Live (JACK) and offline (a MIDI file) are two ways of driving this one class, so a
bounce is what the live rig would have played. The contract:

- **Streams.** `start(seconds)` begins a stream at a song time: a fresh generator
  context (seeded from the engine seed and the stream's index) and a chunk grid from
  that time. A locate is a new stream.
- **Chunks and pieces.** The grid's chunks end on the preset's beats or bars (at most
  10 s): they structure the music, bounces and evals. Each chunk is generated as
  *pieces* of `pacing.piece_frames` frames (the last one shorter), and everything a
  musician steers is decided per piece, at its *decision time* - its first audio sample
  minus the lookahead (bridge/jam/pacing.py): the style mix, sampling knobs and gain
  target, and the per-frame timing (bpm, beat/bar phase) the LM is conditioned on, read
  from the clock then. The codec decoder holds one frame back, so a piece's audio starts
  one frame (40 ms) before its first frame; a stream's first piece opens with that frame
  silent, and `finish()` returns the held-back frame at the end.
- **When a CC counts.** Events are stamped in song seconds; those stamped at or before a
  piece's decision time are applied to it (in order, the style smoothing advanced between
  them), later ones wait. The gain follows its knob's target sample by sample through a
  one-pole de-zipper (`gain_smoothing_ms`), so it runs on through the piece with no steps.
  Offline and live therefore apply a CC to the same piece whenever the live worker
  generates each piece at its decision time, and a CC is heard lookahead + at most one
  piece later (+ the smoothing).
- **Tempo changes.** A clock whose map changes (a live host) is read again at the next
  piece: the rest of the chunk is re-cut to the new grid. `rewind(seconds)` drops pieces
  already made for audio after `seconds` when the new map times them differently, and
  restores the generator as it stood before them, so the stream goes on from there on the
  new grid with its LM context and no gap.
- **Falling behind.** The live caller looks at `decision_time()`; when the next piece
  could not be ready before the playhead passes it, it calls `rejoin(playhead)`, which
  keeps the LM's context but moves the grid to a frame far enough ahead; the audio side
  has already faded to silence and counted the underrun. The first piece after a rejoin
  or locate is marked `fresh` and fades in over a few ms: never a click.

No JACK, no threads here: the live bridge runs this in its worker process.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from bridge.jam.controls import Controls
from bridge.jam.pacing import Pacing, offline_pacing
from bridge.jam.presets import Preset
from bridge.jam.time.clock import Clock
from bridge.jam.time.grid import Chunk, chunk_grid, frame_at, frame_timing
from model.codec.network import FRAME_RATE, FRAME_SAMPLES
from model.errors import JamstreamError
from model.generator import Generator, GeneratorState, flush

SAMPLE_RATE = 48_000
MAX_CHUNK_FRAMES = 250  # the LM's 10 s context: a very slow bar is cut there
FADE_SAMPLES = 240  # 5 ms fades at stream starts and before silence
STREAM_SEED_STRIDE = 1_000_003
MARKS_KEPT = 16  # pieces `rewind` can go back over (far more than a lookahead holds)
REWIND_PHASE_S = 0.005  # a tempo change that moves a made piece's beats less than this ...
REWIND_BPM = 0.005  # ... and its bpm less than this (relative) keeps the piece


@dataclass
class Block:
    """One generated piece's (or a joined chunk's) audio on the song's sample timeline (48 kHz)."""

    chunk: Chunk
    start_sample: int  # song sample of audio[:, 0]; one frame before the piece's first frame
    audio: np.ndarray  # float32 [2, n], after gain, effects and limiter
    weights: dict[str, float]  # smoothed slot weights it was generated with
    bar: int  # 1-based bar it starts in
    fresh: bool  # first piece of a stream (start, locate, rejoin): it fades in
    gen_seconds: float  # wall time spent generating it
    bpm: float = 0.0  # the tempo the LM was conditioned on at its first frame

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.audio.shape[1]


@dataclass
class EngineStats:
    chunks: int = 0
    pieces: int = 0
    frames: int = 0
    streams: int = 0
    rejoins: int = 0
    rewinds: int = 0
    gen_seconds: float = 0.0
    cc: dict[str, int] = field(default_factory=dict)

    def rtf(self) -> float:
        """Seconds of music generated per second of wall time (0 before any)."""
        return self.frames / FRAME_RATE / self.gen_seconds if self.gen_seconds > 0 else 0.0

    def seconds_per_frame(self) -> float:
        return self.gen_seconds / self.frames if self.frames else 0.0


@dataclass
class _Mark:
    """The engine as it stood before one piece: what `rewind` restores."""

    frame: int  # the piece's first frame
    state: GeneratorState
    gain_db: float
    fresh: bool
    timing: np.ndarray  # the timing the piece was generated with


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
        pacing: Pacing | None = None,
    ):
        self.generator = generator
        self.style_model = style_model
        self.preset = preset
        self.clock = clock
        self.seed = int(seed)
        self.styles = slot_styles or SlotStyles(style_model, preset)
        self.adapters = adapters  # optional: .set_strengths({slot: weight}) before each piece
        self.controls = Controls(preset)
        self.chain = preset.effect_chain()
        self.pacing = pacing or offline_pacing(preset)
        self.stats = EngineStats()
        self._events: list[tuple[float, int, bytes]] = []  # (seconds, order, raw MIDI)
        self._order = 0
        self._stream = -1
        self._end: float | None = None
        self._last_end_sample = 0
        self._state: GeneratorState | None = None
        self._grid: Iterator[Chunk] | None = None
        self._chunk: Chunk | None = None  # the chunk the next piece belongs to
        self._frame = 0  # the next piece's first frame
        self._chunk_changes = 0  # the clock's `changes` when _chunk was cut
        self._marks: deque[_Mark] = deque(maxlen=MARKS_KEPT)
        self._control_time = 0.0
        self._gain_db = self.controls.target_gain_db()  # the gain the audio has reached
        self._fresh = False
        self._tokens_key: tuple | None = None
        self._tokens: torch.Tensor | None = None

    @property
    def lookahead_s(self) -> float:
        return self.pacing.lookahead_s

    @property
    def piece_frames(self) -> int:
        return self.pacing.piece_frames

    def set_pacing(self, pacing: Pacing) -> None:
        """Another piece length or lookahead from the next piece on (the live worker's auto)."""
        if pacing.piece_frames < 1 or not pacing.lookahead_s >= 0:
            raise JamstreamError(f"bad pacing {pacing}")
        self.pacing = pacing

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
    def start(self, seconds: float = 0.0, end_seconds: float | None = None, stream: int | None = None) -> None:
        """Begin a stream at a song time: fresh context, a new grid from there (to
        `end_seconds`, where the last chunk is cut, or forever). Each stream's context is
        seeded from the engine's seed and the stream's index, the next one unless `stream`
        names it (an export that must come out the same however many streams came before).

        Events queued before a jump are applied now (the knobs keep their positions
        across a locate); smoothing restarts from the new time."""
        if not math.isfinite(seconds) or seconds < 0:
            raise JamstreamError(f"cannot start at {seconds} s: give a time >= 0")
        for _, _, raw in self._events:
            self.controls.feed(raw)
        self._events.clear()
        self._stream = self._stream + 1 if stream is None else int(stream)
        self.stats.streams += 1
        guided = self.preset.sampling.guidance > 0 or "guidance" in self.preset.controls
        self._state = self.generator.new_state(self.seed + STREAM_SEED_STRIDE * self._stream, guided=guided)
        self._end = end_seconds
        self._regrid(seconds)
        self._control_time = seconds
        self._fresh = True

    def reset_effects(self) -> None:
        """Forget what the effects (reverb and delay tails) and the gain glide carry from
        earlier streams: an export begins as a render would, however much played before it
        (measured: a bounce after live pieces differed from the next in its first 2.4 s)."""
        self.chain.reset()
        self._gain_db = self.controls.target_gain_db()

    def _regrid(self, seconds: float, marks: list[_Mark] | tuple = ()) -> None:
        """A new chunk grid from `seconds` (its frame) on the clock as it stands; `marks` are
        the pieces before it that `rewind` may still go back to."""
        self._grid = chunk_grid(self.clock, self.preset.chunk, seconds, self._end, max_frames=MAX_CHUNK_FRAMES)
        self._chunk = None
        self._frame = frame_at(seconds)
        kept = list(marks)
        self._marks.clear()
        self._marks.extend(kept)

    def _clock_changes(self) -> int:
        return getattr(self.clock, "changes", 0)

    def peek(self) -> Chunk | None:
        """The chunk the next piece belongs to (its rest, re-cut if the clock's map changed
        since it was cut); None once a bounded stream is done."""
        if self._grid is None:
            raise JamstreamError("the engine has not been started: call start(seconds) first")
        if self._chunk is not None and self._clock_changes() != self._chunk_changes:
            self._regrid(self._frame / FRAME_RATE, self._marks)  # re-cut the rest of the chunk
        if self._chunk is None or self._frame >= self._chunk.end_frame:
            self._chunk = next(self._grid, None)
            self._chunk_changes = self._clock_changes()
            if self._chunk is not None:
                self._frame = self._chunk.start_frame
        return self._chunk

    def piece_start_sample(self) -> int | None:
        """Song sample (48 kHz) where the next piece's audio starts; None when done."""
        return None if self.peek() is None else (self._frame - 1) * FRAME_SAMPLES

    def decision_sample(self) -> int | None:
        """Song sample (48 kHz) at which the next piece is decided: its first audio sample -
        the lookahead. Whole samples, so the live worker and a bounce agree to the sample."""
        start = self.piece_start_sample()
        return None if start is None else start - int(round(self.lookahead_s * SAMPLE_RATE))

    def decision_time(self) -> float | None:
        """`decision_sample` in song seconds."""
        d = self.decision_sample()
        return None if d is None else d / SAMPLE_RATE

    def rejoin(self, playhead_seconds: float, margin_seconds: float = 0.0) -> Chunk:
        """Move the grid to the first frame whose audio starts after playhead + margin.

        The LM keeps its context (the music continues, with a gap); the pieces that could
        not be ready in time are skipped, and the grid picks up mid-chunk there."""
        self.stats.rejoins += 1
        t = playhead_seconds + margin_seconds + FRAME_SAMPLES / SAMPLE_RATE
        self._regrid(math.ceil(t * FRAME_RATE) / FRAME_RATE)
        self._fresh = True
        return self.peek()

    def rewind(self, seconds: float) -> int | None:
        """The clock's map changed: drop the pieces made for audio at or after `seconds` if
        the map now times them differently, restoring the generator (context, decoder, RNG)
        and gain as they stood before the first of them. Returns the song sample from which
        their audio is to be replaced, or None when nothing needed to change."""
        cut = seconds * SAMPLE_RATE
        marks = list(self._marks)
        later = [i for i, m in enumerate(marks) if (m.frame - 1) * FRAME_SAMPLES >= cut]
        if not later:
            return None
        first = marks[later[0]]
        made = np.concatenate([m.timing for m in marks[later[0] :]])
        now = frame_timing(self.clock, first.frame, made.shape[0])
        beat_s = 60.0 / np.maximum(now[:, 0], 1.0)
        phase = (now[:, 1] - made[:, 1] + 0.5) % 1.0 - 0.5
        moved = np.abs(phase) * beat_s > REWIND_PHASE_S
        retimed = np.abs(now[:, 0] - made[:, 0]) > REWIND_BPM * made[:, 0]
        if not (moved.any() or retimed.any()):
            return None
        self.stats.rewinds += 1
        self._regrid(first.frame / FRAME_RATE, marks[: later[0]])
        self._state, self._gain_db, self._fresh = first.state, first.gain_db, first.fresh
        return (first.frame - 1) * FRAME_SAMPLES

    def take_over(self, old: Engine, keep_stream: bool) -> float | None:
        """Replace `old` mid-performance (a preset reload): its counters run on, and with
        `keep_stream`, if `old` has a stream, this engine continues it at old's next piece with
        old's LM context and gain - the new preset continues the music, no gap. Returns the
        song time where that piece starts, or None when no stream was carried over."""
        self.stats = old.stats
        if not keep_stream or old._state is None:
            return None
        start = old._frame / FRAME_RATE if old.peek() is not None else 0.0
        self.start(start)
        self._state, self._fresh, self._gain_db = old._state, False, old._gain_db
        return start

    # ------------------------------------------------------------------ generation
    def style_tokens(self) -> torch.Tensor:
        """The style mix quantized, cut to the style levels the generator's LM reads.

        Kept while the weights and the slot embeddings stand still (a tensor's `_version`
        counts in-place writes: the live-input slot's): quantizing every piece was 2.7 % of
        the live worker's time (py-spy)."""
        emb = self.styles.embeddings
        try:
            version = emb._version
        except (AttributeError, RuntimeError):  # an inference tensor keeps no count: never cache it
            version = None
        key = (tuple(self.controls.style_weights().values()), id(emb), version)
        if version is None or key != self._tokens_key:
            mix = self.controls.mix_embedding(emb)
            self._tokens = self.style_model.quantize(mix).reshape(-1)[: self.generator.style_token_count]
            self._tokens_key = key
        return self._tokens

    def next_block(self) -> Block:
        """The rest of the current chunk, its pieces joined: a bounce is sample for sample
        what the live worker hands over piece by piece."""
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
            first.bpm,
        )

    def next_pieces(self) -> Iterator[Block]:
        """The pieces left in the current chunk, each generated when asked for."""
        if self.peek() is None:
            raise JamstreamError("the stream has ended: start a new one")
        while True:
            block = self.next_piece()
            yield block
            if self._chunk is None or self._frame >= self._chunk.end_frame:
                return

    def next_piece(self) -> Block:
        """Generate the next piece, decided as at its decision time."""
        chunk = self.peek()
        if chunk is None:
            raise JamstreamError("the stream has ended: start a new one")
        f0 = self._frame
        f1 = min(chunk.end_frame, f0 + self.piece_frames)
        timing = chunk.timing[f0 - chunk.start_frame : f1 - chunk.start_frame]
        self._marks.append(_Mark(f0, self._state, self._gain_db, self._fresh, timing))
        self._apply_events_until(max(self._control_time, self.decision_time()))
        weights = self.controls.style_weights()
        if self.adapters is not None:
            self.adapters.set_strengths(weights)
        sampling = self.controls.sampling()
        tokens = self.style_tokens()
        gain = self._gain_ramp((f1 - f0) * FRAME_SAMPLES)
        start = time.perf_counter()
        audio, self._state = self.generator.generate_chunk(
            self._state, tokens, torch.from_numpy(timing), f1 - f0, sampling
        )
        block = self._finish_piece(chunk, f0, audio.numpy(), gain, weights, float(timing[0, 0]))
        block.gen_seconds = time.perf_counter() - start
        self._frame = f1
        stats = self.stats
        stats.pieces += 1
        stats.frames += f1 - f0
        stats.gen_seconds += block.gen_seconds
        stats.chunks += f1 == chunk.end_frame
        stats.cc = dict(self.controls.stats)
        self._last_end_sample = f1 * FRAME_SAMPLES
        return block

    def _gain_ramp(self, n: int) -> np.ndarray:
        """Linear gain for the next `n` samples: the one-pole follower from where the gain
        is towards the knob's target (no zipper noise, no step at a piece boundary)."""
        target = self.controls.target_gain_db()
        tau = self.preset.gain_smoothing_ms / 1000.0
        if tau <= 0 or self._gain_db == target:
            db = np.full(n, target)
        else:
            t = np.arange(1, n + 1, dtype=np.float64) / SAMPLE_RATE
            db = target + (self._gain_db - target) * np.exp(-t / tau)
        self._gain_db = float(db[-1])
        return (10.0 ** (db / 20.0)).astype(np.float32)

    def _finish_piece(
        self, chunk: Chunk, f0: int, audio: np.ndarray, gain: np.ndarray, weights: dict[str, float], bpm: float
    ) -> Block:
        audio = np.array(audio, dtype=np.float32)
        fresh = self._fresh
        if fresh:  # the held-back frame is silence (new stream) or belongs before a gap
            audio[:, :FRAME_SAMPLES] = 0.0
            n = min(FADE_SAMPLES, audio.shape[1] - FRAME_SAMPLES)
            if n > 0:
                audio[:, FRAME_SAMPLES : FRAME_SAMPLES + n] *= np.linspace(
                    0.0, 1.0, n, endpoint=False, dtype=np.float32
                )
            self._fresh = False
        audio *= gain
        audio = self.chain(audio, SAMPLE_RATE, reset=False)
        bar = self.clock.position(f0 / FRAME_RATE).bar
        start = (f0 - 1) * FRAME_SAMPLES
        return Block(chunk, start, np.ascontiguousarray(audio, dtype=np.float32), weights, bar, fresh, 0.0, bpm)

    def finish(self) -> tuple[int, np.ndarray]:
        """(song sample, audio): the held-back last frame, faded out, through gain and
        effects - the end of a render."""
        if self._state is None:
            return 0, np.zeros((2, 0), dtype=np.float32)
        gain = 10.0 ** (self._gain_db / 20.0)
        tail = flush(self.generator, self._state).numpy() * gain
        audio = np.ascontiguousarray(self.chain(tail.astype(np.float32), SAMPLE_RATE, reset=False), dtype=np.float32)
        return self._last_end_sample - FRAME_SAMPLES, audio
