"""Adapters on disk: the adapters folder, adapter files and captured styles.

`jamstream finetune DIR --name NAME` (model/train/finetune.py) writes `adapters/NAME/`:

    adapter.safetensors   the LoRA A/B matrices (a jamstream checkpoint of kind "adapter";
                          its header carries the rank, alpha, target modules and the base
                          LM's config, so a mismatched LM is a one-line error)
    adapter.json          the same config, for people
    style.safetensors     the captured style: the style model's mean audio embedding of the
                          recordings [512] and its 12 style tokens (kind "captured-style")
    report.json           the training report (parameters, memory, time, validation NLL)
    checkpoint.safetensors, train_state.json   what `finetune --resume` continues from

    from model.adapters import store
    ad = store.load_adapter("ohhalim")      # a name under ./adapters (or $JAMSTREAM_ADAPTERS),
                                            # or a folder path; ad.style: the captured style
    store.adapter_style("ohhalim")          # the captured style without the LoRA tensors
    store.adapter_style_name("adapter:ohhalim")   # a --mix/generate style string -> "ohhalim"

Applying an adapter to an LM is model/adapters/lora.py's job. Errors are JamstreamError
one-liners: unknown adapter name, damaged files.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from model.adapters.names import ADAPTER_NAME
from model.errors import JamstreamError
from model.io.atomic import write_json
from model.io.checkpoint import load_tensors, read_metadata, save_checkpoint

TARGET_MODULES: tuple[str, ...] = ("attn.qkv", "attn.out", "cross.q", "cross.kv", "cross.out", "mlp.up", "mlp.down")
ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
STYLE_FILE = "style.safetensors"
REPORT_FILE = "report.json"
ADAPTER_KIND = "adapter"
STYLE_KIND = "captured-style"
STYLE_PREFIX = "adapter:"
# LM config fields that decide tensor shapes (the others, e.g. style_dropout, do not).
SHAPE_FIELDS = (
    "levels",
    "codebook_size",
    "width",
    "heads",
    "temporal_layers",
    "depth_layers",
    "mlp_ratio",
    "style_tokens",
    "style_codebook",
)


def default_adapters_dir() -> Path:
    return Path(os.environ.get("JAMSTREAM_ADAPTERS", "adapters"))


@dataclass(frozen=True)
class AdapterConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = TARGET_MODULES

    def validate(self) -> "AdapterConfig":
        if not 1 <= self.rank <= 512:
            raise JamstreamError(f"--rank must be in 1..512 (got {self.rank})")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise JamstreamError(f"--alpha must be > 0 (got {self.alpha})")
        if not 0 <= self.dropout < 1:
            raise JamstreamError(f"LoRA dropout must be in [0, 1) (got {self.dropout})")
        unknown = [t for t in self.targets if t not in TARGET_MODULES]
        if unknown or not self.targets:
            raise JamstreamError(f"LoRA targets must be some of {', '.join(TARGET_MODULES)} (got {unknown or 'none'})")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        return cls(
            rank=int(d["rank"]),
            alpha=float(d["alpha"]),
            dropout=float(d.get("dropout", 0.0)),
            targets=tuple(d["targets"]),
        )


@dataclass
class Adapter:
    """An adapter read from disk: LoRA tensors, config, captured style."""

    name: str
    path: Path  # its folder
    config: AdapterConfig
    lm_config: dict
    tensors: dict[str, torch.Tensor]  # "<module>.lora_A.weight" / "<module>.lora_B.weight"
    style: torch.Tensor | None  # [512] unit vector (None if the folder has no style file)
    style_tokens: torch.Tensor | None  # [12]
    meta: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def adapter_dir(name_or_path, adapters_dir=None) -> Path:
    """A folder path (holding adapter.safetensors) or a name under the adapters folder."""
    p = Path(name_or_path)
    if (p / ADAPTER_FILE).is_file():
        return p
    root = Path(adapters_dir) if adapters_dir else default_adapters_dir()
    if p.name == str(name_or_path) and ADAPTER_NAME.match(str(name_or_path)):
        if (root / p / ADAPTER_FILE).is_file():
            return root / p
        known = sorted(d.name for d in root.glob("*") if (d / ADAPTER_FILE).is_file()) if root.is_dir() else []
        hint = (
            f"; known: {', '.join(known)}"
            if known
            else f"; train one with `jamstream finetune DIR --name {name_or_path}`"
        )
        raise JamstreamError(f"no adapter {str(name_or_path)!r} in {root}{hint}")
    raise JamstreamError(f"{name_or_path}: not an adapter folder (no {ADAPTER_FILE})")


def save_adapter(
    folder,
    name: str,
    config: AdapterConfig,
    lm_config: dict,
    tensors: dict[str, torch.Tensor],
    meta: dict | None = None,
) -> Path:
    """Write adapter.safetensors (atomic) and adapter.json into `folder`."""
    folder = Path(folder)
    header = {"name": name, "lora": {**asdict(config), "targets": list(config.targets)}, "lm": lm_config}
    save_checkpoint(
        folder / ADAPTER_FILE,
        ADAPTER_KIND,
        header,
        {f"lora.{k}": v.detach().float().cpu() for k, v in tensors.items()},
        meta or {},
    )
    write_json(folder / CONFIG_FILE, {**header, **(meta or {})})
    return folder / ADAPTER_FILE


def save_style(folder, embedding: torch.Tensor, tokens: torch.Tensor, meta: dict | None = None) -> Path:
    path = Path(folder) / STYLE_FILE
    save_checkpoint(
        path,
        STYLE_KIND,
        {"dim": int(embedding.numel())},
        {"embedding": embedding.float().reshape(-1), "tokens": tokens.long().reshape(-1)},
        meta or {},
    )
    return path


def load_style_capture(folder) -> tuple[torch.Tensor, torch.Tensor, dict]:
    path = Path(folder) / STYLE_FILE
    _, extra = read_metadata(path, STYLE_KIND)
    t = load_tensors(path)
    if "embedding" not in t or "tokens" not in t:
        raise JamstreamError(f"{path} is damaged (no embedding/tokens)")
    return F.normalize(t["embedding"].float(), dim=0), t["tokens"].long(), extra


def load_adapter(name_or_path, adapters_dir=None) -> Adapter:
    folder = adapter_dir(name_or_path, adapters_dir)
    path = folder / ADAPTER_FILE
    header, meta = read_metadata(path, ADAPTER_KIND)
    try:
        config = AdapterConfig.from_dict(header["lora"]).validate()
        lm_config, name = dict(header["lm"]), str(header["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JamstreamError(f"{path} has a damaged adapter header ({exc})") from exc
    tensors = load_tensors(path, "lora")
    if not tensors:
        raise JamstreamError(f"{path} holds no LoRA tensors")
    style = tokens = None
    if (folder / STYLE_FILE).is_file():
        style, tokens, _ = load_style_capture(folder)
    return Adapter(name, folder, config, lm_config, tensors, style, tokens, meta)


def adapter_style(name_or_path, adapters_dir=None) -> torch.Tensor:
    """The captured style embedding [512] of an adapter (name or folder)."""
    folder = adapter_dir(name_or_path, adapters_dir)
    if not (folder / STYLE_FILE).is_file():
        raise JamstreamError(f"adapter {folder.name!r} has no captured style ({folder / STYLE_FILE} is missing)")
    return load_style_capture(folder)[0]


def is_adapter_style(spec) -> bool:
    return isinstance(spec, str) and spec.strip().startswith(STYLE_PREFIX)


def adapter_style_name(spec: str) -> str:
    """ "adapter:NAME" (a preset slot or a --mix/generate style) -> NAME."""
    name = spec.strip()[len(STYLE_PREFIX) :].strip()
    if not name:
        raise JamstreamError("style 'adapter:' needs a name, e.g. 'adapter:ohhalim'")
    return name
