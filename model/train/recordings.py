"""A musician's recordings as LM training material: every usable audio file under a
folder, tokenized by the codec, embedded by the style model and beat-tracked.

Unreadable, silent, non-finite and too-short files are skipped and listed; no usable
audio at all is a one-line error. Each file's result is cached under
<adapters>/.cache/, keyed by the file's bytes and the codec and style weights. User
recordings have no beat annotations, so the timing (bpm, beat and bar phase per frame,
as the LM was trained with) comes from librosa's beat tracker; bars are assumed to be 4
beats, with the downbeat phase that has the strongest onsets.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.codec.network import FRAME_RATE
from model.errors import JamstreamError
from model.io.atomic import save_torch
from model.io.audio import READABLE_SUFFIXES, AudioReadError, load_audio
from model.progress import progress

MIN_SECONDS = 2.0  # shorter recordings teach nothing about continuation
SILENCE_PEAK = 1e-4  # -80 dBFS: a file whose loudest sample is below this is silence
CACHE_VERSION = 1
BEATS_PER_BAR = 4


@dataclass
class Recording:
    path: Path
    seconds: float
    tokens: torch.Tensor  # int16 [frames, levels]
    timing: torch.Tensor  # float32 [frames, 3]
    embedding: torch.Tensor  # [512]
    bpm: float


@dataclass
class ScanResult:
    recordings: list[Recording]
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}
    tokenize_seconds: float = 0.0


# ------------------------------------------------------------------ recordings -> tokens
def audio_files(folder: Path) -> tuple[list[Path], list[dict]]:
    """Audio files under `folder` (recursive, sorted), and the other files as skipped."""
    if not folder.exists():
        raise JamstreamError(f"{folder}: no such directory")
    if not folder.is_dir():
        raise JamstreamError(f"{folder} is not a directory; give the folder that holds your recordings")
    files, other = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        (files if p.suffix.lower() in READABLE_SUFFIXES else other).append(p)
    return files, [{"file": str(p), "reason": "not an audio file (wav/flac/mp3/ogg/aiff)"} for p in other]


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def beat_grid(audio: np.ndarray, sr: int = 48_000) -> tuple[list[float], list[float], float]:
    """(beat times, downbeat times, bpm) from librosa's beat tracker on a mono 22.05 kHz mix.

    Downbeats: every 4th beat, starting at whichever of the first four beats gives the
    strongest mean onset strength. Fewer than 4 beats found (rubato, drones): a 120 bpm
    grid from 0, which is what the LM saw most.
    """
    import librosa
    from scipy.signal import resample_poly

    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    y = resample_poly(mono, 147, 320).astype(np.float32)  # 48000 * 147/320 = 22050
    hop = 512
    onset = librosa.onset.onset_strength(y=y, sr=22050, hop_length=hop)
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=22050, hop_length=hop)
    frames = np.asarray(frames, dtype=int)
    if frames.size < 4:
        seconds = len(y) / 22050
        beats = list(np.arange(0.0, seconds + 0.5, 0.5))
        return beats, beats[::BEATS_PER_BAR], 120.0
    times = librosa.frames_to_time(frames, sr=22050, hop_length=hop)
    strength = [float(onset[frames[k::BEATS_PER_BAR]].mean()) for k in range(BEATS_PER_BAR)]
    first = int(np.argmax(strength))
    bpm = float(60.0 / np.median(np.diff(times)))
    return [float(t) for t in times], [float(t) for t in times[first::BEATS_PER_BAR]], bpm


def scan_recordings(
    folder,
    codec,
    codec_path: Path,
    style_model,
    style_path: Path,
    levels: int,
    cache_dir: Path,
    show_progress: bool = True,
) -> ScanResult:
    """Every usable recording under `folder`, tokenized and beat-tracked (cached per file)."""
    from model.train.token_data import frame_timing

    folder = Path(folder)
    files, skipped = audio_files(folder)
    if not files:
        what = f" ({len(skipped)} other files)" if skipped else ""
        raise JamstreamError(f"{folder} has no audio files (wav/flac/mp3/ogg/aiff){what}; put your recordings there")
    models_key = hashlib.sha1(
        f"{file_digest(Path(codec_path))}:{file_digest(Path(style_path))}:{levels}:{CACHE_VERSION}".encode()
    ).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    recordings: list[Recording] = []
    started = time.perf_counter()
    for path in progress(files, desc="tokenize", unit="file", enabled=show_progress):
        key = hashlib.sha1(f"{file_digest(path)}:{models_key}".encode()).hexdigest()[:20]
        cache = cache_dir / f"rec-{key}.pt"
        entry = None
        if cache.is_file():
            try:
                entry = torch.load(cache, weights_only=False)
            except Exception:  # a damaged cache entry is recomputed, never trusted
                entry = None
        if entry is None:
            try:
                audio = load_audio(path)
            except AudioReadError as exc:
                skipped.append({"file": str(path), "reason": f"unreadable ({str(exc).split(': ', 1)[-1]})"})
                continue
            seconds = audio.shape[1] / 48_000
            peak = float(np.abs(audio).max()) if audio.size else 0.0
            if not np.isfinite(audio).all():
                skipped.append({"file": str(path), "reason": "contains NaN or infinite samples"})
                continue
            if seconds < MIN_SECONDS:
                skipped.append({"file": str(path), "reason": f"too short ({seconds:.2f} s < {MIN_SECONDS:g} s)"})
                continue
            if peak < SILENCE_PEAK:
                skipped.append({"file": str(path), "reason": "silent"})
                continue
            with torch.inference_mode():
                tokens = codec.encode(torch.from_numpy(audio), levels=levels)[0].to(torch.int16)
                embedding = style_model.embed_audio(audio, 48_000).float()
            beats, downbeats, bpm = beat_grid(audio)
            timing = torch.from_numpy(frame_timing(beats, downbeats, tokens.shape[0], FRAME_RATE))
            timing[:, 0] = timing[:, 0].clamp(20.0, 400.0)
            entry = {"seconds": seconds, "tokens": tokens, "timing": timing, "embedding": embedding, "bpm": bpm}
            save_torch(entry, cache)
        recordings.append(
            Recording(
                path, float(entry["seconds"]), entry["tokens"], entry["timing"], entry["embedding"], float(entry["bpm"])
            )
        )
    if not recordings:
        listed = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise JamstreamError(f"{folder}: no usable audio ({listed}{more})")
    return ScanResult(recordings, skipped, time.perf_counter() - started)
