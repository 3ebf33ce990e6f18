"""The live-input style slot (`jamstream jam --input`): what the band plays steers the style.

The preset gains one more slot, "live", on the first slot's MIDI channel at `--input-cc`.
Its embedding starts as a copy of the first slot's (a placeholder until the input has
sound) and is replaced, at most every 2 s while the slot's weight is up, by the style
model's embedding of the last 10 s the callback wrote to the shared `live` ring.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

LIVE_SLOT = "live"
REFRESH_S = 2.0  # how often the live style is re-measured
WINDOW_S = 10  # how much of the input it is measured on


def with_live_slot(preset, enabled: bool, cc: int):
    """`preset` with the live slot appended when `enabled` (else `preset` itself)."""
    if not enabled:
        return preset
    from bridge.jam.presets import CCBinding, StyleSlot

    channel = preset.slots[0].cc.channel
    slot = StyleSlot(LIVE_SLOT, "prompt", "live input", CCBinding(channel, cc), 0.0)
    return dataclasses.replace(preset, slots=tuple(preset.slots) + (slot,))


def without_live_slot(preset):
    """`preset` as its file has it: the slots the models embed (the live one has no file)."""
    return dataclasses.replace(preset, slots=tuple(s for s in preset.slots if s.name != LIVE_SLOT))


def add_placeholder_row(styles) -> None:
    """A live row in `styles` (SlotStyles) until the input has sound: the first slot's style."""
    import torch

    styles.embeddings = torch.cat([styles.embeddings, styles.embeddings[:1]], dim=0)


class LiveInputStyle:
    """Re-measures the live slot's embedding from the shared input ring."""

    def __init__(self, shared, style_model):
        self.sh = shared
        self.style_model = style_model
        self._at = 0.0

    def update(self, engine, rate: int) -> None:
        now = time.monotonic()
        if now - self._at < REFRESH_S or engine.controls.target_weights().get(LIVE_SLOT, 0.0) <= 0:
            return
        self._at = now
        audio = self.sh.read_live(min(self.sh.live_capacity, WINDOW_S * rate))
        if audio.shape[1] < rate or float(np.abs(audio).max()) < 1e-4:
            return
        import torch

        emb = self.style_model.embed_audio(audio, rate)
        engine.styles.embeddings[-1] = torch.nn.functional.normalize(
            torch.as_tensor(emb, dtype=torch.float32).reshape(-1), dim=0
        )
