"""`pitch_content` hears notes, not energy: noise and drums alone cannot pass it."""

from __future__ import annotations

import pytest
from support.synth_clips import SR, drum_loop, piano_chords, pink_noise, white_noise

from model.eval.pitch_content import key_strength, pitch_content


@pytest.fixture(scope="module")
def piano():
    return piano_chords(8.0)


@pytest.fixture(scope="module")
def drums():
    return drum_loop(120.0, 8.0)[0]


def test_a_chord_progression_has_pitch_content(piano):
    got = pitch_content(piano, SR)
    assert got["pitch_content"] > 0.1
    assert got["key_strength"] > 0.8  # C major, plainly


@pytest.mark.parametrize("noise", [white_noise, pink_noise], ids=["white", "pink"])
def test_noise_has_none(noise):
    assert pitch_content(noise(8.0), SR)["pitch_content"] < 0.01


def test_drums_alone_have_none(drums):
    assert pitch_content(drums, SR)["pitch_content"] < 0.01


def test_drums_under_the_chords_keep_them_audible(piano, drums):
    alone = pitch_content(piano, SR)["pitch_content"]
    mixed = pitch_content(piano + drums, SR)["pitch_content"]
    assert 0.3 * alone < mixed < alone


def test_silence_and_flat_chroma_score_zero():
    import numpy as np

    assert pitch_content(np.zeros((2, SR)), SR)["pitch_content"] == 0.0
    assert key_strength(np.ones(12)) == 0.0
