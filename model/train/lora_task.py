"""LoRA fine-tuning as a Task of the shared Trainer: the LM objective, only adapters train.

Batches are LMTask's (random 1-12 s crops, about `frames_per_batch` frames a step, 10%
style dropout so guidance still works); every clip carries the *captured* style's tokens,
so at generation time the captured style asks the adapted LM for what it learned.

What the trainer checkpoints is `LoRAModel`'s state_dict: the adapter tensors only. The
frozen base comes from the base LM file (its digest is part of the model config, so a
resume against another base is refused), which keeps a checkpoint a few hundred kB.

Validation and early stopping run in `after_step` at each epoch's end: the mean token
NLL of the validation clips (model.eval.nll.heldout_nll, as `jamstream eval lm` scores); the best adapter
so far is written to the adapter folder then, and `patience` epochs without improvement
stop the run. That history lives in train_state.json beside the checkpoint, so
`--resume` continues early stopping where it left off.
"""

from __future__ import annotations

import json
import math
import time
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
        self.on_best = on_best
        self.base_weight_bytes = 0
        self.state = {"evals": [], "stopped": False, "before": None}
        self._last_eval_time = time.perf_counter()
        self._last_val: float | None = None

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

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def loss(self, model: nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = super().loss(model, batch, step)
        if self._last_val is not None:
            parts["val"] = self._last_val
        return loss, parts

    # ---------------------------------------------------------------- validation, early stopping
    def evaluate(self, model: nn.Module) -> float:
        lm = model.lm if isinstance(model, LoRAModel) else model
        return heldout_nll(lm, self.val_clips, self.cfg.val_window)

    def load_state(self, checkpoint_step: int) -> None:
        """Early-stopping history of a run being resumed, trimmed to its checkpoint."""
        if self.state_path and self.state_path.is_file():
            state = json.loads(self.state_path.read_text())
            state["evals"] = [e for e in state.get("evals", []) if e["step"] <= checkpoint_step]
            if state.get("stopped") and not any(e["step"] == state.get("stopped_step") for e in state["evals"]):
                state["stopped"] = False
            self.state = state
            if state["evals"]:
                self._last_val = state["evals"][-1]["val_nll"]

    def save_state(self) -> None:
        if self.state_path:
            write_json(self.state_path, self.state)

    def best(self) -> dict | None:
        evals = self.state["evals"]
        return min(evals, key=lambda e: e["val_nll"]) if evals else None

    def after_step(self, model: nn.Module, step: int) -> bool:
        if step % self.cfg.steps_per_epoch != 0:
            return False
        now = time.perf_counter()
        train_seconds = now - self._last_eval_time
        val = self.evaluate(model)
        self._last_val = round(val, 5)
        best = self.best()
        improved = best is None or val < best["val_nll"] - self.cfg.min_delta
        entry = {
            "step": step,
            "epoch": step // self.cfg.steps_per_epoch,
            "val_nll": val,
            "train_seconds": round(train_seconds, 3),
            "improved": improved,
        }
        self.state["evals"].append(entry)
        if improved and self.on_best is not None:
            self.on_best({k: v.detach().clone() for k, v in model.state_dict().items()}, entry)
        since = 0
        for e in reversed(self.state["evals"]):
            if e["improved"]:
                break
            since += 1
        stop = since >= self.cfg.patience
        if stop:
            self.state["stopped"], self.state["stopped_step"] = True, step
        self.save_state()
        self._last_eval_time = time.perf_counter()
        return stop


def steps_per_epoch(clips: list[TokenClip], frames_per_batch: int) -> int:
    frames = sum(c.tokens.shape[0] for c in clips if c.split == "train")
    return max(1, math.ceil(frames / frames_per_batch))
