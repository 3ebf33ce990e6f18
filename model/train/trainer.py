"""The one training loop every jamstream model shares.

A model plugs in as a `Task` (how to build it, how to draw a batch for a step, its loss,
and optionally how to score it on held-out data); the trainer owns everything else:
devices, DDP under torchrun (gloo on CPU, nccl on GPU), bf16 autocast, AdamW with warmup
+ cosine decay, gradient clipping, a progress bar with the losses, the validation stage
with its best state and early stopping, and checkpoints written atomically on a schedule
and on SIGINT/SIGTERM.

Resume is bit-for-bit because nothing random carries hidden state across steps: every
step reseeds torch from (seed, step, rank) and draws its batch from a generator seeded
the same way, so step k computes the same thing whether or not the process restarted
before it. The checkpoint only has to hold weights, optimizer moments and the step (and,
with a validation stage, its history and the best state).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from model.errors import JamstreamError
from model.io.checkpoint import load_state_into, load_tensors, read_metadata, save_checkpoint
from model.progress import progress
from model.train.validation import RECORD_KEYS, Validation, ValidationHistory


@dataclass
class TrainConfig:
    out: str  # checkpoint file (.safetensors)
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100  # steps
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    resume: bool = False
    init_from: str | None = None  # start from these weights (fine-tuning), fresh optimizer
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    threads: int | None = None
    log_every: int = 1
    extra: dict = field(default_factory=dict)


class Task:
    """What a model brings to the trainer. Subclass it and fill in the train stage; every
    other stage and hook is optional and does nothing unless overridden.

    Train stage: `kind` (the checkpoint kind: "codec", "style", "lm", ...), `model_config`,
    `build_model`, `batch` and `loss`.
    Validation stage (audiocraft's solver habit: train and valid stages, a best state):
    `validation()` says when it runs and how its figures are read (model/train/validation.py),
    `validate(model, step)` computes the figures on held-out data, and `on_best` hears of
    each new best state. The trainer runs it between steps on rank 0, keeps the best state
    and stops early when patience runs out.
    """

    kind: str
    # With --init: parameters the weights may lack (parts added to the model since), which
    # keep their fresh initialisation.
    init_new_keys: tuple[str, ...] = ()

    # ------------------------------------------------------------ train stage
    def model_config(self) -> dict:
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def batch(self, step: int, rank: int, world: int, generator: torch.Generator, device: torch.device) -> Any:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    # ------------------------------------------------------------ optional hooks
    def after_init(self, model: torch.nn.Module) -> None:
        """Called once the --init weights are loaded (not on --resume)."""

    def checkpoint_extra(self) -> dict:
        """More header metadata for every checkpoint."""
        return {}

    # ------------------------------------------------------------ validation stage
    def validation(self) -> Validation:
        """When validation runs and what its figures decide; the default: never."""
        return Validation()

    def validate(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        """Figures on held-out data after `step` steps (the model unwrapped from DDP).
        Must leave the model as it found it: the next step continues bit for bit."""
        return {}

    def on_best(self, state: dict[str, torch.Tensor], record: dict) -> None:
        """A validation stage found a new best state (a CPU copy of the model's state_dict)."""


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


class Trainer:
    def __init__(self, task: Task, config: TrainConfig):
        self.task = task
        self.cfg = config
        self.rank, self.world, self.local_rank = _dist_env()
        self._stop_requested = False
        self.history = ValidationHistory(Validation())  # the task's, once fit() starts
        self.best_state: dict[str, torch.Tensor] | None = None  # CPU copy, with a validation metric
        self._figures: dict[str, float] = {}  # the last validation stage's, shown beside the losses

    # ------------------------------------------------------------ setup
    def _device(self) -> torch.device:
        if self.cfg.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise JamstreamError("--device cuda asked for, but this machine has no CUDA GPU")
            return torch.device("cuda", self.local_rank)
        if self.cfg.device != "cpu":
            raise JamstreamError(f"--device must be cpu or cuda, not {self.cfg.device!r}")
        return torch.device("cpu")

    def _init_distributed(self, device: torch.device) -> None:
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            if device.type == "cuda":
                torch.cuda.set_device(device)

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)

    def _install_signal_handlers(self) -> dict:
        def request_stop(signum, _frame):
            self._stop_requested = True

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return old

    # ------------------------------------------------------------ checkpoints
    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, metrics: dict) -> None:
        """Weights, optimizer moments, step, validation history and best state: all a resume needs."""
        if self.rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in _unwrap(model).state_dict().items()}
        for pid, state in optimizer.state_dict()["state"].items():
            for name, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{pid}.{name}"] = value
        for key, value in (self.best_state or {}).items():
            tensors[f"best.{key}"] = value
        extra = {
            "step": step,
            "train_config": {k: v for k, v in asdict(self.cfg).items() if k not in ("resume",)},
            "metrics": metrics,
            "optim_param_groups": [
                {k: v for k, v in g.items() if k != "params"} for g in optimizer.state_dict()["param_groups"]
            ],
            "world_size": self.world,
            **self.task.checkpoint_extra(),
        }
        if self.history.spec.enabled:
            extra["validation"] = {"records": self.history.records}
        save_checkpoint(self.cfg.out, self.task.kind, self.task.model_config(), tensors, extra)

    def _restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
        path = self.cfg.out
        config, extra = read_metadata(path, self.task.kind)
        if config != self.task.model_config():
            raise JamstreamError(f"--resume: {path} was trained with another model config; use a new --out")
        load_state_into(_unwrap(model), load_tensors(path, "model"), path)
        optim_tensors = load_tensors(path, "optim")
        state_dict = optimizer.state_dict()
        new_state: dict[int, dict[str, torch.Tensor]] = {}
        for name, tensor in optim_tensors.items():
            pid, field_name = name.split(".", 1)
            new_state.setdefault(int(pid), {})[field_name] = tensor
        state_dict["state"] = new_state
        optimizer.load_state_dict(state_dict)
        self.history = ValidationHistory(self.history.spec, extra.get("validation", {}).get("records"))
        self.best_state = load_tensors(path, "best") or None
        if self.history.records:
            last = self.history.records[-1]
            self._figures = {k: round(float(v), 5) for k, v in last.items() if k not in RECORD_KEYS}
        return int(extra["step"])

    # ------------------------------------------------------------ stages
    def _prepare(self, device: torch.device) -> tuple[torch.nn.Module, list, torch.optim.Optimizer, int]:
        """The model (weights from --init or --resume, DDP-wrapped under torchrun), its
        trainable parameters, the optimizer and the step to start from."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = self.task.build_model().to(device)
        params = self.task.trainable_parameters(model)
        # No weight decay: what every shipped model was trained with (AdamW's default is 0.01).
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.8, 0.99))
        if cfg.init_from and not cfg.resume:
            read_metadata(cfg.init_from, self.task.kind)
            load_state_into(model, load_tensors(cfg.init_from, "model"), cfg.init_from, self.task.init_new_keys)
            self.task.after_init(model)
        self.history = ValidationHistory(self.task.validation())
        start_step = 0
        out = Path(cfg.out)
        if cfg.resume:
            if not out.is_file():
                raise JamstreamError(f"--resume: no checkpoint at {out} yet; drop --resume to start training")
            start_step = self._restore(model, optimizer)
        elif out.exists() and self.rank == 0:
            raise JamstreamError(f"{out} exists; pass --resume to continue it or choose another --out")
        if self.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )
        return model, params, optimizer, start_step

    def _train_step(self, model, params, optimizer, step: int, device: torch.device) -> dict[str, float]:
        """One optimizer step; its batch and randomness depend only on (seed, step, rank)."""
        cfg = self.cfg
        torch.manual_seed(step_seed(cfg.seed, step, self.rank))
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, self.rank))
        batch = self.task.batch(step, self.rank, self.world, gen, device)
        for group in optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        model.train()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, parts = self.task.loss(model, batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            parts = {**parts, "grad_norm": float(grad_norm)}
        optimizer.step()
        return {k: round(float(v), 5) for k, v in parts.items()}

    def _valid_stage(self, model: torch.nn.Module, step: int, train_seconds: float) -> None:
        """Score the model (rank 0), record it, and keep its state if it is the best yet."""
        if self.rank != 0:
            return
        figures = {k: float(v) for k, v in self.task.validate(_unwrap(model), step).items()}
        record = self.history.add(step, figures, train_seconds)
        self._figures = {k: round(v, 5) for k, v in figures.items()}
        if record["improved"]:
            self.best_state = {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
            self.task.on_best(self.best_state, record)

    # ------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train to `steps` (or until stopped: signal, --max-minutes, patience); returns
        {"step", "stopped_early", "metrics", "checkpoint"}, and with a validation stage
        "validations" (every record), "best" (the best state's record) and "out_of_patience"."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = self._device()
        self._init_distributed(device)
        model, params, optimizer, step = self._prepare(device)
        old_handlers = self._install_signal_handlers()
        bar = None
        if self.rank == 0:
            bar = progress(total=cfg.steps, initial=step, desc=f"train {self.task.kind}", unit="step")
        metrics: dict[str, float] = {}
        spec = self.history.spec
        # a resumed run whose patience had already run out trains no further
        stopped_early = self.history.out_of_patience() and step < cfg.steps
        started = clock = time.perf_counter()
        try:
            while step < cfg.steps and not stopped_early:
                metrics = self._train_step(model, params, optimizer, step, device)
                step += 1
                out_of_time = cfg.max_minutes is not None and (time.perf_counter() - started) / 60 >= cfg.max_minutes
                if spec.due(step, last=step == cfg.steps or out_of_time):
                    self._valid_stage(model, step, time.perf_counter() - clock)
                    clock = time.perf_counter()  # an epoch's train time leaves validation out
                metrics.update(self._figures)
                if bar is not None:
                    bar.update(1)
                    if step % cfg.log_every == 0:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
                stop = self._agree(self._stop_requested or out_of_time or self.history.out_of_patience(), device)
                if stop or step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    self.save(model, optimizer, step, metrics)
                    self._barrier()
                if stop:
                    stopped_early = step < cfg.steps
                    break
        finally:
            if bar is not None:
                bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        result = {"step": step, "stopped_early": stopped_early, "metrics": metrics, "checkpoint": str(Path(cfg.out))}
        if spec.enabled:
            result.update(
                validations=self.history.records,
                best=self.history.best(),
                out_of_patience=self.history.out_of_patience(),
            )
        return result

    def _agree(self, flag: bool, device: torch.device) -> bool:
        """All ranks stop on the same step, or DDP would hang on the next all-reduce."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
