"""Turning logits into tokens: guidance, temperature, top-k, top-p, all seeded.

Defaults are Magenta RT v1's (temperature 1.1, top-k 40), except guidance: 3.0, not 5.0.
Guidance mixes the style-conditioned and unconditioned logits as (1 + w) * cond - w * uncond,
so w = 0 is exactly the conditional model. Why 3: the LM trained on 12 hours (lm7) follows
its prompt well enough that 5 pushes it off the music it learned - a renaissance-polyphony
prompt alone came out nearer the chorale prompt at 5 (margin -0.14, +0.00 over two seeds)
and far off every genre at 8 (-0.24, -0.22), but on its own genre at 3 (+0.15, +0.20).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.errors import JamstreamError


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.1
    top_k: int = 40
    top_p: float = 1.0
    guidance: float = 3.0

    def validate(self) -> "SamplingConfig":
        if not self.temperature >= 0:
            raise JamstreamError(f"temperature must be >= 0 (got {self.temperature})")
        if self.top_k < 0:
            raise JamstreamError(f"top-k must be >= 0, 0 meaning off (got {self.top_k})")
        if not 0 < self.top_p <= 1:
            raise JamstreamError(f"top-p must be in (0, 1] (got {self.top_p})")
        if self.guidance < 0:
            raise JamstreamError(f"guidance must be >= 0 (got {self.guidance})")
        return self


def apply_guidance(cond: torch.Tensor, uncond: torch.Tensor | None, weight: float) -> torch.Tensor:
    if uncond is None or weight == 0:
        return cond
    return (1 + weight) * cond - weight * uncond


def support(logits: torch.Tensor, cfg: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens `cfg` may draw from logits [..., V] and their probabilities: (probs [..., K],
    ids [..., K]), most likely first. Temperature 0 is greedy: the argmax with probability 1.

    Why a support rather than a masked [V] softmax: with top-k 40 of 1024 codes the draw then
    touches 40 values instead of 1024 (this CPU is memory-bound at these sizes), and
    speculative decoding needs the very same distribution the plain sampler draws from.
    """
    if cfg.temperature == 0:
        ids = logits.argmax(dim=-1, keepdim=True)
        return torch.ones(ids.shape, dtype=torch.float32, device=logits.device), ids
    scaled = logits.float() / cfg.temperature
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        values, ids = torch.topk(scaled, cfg.top_k, dim=-1)
    else:
        values, ids = torch.sort(scaled, dim=-1, descending=True)
    if cfg.top_p < 1.0:
        probs = values.softmax(dim=-1)
        # Drop a token once the mass before it already reaches top_p (the first always stays).
        values = values.masked_fill(probs.cumsum(dim=-1) - probs >= cfg.top_p, float("-inf"))
    return values.softmax(dim=-1), ids


def dense(probs: torch.Tensor, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """A support's distribution over the whole vocabulary [..., V] (zeros elsewhere)."""
    return torch.zeros(*probs.shape[:-1], vocab, dtype=probs.dtype, device=probs.device).scatter(-1, ids, probs)


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the index whose cumulative mass first exceeds uniform [...] in [0, 1)."""
    cdf = probs.cumsum(dim=-1)
    target = (uniform.to(cdf.dtype) * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).clamp_max(probs.shape[-1] - 1).squeeze(-1)


def sample(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """logits [..., V] -> token ids [...]; temperature 0 is greedy. Every row draws from `generator`."""
    probs, ids = support(logits, cfg)
    if cfg.temperature == 0:
        return ids[..., 0]
    uniform = torch.rand(probs.shape[:-1], generator=generator, device=probs.device)
    return ids.gather(-1, draw(probs, uniform).unsqueeze(-1)).squeeze(-1)


def sample_streams(
    logits: torch.Tensor, configs: Sequence[SamplingConfig], generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """logits [S, V], one row per stream -> tokens [S]. Each stream keeps its own sampling
    settings and its own random generator, so a stream draws the same tokens alone as in a
    batch: rows with equal settings share one support computation, the uniforms come one
    per stream."""
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    groups: dict[SamplingConfig, list[int]] = {}
    for row, cfg in enumerate(configs):
        groups.setdefault(cfg, []).append(row)
    for cfg, rows in groups.items():
        index = torch.tensor(rows, device=logits.device) if len(rows) < logits.shape[0] else None
        part = logits if index is None else logits.index_select(0, index)
        probs, ids = support(part, cfg)
        if cfg.temperature == 0:
            tokens = ids[:, 0]
        else:
            uniform = torch.cat([torch.rand(1, generator=generators[r], device=logits.device) for r in rows])
            tokens = ids.gather(-1, draw(probs, uniform).unsqueeze(-1)).squeeze(-1)
        if index is None:
            return tokens
        out[index] = tokens
    return out
