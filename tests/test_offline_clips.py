"""`generate` and `eval generation` play through the Engine, the chunker `jam` and
`render` use: whole-bar chunks on a FixedClock, joins on the bar lines, the prompt mix
as a preset written by code. A small untrained LM keeps it fast; the engine must not
care what the LM has learned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.synth_clips import drum_loop, piano_chords

from bridge.jam.engine import Engine
from bridge.jam.offline import prompt_preset, render_clip
from bridge.jam.render import bounce
from bridge.jam.time.clock import FixedClock
from model.codec.network import FRAME_SAMPLES, load_codec
from model.errors import JamstreamError
from model.eval.generation import evaluate_generation
from model.generator import Generator
from model.io.audio import write_audio
from model.lm.network import DepthformerLM, LMConfig
from model.lm.sampling import SamplingConfig
from model.style.network import load_style

SMALL_LM = LMConfig(width=64, heads=4, temporal_layers=2, depth_layers=1, levels=4)
SAMPLING = SamplingConfig(guidance=0.0)


@pytest.fixture(scope="module")
def style_model():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_style()


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(DepthformerLM(SMALL_LM).eval(), load_codec())


def test_a_clip_joins_its_chunks_on_the_bar_lines_and_has_exactly_its_frames(generator, style_model):
    clip = render_clip(generator, style_model, [("techno music", 1.0)], 120.0, (4, 4), 5.0, sampling=SAMPLING)
    assert clip.frames == 125 and clip.audio.shape == (2, 125 * FRAME_SAMPLES)
    assert clip.joins == [50, 100]  # a 4/4 bar at 120 bpm is 2 s = 50 frames
    two = render_clip(generator, style_model, [("techno music", 1.0)], 120.0, (3, 4), 5.0, 0, SAMPLING, 2)
    assert two.joins == [75]  # two bars of 3/4 = 3 s
    assert torch.isfinite(clip.audio).all() and clip.audio.abs().max() > 0


def test_a_clip_is_what_the_engine_bounces_for_its_prompt_preset(generator, style_model):
    pairs = [("dub techno", 0.7), ("jazz piano", 0.3)]
    clip = render_clip(generator, style_model, pairs, 100.0, (4, 4), 4.0, seed=3, sampling=SAMPLING)
    preset = prompt_preset(pairs, 100.0, (4, 4), SAMPLING)
    clock = FixedClock(100.0, (4, 4))
    with torch.inference_mode():
        played = bounce(Engine(generator, style_model, preset, clock, seed=3), clock, 4.0).audio
    assert np.array_equal(clip.audio.numpy(), played[:, : clip.audio.shape[1]])


def test_only_the_ratios_of_the_mix_weights_count_and_the_seed_decides(generator, style_model):
    a = render_clip(generator, style_model, [("dub techno", 2.0), ("jazz piano", 1.0)], 120.0, (4, 4), 2.0, 1, SAMPLING)
    b = render_clip(generator, style_model, [("dub techno", 1.0), ("jazz piano", 0.5)], 120.0, (4, 4), 2.0, 1, SAMPLING)
    c = render_clip(generator, style_model, [("dub techno", 1.0), ("jazz piano", 0.5)], 120.0, (4, 4), 2.0, 2, SAMPLING)
    assert torch.equal(a.audio, b.audio)
    assert not torch.equal(b.audio, c.audio)


def test_an_adapter_style_that_does_not_exist_is_one_line(generator, style_model, tmp_path):
    with pytest.raises(JamstreamError, match="nobody"):
        render_clip(generator, style_model, [("adapter:nobody", 1.0)], 120.0, (4, 4), 1.0, adapters_dir=tmp_path)


def test_eval_generation_scores_seams_on_the_engines_clips(generator, style_model):
    def render(prompt, bpm, seconds, seed, bars_per_chunk):
        return render_clip(
            generator, style_model, [(prompt, 1.0)], bpm, (4, 4), seconds, seed, SAMPLING, bars_per_chunk
        )

    report = evaluate_generation(render, style_model, {}, seconds=8.0, checks=("seams",))
    assert report.seams is not None and np.isfinite(report.seams["seam_to_bar_line_ratio"])
    assert report.rtf is not None and report.rtf > 0


def test_eval_generation_scores_beats_and_notes_beside_the_trackers_floor_and_the_corpus(
    generator, style_model, tmp_path
):
    """An untrained LM's clips against corpus-like files whose content is known: the floor
    comes from exact beats (high), the corpus's notes from a chord progression (high), and
    the untrained LM's noise-like music has no notes (far below the corpus)."""
    drums, beats = drum_loop(120.0, 10.0)
    write_audio(tmp_path / "drums.flac", drums)
    write_audio(tmp_path / "chords.flac", piano_chords(8.0))

    def render(prompt, bpm, seconds, seed, bars_per_chunk):
        return render_clip(
            generator, style_model, [(prompt, 1.0)], bpm, (4, 4), seconds, seed, SAMPLING, bars_per_chunk
        )

    report = evaluate_generation(
        render,
        style_model,
        {"chorale": 90.0},
        seconds=4.0,
        style_seconds=4.0,
        checks=("tempo", "pitch"),
        reference=[(str(tmp_path / "drums.flac"), beats.tolist())],
        pitch_reference={"chorale": [str(tmp_path / "chords.flac")]},
    )
    out = report.summary()
    assert len(report.tempo) == 12 and all(0.0 <= r.beat_f1 <= 1.0 for r in report.tempo)
    assert 0.0 <= out["beat_f1"] <= 1.0
    assert out["beat_f1_floor"] >= 0.9 and out["beat_f1_floor_clips"] == 1
    assert out["pitch_content_corpus"] > 0.1
    assert out["pitch_content"] < 0.25 * out["pitch_content_corpus"]
    assert "missing" not in out
