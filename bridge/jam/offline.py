"""A prompt mix at a steady tempo, played through the Engine: `generate`'s and `eval
generation`'s clips.

There is one chunker: the Engine, which `jam` and `render` already play through. The
codec's streaming decoder is not split-invariant, so a clip cut into other pieces would
be a different clip from the one a live set plays; `generate` and the generation figures
therefore go through the same grid, pieces, fades and gain as a bounce. The prompt mix
becomes a preset written by code (one prompt slot per weighted prompt, no effects, no
limiter, no knobs) and is validated like a preset file.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bridge.jam.engine import Engine, SlotStyles
from bridge.jam.presets import Preset, preset_from_table
from bridge.jam.render import bounce
from bridge.jam.time.clock import FixedClock
from model.adapters import store
from model.codec.network import FRAME_RATE, FRAME_SAMPLES
from model.eval.generation import Clip
from model.lm.sampling import SamplingConfig

FIRST_SLOT_CC = 20  # the slots need CC numbers; nothing sends them here


# A prompt mix has no knobs to answer, so it decides in the largest pieces that still decode
# as before the per-piece engine (12 frames: the eval figures stay comparable, and
# 3-frame pieces cost ~10 % more per frame in decoder context).
PROMPT_PIECE_FRAMES = 12


def prompt_preset(
    pairs: list[tuple[str, float]],
    bpm: float,
    meter: tuple[int, int],
    sampling: SamplingConfig,
    bars_per_chunk: int = 1,
) -> Preset:
    """The preset a prompt mix plays: weights scaled so the largest is 1 (the mix is a
    weighted mean, so only their ratios count), chunks of whole bars, no lookahead."""
    top = max(w for _, w in pairs)
    slots = {}
    for i, (prompt, weight) in enumerate(pairs):
        kind, value = (
            ("adapter", store.adapter_style_name(prompt)) if store.is_adapter_style(prompt) else ("prompt", prompt)
        )
        slots[f"S{i + 1}"] = {kind: value, "cc": FIRST_SLOT_CC + i, "weight": weight / top}
    table = {
        "name": "prompt mix",
        "bpm": float(bpm),
        "meter": f"{meter[0]}/{meter[1]}",
        "chunk": f"{bars_per_chunk} bar{'s' if bars_per_chunk > 1 else ''}",
        "piece_frames": PROMPT_PIECE_FRAMES,
        "lookahead_ms": 0.0,
        "smoothing_ms": 0.0,
        "sampling": {
            "temperature": sampling.temperature,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "guidance": sampling.guidance,
        },
        "slots": slots,
        "limiter": False,
    }
    return preset_from_table(table, Path("<prompt mix>"))


def render_clip(
    generator,
    style_model,
    pairs: list[tuple[str, float]],
    bpm: float,
    meter: tuple[int, int],
    seconds: float,
    seed: int = 0,
    sampling: SamplingConfig = SamplingConfig(),
    bars_per_chunk: int = 1,
    adapters_dir=None,
) -> Clip:
    """`seconds` of the mix at `bpm`, beat 1 of bar 1 at sample 0, cut to whole 40 ms frames."""
    preset = prompt_preset(pairs, bpm, meter, sampling, bars_per_chunk)
    clock = FixedClock(bpm, meter)
    frames = max(1, round(seconds * FRAME_RATE))
    captured = {s.value: store.adapter_style(s.value, adapters_dir) for s in preset.slots if s.kind == "adapter"}
    with torch.inference_mode():
        styles = SlotStyles(style_model, preset, captured)
        engine = Engine(generator, style_model, preset, clock, seed=seed, slot_styles=styles)
        joins: list[int] = []

        def seen(block) -> None:
            if block.chunk.start_frame > 0:
                joins.append(block.chunk.start_frame)

        start = time.perf_counter()
        result = bounce(engine, clock, frames / FRAME_RATE, on_block=seen)
        wall = time.perf_counter() - start
    audio = torch.from_numpy(result.audio[:, : frames * FRAME_SAMPLES])
    return Clip(audio, joins, frames, wall)
