"""LoRA adapters for the depthformer LM, and the styles captured with them.

`jamstream finetune DIR --name NAME` (model/train/finetune.py) trains low-rank adapters on a
musician's recordings with the base LM frozen and writes `adapters/NAME/`:

    adapter.safetensors   the LoRA A/B matrices (a jamstream checkpoint of kind "adapter";
                          its header carries the rank, alpha, target modules and the base
                          LM's config, so a mismatched LM is a one-line error)
    adapter.json          the same config, for people
    style.safetensors     the captured style: the style model's mean audio embedding of the
                          recordings [512] and its 12 style tokens (kind "captured-style")
    report.json           the training report (parameters, memory, time, validation NLL)
    checkpoint.safetensors, train_state.json   what `finetune --resume` continues from

The adapters are peft LoRA layers (`peft.inject_adapter_in_model` with a `LoraConfig`)
around the attention and MLP projections (`attn.qkv`, `attn.out`, `cross.q`, `cross.kv`,
`cross.out`, `mlp.up`, `mlp.down` in both stacks). Nothing here changes `DepthformerLM`:
peft swaps those nn.Linear modules for LoRA wrappers in place, and `remove_adapter` puts
the originals back.

Engine API (everything the live engine, render and presets need):

    from model.adapters import lora as adapters
    ad = adapters.load_adapter("ohhalim")          # a name under ./adapters (or
                                                   # $JAMSTREAM_ADAPTERS), or a folder path
    adapters.apply_adapter(lm, ad, strength=1.0)   # inject into a loaded DepthformerLM
    adapters.set_strength(lm, "ohhalim", 0.4)      # runtime LoRA scaling (a MIDI CC): takes
                                                   # effect on the next forward; 0.0 runs the
                                                   # base exactly; an unchanged value is free
    adapters.strengths(lm)                         # {"ohhalim": 0.4}
    adapters.remove_adapter(lm, "ohhalim")         # or remove_adapter(lm) for all of them
    ad.style                                       # [512] captured style embedding (unit)
    adapters.adapter_style("ohhalim")              # the same without keeping the Adapter
    adapters.style_embedding("adapter:ohhalim", style_model)   # preset/--mix style strings:
                                                   # "adapter:NAME" -> captured style, any
                                                   # other string -> style_model.embed_text

Applied adapters are fused by default: the LoRA update is folded into each projection's
weight (W = W0 + sum strength_i * alpha/r * B_i A_i, from a kept copy of W0), so generation
costs what the base costs, and a strength change recomputes the weights (about 12 ms for
`tiny` on one CPU core; do it between chunks). `apply_adapter(..., fuse=False)` keeps
peft's LoRA forward instead (free strength changes, ~1.7x slower generation on `tiny`).

Several adapters can be applied at once (each under its own name, each with its own
strength): their low-rank updates add, which blends two players' adapters. Strength is
LoRA's scaling multiplier: the update is strength * (alpha / rank) * B @ A. Strength 0 of
every adapter disables the LoRA path, so the forward pass is the base model's, bit for
bit. Call set_strength between chunks (not while a forward pass runs in another thread).

Errors are JamstreamError one-liners: unknown adapter name, damaged files, an adapter
trained on an LM of another shape.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

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
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise JamstreamError(
            f"adapter name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def _peft():
    """peft, imported quietly: peft imports bitsandbytes when installed, whose CPU backend
    logs a warning about an optional kernel package on import."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import peft
    except ImportError as exc:  # a declared dependency; only a broken install gets here
        raise JamstreamError("LoRA adapters need the peft package (pip install peft)") from exc
    return peft


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

    def lora_config(self):
        return _peft().LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.targets),
            bias="none",
            init_lora_weights=True,  # B = 0: a fresh adapter is the base model exactly
        )

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


# ------------------------------------------------------------------ injection into an LM
def lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(module name, peft LoraLayer) for every LoRA-wrapped projection (fused ones included)."""
    fused = getattr(model, "_jamstream_fused", None)
    if fused is not None:
        for name, (layer, _) in fused.items():
            yield name, layer
        return
    _peft()
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def adapter_names(model: nn.Module) -> list[str]:
    names: list[str] = []
    for _, layer in lora_layers(model):
        for n in layer.lora_A.keys():
            if n not in names:
                names.append(n)
    return names


def inject(model: nn.Module, name: str, config: AdapterConfig) -> None:
    """Wrap the target projections in fresh LoRA layers named `name` (B = 0), base frozen."""
    peft = _peft()
    check_name(name)
    if name in adapter_names(model):
        raise JamstreamError(f"an adapter named {name!r} is already applied to this LM; remove it first")
    for p in model.parameters():
        p.requires_grad_(False)
    peft.inject_adapter_in_model(config.validate().lora_config(), model, adapter_name=name)
    # inject_adapter_in_model leaves only the newest adapter active; keep every applied one.
    _activate(model, {**strengths(model), name: 1.0}, train=True, only=name)
    if hasattr(model, "peft_config"):  # peft's bookkeeping; the adapter files are ours
        del model.peft_config


def adapter_state(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed "<module>.lora_A.weight" (adapter name stripped)."""
    out = {}
    for mod, layer in lora_layers(model):
        if name in layer.lora_A:
            out[f"{mod}.lora_A.weight"] = layer.lora_A[name].weight
            out[f"{mod}.lora_B.weight"] = layer.lora_B[name].weight
    if not out:
        raise JamstreamError(f"no adapter named {name!r} is applied to this LM")
    return out


