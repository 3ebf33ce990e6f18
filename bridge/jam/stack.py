"""Load the model stack a preset needs: LM + codec as a Generator, the style model, each
slot's style embedding and any fine-tuned adapters - once, before the music starts.

Render and jam both call `load_stack`, so a preset that names a missing audio file or
adapter fails the same way in both, before any audio is produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.jam.engine import SlotStyles
from bridge.jam.presets import Preset
from model.generator import Generator


@dataclass
class Stack:
    generator: Generator
    style_model: object
    slot_styles: SlotStyles
    adapters: object | None  # AdapterSet when the preset or --adapter uses one


def load_stack(
    preset: Preset,
    lm: str | None = None,
    codec: str | None = None,
    style: str | None = None,
    adapter: str | None = None,
    device: str = "cpu",
    speculative: bool = False,
    draft: str | None = None,
) -> Stack:
    """`speculative`: sample with the draft at `draft` (default: the shipped one)."""
    from model.codec.network import load_codec
    from model.lm.network import load_lm
    from model.style.network import load_style

    style_model = load_style(style)
    language_model = load_lm(lm, device=device)
    adapters = None
    adapter_styles = None
    names = [s.value for s in preset.slots if s.kind == "adapter"]
    if names or adapter:
        from bridge.jam.adapter_slots import AdapterSet

        adapters = AdapterSet(language_model, preset, names, always_on=adapter)
        adapter_styles = adapters.styles()
    from model.lm import half

    if adapters is None and device == "cpu" and half.wanted():
        half.half_linears(language_model)  # fp16 weights read half the bytes: 1.25-1.7x a frame here
    speculation = None
    if speculative:
        from model.lm.speculative import load_speculation

        speculation = load_speculation(draft)
    generator = Generator(language_model, load_codec(codec), speculation=speculation)
    return Stack(generator, style_model, SlotStyles(style_model, preset, adapter_styles), adapters)
