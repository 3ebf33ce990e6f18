"""Shipped default weights: where they live and how to find them.

Each model kind has one file here, `<kind>.safetensors` (half precision, a jamstream
checkpoint holding only `model.*` tensors), plus a recipe in RECIPES.md saying exactly
how it was trained.
"""

from __future__ import annotations

from pathlib import Path

from model.errors import JamstreamError

WEIGHTS_DIR = Path(__file__).resolve().parent
# model.codec.codec_fingerprint of the first shipped codec (codec.safetensors up to the
# hybrid codec): the tokens of every LM saved before LMs recorded their codec's.
LEGACY_CODEC_FINGERPRINT = "98a6958d33281f54"


def default_weight_path(kind: str) -> Path:
    path = WEIGHTS_DIR / f"{kind}.safetensors"
    if not path.is_file():
        raise JamstreamError(
            f"no shipped {kind} weights at {path}; train them (see model/weights/RECIPES.md) or pass --checkpoint"
        )
    return path
