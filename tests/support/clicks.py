"""Where the metronome's clicks are, against where the beats should be."""

from __future__ import annotations

import numpy as np


def click_onsets(x: np.ndarray, threshold: float = 0.05, min_gap: int = 4800) -> np.ndarray:
    """Sample indices where |x| first crosses `threshold` after at least `min_gap` quiet samples."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return loud
    keep = np.concatenate([[True], np.diff(loud) > min_gap])
    return loud[keep]


def onset_errors(onsets: np.ndarray, beats: np.ndarray, rate: int, window_s: float = 0.1) -> np.ndarray:
    """For each host beat with an onset within +-window, the signed distance (s) to the nearest one."""
    if onsets.size == 0:
        return np.zeros(0)
    out = []
    for b in beats:
        i = np.argmin(np.abs(onsets - b))
        d = (onsets[i] - b) / rate
        if abs(d) <= window_s:
            out.append(d)
    return np.array(out)


def describe(label: str, err: np.ndarray) -> str:
    """One line for `pytest -s`: how far the clicks were from the beats (what the bounds rest on)."""
    if err.size == 0:
        line = f"{label}: no clicks near the beats"
    else:
        line = (
            f"{label}: {len(err)} beats, error median {np.median(err) * 1e3:+.3f} ms, "
            f"max |err| {np.max(np.abs(err)) * 1e3:.3f} ms"
        )
    print(line)
    return line
