"""Quantized frozen bases for LoRA training (QLoRA's idea): int8 anywhere, nf4 via bitsandbytes.

Only the target projections are replaced, and only during training: generation applies
an adapter to the full-precision base (model/adapters/lora.py never fuses into a
quantized layer).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.adapters.store import TARGET_MODULES
from model.errors import JamstreamError

QUANTIZE_MODES = ("none", "int8", "nf4")


class Int8Linear(nn.Linear):
    """A frozen nn.Linear stored as int8 with one absmax scale per output row.

    Weight-only quantization that runs anywhere torch runs (CPU included) and keeps
    autograd to the input, which LoRA training needs through every frozen layer: each
    forward dequantizes to the input's dtype (memory 4x smaller, time not better on CPU).
    torch's dynamic int8 Linear has no backward, so it can't sit under LoRA training.
    """

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
        self.weight = nn.Parameter(torch.round(w / scale).clamp(-127, 127).to(torch.int8), requires_grad=False)
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale.to(x.dtype)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))


def _nf4_linear(linear: nn.Linear, device: str) -> nn.Module:
    """bitsandbytes' NF4 Linear4bit (QLoRA's 4-bit NormalFloat, 64-weight blocks).

    The bias stays outside bitsandbytes' matmul: its CPU path adds the bias in place,
    which autograd refuses once LoRA makes the input require grad (bitsandbytes 0.50).
    """
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise JamstreamError(
            "--quantize nf4 needs bitsandbytes (pip install 'jamstream[qlora]' or pip install bitsandbytes)"
        ) from exc

    class NF4Linear(bnb.nn.Linear4bit):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            return y if self.outer_bias is None else y + self.outer_bias.to(y.dtype)

    q = NF4Linear(linear.in_features, linear.out_features, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    q.weight = bnb.nn.Params4bit(linear.weight.detach().float().clone(), requires_grad=False, quant_type="nf4")
    bias = None if linear.bias is None else linear.bias.detach().float().clone()
    q.register_buffer("outer_bias", bias)
    try:
        return q.to(device)  # Params4bit quantizes on its first move to a device
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise JamstreamError(
            f"--quantize nf4 on {device}: this bitsandbytes build cannot ({first}); use --quantize int8 or --device "
            "cuda"
        ) from exc


def quantize_base(model: nn.Module, mode: str, targets=TARGET_MODULES, device: str = "cpu") -> int:
    """Replace the frozen target projections by quantized ones; returns their bytes now."""
    if mode not in QUANTIZE_MODES:
        raise JamstreamError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)} (got {mode!r})")
    if mode == "none":
        return 0
    total = 0
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or not any(name == t or name.endswith("." + t) for t in targets):
            continue
        q = Int8Linear(module) if mode == "int8" else _nf4_linear(module, device)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, q)
        total += sum(t.numel() * t.element_size() for t in list(q.parameters()) + list(q.buffers()))
    return total
