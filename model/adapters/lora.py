"""LoRA adapters in a loaded depthformer LM: inject, apply, strength, fuse, remove.

Adapters are trained by `jamstream finetune` (model/train/finetune.py) and stored as
model/adapters/store.py describes; this module puts them into a loaded LM.

The adapters are peft LoRA layers (`peft.inject_adapter_in_model` with a `LoraConfig`)
around the attention and MLP projections (`attn.qkv`, `attn.out`, `cross.q`, `cross.kv`,
`cross.out`, `mlp.up`, `mlp.down` in both stacks). Nothing here changes `DepthformerLM`:
peft swaps those nn.Linear modules for LoRA wrappers in place, and `remove_adapter` puts
the originals back.

Engine API (everything the live engine, render and presets need):

    from model.adapters import lora as adapters, store
    ad = store.load_adapter("ohhalim")             # a name under ./adapters (or
                                                   # $JAMSTREAM_ADAPTERS), or a folder path
    adapters.apply_adapter(lm, ad, strength=1.0)   # inject into a loaded DepthformerLM
    adapters.set_strength(lm, "ohhalim", 0.4)      # runtime LoRA scaling (a MIDI CC): takes
                                                   # effect on the next forward; 0.0 runs the
                                                   # base exactly; an unchanged value is free
    adapters.strengths(lm)                         # {"ohhalim": 0.4}
    adapters.remove_adapter(lm, "ohhalim")         # or remove_adapter(lm) for all of them
    ad.style                                       # [512] captured style embedding (unit)
    store.adapter_style("ohhalim")                 # the same without keeping the Adapter
    store.adapter_style_name("adapter:ohhalim")    # a --mix/generate style string -> "ohhalim"

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

Errors are JamstreamError one-liners: an adapter trained on an LM of another shape, an
unknown or already applied adapter name.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from typing import Iterator

import torch
import torch.nn as nn

from model.adapters.names import check_name
from model.adapters.store import SHAPE_FIELDS, Adapter, AdapterConfig, load_adapter
from model.errors import JamstreamError


def _peft():
    """peft, imported quietly: peft imports bitsandbytes when installed, whose CPU backend
    logs a warning about an optional kernel package on import."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import peft
    except ImportError as exc:  # a declared dependency; only a broken install gets here
        raise JamstreamError("LoRA adapters need the peft package (pip install peft)") from exc
    return peft


def _peft_config(config: AdapterConfig):
    return _peft().LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        bias="none",
        init_lora_weights=True,  # B = 0: a fresh adapter is the base model exactly
    )


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
    peft.inject_adapter_in_model(_peft_config(config.validate()), model, adapter_name=name)
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
