"""LoRA fine-tuning as a Task of the shared Trainer: the LM objective, only adapters train.

Batches are LMTask's (random 1-12 s crops, about `frames_per_batch` frames a step, 10%
style dropout so guidance still works); every clip carries the *captured* style's tokens,
so at generation time the captured style asks the adapted LM for what it learned.

What the trainer checkpoints is `LoRAModel`'s state_dict: the adapter tensors only. The
frozen base comes from the base LM file (its digest is part of the model config, so a
resume against another base is refused), which keeps a checkpoint a few hundred kB.

The validation stage runs at each epoch's end: the mean token NLL of the validation clips
(model.eval.nll.heldout_nll, the figure `jamstream eval lm` reports). The Trainer keeps
the best state and stops after `patience` epochs without a better one; each new best is
written to the adapter folder (`on_best`). train_state.json beside the checkpoint keeps
what the report needs from before training (the validation NLL of the base).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from model.adapters.lora import adapter_state, inject, load_adapter_state
from model.adapters.quantize import quantize_base
from model.adapters.store import AdapterConfig
from model.eval.nll import heldout_nll
from model.io.atomic import write_json
from model.lm.network import DepthformerLM, LMConfig
from model.train.lm_task import LMTask, LMTrainConfig
from model.train.token_data import TokenClip
from model.train.validation import Validation


@dataclass
class LoRATrainConfig(LMTrainConfig):
    frames_per_batch: int = 512
    steps_per_epoch: int = 1
    patience: int = 3  # epochs without a better validation NLL before stopping
    min_delta: float = 1e-3  # nats: smaller gains do not count as better
    val_window: int | None = None  # frames per validation window (None: the LM's attention window)


class LoRAModel(nn.Module):
    """The LM with LoRA injected; its state_dict is the adapter alone."""

    def __init__(self, lm: DepthformerLM, name: str):
        super().__init__()
        self.lm = lm
        self.adapter_name = name

    def forward(self, *args, **kwargs):
        return self.lm(*args, **kwargs)

    def state_dict(self, *args, **kwargs):  # what the trainer saves and checks on resume
        return {k: v.detach() for k, v in adapter_state(self.lm, self.adapter_name).items()}

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        load_adapter_state(self.lm, self.adapter_name, dict(state), "checkpoint")
        return torch.nn.modules.module._IncompatibleKeys([], [])


class LoRATask(LMTask):
    kind = "lora"

    def __init__(
        self,
        base_path: str | Path,
        base_digest: str,
        lm_config: LMConfig,
        adapter_config: AdapterConfig,
        train_config: LoRATrainConfig,
        clips: list[TokenClip],
        name: str,
        quantize: str = "none",
        device: str = "cpu",
        state_path: str | Path | None = None,
        on_best: Callable[[dict[str, torch.Tensor], dict], None] | None = None,
    ):
        super().__init__(lm_config, train_config, clips)
        self.val_clips = [c for c in clips if c.split == "val"]
        self.base_path = str(base_path)
        self.base_digest = base_digest
        self.adapter_cfg = adapter_config.validate()
        self.name = name
        self.quantize = quantize
        self.device = device
        self.state_path = Path(state_path) if state_path else None
        self.write_best = on_best  # (adapter tensors, record with "epoch") of each new best
        self.base_weight_bytes = 0
        self.state: dict = {"before": None}  # validation NLL of the base, parameter counts

    # ---------------------------------------------------------------- Task protocol
    def model_config(self) -> dict:
        return {
            "lm": asdict(self.model_cfg),
            "lora": {**asdict(self.adapter_cfg), "targets": list(self.adapter_cfg.targets)},
            "quantize": self.quantize,
            "base_digest": self.base_digest,
        }

    def build_model(self) -> nn.Module:
        from model.lm.network import load_lm

        lm = load_lm(self.base_path)
        if lm.config != self.model_cfg:
            lm_cfg = {k: v for k, v in asdict(lm.config).items() if v != asdict(self.model_cfg).get(k)}
            raise ValueError(f"base LM config differs from the task's: {lm_cfg}")
        self.base_weight_bytes = quantize_base(lm, self.quantize, self.adapter_cfg.targets, self.device)
        inject(lm, self.name, self.adapter_cfg)
        return LoRAModel(lm, self.name)

    # ---------------------------------------------------------------- validation stage
    def evaluate(self, model: nn.Module) -> float:
        """Validation NLL of a LoRAModel or a plain (adapted) LM."""
        lm = model.lm if isinstance(model, LoRAModel) else model
        return heldout_nll(lm, self.val_clips, self.cfg.val_window)

    def validation(self) -> Validation:
        return Validation(
            every=self.cfg.steps_per_epoch, metric="val_nll", min_delta=self.cfg.min_delta, patience=self.cfg.patience
        )

    def validate(self, model: nn.Module, step: int) -> dict[str, float]:
        return {"val_nll": self.evaluate(model)}

    def epoch(self, step: int) -> int:
        return step // self.cfg.steps_per_epoch

    def on_best(self, state: dict[str, torch.Tensor], record: dict) -> None:
        if self.write_best is not None:
            self.write_best(state, {**record, "epoch": self.epoch(record["step"])})

    # ---------------------------------------------------------------- run facts (train_state.json)
    def load_state(self) -> None:
        """What a run being resumed measured before it trained."""
        if self.state_path and self.state_path.is_file():
            self.state = json.loads(self.state_path.read_text())

    def save_state(self) -> None:
        if self.state_path:
            write_json(self.state_path, self.state)


def steps_per_epoch(clips: list[TokenClip], frames_per_batch: int) -> int:
    frames = sum(c.tokens.shape[0] for c in clips if c.split == "train")
    return max(1, math.ceil(frames / frames_per_batch))