def load_adapter_state(model: nn.Module, name: str, tensors: dict[str, torch.Tensor], source: str = "adapter") -> None:
    own = adapter_state(model, name)
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
        raise JamstreamError(f"{source} does not fit this LM ({what})")
    with torch.no_grad():
        for key, value in tensors.items():
            if own[key].shape != value.shape:
                raise JamstreamError(
                    f"{source} does not fit this LM ({key}: {tuple(value.shape)} vs {tuple(own[key].shape)})"
                )
            own[key].copy_(value.to(own[key].dtype))


def _activate(model: nn.Module, strengths: dict[str, float], train: bool = False, only: str | None = None) -> None:
    """Make the adapters with non-zero strength active, scaled; none active -> base path."""
    active = [n for n, s in strengths.items() if s != 0.0]
    previous = getattr(model, "_jamstream_strengths", None)
    layers = getattr(model, "_jamstream_layers", None)
    if layers is None or train or previous is None or set(previous) != set(strengths):
        layers = [layer for _, layer in lora_layers(model)]  # adapters came or went: look again
        model._jamstream_layers = layers
    if (
        not train
        and previous is not None
        and set(previous) == set(strengths)
        and {n for n, s in previous.items() if s != 0.0} == set(active)
    ):
        for layer in layers:  # the same adapters stay on: only the scaling moves (a CC)
            for n, s in strengths.items():
                layer.set_scale(n, float(s))
        model._jamstream_strengths = dict(strengths)
        _refresh(model)
        return
    for layer in layers:
        for n, s in strengths.items():
            layer.set_scale(n, float(s))
        present = [n for n in active if n in layer.lora_A]
        if present:
            if train:
                layer.set_adapter(present, inference_mode=False)
                if only is not None:  # train one adapter: the others stay frozen
                    for n in present:
                        layer.lora_A[n].requires_grad_(n == only)
                        layer.lora_B[n].requires_grad_(n == only)
            else:
                layer.set_adapter(present, inference_mode=True)
            layer._disable_adapters = False
        else:
            layer.enable_adapters(False)  # LoRA path skipped: exactly base_layer(x)
    model._jamstream_strengths = dict(strengths)
    _refresh(model)


def strengths(model: nn.Module) -> dict[str, float]:
    """{adapter name: strength} of every adapter applied to this LM."""
    return dict(getattr(model, "_jamstream_strengths", {}))


def check_fits(adapter: Adapter, model: nn.Module) -> None:
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise JamstreamError("adapters apply to a DepthformerLM")
    mine = asdict(cfg)
    for key in SHAPE_FIELDS:
        if key in adapter.lm_config and adapter.lm_config[key] != mine.get(key):
            raise JamstreamError(
                f"adapter {adapter.name!r} was trained on an LM with {key}={adapter.lm_config[key]}, this LM has "
                f"{key}={mine.get(key)}; "
                "fine-tune it again on this base"
            )


def apply_adapter(
    model: nn.Module, adapter: Adapter | str | os.PathLike, strength: float = 1.0, adapters_dir=None, fuse: bool = True
) -> Adapter:
    """Inject `adapter` (an Adapter, a name or a folder) into a loaded LM at `strength`.

    Re-applying an adapter that is already in the LM only sets its strength. With `fuse`
    (the default) the adapters are folded into the projection weights (see `_fuse`):
    generation then costs what the base costs; without it every projection runs peft's
    LoRA forward (measured on `tiny`: about 1.7x the base's generation time).
    """
    if not isinstance(adapter, Adapter):
        adapter = load_adapter(adapter, adapters_dir)
    _check_strength(strength)
    if adapter.name in adapter_names(model):
        set_strength(model, adapter.name, strength)
        return adapter
    check_fits(adapter, model)
    was_training = model.training
    current = strengths(model)
    fuse = fuse and (not current or getattr(model, "_jamstream_fused", None) is not None)
    _unfuse(model)
    inject(model, adapter.name, adapter.config)
    load_adapter_state(model, adapter.name, adapter.tensors, f"adapter {adapter.name!r}")
    device = next(model.parameters()).device
    model.to(device)
    current[adapter.name] = float(strength)
    _activate(model, current)
    for p in model.parameters():
        p.requires_grad_(False)
    if fuse:
        _fuse(model)
    model.train(was_training)
    return adapter


