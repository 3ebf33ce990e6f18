"""Does the style follow the knobs? For each preset: A, a full CC sweep, then B.

Each preset is bounced from a conductor file - `a_bars` bars on slot A, a sweep of the
two slot CCs over `sweep_bars` bars, then `b_bars` bars on slot B - and every bar after
the sweep (plus one bar for smoothing and lookahead to settle) is embedded by the style
model's audio tower and compared with the two slots' own embeddings (their prompts, audio
or adapter styles). A bar counts for B when it is nearer B than A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bridge.jam.conductor import sweep_clock
from bridge.jam.engine import SAMPLE_RATE, Engine, SlotStyles
from bridge.jam.presets import Preset
from bridge.jam.render import bounce


@dataclass
class PresetResult:
    preset: str
    bars_after_sweep: int
    nearer_b: int
    share_nearer_b: float
    mean_margin: float  # mean cos(bar, B) - cos(bar, A) after the sweep
    before_margin: float  # the same over the bars on A (negative: nearer A)
    rtf: float


def bar_embeddings(style_model, audio: np.ndarray, bar_samples: int) -> torch.Tensor:
    starts = range(0, audio.shape[1] - bar_samples + 1, bar_samples)
    with torch.inference_mode():
        return torch.stack([style_model.embed_audio(audio[:, s : s + bar_samples], SAMPLE_RATE) for s in starts])


def evaluate_preset(
    generator,
    style_model,
    preset: Preset,
    seed: int = 0,
    a_bars: int = 4,
    sweep_bars: int = 2,
    b_bars: int = 8,
    slot_styles: SlotStyles | None = None,
) -> PresetResult:
    num, den = preset.meter
    bar_q = num * 4.0 / den
    clock = sweep_clock(preset, preset.bpm, a_bars + sweep_bars + b_bars, a_bars * bar_q, sweep_bars * bar_q)
    engine = Engine(generator, style_model, preset, clock, seed=seed, slot_styles=slot_styles)
    result = bounce(engine, clock, clock.length_seconds)
    bar_samples = int(round(clock.seconds_at_bbt(2) * SAMPLE_RATE))
    emb = bar_embeddings(style_model, result.audio, bar_samples)
    slots = torch.nn.functional.normalize(engine.styles.embeddings[:2], dim=1)
    margin = (emb @ slots[1] - emb @ slots[0]).numpy()
    after = margin[a_bars + sweep_bars + 1 :]
    return PresetResult(
        preset.name,
        int(after.size),
        int((after > 0).sum()),
        float((after > 0).mean()),
        float(after.mean()),
        float(margin[1:a_bars].mean()),
        engine.stats.rtf(),
    )
