"""The depthformer and the streaming Generator: exact caching, seeded sampling, chunking."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli, small_codec

from model.errors import JamstreamError
from model.generator import Generator, check_timing, fixed_tempo_timing
from model.lm.network import CONFIGS, DepthformerLM, LMConfig, count_parameters, timing_features
from model.lm.sampling import SamplingConfig, apply_guidance, sample

SMALL = LMConfig(
    width=64, heads=4, temporal_layers=2, depth_layers=2, window=64, levels=4, codebook_size=64, style_codebook=64
)


def small_lm(seed: int = 0, config: LMConfig = SMALL) -> DepthformerLM:
    torch.manual_seed(seed)
    model = DepthformerLM(config).eval()
    with torch.no_grad():  # zero-initialised parameters would hide bugs in what they scale
        for p in (model.bos, model.style_pos, model.null_style, model.level_pos):
            p.normal_(0, 0.5)
    return model


def _timing(frames: int, bpm: float = 120.0) -> torch.Tensor:
    return fixed_tempo_timing(0, frames, bpm, 4)


def test_cached_decoding_equals_full_recomputation_across_window_slides():
    model = small_lm()
    frames = 320  # five windows: the ring buffer wraps several times
    tokens = torch.randint(0, SMALL.codebook_size, (1, frames, SMALL.levels))
    timing = _timing(frames).unsqueeze(0)
    style = torch.randint(0, SMALL.style_codebook, (1, 6))
    with torch.no_grad():
        full = model(tokens, timing, style)
        memory = model.style_memory(style, 1)
        cache = model.new_cache(1)
        for f in range(frames):
            prev = None if f == 0 else tokens[:, f - 1]
            x = model.bos.view(1, -1) if prev is None else model.token_embed(prev + model.level_offsets).mean(dim=1)
            h = model.temporal_step(x + model.timing(timing_features(timing[:, f])), memory, cache)
            logits = model.depth_forward(model.depth_inputs(h, tokens[:, f]))
            assert torch.allclose(logits, full[:, f], atol=1e-4), f"frame {f}: {(logits - full[:, f]).abs().max():.2e}"
    assert cache.k.shape[3] == SMALL.window  # memory stays one window, however long the stream


def test_greedy_frames_from_the_depth_cache_match_teacher_forced_argmax():
    model = small_lm(1)
    greedy = SamplingConfig(temperature=0, guidance=0)
    memory = model.style_memory(torch.randint(0, 64, (1, 6)), 1)
    cache = model.new_cache(1)
    timing = _timing(12)
    frames, prev = [], None
    for f in range(12):
        prev = model.next_frame(prev, timing[f : f + 1], memory, cache, greedy, None)
        frames.append(prev)
    tokens = torch.stack(frames, dim=1)
    with torch.no_grad():
        logits = model.temporal_forward(model.frame_inputs(tokens, timing.unsqueeze(0)), memory)
        depth = model.depth_forward(model.depth_inputs(logits[0], tokens[0]))
    assert torch.equal(depth.argmax(-1), tokens[0])


def test_guidance_zero_equals_the_conditional_model():
    model = small_lm(2)
    style = torch.randint(0, 64, (1, 6))
    cfg0 = SamplingConfig(guidance=0.0)
    timing = _timing(6)

    def run(guided: bool) -> torch.Tensor:
        mem = model.style_memory(style, 1)
        if guided:
            mem = torch.cat([mem, model.style_memory(None, 1)])
        cache, gen, prev, out = model.new_cache(mem.shape[0]), torch.Generator().manual_seed(5), None, []
        for f in range(6):
            prev = model.next_frame(prev, timing[f : f + 1], mem, cache, cfg0, gen)
            out.append(prev)
        return torch.stack(out)

    assert torch.equal(run(True), run(False))


def test_guidance_mixes_conditional_and_unconditional_logits():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert torch.allclose(apply_guidance(cond, uncond, 5.0), 6 * cond - 5 * uncond)
    assert torch.equal(apply_guidance(cond, uncond, 0.0), cond)


def test_sampling_respects_top_k_top_p_temperature_and_seed():
    logits = torch.tensor([[5.0, 4.0, 3.0, 0.0, -1.0]]).repeat(2000, 1)
    k2 = sample(logits, SamplingConfig(temperature=1.0, top_k=2), torch.Generator().manual_seed(0))
    assert set(k2.tolist()) <= {0, 1}
    p = sample(logits, SamplingConfig(temperature=1.0, top_k=0, top_p=0.5), torch.Generator().manual_seed(0))
    assert set(p.tolist()) == {0}  # token 0 alone holds > 50% of the mass
    assert torch.equal(sample(logits, SamplingConfig(temperature=0), None), torch.zeros(2000, dtype=torch.long))
    a = sample(logits, SamplingConfig(top_k=0), torch.Generator().manual_seed(3))
    b = sample(logits, SamplingConfig(top_k=0), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    for bad in (
        SamplingConfig(temperature=-1),
        SamplingConfig(top_k=-1),
        SamplingConfig(top_p=0),
        SamplingConfig(guidance=-1),
    ):
        with pytest.raises(JamstreamError):
            bad.validate()


@pytest.fixture(scope="module")
def generator() -> Generator:
    codec = small_codec()
    lm = small_lm(3, LMConfig(**{**SMALL.__dict__, "levels": 4}))
    return Generator(lm, codec, decoder_context=4)


def test_generating_in_chunks_equals_generating_in_one_go(generator):
    style = torch.randint(0, 64, (6,))
    timing = _timing(30)
    whole, _ = generator.generate_tokens(generator.new_state(7), style, timing, 30, SamplingConfig())
    state, parts = generator.new_state(7), []
    for a, b in ((0, 7), (7, 19), (19, 30)):
        tokens, state = generator.generate_tokens(state, style, timing[a:b], b - a, SamplingConfig())
        parts.append(tokens)
    assert torch.equal(torch.cat(parts), whole)


def test_chunks_are_exactly_n_frames_of_audio_and_deterministic_per_seed(generator):
    style = torch.randint(0, 64, (6,))
    a1, s1 = generator.generate_chunk(generator.new_state(1), style, _timing(10), 10)
    a2, _ = generator.generate_chunk(generator.new_state(1), style, _timing(10), 10)
    a3, _ = generator.generate_chunk(generator.new_state(2), style, _timing(10), 10)
    assert a1.shape == (2, 10 * 1920)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, a3)
    b, _ = generator.generate_chunk(s1, style, _timing(10), 10)
    assert b.shape == (2, 10 * 1920)


def test_state_save_and_restore_replays_the_same_continuation(generator, tmp_path):
    style = torch.randint(0, 64, (6,))
    _, state = generator.generate_chunk(generator.new_state(4), style, _timing(8), 8)
    torch.save(state, tmp_path / "state.pt")
    first, _ = generator.generate_chunk(state, style, _timing(8), 8)
    restored = torch.load(tmp_path / "state.pt", weights_only=False)
    again, _ = generator.generate_chunk(restored, style, _timing(8), 8)
    assert torch.equal(first, again)
    reset = generator.reset(state, seed=4)
    assert reset.prev is None and int(reset.cache.pos.max()) == -1


def test_style_can_change_at_a_chunk_boundary_keeping_the_context(generator):
    s1, s2 = torch.randint(0, 64, (6,)), torch.randint(0, 64, (6,))
    _, state = generator.generate_chunk(generator.new_state(9), s1, _timing(6), 6)
    frames_before = state.cache.frame
    _, after = generator.generate_chunk(state, s2, _timing(6), 6)
    assert after.cache.frame == frames_before + 6


def test_audio_prompt_primes_the_context(generator):
    from conftest import music_like

    audio = music_like(1, 1920 * 12)[0]
    state = generator.prime(generator.new_state(0), audio, _timing(12))
    assert state.cache.frame == 12 and state.prev is not None
    chunk, _ = generator.generate_chunk(state, None, _timing(5), 5)
    assert chunk.shape == (2, 5 * 1920)


@pytest.mark.parametrize("bpm", [0.0, -10.0, 400.5])
def test_bpm_outside_zero_to_400_is_rejected(bpm):
    timing = _timing(4)
    timing[:, 0] = bpm
    with pytest.raises(JamstreamError, match="bpm"):
        check_timing(timing, 4)


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "techno", "--bpm", "0", "-o", "x.wav"],
        ["generate", "techno", "--bpm", "401", "-o", "x.wav"],
        ["generate", "", "-o", "x.wav"],
        ["generate", "--mix", "dub techno=0.7", "-o", "x.wav"],
        ["generate", "--mix", "dub techno:lots", "-o", "x.wav"],
        ["generate", "--mix", ":0.5", "-o", "x.wav"],
        ["generate", "-o", "x.wav"],
        ["generate", "techno", "--meter", "4-4", "-o", "x.wav"],
    ],
)
def test_generate_bad_input_is_one_line_and_exit_2(args, capsys, tmp_path):
    args = [a if a != "x.wav" else str(tmp_path / "x.wav") for a in args]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("jamstream: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "x.wav").exists()


def test_large_config_builds_and_runs_a_forward_pass():
    model = DepthformerLM(CONFIGS["large"]).eval()
    n = count_parameters(model)
    assert 300e6 < n < 900e6
    tokens = torch.randint(0, 1024, (1, 3, 16))
    with torch.no_grad():
        logits = model(tokens, _timing(3).unsqueeze(0), torch.randint(0, 1024, (1, 6)))
    assert logits.shape == (1, 3, 16, 1024) and torch.isfinite(logits).all()


def test_bench_lm_reports_every_variant_without_asserting_speed(capsys):
    import json

    code, out, _ = run_cli(["bench", "lm", "--frames", "2", "--lm-threads", "1", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    variants = {(v["cfg"], v["kv_cache"], v["dtype"]) for v in report["variants"]}
    assert {(True, True, "fp32"), (True, False, "fp32"), (False, True, "fp32"), (True, True, "bf16")} <= variants
    for v in report["variants"]:
        assert v["frame_ms"] > 0 and v["tokens_per_s"] > 0 and v["rtf_lm_only"] > 0
    assert [s["streams"] for s in report["streams"]] == [1, 2, 4]
    for s in report["streams"]:
        assert s["rtf_per_stream"] > 0 and s["aggregate_rtf"] == pytest.approx(s["streams"] * s["rtf_per_stream"])


def test_unseen_style_codes_condition_through_their_codebook_vectors():
    """With style_features, a code the table never learned still lands where the style
    quantizer put it: codes with the same codebook vector give the same memory, codes
    with different vectors different memories; without it an untrained code is noise."""
    config = LMConfig(**{**SMALL.__dict__, "style_features": 8})
    model = small_lm(config=config)
    books = torch.randn(config.style_tokens + 2, config.style_codebook, 16)
    books[0, 5] = books[0, 7]  # two codes, one vector
    model.set_style_codebooks(books)
    with torch.no_grad():
        model.style_feature_proj.weight.normal_()
    tokens = torch.zeros(3, config.style_tokens, dtype=torch.long)
    tokens[0, 0], tokens[1, 0], tokens[2, 0] = 5, 7, 9
    mem = model.style_memory(tokens, 3)
    assert torch.allclose(mem[0], mem[1])
    assert (mem[0, 0] - mem[2, 0]).abs().max() > 0.1
    assert float(model.style_embed.weight.abs().max()) == 0.0  # the table starts empty
    with pytest.raises(JamstreamError, match="do not fit"):
        model.set_style_codebooks(torch.randn(2, config.style_codebook, 16))


def test_a_fine_tune_from_a_table_only_lm_starts_where_it_was_with_untrained_codes_zeroed(tmp_path):
    """--init from an LM without the codebook path: the new parts may be missing from
    the checkpoint, the memory of every trained code is unchanged, and the table rows of
    codes no training crop shows (random, never trained) are zeroed."""
    from model.io.checkpoint import load_state_into, load_tensors, save_model
    from model.train.lm_task import LMTask, LMTrainConfig
    from model.train.token_data import TokenClip

    old = small_lm(config=SMALL)
    path = tmp_path / "old.safetensors"
    save_model(old, path, "lm", SMALL.__dict__)
    config = LMConfig(**{**SMALL.__dict__, "style_features": 8})
    style = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])
    clip = TokenClip(
        "c",
        "train",
        "g",
        torch.zeros(40, SMALL.levels, dtype=torch.int16),
        _timing(40).float(),
        style,
        torch.stack([style.roll(1), style.roll(2)]),
    )
    task = LMTask(config, LMTrainConfig(min_frames=10), [clip], torch.randn(12, config.style_codebook, 16))
    new = task.build_model()
    with pytest.raises(JamstreamError, match="missing"):
        load_state_into(new, load_tensors(path, "model"), path)
    load_state_into(new, load_tensors(path, "model"), path, task.init_new_keys)
    task.after_init(new)
    seen = task.seen_style_codes()
    assert int(seen.sum()) > 0 and not bool(seen.all())
    assert torch.equal(new.style_embed.weight[seen], old.style_embed.weight[seen])
    assert float(new.style_embed.weight[~seen].abs().max()) == 0.0
    with torch.no_grad():
        assert torch.allclose(
            new.style_memory(style.view(1, -1)[:, :6], 1), old.style_memory(style.view(1, -1)[:, :6], 1)
        )
    with pytest.raises(ValueError, match="codebooks"):
        LMTask(config, LMTrainConfig(min_frames=10), [clip]).build_model()


def test_fp16_weight_linears_keep_the_logits_and_what_greedy_decoding_picks():
    import copy

    from model.lm.half import HalfLinear, half_linears

    model = small_lm(11)
    half = half_linears(copy.deepcopy(model))
    assert not any(type(m) is torch.nn.Linear for m in half.modules())
    assert sum(isinstance(m, HalfLinear) for m in half.modules()) > 0
    tokens = torch.randint(0, SMALL.codebook_size, (1, 40, SMALL.levels))
    timing, style = _timing(40).unsqueeze(0), torch.randint(0, SMALL.style_codebook, (1, 6))
    with torch.no_grad():
        full, halved = model(tokens, timing, style), half(tokens, timing, style)
    assert halved.dtype == torch.float32 and (halved - full).abs().max() < 0.02
    greedy = SamplingConfig(temperature=0, guidance=0)
    memory = model.style_memory(style, 1)
    frames = {}
    for name, m in (("fp32", model), ("half", half)):
        cache, prev, out = m.new_cache(1), None, []
        for f in range(20):
            prev = m.next_frame(prev, timing[0, f : f + 1], memory, cache, greedy, None)
            out.append(prev)
        frames[name] = torch.cat(out)
    assert torch.equal(frames["fp32"], frames["half"])
