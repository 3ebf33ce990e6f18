"""Speculative sampling of a frame's levels: the draft proposes, the target checks k at once.

For one stream (its 1 or 2 rows, guidance included) at temporal output h:
1. the draft samples k levels ahead, x_j ~ q_j, through its own small depth stack;
2. the target's depth stack runs all k + 1 positions in one pass (the pending input plus
   the k proposals), giving its distributions p_j for those levels - the guided,
   temperature / top-k / top-p processed ones the plain sampler draws from;
3. x_j is kept while u_j < min(1, p_j(x_j) / q_j(x_j)); the first rejected level is drawn
   from max(0, p_j - q_j) normalised; if all k are kept, the next level is drawn from
   p_k, the pass's extra position. Both caches then forget the positions past the last
   kept level.
This is Leviathan et al. / Chen et al.'s speculative sampling: each level's token has
exactly the target's distribution whatever the draft proposes (tests/test_speculative.py
counts it), so only the speed depends on the draft. Greedy (temperature 0) makes p and q
one-hot, and the result is the target's argmax, token for token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from model.lm.blocks import GrowingKV
from model.lm.sampling import SamplingConfig, apply_guidance, dense, draw, support


@dataclass
class SpeculationStats:
    """Counts across frames: what `bench lm` reports as tokens per target pass."""

    target_passes: int = 0
    proposed: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def tokens_per_pass(self) -> float:
        return self.tokens / self.target_passes if self.target_passes else 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


# Levels proposed per target pass. On this CPU no lookahead pays for the shipped pair (1 and 2
# came out fastest in two `bench lm` runs, both slower than plain); 3 is what the measured
# costs of the `large` shape predict as best there (docs/ARCHITECTURE.md, LM and Generator).
DEFAULT_LOOKAHEAD = 3


def load_speculation(draft: str | None, lookahead: int = DEFAULT_LOOKAHEAD) -> "Speculation":
    """The draft at `draft` (None: the shipped one), ready for a Generator."""
    from model.lm.draft import load_draft

    return Speculation(load_draft(draft), lookahead)


@dataclass
class Speculation:
    """A draft and how far it looks ahead, with the counts of what it achieved."""

    draft: torch.nn.Module
    lookahead: int = DEFAULT_LOOKAHEAD
    stats: SpeculationStats = field(default_factory=SpeculationStats)

    def levels(self, lm, h: torch.Tensor, streams, sampling: SamplingConfig, generator) -> torch.Tensor:
        return speculative_levels(lm, self.draft, h, streams, sampling, generator, self.lookahead, self.stats)


def _distribution(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """What the plain sampler draws from, as a dense [..., V] distribution."""
    probs, ids = support(logits, cfg)
    return dense(probs, ids, logits.shape[-1])


def _pick(distribution: torch.Tensor, sampling: SamplingConfig, generator) -> torch.Tensor:
    """One token [1] from a dense [V] distribution (its argmax when greedy)."""
    if not sampling.temperature:
        return distribution.argmax().view(1)
    return draw(distribution.view(1, -1), _uniform(generator))


def _uniform(generator: torch.Generator | None, n: int = 1) -> torch.Tensor:
    """Uniforms on the generator's device (the LM's: a CUDA LM samples with a CUDA generator)."""
    return torch.rand(n, generator=generator, device=generator.device if generator is not None else None)


@torch.inference_mode()
def speculative_levels(
    lm,
    draft,
    h: torch.Tensor,
    streams,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
    lookahead: int,
    stats: SpeculationStats | None = None,
) -> torch.Tensor:
    """One stream's frame [1, L] from its temporal outputs h [rows, d]."""
    if len(streams.rows) != 1:
        raise ValueError("speculative decoding runs one stream at a time")
    c = lm.config
    levels, rows = c.levels, streams.stream_of_row
    guided = streams.guided
    weight = sampling.guidance if guided else 0.0

    def guide(logits: torch.Tensor) -> torch.Tensor:  # [R, ..., V] -> [..., V]
        return apply_guidance(logits[0], logits[1] if guided else None, weight)

    target_kv = [GrowingKV() for _ in lm.depth]
    target_pending = (lm.depth_in(h) + lm.level_pos[0]).unsqueeze(1)  # [R, 1, d]
    draft_kv, draft_pending = draft.begin(h)
    out = torch.empty(levels, dtype=torch.long, device=h.device)
    level = 0
    while level < levels:
        k = min(lookahead, levels - level)
        # 1. the draft proposes levels level .. level + k - 1
        proposals, qs = [], []
        for j in range(k):
            q = _distribution(guide(draft.advance(draft_kv, draft_pending, level + j)), sampling)
            x = _pick(q, sampling, generator)
            proposals.append(x)
            qs.append(q)
            if level + j + 1 < levels:
                draft_pending = draft.token_input(x, level + j, rows)
        # 2. the target scores them all in one pass: positions level .. level + k (the last
        #    one only when a level follows)
        extra = level + k < levels
        checked = proposals if extra else proposals[:-1]
        inputs = [target_pending] + [lm.level_input(x, level + j, streams).unsqueeze(1) for j, x in enumerate(checked)]
        y = torch.cat(inputs, dim=1)
        for blk, kv in zip(lm.depth, target_kv):
            y = blk(y, kv=kv)
        n = y.shape[1]
        logits = torch.einsum("rnd,ndv->rnv", lm.depth_norm(y), lm.heads_out[level : level + n])
        p = _distribution(guide(logits), sampling)  # [n, V]
        # 3. keep, correct, or take the extra level
        x = torch.cat(proposals)
        q = torch.stack(qs)
        picked = torch.arange(k, device=h.device)
        ratio = p[picked, x] / q[picked, x]
        kept = int((_uniform(generator, k) < ratio).long().cumprod(0).sum())
        out[level : level + kept] = x[:kept]
        if kept < k:
            residual = (p[kept] - q[kept]).clamp_min(0.0)
            if float(residual.sum()) <= 0:  # p == q at that level: cannot be rejected, but be safe
                residual = p[kept]
            token = _pick(residual, sampling, generator)
        elif extra:
            token = _pick(p[k], sampling, generator)
        else:
            token = None
        new_level = level + kept + (token is not None)
        if token is not None:
            out[level + kept] = token
        if stats is not None:
            stats.target_passes += 1
            stats.proposed += k
            stats.accepted += kept
            stats.tokens += new_level - level
        if new_level >= levels:
            break
        # Both caches keep the positions whose inputs were kept tokens: 0 .. new_level - 1.
        for kv in target_kv:
            kv.truncate(new_level)
        target_pending = lm.level_input(token, new_level - 1, streams).unsqueeze(1)
        for kv in draft_kv:
            kv.truncate(min(kv.length, new_level))
        # The draft ran positions up to level + k - 1; when all k were kept it still owes
        # position level + k (after the last proposal) before the extra level's.
        owed = [draft.token_input(x[kept - 1 : kept], level + k - 1, rows)] if kept == k else []
        draft_pending = torch.cat([*owed, draft.token_input(token, new_level - 1, rows)], dim=1)
        level = new_level
    return out.view(1, -1)
