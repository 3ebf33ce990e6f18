"""Held-out token NLL of an LM: the one figure `jamstream eval lm`, LoRA validation and the
GPU training script's best-state choice all read.

Each clip is cut into non-overlapping windows of `window` frames (default: the LM's
attention window) and each window is scored from the start of a stream (BOS before its
first frame), style on. Every token of every clip counts once, a last window of a single
frame included: that frame's tokens are real next-token predictions (level 0 from BOS,
timing and style; the finer levels from the coarser ones through the depth stack), so
leaving them out would only make the set of scored tokens depend on how a clip's length
falls against the window. (LoRA validation used to skip such one-frame tails - a text-LM
habit, where a one-token window has no target - and so disagreed with `jamstream eval
lm` on clips one frame longer than a multiple of the window.)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.lm.network import style_prefix
from model.train.token_data import TokenClip


@torch.no_grad()
def heldout_nll(lm: nn.Module, clips: list[TokenClip], window: int | None = None) -> float:
    """Mean next-token NLL (nats/token) of a DepthformerLM over every token of `clips`.

    The LM's train/eval mode is left as it was found (validation runs between training steps)."""
    config = lm.config
    window = window or config.window
    device = next(lm.parameters()).device
    was_training = lm.training
    lm.eval()
    total, count = 0.0, 0
    try:
        for clip in clips:
            style = style_prefix(clip.style, config).unsqueeze(0).to(device)
            for start in range(0, clip.tokens.shape[0], window):
                tokens = clip.tokens[start : start + window, : config.levels].long().unsqueeze(0).to(device)
                timing = clip.timing[start : start + window].unsqueeze(0).to(device)
                logits = lm(tokens, timing, style)
                nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens.reshape(-1), reduction="sum")
                total += float(nll)
                count += tokens.numel()
    finally:
        lm.train(was_training)
    return total / max(1, count)
