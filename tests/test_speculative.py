"""Speculative decoding keeps the target's output: token for token when greedy, the same
distribution when sampling (counted, chi-square), whatever the draft proposes."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2_contingency
from test_lm import SMALL, small_lm

from model.generator import fixed_tempo_timing
from model.lm.draft import DraftConfig, DraftDepth
from model.lm.network import LMConfig, StreamRows
from model.lm.sampling import SamplingConfig
from model.lm.speculative import Speculation, SpeculationStats, speculative_levels


def small_draft(seed: int, target: LMConfig = SMALL) -> DraftDepth:
    torch.manual_seed(seed)
    cfg = DraftConfig(levels=target.levels, codebook_size=target.codebook_size, target_width=target.width, width=32)
    return DraftDepth(cfg).eval()


def draft_like(model, noise: float, seed: int = 0) -> DraftDepth:
    """A draft holding the target's own depth stack, perturbed: noise 0 proposes exactly
    what the target would, larger noise is wrong more often."""
    c = model.config
    cfg = DraftConfig(c.levels, c.codebook_size, c.width, c.width, c.heads, c.depth_layers, c.mlp_ratio)
    draft = DraftDepth(cfg).eval()
    draft.depth_in.load_state_dict(model.depth_in.state_dict())
    draft.blocks.load_state_dict(model.depth.state_dict())
    draft.norm.load_state_dict(model.depth_norm.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        draft.token_embed.weight.copy_(model.token_embed.weight)
        draft.level_pos.copy_(model.level_pos)
        draft.heads_out.copy_(model.heads_out + noise * torch.randn(model.heads_out.shape, generator=gen))
    return draft


def _guided(model, seed: int):
    style = torch.randint(0, SMALL.style_codebook, (1, 6), generator=torch.Generator().manual_seed(seed))
    return torch.cat([model.style_memory(style, 1), model.style_memory(None, 1)])


@pytest.mark.parametrize("lookahead", [1, 2, 3, 5])
@pytest.mark.parametrize("noise", [0.0, 0.3, None])
def test_greedy_speculative_decoding_equals_greedy_plain_decoding(lookahead, noise):
    model = small_lm(6)
    draft = small_draft(7) if noise is None else draft_like(model, noise)
    greedy = SamplingConfig(temperature=0, guidance=2.0)
    memory, timing = _guided(model, 1), fixed_tempo_timing(0, 40, 110.0, 4)
    speculation = Speculation(draft, lookahead)

    def run(spec) -> torch.Tensor:
        cache, prev, frames = model.new_cache(2), None, []
        for f in range(40):
            prev = model.next_frame(prev, timing[f : f + 1], memory, cache, greedy, None, spec)
            frames.append(prev)
        return torch.cat(frames)

    assert torch.equal(run(speculation), run(None))
    stats = speculation.stats
    assert stats.tokens == 40 * SMALL.levels
    if noise == 0.0:  # a draft that is always right: every pass keeps all it checks, plus one
        assert stats.acceptance == 1.0
        assert stats.target_passes == 40 * -(-SMALL.levels // (lookahead + 1))
    elif noise is not None:
        assert 0 < stats.acceptance < 1, stats


@pytest.mark.parametrize(
    "sampling",
    [SamplingConfig(temperature=1.0, top_k=0, guidance=1.5), SamplingConfig(temperature=1.1, top_k=5, top_p=0.9)],
)
def test_speculative_sampling_draws_the_target_distribution(sampling):
    """Frames of a 3-level, 6-code LM from one context: the joint histogram of (level 0, 1,
    2) over 216 cells, plain against speculative, must not tell the two apart."""
    cfg = LMConfig(**{**SMALL.__dict__, "levels": 3, "codebook_size": 6})
    model = small_lm(8, cfg)
    draft = draft_like(model, 0.5)
    memory = _guided(model, 2)
    cache = model.new_cache(2)
    x = model.stream_inputs([None], fixed_tempo_timing(0, 1, 120.0, 4))
    h = model.temporal_step(x.expand(2, -1), memory, cache)
    streams = StreamRows.of([2])
    draws = 3000
    plain_gen, spec_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    stats = SpeculationStats()
    plain = torch.cat([model.sample_levels(h, streams, [sampling], [plain_gen]) for _ in range(draws)])
    spec = torch.cat([speculative_levels(model, draft, h, streams, sampling, spec_gen, 2, stats) for _ in range(draws)])

    def cells(frames: torch.Tensor) -> torch.Tensor:
        return torch.bincount(frames[:, 0] * 36 + frames[:, 1] * 6 + frames[:, 2], minlength=216)

    table = torch.stack([cells(plain), cells(spec)])
    table = table[:, table.sum(0) > 0]
    p_value = chi2_contingency(table.numpy())[1]
    assert p_value > 1e-3, f"speculative sampling moved the distribution (chi-square p = {p_value:.2e})"
    assert 0 < stats.acceptance < 1  # the random draft is sometimes right, sometimes corrected


def test_a_broken_sampler_is_caught_by_the_same_count():
    """The check above can fail: accepting every proposal draws the draft's distribution."""
    cfg = LMConfig(**{**SMALL.__dict__, "levels": 3, "codebook_size": 6})
    model, draft = small_lm(8, cfg), small_draft(9, cfg)
    sampling = SamplingConfig(temperature=1.0, top_k=0, guidance=1.5)
    memory = _guided(model, 2)
    x = model.stream_inputs([None], fixed_tempo_timing(0, 1, 120.0, 4))
    h = model.temporal_step(x.expand(2, -1), memory, model.new_cache(2))
    streams = StreamRows.of([2])
    gen = torch.Generator().manual_seed(0)
    plain = torch.cat([model.sample_levels(h, streams, [sampling], [gen]) for _ in range(3000)])
    # The draft alone (what a sampler that never rejects would emit).
    dgen = torch.Generator().manual_seed(1)
    drafts = []
    for _ in range(3000):
        kv, pending = draft.begin(h)
        frame = []
        for level in range(3):
            logits = draft.advance(kv, pending, level)
            guided = (1 + 1.5) * logits[0] - 1.5 * logits[1]
            token = torch.multinomial(guided.softmax(-1), 1, generator=dgen)
            frame.append(token)
            if level < 2:
                pending = draft.token_input(token, level, streams.stream_of_row)
        drafts.append(torch.cat(frame))
    drafts = torch.stack(drafts)

    def cells(frames):
        return torch.bincount(frames[:, 0] * 36 + frames[:, 1] * 6 + frames[:, 2], minlength=216)

    table = torch.stack([cells(plain), cells(drafts)])
    table = table[:, table.sum(0) > 0]
    assert chi2_contingency(table.numpy())[1] < 1e-3


