"""A log-frequency spectrogram picture of audio: where a musician sees the notes.

A linear-frequency spectrogram crowds every bass note and melody into its bottom tenth;
a constant-Q transform at 3 bins per semitone gives each note the same height, so a chord
shows as parallel lines and a codec that smears pitch (the first shipped codec) shows as a
blur. Several files stack on one time axis, so an original and its reconstruction (or
two generations) read side by side.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from model.errors import JamstreamError

ANALYSIS_RATE = 22_050
HOP = 256  # ~11.6 ms columns at 22.05 kHz
BINS_PER_OCTAVE = 36
FMIN_NOTE = "C1"
OCTAVES = 7  # C1 .. C8
FLOOR_DB = -80.0


@dataclass
class PlotConfig:
    start_s: float = 0.0
    seconds: float | None = None  # None: to the end of the longest file
    width_in: float = 12.0
    row_height_in: float = 3.2
    dpi: int = 110


def cqt_db(audio: np.ndarray, sr: int) -> np.ndarray:
    """[bins, columns] CQT magnitude in dB under the clip's loudest bin (C1-C8, 36/octave)."""
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if sr != ANALYSIS_RATE:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_RATE)
    with warnings.catch_warnings():  # a clip of a second or so is short for the lowest octaves' filters
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        cqt = np.abs(
            librosa.cqt(
                y,
                sr=ANALYSIS_RATE,
                hop_length=HOP,
                fmin=librosa.note_to_hz(FMIN_NOTE),
                n_bins=OCTAVES * BINS_PER_OCTAVE,
                bins_per_octave=BINS_PER_OCTAVE,
            )
        )
    return librosa.amplitude_to_db(cqt, ref=max(float(cqt.max()), 1e-10), top_db=-FLOOR_DB)


def plot_spectrograms(
    clips: list[tuple[str, np.ndarray, int]], out_path: str | os.PathLike, cfg: PlotConfig | None = None
) -> None:
    """Draw one row per (title, audio, rate) into a PNG at `out_path`, written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is the output
    import librosa.display
    import matplotlib.pyplot as plt

    from model.io.atomic import atomic_path

    cfg = cfg or PlotConfig()
    if not clips:
        raise JamstreamError("nothing to plot: give at least one audio file")
    if cfg.start_s < 0 or (cfg.seconds is not None and cfg.seconds <= 0):
        raise JamstreamError("--start must be >= 0 and --seconds > 0")
    rows = []
    for title, audio, sr in clips:
        first = int(round(cfg.start_s * sr))
        last = None if cfg.seconds is None else first + int(round(cfg.seconds * sr))
        part = audio[..., first:last]
        if part.shape[-1] < 0.1 * sr:
            raise JamstreamError(f"{title}: under 0.1 s of audio from {cfg.start_s:g} s: nothing to draw")
        rows.append((title, cqt_db(part, sr)))
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(cfg.width_in, cfg.row_height_in * len(rows)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for ax, (title, db) in zip(axes[:, 0], rows):
        image = librosa.display.specshow(
            db,
            sr=ANALYSIS_RATE,
            hop_length=HOP,
            x_axis="time",
            y_axis="cqt_note",
            fmin=librosa.note_to_hz(FMIN_NOTE),
            bins_per_octave=BINS_PER_OCTAVE,
            vmin=FLOOR_DB,
            vmax=0.0,
            cmap="magma",
            ax=ax,
        )
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel(f"seconds from {cfg.start_s:g} s")
    fig.colorbar(image, ax=axes[:, 0].tolist(), format="%+2.0f dB")
    try:
        with atomic_path(out_path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=cfg.dpi, format="png")
    finally:
        plt.close(fig)
