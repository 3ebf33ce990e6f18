"""Fine-tuned adapters in a performance: `style = "adapter:NAME"` slots and `--adapter`.

An adapter slot does two things at once, both moved by its one CC: its captured style
(the recordings' mean audio embedding) joins the style mix with the slot's weight, and
its LoRA update is scaled by that same weight - at 0 the LM is the base model exactly, at
1 it plays as fine-tuned. Two adapter slots blend two players' adapters (their low-rank
updates add). `--adapter NAME` applies an adapter at full strength for the whole run,
whatever the preset's slots say.
"""

from __future__ import annotations

import torch

from bridge.jam.presets import Preset
from model.adapters import lora, store


class AdapterSet:
    def __init__(self, lm, preset: Preset, slot_adapters: list[str], always_on: str | None = None):
        self.lm = lm
        self._slots = {s.name: s.value for s in preset.slots if s.kind == "adapter"}
        self._loaded: dict[str, store.Adapter] = {}
        for name in dict.fromkeys(slot_adapters):
            self._loaded[name] = lora.apply_adapter(lm, name, strength=self._initial(preset, name))
        self.always_on = None
        if always_on:
            ad = store.load_adapter(always_on)
            if ad.name not in self._loaded:
                self._loaded[ad.name] = lora.apply_adapter(lm, ad, strength=1.0)
            self.always_on = ad.name

    @staticmethod
    def _initial(preset: Preset, name: str) -> float:
        return max((s.weight for s in preset.slots if s.kind == "adapter" and s.value == name), default=0.0)

    def styles(self) -> dict[str, torch.Tensor]:
        """Adapter name -> captured style embedding, for the preset's adapter slots."""
        from model.errors import JamstreamError

        out = {}
        for name in self._slots.values():
            style = self._loaded[name].style
            if style is None:
                raise JamstreamError(
                    f"adapter {name!r} has no captured style ({self._loaded[name].path}/style.safetensors); fine-tune "
                    "it again"
                )
            out[name] = style
        return out

    def set_strengths(self, weights: dict[str, float]) -> None:
        """Scale each slot's LoRA by its smoothed weight (called before every chunk)."""
        per_adapter: dict[str, float] = {}
        for slot, name in self._slots.items():
            per_adapter[name] = max(per_adapter.get(name, 0.0), min(1.0, max(0.0, weights.get(slot, 0.0))))
        if self.always_on:
            per_adapter[self.always_on] = 1.0
        for name, strength in per_adapter.items():
            lora.set_strength(self.lm, name, strength)
