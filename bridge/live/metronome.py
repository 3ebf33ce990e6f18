"""A click track with the Generator's interface: `jamstream jam --metronome`.

It plays a short click on every beat the chunk's timing says (accented on the bar),
delayed by one frame exactly like the codec's streaming decoder, through the same
engine, ring buffer and callback as the model. So it checks a rig - routing, transport
follow, tempo and latency compensation - in seconds and without any weights, and the
tests use it to measure the bridge's own timing apart from what the LM learned.

The click's pitch follows the style mix (slot A low, slot B high), so a CC sweep is
audible and measurable too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from model.codec.network import FRAME_SAMPLES

SAMPLE_RATE = 48_000
CLICK_SAMPLES = 480  # 10 ms
STYLE_DIM = 512


@dataclass
class ClickState:
    held: np.ndarray = field(default_factory=lambda: np.zeros((2, FRAME_SAMPLES), np.float32))
    tail: np.ndarray = field(default_factory=lambda: np.zeros((2, CLICK_SAMPLES), np.float32))


class MetronomeGenerator:
    """`new_state` / `generate_chunk` / `style_token_count` like model.generator.Generator; no torch work."""

    style_token_count = 6  # the style "levels" it reads: the first two set the click's pitch

    def new_state(self, seed: int = 0, guided: bool = True) -> ClickState:
        return ClickState()

    def generate_chunk(self, state: ClickState, style_tokens, timing, n_frames: int, sampling=None):
        timing = np.asarray(timing, dtype=np.float64)
        n = n_frames * FRAME_SAMPLES
        buf = np.zeros((2, n + CLICK_SAMPLES), np.float32)
        buf[:, :CLICK_SAMPLES] += state.tail
        tokens = np.asarray(style_tokens, dtype=np.float64).reshape(-1)
        a, b = max(tokens[0], 0.0), max(tokens[1], 0.0) if tokens.size > 1 else 0.0
        freq = 500.0 + 1500.0 * (b / (a + b) if a + b > 0 else 0.0)
        t = np.arange(CLICK_SAMPLES) / SAMPLE_RATE
        click = (np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.002)).astype(np.float32)
        for f in range(n_frames):
            bpm, beat_phase, bar_phase = timing[f]
            beat_s = 60.0 / bpm
            # Each beat is clicked by exactly one frame: the one holding its sample, rounded. A beat
            # up to half a sample before this frame's start rounds to its first sample (wait 0);
            # the frame before leaves it alone. (With a fixed `beat_phase < 1e-6` test, a beat a
            # few µs off a frame boundary - any external clock's grid - was clicked twice or not at all.)
            if beat_phase * beat_s * SAMPLE_RATE <= 0.5:
                wait = 0.0
                downbeat = bar_phase <= beat_phase + 1e-6  # on a bar line the bar phase is no more than the beat's
            else:
                wait = (1.0 - beat_phase) * beat_s
                if wait >= FRAME_SAMPLES / SAMPLE_RATE:
                    continue
                nxt = timing[f + 1, 2] if f + 1 < n_frames else None
                downbeat = nxt is not None and nxt < bar_phase
            at = f * FRAME_SAMPLES + int(round(wait * SAMPLE_RATE))
            if at < (f + 1) * FRAME_SAMPLES:  # else it rounds to the next frame's first sample: that frame clicks it
                buf[:, at : at + CLICK_SAMPLES] += (0.8 if downbeat else 0.4) * click
        out = np.concatenate([state.held, buf[:, : n - FRAME_SAMPLES]], axis=1)
        new = ClickState(held=buf[:, n - FRAME_SAMPLES : n].copy(), tail=buf[:, n:].copy())
        return torch.from_numpy(out), new


class MetronomeStyle:
    """Stands in for the style model: slot i's embedding is the i-th basis vector and
    'quantizing' a mix returns its first components (x 1000), which set the click pitch."""

    def quantize(self, embedding) -> torch.Tensor:
        e = torch.as_tensor(embedding, dtype=torch.float32).reshape(-1)
        return torch.round(e[:12] * 1000).long()

    def embed_audio(self, samples, sr):
        return torch.zeros(STYLE_DIM)


class MetronomeSlots:
    def __init__(self, n_slots: int):
        self.embeddings = torch.eye(max(n_slots, 1), STYLE_DIM)
