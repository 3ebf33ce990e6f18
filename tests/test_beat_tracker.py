"""madmom's tracker, scored by mir_eval, through the one door model/eval/beat_tracker.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from support.synth_clips import SR, drum_loop

from model.eval import beat_tracker
from model.eval.beat_tracker import MissingEvalExtra, beat_f1, grid_beats, track_beats


@pytest.fixture(scope="module")
def loop():
    return drum_loop(120.0, 12.0)


def test_madmom_imports_under_its_prebuilt_distribution_name():
    assert beat_tracker.available()


def test_a_drum_loop_scores_on_its_own_grid(loop):
    audio, beats = loop
    heard = track_beats(audio, SR)
    assert beat_f1(heard, beats) >= 0.95
    assert beat_f1(heard, grid_beats(120.0, 12.0)) >= 0.95


def test_the_wrong_grid_fails(loop):
    audio, beats = loop
    heard = track_beats(audio, SR)
    assert beat_f1(heard, beats + 0.5 / 3) < 0.3  # a third of a beat off: on no metrical level
    assert beat_f1(heard, grid_beats(100.0, 12.0)) < 0.5


def test_a_tracker_at_double_or_half_tempo_counts():
    grid = grid_beats(120.0, 20.0)
    double = np.sort(np.concatenate([grid, grid + 0.25]))
    assert beat_f1(double, grid) > 0.99  # all but the one past the last reference beat
    assert beat_f1(grid[1::2], grid) == pytest.approx(1.0)
    assert beat_f1(np.zeros(0), grid) == 0.0


def test_without_madmom_it_is_one_line_naming_the_extra(monkeypatch):
    beat_tracker._madmom.cache_clear()
    monkeypatch.setitem(sys.modules, "madmom", None)  # as if it were not installed
    try:
        assert not beat_tracker.available()
        with pytest.raises(MissingEvalExtra, match=r"pip install -e '\.\[eval\]'"):
            track_beats(np.zeros((2, SR)), SR)
    finally:
        beat_tracker._madmom.cache_clear()
