"""Half-precision weights for CPU generation: every linear layer's weight kept in float16.

Why: on this CPU a frame is bound by reading the weights (a 256 x 1024 linear takes ~240 us
from memory, ~72 us from cache), so halving the bytes read is what speeds it up. Measured
in one process, interleaved (12 x 10 frames each, 1 and 2 threads): fp16 weights 26.6-32.0
ms a frame against fp32 37.4-45.5 ms (1.25-1.7x); logits within 0.01 of fp32, the same
argmax at every position. The shipped weights are fp16 files, so nothing is lost in them;
only activations are rounded to fp16 on the way into each linear (accumulation stays in
float32 inside the kernel). Whole-model half is slower here (layer norms, softmax and
attention are slow in half on CPU), and bf16 weights gained less (34-36 ms) and moved
logits ten times as far - so it is float16, and linears only.

Generation only: training and LoRA adapters need nn.Linear (peft wraps them), so a model
with adapters keeps its fp32 linears (bridge/jam/stack.py decides).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class HalfLinear(nn.Module):
    """A frozen nn.Linear with float16 weights that takes and returns the caller's dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.float16).contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.float16), self.weight, self.bias).to(x.dtype)


def wanted() -> bool:
    """fp16 linears unless JAMSTREAM_FP32=1 asks for the fp32 model (for comparing)."""
    import os

    return os.environ.get("JAMSTREAM_FP32", "") in ("", "0")


def half_linears(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear inside `model` for a HalfLinear, in place; returns the model."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, HalfLinear(child))
    return model
