"""Does the generator do what the musician asked? Tempo, beat grid, style and seams.

Each check listens to generated audio with a tool that knows nothing about our models:
- **tempo**: librosa's beat tracker on 30 s clips at 80/100/120/140 bpm with drum-heavy
  prompts. A run passes when the estimated tempo is within 4% of the request, or of
  twice or half of it (beat trackers pick a metrical level, not a wrong tempo). The grid
  figure is the median distance from each detected beat to the nearest beat of the
  requested grid (beat 1 at sample 0), over beats after the first two seconds.
- **style**: one clip per corpus genre from that genre's prompt, at the genre's median
  corpus tempo; the clip's audio embedding must be nearer its own genre's prompt than
  any other genre's.
- **seams**: spectral flux (half-wave rectified log-magnitude difference) at the frames
  that straddle chunk joins, ranked against the flux everywhere else in the same clips:
  a seam that clicks or jumps sits in the top percentiles; an invisible one sits near 50.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .sampling import SamplingConfig
from .style import genre_prompt
from .system import Clip, Generator, generate_clip

SAMPLE_RATE = 48_000
TEMPO_BPMS = (80.0, 100.0, 120.0, 140.0)
DRUM_PROMPTS = (
    "techno music",
    "funk music",
    "rock music",
)
TEMPO_TOLERANCE = 0.04
FLUX_HOP = 480  # 10 ms


@dataclass
class TempoRun:
    prompt: str
    bpm: float
    seed: int
    estimated_bpm: float
    tempo_ok: bool
    grid_ms: float  # median distance of detected beats to the requested grid


@dataclass
class GenerationReport:
    tempo: list[TempoRun] = field(default_factory=list)
    style: list[dict] = field(default_factory=list)
    seam_flux_percentile: float | None = None
    seam_flux: float | None = None
    other_flux_median: float | None = None
    rtf: float | None = None

    def summary(self) -> dict:
        out: dict = {}
        if self.tempo:
            out["tempo_ok_share"] = float(np.mean([r.tempo_ok for r in self.tempo]))
            out["grid_ms_median"] = float(np.median([r.grid_ms for r in self.tempo]))
            out["tempo_runs"] = [r.__dict__ for r in self.tempo]
        if self.style:
            out["style_own_genre_share"] = float(np.mean([r["nearest"] == r["genre"] for r in self.style]))
            out["style_runs"] = self.style
        if self.seam_flux_percentile is not None:
            out["seam_flux_percentile"] = self.seam_flux_percentile
            out["seam_flux_mean"] = self.seam_flux
            out["other_flux_median"] = self.other_flux_median
        if self.rtf is not None:
            out["rtf"] = self.rtf
        return out


def tempo_ok(estimated: float, requested: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    return any(abs(estimated - requested * k) <= tolerance * requested * k for k in (0.5, 1.0, 2.0))


def beats_and_tempo(audio: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[float, np.ndarray]:
    import librosa

    y = librosa.resample(audio.mean(axis=0), orig_sr=sr, target_sr=22_050)
    tempo, frames = librosa.beat.beat_track(y=y, sr=22_050, units="time")
    return float(np.atleast_1d(tempo)[0]), np.asarray(frames, dtype=np.float64)


def grid_distance_ms(beats: np.ndarray, bpm: float, skip_seconds: float = 2.0) -> float:
    """Median distance (ms) from each detected beat to the nearest requested beat."""
    beats = beats[beats >= skip_seconds]
    if beats.size == 0:
        return float("inf")
    period = 60.0 / bpm
    off = beats / period
    return float(np.median(np.abs(off - np.round(off))) * period * 1000.0)


def spectral_flux(audio: np.ndarray, hop: int = FLUX_HOP) -> np.ndarray:
    """Flux between consecutive 10 ms frames; flux[i] compares frame i+1 to frame i."""
    mono = torch.from_numpy(audio.mean(axis=0).astype(np.float32))
    spec = torch.stft(mono, 2048, hop, window=torch.hann_window(2048), center=True, return_complex=True).abs()
    logmag = torch.log1p(spec * 100.0)
    return torch.relu(logmag[:, 1:] - logmag[:, :-1]).mean(0).numpy()


def seam_statistics(clips: list[Clip], frame_samples: int = 1920, hop: int = FLUX_HOP) -> tuple[float, float, float]:
    """(percentile of the mean seam flux among non-seam flux, mean seam flux, median other)."""
    seam, other = [], []
    for clip in clips:
        flux = spectral_flux(clip.audio.numpy(), hop)
        at = np.zeros(flux.shape[0], dtype=bool)
        for j in clip.joins:
            centre = j * frame_samples // hop  # stft frame centred on the join
            at[max(0, centre - 2) : centre + 2] = True
        seam.append(flux[at])
        other.append(flux[~at])
    seam_all, other_all = np.concatenate(seam), np.concatenate(other)
    percentile = float((other_all < seam_all.mean()).mean() * 100.0)
    return percentile, float(seam_all.mean()), float(np.median(other_all))


def evaluate_generation(
    generator: Generator,
    style_model,
    genres: dict[str, float],
    seconds: float = 30.0,
    style_seconds: float = 12.0,
    seeds: tuple[int, ...] = (0,),
    sampling: SamplingConfig = SamplingConfig(),
    checks: tuple[str, ...] = ("tempo", "style", "seams"),
    on_clip=None,
) -> GenerationReport:
    report = GenerationReport()
    clips: list[Clip] = []
    wall = audio_s = 0.0
    levels = generator.lm.config.style_tokens

    def make(prompt: str, bpm: float, secs: float, seed: int) -> Clip:
        nonlocal wall, audio_s
        with torch.inference_mode():
            tokens = style_model.quantize(style_model.embed_text([prompt])[0]).reshape(-1)[:levels]
        clip = generate_clip(generator, tokens, bpm, 4, secs, seed, sampling)
        wall += clip.wall_seconds
        audio_s += clip.audio.shape[1] / SAMPLE_RATE
        clips.append(clip)
        if on_clip is not None:
            on_clip()
        return clip

    if "tempo" in checks:
        for bpm in TEMPO_BPMS:
            for prompt in DRUM_PROMPTS:
                for seed in seeds:
                    clip = make(prompt, bpm, seconds, seed)
                    est, beats = beats_and_tempo(clip.audio.numpy())
                    report.tempo.append(TempoRun(prompt, bpm, seed, round(est, 2), tempo_ok(est, bpm), round(grid_distance_ms(beats, bpm), 1)))
    if "style" in checks and genres:
        with torch.inference_mode():
            genre_emb = style_model.embed_text([genre_prompt(g) for g in genres])
        names = list(genres)
        for gi, genre in enumerate(names):
            for seed in seeds:
                clip = make(genre_prompt(genre), genres[genre], style_seconds, seed)
                with torch.inference_mode():
                    emb = style_model.embed_audio(clip.audio.numpy(), SAMPLE_RATE)
                sims = (genre_emb @ emb).tolist()
                nearest = names[int(np.argmax(sims))]
                report.style.append({"genre": genre, "seed": seed, "nearest": nearest,
                                     "own_cos": round(sims[gi], 4), "best_cos": round(max(sims), 4)})
    if "seams" in checks and clips:
        report.seam_flux_percentile, report.seam_flux, report.other_flux_median = seam_statistics(clips)
    report.rtf = audio_s / wall if wall > 0 else None
    return report
