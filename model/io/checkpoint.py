"""One checkpoint format for every model: a single safetensors file.

Tensors are namespaced (`model.*` for weights, `optim.*` and `trainer.*` for what a
resume needs) and the header's metadata carries the JSON config, the model kind and a
format version. One file means one atomic rename, so a checkpoint on disk is always
either the old one or the new one - never a mix - and shipped weights are simply a
checkpoint with only `model.*`, in half precision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from model.errors import JamstreamError
from model.io.atomic import atomic_path

FORMAT = "jamstream"
FORMAT_VERSION = 1
# Training-only state that inference never reads and a model can rebuild from the rest
# (the codec's EMA codebook sums = codes x usage counts): left out of shipped weights.
TRAINING_ONLY_SUFFIXES = ("embed_avg",)


def save_checkpoint(
    path: str | os.PathLike,
    kind: str,
    config: dict,
    tensors: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write atomically (model.io.atomic): a checkpoint on disk is the old one or the new one.

    Serialized in memory, then written as plain bytes: safetensors' own file writer reports a
    full disk as a SafetensorError, where a write of bytes raises OSError(ENOSPC), which the
    CLI turns into one line."""
    from safetensors.torch import save

    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "config": json.dumps(config, sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(contiguous, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_metadata(path: str | os.PathLike, kind: str) -> tuple[dict, dict]:
    """(config, extra) of a checkpoint of `kind`, or a one-line JamstreamError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise JamstreamError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises SafetensorError / OSError on damage
        raise JamstreamError(f"checkpoint {path} is corrupt or truncated ({_first_line(exc)})") from exc
    if meta.get("format") != FORMAT:
        raise JamstreamError(f"{path} is not a jamstream checkpoint")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise JamstreamError(f"{path}: checkpoint format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if meta.get("kind") != kind:
        raise JamstreamError(f"{path} holds a {meta.get('kind')!r} model, not a {kind!r} model")
    try:
        return json.loads(meta["config"]), json.loads(meta.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise JamstreamError(f"checkpoint {path} has a damaged config header") from exc


def load_tensors(path: str | os.PathLike, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors under `prefix.` (prefix stripped), or all of them."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if prefix is None:
                    out[key] = f.get_tensor(key)
                elif key.startswith(prefix + "."):
                    out[key[len(prefix) + 1 :]] = f.get_tensor(key)
    except Exception as exc:
        raise JamstreamError(f"checkpoint {path} is corrupt or truncated ({_first_line(exc)})") from exc
    return out


def load_state_into(
    module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, new_keys: tuple[str, ...] = ()
) -> None:
    """Strict load with a one-line error naming what does not fit (wrong config, other model).
    Keys starting with one of `new_keys` may be missing: parts a fine-tune adds to the
    model it starts from, which keep their fresh initialisation."""
    own = module.state_dict()
    missing = sorted(
        k
        for k in set(own) - set(state)
        if not k.endswith(TRAINING_ONLY_SUFFIXES) and not (new_keys and k.startswith(new_keys))
    )
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise JamstreamError(f"checkpoint {path} does not match this model's config ({what})")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise JamstreamError(
                f"checkpoint {path} does not match this model's config ({key}: {tuple(value.shape)} vs "
                f"{tuple(own[key].shape)})"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            # a diverged run saves NaNs without complaint; played, they are silence or noise
            raise JamstreamError(f"checkpoint {path} holds NaN or infinite values ({key}); use an earlier checkpoint")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    rebuild = getattr(module, "rebuild_training_state", None)
    if rebuild is not None and len(state) < len(own):
        rebuild()


def save_model(
    model: torch.nn.Module, path, kind: str, config: dict, half: bool = False, extra: dict | None = None
) -> None:
    """A model's whole state as a checkpoint of `kind` (optionally in half precision)."""
    tensors = {f"model.{k}": (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_checkpoint(path, kind, config, tensors, extra)


def load_model(path, kind: str, config_cls, model_cls):
    """Build `model_cls(config_cls(**header config))` and load its weights, strictly.

    A header config this version doesn't know (a renamed or removed field) is a one-line
    error rather than a TypeError from the dataclass.
    """
    config, _ = read_metadata(path, kind)
    try:
        cfg = config_cls(**config)
    except TypeError as exc:
        raise JamstreamError(f"checkpoint {path} has a {kind} config this version does not know ({exc})") from exc
    model = model_cls(cfg)
    load_state_into(model, load_tensors(path, "model"), path)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def export_weights(src, dst, kind: str, dtype: torch.dtype = torch.float16, recipe: str = "") -> dict:
    """Shipped weights from a training checkpoint: `model.*` only, half precision."""
    config, extra = read_metadata(src, kind)
    tensors = {}
    for key, value in load_tensors(src, "model").items():
        if key.endswith(TRAINING_ONLY_SUFFIXES):
            continue
        tensors[f"model.{key}"] = value.to(dtype) if value.is_floating_point() else value
    info = {
        "step": extra.get("step"),
        "metrics": extra.get("metrics", {}),
        "recipe": recipe,
        "dtype": str(dtype).split(".")[-1],
    }
    if "codec_fingerprint" in extra:  # an LM keeps the name of the codec whose tokens it learned
        info["codec_fingerprint"] = extra["codec_fingerprint"]
    save_checkpoint(dst, kind, config, tensors, info)
    return {**info, "out": str(dst), "megabytes": Path(dst).stat().st_size / 1e6}
