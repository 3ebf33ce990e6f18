"""Draft training: distil the target LM's depth distribution into the small draft.

The draft is only ever judged by how often speculative sampling keeps its proposals, which
is sum_x min(p(x), q(x)) - so it learns the target's own distribution at each level
(soft-target cross-entropy against the frozen target's logits, teacher-forced on corpus
crops), not the corpus tokens. The crops and their style (with dropout, so the draft also
learns the null-style rows guidance mixes in) are the LM task's.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from model.lm.draft import DraftConfig, DraftDepth
from model.lm.network import DepthformerLM
from model.train.lm_task import LMTask, LMTrainConfig
from model.train.token_data import TokenClip
from model.train.trainer import Task


class DraftTask(Task):
    kind = "draft"

    def __init__(self, draft_config: DraftConfig, target: DepthformerLM, clips: list[TokenClip], crops: LMTrainConfig):
        if (draft_config.levels, draft_config.codebook_size, draft_config.target_width) != (
            target.config.levels,
            target.config.codebook_size,
            target.config.width,
        ):
            raise ValueError(
                f"draft config {draft_config} does not fit the target LM "
                f"({target.config.levels} levels x {target.config.codebook_size} codes, width {target.config.width})"
            )
        self.draft_cfg = draft_config
        self.target = target.eval().requires_grad_(False)
        self.crops = LMTask(target.config, crops, clips)
        self.target_source = getattr(target, "source", None)

    def model_config(self) -> dict:
        return asdict(self.draft_cfg)

    def checkpoint_extra(self) -> dict:
        return {"target_lm": self.target_source} if self.target_source else {}

    def build_model(self) -> torch.nn.Module:
        return DraftDepth(self.draft_cfg)

    def batch(self, step: int, rank: int, world: int, generator: torch.Generator, device: torch.device):
        return self.crops.batch(step, rank, world, generator, device)

    @torch.no_grad()
    def _teacher(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, timing, style, use_style = batch
        target = self.target.to(tokens.device)
        b, t, levels = tokens.shape
        memory = target.style_memory(style, b, use_style)
        h = target.temporal_forward(target.frame_inputs(tokens, timing), memory).reshape(b * t, -1)
        flat = tokens.reshape(b * t, levels)
        return h, flat, target.depth_forward(target.depth_inputs(h, flat))

    def loss(self, model: torch.nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        h, tokens, teacher = self._teacher(batch)
        student = model(h, tokens)
        log_q = F.log_softmax(student.float(), dim=-1)
        p = F.softmax(teacher.float(), dim=-1)
        loss = -(p * log_q).sum(-1).mean()
        # What speculation keeps: the expected share of proposals accepted at temperature 1.
        overlap = torch.minimum(p, log_q.exp()).sum(-1).mean()
        return loss, {"soft_ce": loss.item(), "overlap": overlap.item()}
