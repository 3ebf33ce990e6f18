"""The draft for speculative decoding: a small depth stack that guesses a frame's next levels.

Where it speculates, and why (measured, `jamstream bench lm` `speculative`): a frame costs
one temporal pass and 16 sequential depth passes, and on a CPU every pass is bound by
reading its weights. So the draft speculates *levels inside a frame*: it reads the target's
own temporal output (no second temporal stack to run), proposes the next k levels one by
one through its small stack, and the target's depth stack checks them all in one pass -
its block weights read once for k + 1 positions instead of k + 1 times.

The draft is trained by distillation on the target's own depth distribution (the
`draft` task), so it learns what the target would sample, not just the corpus; whatever
it proposes, speculative sampling keeps the target's distribution (model.lm.speculative).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from model.io.checkpoint import load_model, save_model
from model.lm.blocks import DepthBlock, GrowingKV


@dataclass(frozen=True)
class DraftConfig:
    levels: int = 16
    codebook_size: int = 1024
    target_width: int = 256  # the target LM's width (its temporal outputs are the draft's input)
    width: int = 128
    heads: int = 2
    layers: int = 1
    mlp_ratio: int = 2


DRAFT_CONFIGS: dict[str, DraftConfig] = {
    "micro": DraftConfig(),
    # The tiny LM's own depth-stack shape, reading the `large` LM's temporal outputs: its draft.
    "tiny-for-large": DraftConfig(target_width=1024, width=256, heads=4, layers=2, mlp_ratio=4),
}


class DraftDepth(nn.Module):
    def __init__(self, config: DraftConfig = DraftConfig()):
        super().__init__()
        self.config = c = config
        self.depth_in = nn.Linear(c.target_width, c.width)
        self.token_embed = nn.Embedding(c.levels * c.codebook_size, c.width)
        self.level_pos = nn.Parameter(torch.zeros(c.levels, c.width))
        self.blocks = nn.ModuleList([DepthBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.layers)])
        self.norm = nn.LayerNorm(c.width)
        self.heads_out = nn.Parameter(torch.empty(c.levels, c.width, c.codebook_size))
        nn.init.normal_(self.heads_out, std=c.width**-0.5)
        nn.init.normal_(self.level_pos, std=0.02)
        self.register_buffer("level_offsets", torch.arange(c.levels) * c.codebook_size, persistent=False)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [N, L, V] from target temporal outputs h [N, d_target] and
        the frame's tokens [N, L] (training)."""
        start = self.depth_in(h).unsqueeze(1)
        prev = self.token_embed(tokens[:, :-1] + self.level_offsets[:-1])
        x = torch.cat([start, prev], dim=1) + self.level_pos
        for blk in self.blocks:
            x = blk(x)
        return torch.einsum("nld,ldv->nlv", self.norm(x), self.heads_out)

    # ------------------------------------------------------------ generation
    def begin(self, h: torch.Tensor) -> tuple[list[GrowingKV], torch.Tensor]:
        """A frame's caches and its first pending input [R, 1, w] (level 0's position)."""
        return [GrowingKV() for _ in self.blocks], (self.depth_in(h) + self.level_pos[0]).unsqueeze(1)

    def token_input(self, tokens: torch.Tensor, level: int, rows: torch.Tensor) -> torch.Tensor:
        """The input [R, 1, w] of level + 1's position after `level`'s tokens [S]."""
        emb = self.token_embed(tokens + self.level_offsets[level]) + self.level_pos[level + 1]
        return emb.index_select(0, rows).unsqueeze(1)

    def advance(self, caches: list[GrowingKV], inputs: torch.Tensor, level: int) -> torch.Tensor:
        """Run pending inputs [R, n, w] (positions level - n + 1 .. level); logits [R, V] at `level`."""
        y = inputs
        for blk, kv in zip(self.blocks, caches):
            y = blk(y, kv=kv)
        return self.norm(y[:, -1]) @ self.heads_out[level]


def save_draft(model: DraftDepth, path, half: bool = False, extra: dict | None = None) -> None:
    save_model(model, path, "draft", asdict(model.config), half, extra)


def load_draft(path=None, device: str = "cpu") -> DraftDepth:
    """A trained draft: `path`, or the shipped one when path is None. It records the LM it was
    distilled from (`target_lm`), which speculation does not need for exactness, only for speed."""
    from model.io.checkpoint import read_metadata
    from model.weights import default_weight_path

    path = path or default_weight_path("draft")
    model = load_model(path, "draft", DraftConfig, DraftDepth).to(device).eval()
    model.target_lm = read_metadata(path, "draft")[1].get("target_lm")
    model.source = str(path)
    return model
