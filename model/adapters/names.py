"""The adapter-name rule, in one place: what `jamstream finetune --name`, the adapters
folder and a preset's `adapter = "NAME"` slot accept.

A name becomes a folder name under adapters/ and a word in "adapter:NAME" style strings,
so it is a short run of letters, digits, '_', '-' and '.', starting with a letter or
digit (no path separators, no hidden folders). Kept free of torch, so presets can check
names without loading a model.
"""

from __future__ import annotations

import re

from model.errors import JamstreamError

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    """`name` if it is a valid adapter name, else a one-line JamstreamError."""
    if not ADAPTER_NAME.match(name or ""):
        raise JamstreamError(
            f"adapter name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name
