"""The depthformer's layers: pre-norm residual blocks, each owning its forward pass.

A block runs the same code for a whole sequence (training, and the reference the caches
must equal) and for one new position during generation; the only difference is a KV
store, passed in, that holds the keys and values of the positions before:
- `RingSlot`: one temporal layer's view of the fixed-size ring cache (network.TemporalCache),
  written at the frame's slot, so an endless stream needs constant memory;
- `GrowingKV`: the depth stack's cache, which lives for one frame's levels only;
- `StreamSlots`: several streams' ring slots side by side, so independent streams (plugin
  instances) share one batched pass through the weights while each attends to its own
  cache only - no stream's cache is ever copied into a batch.
A store answers `attend(q, k, v)`: it takes the new position's keys and values and
attends to everything it holds, with its own mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F


class KVStore(Protocol):
    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the new positions' keys and values [B, H, T, dh]; attend q to all held."""
        ...


@dataclass
class RingSlot:
    """One temporal layer's ring buffers [B, H, window, dh], the slot this frame writes and
    the ALiBi/validity bias [H, 1, window] of this frame against every slot."""

    k: torch.Tensor
    v: torch.Tensor
    slot: int
    bias: torch.Tensor

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self.k[:, :, self.slot] = k[:, :, 0]
        self.v[:, :, self.slot] = v[:, :, 0]
        return F.scaled_dot_product_attention(q, self.k, self.v, attn_mask=self.bias)


@dataclass
class StreamSlots:
    """Several streams' RingSlots for one layer; `rows[i]` batch rows belong to slot i, in order."""

    slots: list[RingSlot]
    rows: tuple[int, ...]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if len(self.slots) == 1:
            return self.slots[0].attend(q, k, v)
        parts = zip(self.slots, q.split(self.rows), k.split(self.rows), v.split(self.rows))
        return torch.cat([slot.attend(qs, ks, vs) for slot, qs, ks, vs in parts])


@dataclass
class GrowingKV:
    """The keys and values of the levels emitted so far in this frame; new positions attend
    causally among themselves and to every earlier one (a speculative check feeds several)."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(k.shape[2] for k in self.keys)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        before = self.length
        self.keys.append(k)
        self.values.append(v)
        keys, values = torch.cat(self.keys, dim=2), torch.cat(self.values, dim=2)
        new = q.shape[2]
        if new == 1:
            return F.scaled_dot_product_attention(q, keys, values)
        allowed = torch.ones(new, before + new, dtype=torch.bool, device=q.device).tril(before)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)

    def truncate(self, length: int) -> None:
        """Forget positions from `length` on (a speculative check's rejected levels)."""
        keys, values = torch.cat(self.keys, dim=2), torch.cat(self.values, dim=2)
        self.keys, self.values = [keys[:, :, :length]], [values[:, :, :length]]


class MLP(nn.Module):
    def __init__(self, width: int, ratio: int):
        super().__init__()
        self.up = nn.Linear(width, width * ratio)
        self.down = nn.Linear(width * ratio, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv: KVStore | None = None,
    ) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]; with `kv`, x's positions also attend to the cached ones."""
        q, k, v = self.project(x)
        if kv is not None:
            return self.merge(kv.attend(q, k, v))
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [B, H, T, dh]

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * dh))


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        dh = d // self.heads
        q = self.q(x).view(b, t, self.heads, dh).transpose(1, 2)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, self.heads, dh).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TemporalBlock(nn.Module):
    """Self-attention over frames (ALiBi window in `bias`), cross-attention to the style memory, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.cross = CrossAttention(width, heads)
        self.norm3 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None, kv: KVStore | None = None
    ) -> torch.Tensor:
        """[B, T, d] frames -> [B, T, d]; `bias` [H, T, keys] masks and weights the keys
        (with `kv`, the store holds its own)."""
        x = x + self.attn(self.norm1(x), attn_mask=bias, kv=kv)
        x = x + self.cross(self.norm2(x), memory)
        return x + self.mlp(self.norm3(x))


class DepthBlock(nn.Module):
    """Causal self-attention over one frame's levels, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor, kv: GrowingKV | None = None) -> torch.Tensor:
        """[N, L', d] levels -> [N, L', d]. Without `kv` the levels attend causally among
        themselves; with it, x's levels attend causally among themselves and to every cached one."""
        x = x + self.attn(self.norm1(x), is_causal=kv is None, kv=kv)
        return x + self.mlp(self.norm2(x))
