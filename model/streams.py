"""Batched streams: many independent generator streams advanced in one batched pass per frame.

Why: on a CPU this LM is bound by reading its weights, not by arithmetic - a frame of four
guided streams (8 rows) costs about what a frame of one costs (`jamstream bench lm`,
`streams`). So `jamstream serve`, which runs one stream per plugin instance, lets them
share each pass instead of taking turns.

`StreamBatcher.generate_tokens` has `Generator.generate_tokens`'s contract and may be called
from any number of threads at once. One thread (the batcher's) owns the LM: it takes every
chunk asked for, advances all of them a frame at a time, and lets a chunk asked for later
join at the next frame boundary, so a stream never waits for another's chunk to end. Each
stream keeps its own state, style, timing, seed and sampling: a stream draws the same
tokens in a batch as alone (tests/test_streams.py). Decoding stays in the caller's thread
(the codec is cheap and per stream). With a speculative Generator, a pass that holds a
single stream runs speculatively (acceptance differs per stream, so batched passes do not).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from model.generator import Generator, GeneratorState
from model.lm.sampling import SamplingConfig


@dataclass(eq=False)
class _Chunk:
    """One caller's chunk in flight: its stream's copied state and where it is."""

    state: GeneratorState
    memory: torch.Tensor  # [rows, 6, d]
    timing: torch.Tensor  # [n, 3]
    sampling: SamplingConfig
    generator: torch.Generator
    out: torch.Tensor  # [n, L]
    frame: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.frame >= self.out.shape[0]


class StreamBatcher:
    """The one thread that runs a Generator's LM for every stream that asks."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self._pending: list[_Chunk] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.frames = 0  # batched frame passes made
        self.stream_frames = 0  # stream frames made in them (stream_frames / frames = mean batch)

    def generate_tokens(
        self, state: GeneratorState, style_tokens, timing: torch.Tensor, n_frames: int, sampling: SamplingConfig
    ) -> tuple[torch.Tensor, GeneratorState]:
        """`Generator.generate_tokens`, with the frames made in a batch with other callers'."""
        sampling, timing, state, gen, memory = self.generator.begin_chunk(
            state, style_tokens, timing, n_frames, sampling
        )
        chunk = _Chunk(
            state,
            memory,
            timing,
            sampling,
            gen,
            torch.empty(n_frames, self.generator.levels, dtype=torch.long),
        )
        with self._wake:
            self._pending.append(chunk)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="jamstream-stream-batcher", daemon=True)
                self._thread.start()
            self._wake.notify()
        chunk.done.wait()
        if chunk.error is not None:
            raise chunk.error
        self.generator.end_chunk(state, gen, n_frames)
        return chunk.out, state

    def _loop(self) -> None:
        active: list[_Chunk] = []
        while True:
            with self._wake:
                while not active and not self._pending:
                    self._wake.wait()
                active += self._pending
                self._pending.clear()
            try:
                self._step(active)
            except BaseException as error:  # every waiting caller gets it, in its own thread
                for chunk in active:
                    chunk.error = error
                    chunk.done.set()
                active = []
                continue
            for chunk in active:
                if chunk.finished:
                    chunk.done.set()
            active = [c for c in active if not c.finished]

    @torch.inference_mode()
    def _step(self, active: list[_Chunk]) -> None:
        lm = self.generator.lm
        frames = lm.next_frames(
            [c.state.prev for c in active],
            torch.stack([c.timing[c.frame] for c in active]),
            torch.cat([c.memory for c in active]),
            [c.state.cache for c in active],
            [c.sampling for c in active],
            [c.generator for c in active],
            self.generator.speculation,  # used while a single stream plays
        )
        for chunk, frame in zip(active, frames):
            chunk.out[chunk.frame] = frame
            chunk.state.prev = frame
            chunk.frame += 1
        self.frames += 1
        self.stream_frames += len(active)


class BatchedGenerator(Generator):
    """A Generator whose token generation goes through a shared StreamBatcher: give one to
    every Engine that may play at the same time on the same models."""

    def __init__(self, generator: Generator):
        self.lm, self.codec, self.decoder_context = generator.lm, generator.codec, generator.decoder_context
        self.speculation = generator.speculation
        self.batcher = StreamBatcher(generator)

    def generate_tokens(self, state, style_tokens, timing, n_frames, sampling):
        return self.batcher.generate_tokens(state, style_tokens, timing, n_frames, sampling)
