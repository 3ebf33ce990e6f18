"""Audio in and out of the system: every file becomes 48 kHz stereo float32 here.

Everything inside jamstream runs at one rate and channel count (DESIGN.md), so the
conversion happens once, at the edge, through pedalboard (which reads wav/flac/mp3/ogg/
aiff and resamples with a good filter).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model.errors import JamstreamError
from model.io.atomic import atomic_path

SAMPLE_RATE = 48_000
CHANNELS = 2
READABLE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif")


class AudioReadError(JamstreamError):
    """A file that is not audio we can read (missing, empty, corrupt, unsupported)."""


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> np.ndarray:
    """Read any supported file as float32 [channels, samples] at `sample_rate`.

    Mono is duplicated to stereo and more than two channels are averaged down, because a
    musician's recordings arrive in every shape and the models take exactly one.
    """
    from pedalboard.io import AudioFile

    p = Path(path)
    if not p.exists():
        raise AudioReadError(f"{p}: no such file")
    if not p.is_file():
        raise AudioReadError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise AudioReadError(f"{p}: empty file")
    try:
        with AudioFile(str(p)) as f:
            if f.samplerate != sample_rate:
                f = f.resampled_to(sample_rate)
            audio = f.read(f.frames)
    except Exception as exc:  # pedalboard raises ValueError/RuntimeError for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioReadError(f"{p}: cannot read audio ({first_line})") from exc
    return to_channels(np.asarray(audio, dtype=np.float32), channels)


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.shape[0] == channels:
        return np.ascontiguousarray(audio, dtype=np.float32)
    mono = audio.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(np.repeat(mono, channels, axis=0), dtype=np.float32)


def check_writable(path: str | os.PathLike) -> None:
    """Fail before the work, not after it: `path`'s folder exists (or is made) and takes a
    file. A bounce of minutes must not end in 'cannot write' with nothing to show."""
    p = Path(path)
    if p.is_dir():
        raise JamstreamError(f"{p} is a folder: name an output file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = p.parent / f".{p.name}.probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise JamstreamError(f"{p}: cannot write there ({exc.strerror or exc})") from exc


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write [channels, samples] atomically: a crash never leaves a half file under `path`,
    and an unwritable place is a one-line error with nothing left behind."""
    from pedalboard.io import AudioFile

    p = Path(path)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    kwargs = {"bit_depth": 24} if p.suffix.lower() in (".flac", ".wav", ".aiff") else {}
    try:
        with atomic_path(p, suffix=p.suffix) as tmp:  # the suffix picks the format
            with AudioFile(str(tmp), "w", sample_rate, audio.shape[0], **kwargs) as f:
                f.write(audio)
    except (OSError, ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JamstreamError(
            f"{p}: cannot write audio ({text.rstrip('.')}{_space_hint(p.parent, audio.nbytes)})"
        ) from exc


def _space_hint(folder: Path, wanted: int) -> str:
    """libsndfile says only 'unable to write': name a full disk when that is the cause."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"; no space left: {free // 1024} kB free" if free < wanted else ""


def loudness_normalize(
    audio: np.ndarray, sample_rate: int, target_lufs: float = -18.0, peak_dbfs: float = -1.0
) -> np.ndarray:
    """ITU-R BS.1770 loudness to `target_lufs`, then pulled down if a peak would pass `peak_dbfs`.

    Clips of one loudness let the codec spend its bits on timbre, not on level.
    """
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    loudness = meter.integrated_loudness(audio.T.astype(np.float64))
    if np.isfinite(loudness):
        audio = audio * np.float32(10 ** ((target_lufs - loudness) / 20))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    ceiling = 10 ** (peak_dbfs / 20)
    if peak > ceiling:
        audio = audio * np.float32(ceiling / peak)
    return audio.astype(np.float32)
