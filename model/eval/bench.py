"""Speed of the generator's parts on this machine: the figures `jamstream bench` prints.

Benchmarks measure, tests check behaviour: nothing here asserts a time. Speed does not
depend on what the weights have learned, so the LM is timed with the shipped weights
when they exist and freshly initialised ones otherwise (said in the output).
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import torch

from model.codec.network import FRAME_RATE, FRAME_SAMPLES, Codec
from model.generator import fixed_tempo_timing
from model.lm.network import DepthformerLM, StreamRows
from model.lm.sampling import SamplingConfig


def _frames_per_second(fn, frames: int, repeats: int, setup=lambda: None) -> float:
    """frames / median wall time of fn(setup()); setup is not timed."""
    times = []
    for _ in range(repeats):
        arg = setup()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(arg)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


@torch.inference_mode()
def bench_lm(
    lm: DepthformerLM, frames: int = 50, repeats: int = 3, context: int = 250, half: DepthformerLM | None = None
) -> list[dict]:
    """Per-frame latency, tokens/s and LM-only real-time factor for each variant.

    Variants: CFG on/off x KV cache on/off x fp32 / bf16 autocast / fp16 weights (`half`, the
    same LM with model.lm.half's linears: what CPU generation runs). Every variant starts from a cache
    already holding `context` frames (untimed), so all see a full window. "cache off"
    recomputes the temporal stack over the whole window for every frame, as a model
    without a cache would.
    """
    c = lm.config
    device = next(lm.parameters()).device
    sampling = SamplingConfig()
    style = torch.zeros(1, c.style_tokens, dtype=torch.long, device=device)
    timing = fixed_tempo_timing(0, context + frames, 120.0, 4).to(device)
    history = torch.randint(0, c.codebook_size, (context, c.levels)).to(device)
    rows = []
    for guided in (True, False):
        memory = lm.style_memory(style, 1)
        if guided:
            memory = torch.cat([memory, lm.style_memory(None, 1)])
        primed = lm.new_cache(memory.shape[0], device=device)
        lm.feed(history, timing[:context], memory, primed)
        variants = [(True, torch.float32), (True, torch.bfloat16), (False, torch.float32)]
        if half is not None:
            variants.append((True, torch.float16))
        for cached, dtype in variants:
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()
            model = half if dtype == torch.float16 else lm

            def run(cache) -> None:
                gen = torch.Generator(device=device).manual_seed(0)
                prev = history[-1:]
                with autocast:
                    for f in range(frames):
                        t = timing[context + f : context + f + 1]
                        if cached:
                            prev = model.next_frame(prev, t, memory, cache, sampling, gen)
                        else:
                            prev = _uncached_frame(lm, history, prev, t, memory, sampling, gen)

            fps = _frames_per_second(run, frames, repeats, setup=primed.clone)
            rows.append(
                {
                    "cfg": guided,
                    "kv_cache": cached,
                    "dtype": {torch.bfloat16: "bf16", torch.float16: "fp16-weights"}.get(dtype, "fp32"),
                    "frame_ms": 1000.0 / fps,
                    "tokens_per_s": fps * c.levels,
                    "rtf_lm_only": fps / FRAME_RATE,
                }
            )
    return rows


def _uncached_frame(lm, history, prev, timing, memory, sampling, gen):
    """What a model without a temporal cache pays: the whole window again, every frame."""
    window = torch.cat([history, prev], dim=0)[-lm.config.window :]
    window_timing = torch.cat([torch.zeros(window.shape[0] - 1, 3, device=timing.device), timing]).unsqueeze(0)
    x = lm.frame_inputs(window.unsqueeze(0), window_timing)
    h = lm.temporal_forward(x.expand(memory.shape[0], -1, -1), memory)[:, -1]
    return lm.sample_levels(h, StreamRows.of([memory.shape[0]], memory.device), [sampling], [gen])


@torch.inference_mode()
def bench_codec(codec: Codec, seconds: float = 10.0, levels: int = 16, repeats: int = 5) -> dict:
    """Encode and decode real-time factors at batch 1, 48 kHz stereo."""
    torch.manual_seed(0)
    audio = torch.randn(1, 2, int(seconds * 48_000)) * 0.1
    codec.encode(audio, levels)  # warm-up
    tokens = codec.encode(audio, levels)
    codec.decode(tokens)
    enc = _frames_per_second(lambda _: codec.encode(audio, levels), 1, repeats)
    dec = _frames_per_second(lambda _: codec.decode(tokens), 1, repeats)
    chunk = tokens[:, : 2 * FRAME_RATE]  # a 2 s chunk, as the generator decodes it
    dec_chunk = _frames_per_second(lambda _: codec.decode(chunk), 1, repeats)
    return {
        "levels": levels,
        "seconds": seconds,
        "encode_rtf": seconds * enc,
        "decode_rtf": seconds * dec,
        "decode_2s_chunk_rtf": 2.0 * dec_chunk,
        "decode_ms_per_frame": 1000.0 / (dec_chunk * chunk.shape[1]),
        "frame_samples": FRAME_SAMPLES,
    }


def bench_streams(generator, counts=(1, 2, 4), frames: int = 50, chunk: int = 5, context: int = 250) -> list[dict]:
    """Real-time factor per stream when N streams play at once through one StreamBatcher,
    each from its own thread in chunks of `chunk` frames, guided, default sampling, codec
    decoding included (as `jamstream serve` runs its plugin instances). Every stream starts
    from a cache holding `context` frames (untimed), so all see a full window."""
    import threading

    from model.streams import BatchedGenerator

    batched = BatchedGenerator(generator)
    lm, c = generator.lm, generator.lm.config
    history = torch.randint(0, c.codebook_size, (context, c.levels), generator=torch.Generator().manual_seed(0))
    timing = fixed_tempo_timing(0, context + max(frames, chunk), 120.0, 4)
    style = torch.zeros(c.style_tokens, dtype=torch.long)

    def primed(seed: int):
        state = batched.new_state(seed)
        lm.feed(history, timing[:context], batched.memory(style, True), state.cache)
        state.prev, state.decoder["history"] = history[-1], history[-batched.decoder_context :].clone()
        return state

    def play(n: int, count: int) -> float:
        states = [primed(s) for s in range(n)]
        gate = threading.Barrier(n + 1)
        errors: list[BaseException] = []

        def stream(s: int) -> None:
            gate.wait()
            state = states[s]
            try:
                for start in range(context, context + count, chunk):
                    k = min(chunk, context + count - start)
                    _, state = batched.generate_chunk(state, style, timing[start : start + k], k)
            except BaseException as error:  # re-raised in the bench's thread
                errors.append(error)

        threads = [threading.Thread(target=stream, args=(s,)) for s in range(n)]
        for t in threads:
            t.start()
        gate.wait()
        begin = time.perf_counter()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - begin

    play(1, chunk)  # warm-up
    rows = []
    for n in counts:
        batcher = batched.batcher
        before = (batcher.frames, batcher.stream_frames)
        wall = play(n, frames)
        passes, made = batcher.frames - before[0], batcher.stream_frames - before[1]
        rtf = frames / FRAME_RATE / wall
        rows.append(
            {
                "streams": n,
                "rtf_per_stream": rtf,
                "aggregate_rtf": n * rtf,
                "frame_ms": 1000 * wall / frames,
                "mean_batch": made / passes if passes else 0.0,  # streams per LM pass
            }
        )
    return rows


@torch.inference_mode()
def bench_speculative(lm: DepthformerLM, draft, frames: int = 25, lookaheads=(1, 2, 3, 4), context: int = 250) -> dict:
    """Speculative against plain decoding of one guided stream at the default sampling, from
    the same full-window context: ms per frame, speed-up, tokens per target pass and the
    share of proposals kept, per lookahead; plus the costs the speed-up is made of (a target
    depth pass over 1 and over k + 1 positions, a draft step, the temporal step), which
    say where speculation pays when the weights are larger (`--config large`)."""
    from model.lm.blocks import GrowingKV
    from model.lm.speculative import Speculation

    c = lm.config
    device = next(lm.parameters()).device
    sampling = SamplingConfig()
    style = torch.zeros(1, c.style_tokens, dtype=torch.long, device=device)
    memory = torch.cat([lm.style_memory(style, 1), lm.style_memory(None, 1)])
    timing = fixed_tempo_timing(0, context + frames, 120.0, 4).to(device)
    history = torch.randint(0, c.codebook_size, (context, c.levels), generator=torch.Generator().manual_seed(0))
    history = history.to(device)
    primed = lm.new_cache(2, device=device)
    lm.feed(history, timing[:context], memory, primed)

    def run(speculation) -> float:
        cache, gen, prev = primed.clone(), torch.Generator(device=device).manual_seed(0), history[-1:]
        start = time.perf_counter()
        for f in range(frames):
            prev = lm.next_frame(prev, timing[context + f : context + f + 1], memory, cache, sampling, gen, speculation)
        return 1000 * (time.perf_counter() - start) / frames

    run(None)  # warm-up
    plain_ms = statistics.median([run(None) for _ in range(2)])
    rows = []
    for k in lookaheads:
        spec = Speculation(draft, k)
        ms = run(spec)
        rows.append(
            {
                "lookahead": k,
                "frame_ms": ms,
                "speedup": plain_ms / ms,
                "tokens_per_target_pass": spec.stats.tokens_per_pass,
                "acceptance": spec.stats.acceptance,
            }
        )
    # The parts: one depth pass of the target over n positions, one draft step, one temporal step.
    h = torch.randn(2, c.width, device=device)

    def depth_pass(n: int) -> float:
        x = torch.randn(2, n, c.width, device=device)

        def once(_):
            y = x
            for blk in lm.depth:
                y = blk(y, kv=GrowingKV())
            lm.depth_norm(y) @ lm.heads_out[0]

        return 1000 / _frames_per_second(once, 1, 5)

    def draft_step(_):
        kv, pending = draft.begin(h)
        draft.advance(kv, pending, 0)

    def temporal(cache):
        lm.temporal_step(torch.randn(2, c.width, device=device), memory, cache)

    costs = {
        "target_depth_pass_ms": {str(n): depth_pass(n) for n in (1, 2, 4, 5)},
        "draft_step_ms": 1000 / _frames_per_second(draft_step, 1, 5),
        "temporal_step_ms": 1000 / _frames_per_second(temporal, 1, 5, setup=primed.clone),
    }
    return {"plain_frame_ms": plain_ms, "lookaheads": rows, "costs": costs}


def predicted_speedup(costs: dict, levels: int, lookahead: int, acceptance: float) -> float:
    """What speculation would gain from these costs at a per-proposal acceptance: each target
    pass keeps (1 - a^(k+1)) / (1 - a) levels on average and costs k draft steps plus one
    depth pass over k + 1 positions; plain decoding pays one depth pass per level. Sampling
    and glue are left out (they cost the same either way at first order)."""
    a, k = min(acceptance, 0.999), lookahead
    per_pass = (1 - a ** (k + 1)) / (1 - a)
    depth = costs["target_depth_pass_ms"]
    wide = depth.get(str(k + 1), depth[max(depth, key=int)])
    plain = costs["temporal_step_ms"] + levels * depth["1"]
    speculative = costs["temporal_step_ms"] + levels / per_pass * (k * costs["draft_step_ms"] + wide)
    return plain / speculative
