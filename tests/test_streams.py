"""Batched streams: several independent streams in one pass draw what each draws alone."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import small_codec
from test_lm import SMALL, small_lm

from model.generator import Generator, fixed_tempo_timing
from model.lm.network import LMConfig
from model.lm.sampling import SamplingConfig
from model.streams import BatchedGenerator, StreamBatcher

SETTINGS = [
    SamplingConfig(),
    SamplingConfig(temperature=0.8, top_k=5, guidance=1.5),
    SamplingConfig(temperature=0, guidance=2.0),
    SamplingConfig(temperature=1.0, top_k=0, top_p=0.7, guidance=0.0),
]


def _stream(model, s: int, guided: bool):
    style = torch.randint(0, SMALL.style_codebook, (1, 6), generator=torch.Generator().manual_seed(s))
    memory = model.style_memory(style, 1)
    if guided:
        memory = torch.cat([memory, model.style_memory(None, 1)])
    return memory, model.new_cache(memory.shape[0]), torch.Generator().manual_seed(100 + s)


def test_a_stream_draws_the_same_frames_in_a_batch_as_alone():
    model = small_lm(4)
    guided = [True, True, True, False]
    starts = [0, 7, 3, 0]  # streams at different frames of their own songs, some at their start
    bpms = [120.0, 97.0, 140.0, 60.0]
    timings = [fixed_tempo_timing(st, 40, bpm, 4) for st, bpm in zip(starts, bpms)]

    def alone(s: int) -> torch.Tensor:
        memory, cache, gen = _stream(model, s, guided[s])
        prev, frames = None, []
        for f in range(30):
            prev = model.next_frame(prev, timings[s][f : f + 1], memory, cache, SETTINGS[s], gen)
            frames.append(prev[0])
        return torch.stack(frames)

    streams = [_stream(model, s, guided[s]) for s in range(4)]
    prevs, batched = [None] * 4, []
    for f in range(30):
        out = model.next_frames(
            prevs,
            torch.stack([t[f] for t in timings]),
            torch.cat([m for m, _, _ in streams]),
            [c for _, c, _ in streams],
            SETTINGS,
            [g for _, _, g in streams],
        )
        prevs = list(out)
        batched.append(out)
    batched = torch.stack(batched, dim=1)
    for s in range(4):
        assert torch.equal(batched[s], alone(s)), f"stream {s} differs"


@pytest.fixture(scope="module")
def generator() -> Generator:
    return Generator(small_lm(5, LMConfig(**{**SMALL.__dict__, "levels": 4})), small_codec(), decoder_context=4)


def test_callers_in_many_threads_get_what_each_gets_alone_and_share_frame_passes(generator):
    batcher = StreamBatcher(generator)
    lengths = [3, 8, 5, 1, 6]
    styles = [torch.randint(0, 64, (6,), generator=torch.Generator().manual_seed(s)) for s in range(5)]
    states = [generator.new_state(seed=s, guided=s != 2) for s in range(5)]
    timing = [fixed_tempo_timing(0, n, 90.0 + 10 * s, 4) for s, n in enumerate(lengths)]
    sampling = [SETTINGS[s % len(SETTINGS)] for s in range(5)]
    expected = []
    for s in range(5):  # two chunks per stream, the second continuing the first's state
        a, st = generator.generate_tokens(states[s], styles[s], timing[s], lengths[s], sampling[s])
        b, st = generator.generate_tokens(st, styles[s], timing[s], lengths[s], sampling[s])
        expected.append((torch.cat([a, b]), st))
    results: dict[int, tuple] = {}
    gate = threading.Barrier(5)

    def play(s: int) -> None:
        gate.wait()
        a, st = batcher.generate_tokens(states[s], styles[s], timing[s], lengths[s], sampling[s])
        b, st = batcher.generate_tokens(st, styles[s], timing[s], lengths[s], sampling[s])
        results[s] = (torch.cat([a, b]), st)

    threads = [threading.Thread(target=play, args=(s,)) for s in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in range(5):
        tokens, state = results[s]
        want_tokens, want_state = expected[s]
        assert torch.equal(tokens, want_tokens), f"stream {s}"
        # A batched matmul may sum in another order: the caches agree to float rounding.
        assert torch.allclose(state.cache.k, want_state.cache.k, atol=1e-5) and torch.equal(state.rng, want_state.rng)
        assert state.frames == want_state.frames
    assert batcher.stream_frames == 2 * sum(lengths)
    assert batcher.frames < batcher.stream_frames  # chunks really shared passes


def test_a_failing_pass_reaches_its_callers_and_the_batcher_serves_on(generator):
    batched = BatchedGenerator(generator)
    state = batched.new_state(seed=1)
    timing = fixed_tempo_timing(0, 4, 120.0, 4)
    bad = torch.full((6,), 10_000)  # a style code far outside the table: the pass fails
    with pytest.raises(IndexError):
        batched.generate_tokens(state, bad, timing, 4, SamplingConfig())
    audio, _ = batched.generate_chunk(state, torch.zeros(6, dtype=torch.long), timing, 4)
    alone, _ = generator.generate_chunk(state, torch.zeros(6, dtype=torch.long), timing, 4)
    assert torch.equal(audio, alone)