def set_strength(model: nn.Module, name: str, strength: float) -> None:
    """Set one adapter's LoRA scaling at runtime (0 = off, 1 = as trained; any finite value)."""
    _check_strength(strength)
    current = strengths(model)
    if name not in current:
        raise JamstreamError(
            f"no adapter named {name!r} is applied to this LM (applied: {', '.join(current) or 'none'})"
        )
    if current[name] == float(strength):
        return  # unchanged (the engine sets every slot before every chunk): nothing to redo
    current[name] = float(strength)
    _activate(model, current)


def _check_strength(strength: float) -> None:
    if not (isinstance(strength, (int, float)) and math.isfinite(strength)):
        raise JamstreamError(f"adapter strength must be a finite number (got {strength!r})")


def remove_adapter(model: nn.Module, name: str | None = None) -> None:
    """Take an adapter (or, with name None, every adapter) out of the LM; the base modules
    come back unchanged (they were never modified)."""
    names = adapter_names(model)
    if name is not None and name not in names:
        raise JamstreamError(f"no adapter named {name!r} is applied to this LM")
    drop = names if name is None else [name]
    keep = {n: s for n, s in strengths(model).items() if n not in drop}
    was_fused = getattr(model, "_jamstream_fused", None) is not None
    _unfuse(model)
    for mod_name, layer in list(lora_layers(model)):
        for n in drop:
            if n in layer.lora_A:
                layer.delete_adapter(n)
        if not layer.lora_A:  # no adapter left here: put the original projection back
            parent_name, _, child = mod_name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.get_base_layer())
    model._jamstream_layers = None
    _activate(model, keep)
    if not keep:
        for attr in ("_jamstream_strengths", "_jamstream_layers"):
            if hasattr(model, attr):
                delattr(model, attr)
    elif was_fused:
        _fuse(model)


# ------------------------------------------------------------------ fused inference
def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@torch.no_grad()
def _fuse(model: nn.Module) -> None:
    """Fold the adapters into their projections: W = W0 + sum_i strength_i (alpha/r) B_i A_i.

    The peft LoRA layers leave the module tree (kept aside with one copy of W0 each), so
    the LM runs plain nn.Linear again; a strength change recomputes W from W0 (a few ms
    for `tiny`), and all strengths 0 copy W0 back: the base exactly. Quantized bases
    (training only) are never fused.
    """
    layers = list(lora_layers(model))
    if not layers or getattr(model, "_jamstream_fused", None) is not None:
        return
    if any(type(layer.get_base_layer()) is not nn.Linear for _, layer in layers):
        return
    fused = {}
    for name, layer in layers:
        base = layer.get_base_layer()
        fused[name] = (layer, base.weight.detach().clone())
        _set_module(model, name, base)
    model._jamstream_fused = fused
    model._jamstream_layers = None
    _refresh(model)


@torch.no_grad()
def _refresh(model: nn.Module) -> None:
    fused = getattr(model, "_jamstream_fused", None)
    if not fused:
        return
    active = [n for n, s in strengths(model).items() if s != 0.0]
    for name, (layer, w0) in fused.items():
        weight = layer.get_base_layer().weight
        if w0.device != weight.device:  # the LM moved (e.g. to a GPU) after fusing
            w0 = w0.to(weight.device)
            layer.to(weight.device)
            fused[name] = (layer, w0)
        weight.copy_(w0)
        for n in active:
            if n in layer.lora_A:
                weight.add_(
                    (layer.lora_B[n].weight @ layer.lora_A[n].weight).to(weight.dtype), alpha=float(layer.scaling[n])
                )


@torch.no_grad()
def _unfuse(model: nn.Module) -> None:
    """Put the peft LoRA layers back around the original (W0) projections."""
    fused = getattr(model, "_jamstream_fused", None)
    if fused is None:
        return
    for name, (layer, w0) in fused.items():
        layer.get_base_layer().weight.copy_(w0)
        _set_module(model, name, layer)
    del model._jamstream_fused
    model._jamstream_layers = None


# ------------------------------------------------------------------ files
def adapter_dir(name_or_path, adapters_dir=None) -> Path:
    """A folder path (holding adapter.safetensors) or a name under the adapters folder."""
    p = Path(name_or_path)
    if (p / ADAPTER_FILE).is_file():
        return p
    root = Path(adapters_dir) if adapters_dir else default_adapters_dir()
    if p.name == str(name_or_path) and NAME_RE.match(str(name_or_path)):
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


def style_embedding(spec, style_model, adapters_dir=None) -> torch.Tensor:
    """A preset/--mix style: "adapter:NAME" -> the adapter's captured style; text -> the text tower."""
    if is_adapter_style(spec):
        name = spec.strip()[len(STYLE_PREFIX) :].strip()
        if not name:
            raise JamstreamError("style 'adapter:' needs a name, e.g. 'adapter:ohhalim'")
        return adapter_style(name, adapters_dir)
    return style_model.embed(spec)


# ------------------------------------------------------------------ quantized bases (QLoRA)
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
