"""Held-out token NLL of the LM beside a unigram baseline.

The unigram baseline (each level's token frequencies on the train split) is what a model
that ignored all context would score; the gap between the two is what the context,
style and timing buy.
"""

from __future__ import annotations

import math

import torch

from model.lm.network import DepthformerLM
from model.train.token_data import TokenClip


def unigram_nll(train: list[TokenClip], test: list[TokenClip], levels: int, vocab: int) -> float:
    counts = torch.ones(levels, vocab, dtype=torch.float64)  # add-one smoothing
    for c in train:
        t = c.tokens[:, :levels].long()
        for lv in range(levels):
            counts[lv] += torch.bincount(t[:, lv], minlength=vocab).double()
    logp = (counts / counts.sum(dim=1, keepdim=True)).log()
    total, n = 0.0, 0
    for c in test:
        t = c.tokens[:, :levels].long()
        total -= float(logp.gather(1, t.T).sum())
        n += t.numel()
    return total / max(1, n)


@torch.inference_mode()
def model_nll(model: DepthformerLM, test: list[TokenClip], segment: int | None = None) -> float:
    """Mean NLL (nats/token) over test clips, in segments one window long, style on."""
    model.eval()
    device = next(model.parameters()).device
    segment = segment or model.config.window
    levels = model.config.levels
    total, n = 0.0, 0
    for c in test:
        for start in range(0, c.tokens.shape[0], segment):
            tok = c.tokens[start : start + segment, :levels].long().unsqueeze(0).to(device)
            if tok.shape[1] == 0:
                continue
            timing = c.timing[start : start + segment].unsqueeze(0).to(device)
            style = c.style[: model.config.style_tokens].unsqueeze(0).to(device)
            nll = model(tok, timing, style, return_loss=True)
            total += float(nll) * tok[0].numel()
            n += tok[0].numel()
    return total / max(1, n)


def evaluate_lm(model: DepthformerLM, clips: list[TokenClip], split: str = "test") -> dict:
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == split]
    nll = model_nll(model, test)
    uni = unigram_nll(train, test, model.config.levels, model.config.codebook_size)
    return {
        "split": split,
        "clips": len(test),
        "nll": nll,
        "unigram_nll": uni,
        "perplexity": math.exp(nll),
        "unigram_perplexity": math.exp(uni),
    }
