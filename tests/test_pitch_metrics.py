"""The pitch-aware codec figures cannot be fooled: a clip against itself is perfect, and a
copy that keeps the envelope but moves every note by a semitone fails chroma."""

from __future__ import annotations

import numpy as np
import pytest

from model.eval.pitch import chroma_corr, cqt_distance, dac_mel

RATE = 48_000
# C major, A minor, F major, G major: four bars of triads with a bass note
CHORDS = [(48, 64, 67, 72), (45, 64, 69, 72), (41, 65, 69, 72), (43, 62, 67, 71)]


def harmonic_chords(shift_semitones: float = 0.0, seconds_per_chord: float = 1.0) -> np.ndarray:
    """Stereo [2, T] chords of 6-partial tones; every note has the same attack-decay envelope,
    so a shifted copy differs from the original in pitch alone."""
    n = int(RATE * seconds_per_chord)
    t = np.arange(n) / RATE
    env = np.minimum(t / 0.01, 1.0) * np.exp(-1.5 * t)
    out = []
    for chord in CHORDS:
        x = np.zeros(n)
        for midi in chord:
            f0 = 440.0 * 2 ** ((midi + shift_semitones - 69) / 12)
            for h in range(1, 7):
                x += np.sin(2 * np.pi * f0 * h * t) / h
        out.append(0.05 * env * x)
    mono = np.concatenate(out).astype(np.float32)
    return np.stack([mono, mono])


def test_a_clip_against_itself_scores_chroma_one_and_distances_zero():
    x = harmonic_chords()
    assert chroma_corr(x, x) == pytest.approx(1.0, abs=1e-6)
    assert cqt_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert dac_mel(x, x) == pytest.approx(0.0, abs=1e-9)


def test_a_semitone_shift_with_the_same_envelope_fails_chroma_and_costs_cqt():
    x, shifted = harmonic_chords(), harmonic_chords(1.0)
    assert chroma_corr(shifted, x) < 0.5
    # a quarter-tone error is still far from the notes, and CQT at 3 bins/semitone sees it
    assert cqt_distance(harmonic_chords(0.5), x) > 0.2
    assert cqt_distance(shifted, x) > 0.2


def test_a_real_pitch_shifter_fails_chroma_too():
    import librosa

    x = harmonic_chords()
    shifted = np.stack([librosa.effects.pitch_shift(c, sr=RATE, n_steps=1) for c in x]).astype(np.float32)
    assert chroma_corr(shifted, x) < 0.5


def test_noise_with_the_clips_envelope_keeps_no_pitch():
    """What an envelope-only codec makes: noise shaped by the clip's loudness."""
    x = harmonic_chords()
    rng = np.random.default_rng(0)
    frame = 480
    env = np.repeat(np.sqrt(np.mean(x[0].reshape(-1, frame) ** 2, axis=1)), frame)
    noise = (rng.standard_normal(x.shape) * env).astype(np.float32)
    assert chroma_corr(noise, x) < 0.5
    assert dac_mel(noise, x) > dac_mel(x * 0.9, x)


def test_gain_and_small_noise_leave_the_pitch_figures_near_perfect():
    x = harmonic_chords()
    rng = np.random.default_rng(1)
    y = (0.7 * x + 1e-4 * rng.standard_normal(x.shape)).astype(np.float32)
    assert chroma_corr(y, x) > 0.98
