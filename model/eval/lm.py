"""Held-out token NLL of the LM beside a unigram baseline.

The unigram baseline (each level's token frequencies on the train split) is what a model
that ignored all context would score; the gap between the two is what the context,
style and timing buy. The model's figure is model.eval.nll.heldout_nll, the one LoRA
validation reads too.
"""

from __future__ import annotations

import math

import torch

from model.eval.nll import heldout_nll
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


def evaluate_lm(model: DepthformerLM, clips: list[TokenClip], split: str = "test") -> dict:
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == split]
    nll = heldout_nll(model, test)
    uni = unigram_nll(train, test, model.config.levels, model.config.codebook_size)
    return {
        "split": split,
        "clips": len(test),
        "nll": nll,
        "unigram_nll": uni,
        "perplexity": math.exp(nll),
        "unigram_perplexity": math.exp(uni),
    }