def test_a_greedy_generator_with_a_draft_makes_the_same_audio(tmp_path):
    from conftest import small_codec

    from model.generator import Generator
    from model.lm.draft import load_draft, save_draft

    cfg = LMConfig(**{**SMALL.__dict__, "levels": 4})
    lm = small_lm(3, cfg)
    save_draft(draft_like(lm, 0.2), tmp_path / "draft.safetensors")
    draft = load_draft(tmp_path / "draft.safetensors")
    codec = small_codec()
    plain = Generator(lm, codec, decoder_context=4)
    fast = Generator(lm, codec, decoder_context=4, speculation=Speculation(draft, 2))
    greedy = SamplingConfig(temperature=0)
    timing = fixed_tempo_timing(0, 12, 120.0, 4)
    style = torch.randint(0, 64, (6,))
    a, _ = plain.generate_chunk(plain.new_state(0), style, timing, 12, greedy)
    b, _ = fast.generate_chunk(fast.new_state(0), style, timing, 12, greedy)
    assert torch.equal(a, b)
    assert fast.speculation.stats.tokens == 12 * 4 and fast.speculation.stats.accepted > 0


def test_a_missing_or_wrong_draft_is_one_line_exit_2(tmp_path, capsys):
    from conftest import run_cli

    from model.lm.draft import save_draft
    from model.lm.network import save_lm

    save_lm(small_lm(0), tmp_path / "lm.safetensors")
    save_draft(small_draft(0), tmp_path / "small.safetensors")  # drafts for a width-64 LM, not the shipped one
    cases = (
        (tmp_path / "none.safetensors", "none.safetensors"),
        (tmp_path / "lm.safetensors", "'lm' model"),
        (tmp_path / "small.safetensors", "train a draft for it"),
    )
    for draft, says in cases:
        code, _, err = run_cli(
            ["generate", "jazz", "-o", str(tmp_path / "x.wav"), "--seconds", "1", "--draft", str(draft)], capsys
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
