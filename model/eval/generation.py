"""Does the generator do what the musician asked? Tempo, beat grid, style, notes and seams.

Each check listens to generated audio with a tool that knows nothing about our models:
- **tempo**: librosa's beat tracker on 30 s clips at 80/100/120/140 bpm with drum-heavy
  prompts. A run passes when the estimated tempo is within 4% of the request, or of
  twice or half of it (beat trackers pick a metrical level, not a wrong tempo). The grid
  figure is the median distance from each detected beat to the nearest beat of the
  requested grid (beat 1 at sample 0), over beats after the first two seconds. The same
  tracker on the corpus's own drum-genre test clips, against their exact MIDI beat
  times, gives the tool's reference figure: it lags real onsets by ~35 ms (measured: a
  median of 36-45 ms on ground-truth audio), so no audio scores much under that.
- **beats** (same clips, with the `eval` extra installed): madmom's RNN + DBN tracker,
  scored by mir_eval's F-measure at +-70 ms against the requested grid at the tracker's
  chosen metrical level (model/eval/beat_tracker.py); `beat_f1_floor` is the same
  tracker on the corpus's drum-genre test clips against their exact MIDI beats.
- **pitch**: how much pitched, tonal content the genre clips hold
  (model/eval/pitch_content.py: noise and drums alone score ~0), beside corpus clips of
  the same genres, held-out ones first (`pitch_content_corpus`).
- **style**: one clip per corpus genre from that genre's prompt, at the genre's median
  corpus tempo; the clip's audio embedding must be nearer its own genre's prompt than
  any other genre's.
- **seams**: the tempo clips are generated in two-bar chunks, so odd bar lines are chunk
  joins and even ones are not. Spectral flux (half-wave rectified log-magnitude
  difference) around joins is compared with flux around the bar lines that are not joins
  - the same musical position, so downbeat onsets do not count against the seam - and
  ranked against the flux everywhere else. An invisible seam has a ratio near 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from model.style.network import genre_prompt

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
class Clip:
    """A generated clip as the checks hear it."""

    audio: torch.Tensor  # [2, samples], beat 1 of bar 1 at sample 0
    joins: list[int]  # frames where one chunk ended and the next began
    frames: int
    wall_seconds: float


# (prompt, bpm, seconds, seed, bars per chunk) -> Clip: the caller's chunker. model/ never
# imports bridge/, so `eval generation` passes in the Engine's (bridge.jam.offline.render_clip).
RenderClip = Callable[[str, float, float, int, int], Clip]


@dataclass
class TempoRun:
    prompt: str
    bpm: float
    seed: int
    estimated_bpm: float
    tempo_ok: bool
    grid_ms: float  # median distance of detected beats to the requested grid
    beat_f1: float | None = None  # madmom + mir_eval against the requested grid (None: no eval extra)


@dataclass
class GenerationReport:
    tempo: list[TempoRun] = field(default_factory=list)
    style: list[dict] = field(default_factory=list)
    seams: dict | None = None
    rtf: float | None = None
    reference: dict | None = None
    pitch: list[dict] = field(default_factory=list)
    pitch_corpus: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # figures left out, and why

    def summary(self) -> dict:
        out: dict = {}
        if self.tempo:
            out["tempo_ok_share"] = float(np.mean([r.tempo_ok for r in self.tempo]))
            out["grid_ms_median"] = float(np.median([r.grid_ms for r in self.tempo]))
            f1 = [r.beat_f1 for r in self.tempo if r.beat_f1 is not None]
            out["beat_f1"] = float(np.mean(f1)) if f1 else None
            out["tempo_runs"] = [r.__dict__ for r in self.tempo]
        if self.reference:
            out.update(self.reference)
        if self.style:
            out["style_own_genre_share"] = float(np.mean([r["nearest"] == r["genre"] for r in self.style]))
            out["style_runs"] = self.style
        if self.pitch:
            out["pitch_content"] = float(np.mean([r["pitch_content"] for r in self.pitch]))
            out["pitch_content_corpus"] = (
                float(np.mean([r["pitch_content"] for r in self.pitch_corpus])) if self.pitch_corpus else None
            )
            out["pitch_runs"] = self.pitch
            out["pitch_corpus_runs"] = self.pitch_corpus
        if self.seams is not None:
            out.update(self.seams)
        if self.missing:
            out["missing"] = self.missing
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


def reference_grid_ms(
    paths_and_beats: list[tuple[str, list[float]]], skip_seconds: float = 2.0, madmom: bool = False
) -> dict:
    """The trackers on audio whose beats are known exactly: their own error floors
    (librosa's grid distance; with `madmom`, madmom's beat F-measure as `beat_f1_floor`)."""
    from model.eval import beat_tracker
    from model.io.audio import SAMPLE_RATE as FILE_RATE
    from model.io.audio import load_audio

    per_clip, signed, f1 = [], [], []
    for path, beats in paths_and_beats:
        audio = load_audio(path)
        truth = np.asarray(beats, dtype=np.float64)
        if madmom and truth.size:
            f1.append(beat_tracker.beat_f1(beat_tracker.track_beats(audio, FILE_RATE), truth, skip_seconds))
        _, detected = beats_and_tempo(audio)
        detected = detected[detected >= skip_seconds]
        if detected.size == 0 or truth.size == 0:
            continue
        err = detected - truth[np.abs(truth[None, :] - detected[:, None]).argmin(axis=1)]
        per_clip.append(float(np.median(np.abs(err)) * 1000.0))
        signed.append(float(np.median(err) * 1000.0))
    out = {
        "reference_clips": len(per_clip),
        "reference_grid_ms_median": float(np.median(per_clip)) if per_clip else None,
        "reference_signed_ms_median": float(np.median(signed)) if signed else None,
    }
    if madmom:
        out["beat_f1_floor"] = float(np.mean(f1)) if f1 else None
        out["beat_f1_floor_clips"] = len(f1)
    return out


def corpus_pitch_content(paths_by_genre: dict[str, list[str]], seconds: float) -> list[dict]:
    """`pitch_content` of corpus clips (their first `seconds`), one row per clip."""
    from model.eval.pitch_content import pitch_content
    from model.io.audio import SAMPLE_RATE as FILE_RATE
    from model.io.audio import load_audio

    rows = []
    for genre, paths in paths_by_genre.items():
        for path in paths:
            audio = load_audio(path)[:, : int(seconds * FILE_RATE)]
            rows.append({"genre": genre, "path": str(path), **pitch_content(audio, FILE_RATE)})
    return rows


def spectral_flux(audio: np.ndarray, hop: int = FLUX_HOP) -> np.ndarray:
    """Flux between consecutive 10 ms frames; flux[i] compares frame i+1 to frame i."""
    mono = torch.from_numpy(audio.mean(axis=0).astype(np.float32))
    spec = torch.stft(mono, 2048, hop, window=torch.hann_window(2048), center=True, return_complex=True).abs()
    logmag = torch.log1p(spec * 100.0)
    return torch.relu(logmag[:, 1:] - logmag[:, :-1]).mean(0).numpy()


def seam_statistics(clips: list[tuple[Clip, float]], frame_samples: int = 1920, hop: int = FLUX_HOP) -> dict:
    """Flux around chunk joins vs around bar lines that are not joins, and vs all frames.

    `clips`: (clip, bar length in seconds) pairs; windows are +-20 ms around each line."""
    seam, bars, other = [], [], []
    for clip, bar_s in clips:
        flux = spectral_flux(clip.audio.numpy(), hop)
        joins = {round(j * frame_samples / hop) for j in clip.joins}
        at = np.zeros(flux.shape[0], dtype=bool)
        for centre in joins:
            at[max(0, centre - 2) : centre + 2] = True
        seam.append(flux[at])
        n_bars = int(clip.audio.shape[1] / SAMPLE_RATE / bar_s)
        for k in range(1, n_bars):
            centre = round(k * bar_s * SAMPLE_RATE / hop)
            if all(abs(centre - j) > 2 for j in joins):
                bars.append(flux[max(0, centre - 2) : centre + 2])
        other.append(flux[~at])
    seam_all, other_all = np.concatenate(seam), np.concatenate(other)
    bar_all = np.concatenate(bars) if bars else np.array([np.nan])
    return {
        "seam_flux_mean": float(seam_all.mean()),
        "bar_line_flux_mean": float(np.nanmean(bar_all)),
        "seam_to_bar_line_ratio": float(seam_all.mean() / np.nanmean(bar_all)),
        "seam_flux_percentile": float((other_all < seam_all.mean()).mean() * 100.0),
        "other_flux_median": float(np.median(other_all)),
    }


def evaluate_generation(
    render: RenderClip,
    style_model,
    genres: dict[str, float],
    seconds: float = 30.0,
    style_seconds: float = 12.0,
    seeds: tuple[int, ...] = (0,),
    checks: tuple[str, ...] = ("tempo", "style", "seams"),
    on_clip=None,
    reference: list[tuple[str, list[float]]] | None = None,
    pitch_reference: dict[str, list[str]] | None = None,
) -> GenerationReport:
    """Run `checks` (tempo, style, pitch, seams). `reference`: corpus (path, exact beats)
    for the trackers' floors; `pitch_reference`: genre -> corpus clip paths for
    `pitch_content_corpus`. Beat F-measures need the `eval` extra: without it they are
    left out and `missing` says so."""
    from model.eval import beat_tracker
    from model.eval.pitch_content import pitch_content

    report = GenerationReport()
    madmom = "tempo" in checks and beat_tracker.available()
    if "tempo" in checks and not madmom:
        report.missing.append("beat_f1: madmom is not installed (pip install -e '.[eval]')")
    seam_clips: list[tuple[Clip, float]] = []
    wall = audio_s = 0.0

    def make(prompt: str, bpm: float, secs: float, seed: int, bars_per_chunk: int = 1) -> Clip:
        nonlocal wall, audio_s
        clip = render(prompt, bpm, secs, seed, bars_per_chunk)
        wall += clip.wall_seconds
        audio_s += clip.audio.shape[1] / SAMPLE_RATE
        if on_clip is not None:
            on_clip()
        return clip

    if "tempo" in checks:
        for bpm in TEMPO_BPMS:
            for prompt in DRUM_PROMPTS:
                for seed in seeds:
                    clip = make(prompt, bpm, seconds, seed, bars_per_chunk=2)
                    seam_clips.append((clip, 4 * 60.0 / bpm))
                    audio = clip.audio.numpy()
                    est, beats = beats_and_tempo(audio)
                    f1 = None
                    if madmom:
                        heard = beat_tracker.track_beats(audio, SAMPLE_RATE)
                        f1 = round(beat_tracker.beat_f1(heard, beat_tracker.grid_beats(bpm, seconds)), 4)
                    report.tempo.append(
                        TempoRun(
                            prompt,
                            bpm,
                            seed,
                            round(est, 2),
                            tempo_ok(est, bpm),
                            round(grid_distance_ms(beats, bpm), 1),
                            f1,
                        )
                    )
    if "tempo" in checks and reference:
        report.reference = reference_grid_ms(reference, madmom=madmom)
    if ("style" in checks or "pitch" in checks) and genres:
        if "style" in checks:
            with torch.inference_mode():
                genre_emb = style_model.embed_text([genre_prompt(g) for g in genres])
        names = list(genres)
        for gi, genre in enumerate(names):
            for seed in seeds:
                clip = make(genre_prompt(genre), genres[genre], style_seconds, seed)
                audio = clip.audio.numpy()
                if "pitch" in checks:
                    report.pitch.append({"genre": genre, "seed": seed, **pitch_content(audio, SAMPLE_RATE)})
                if "style" not in checks:
                    continue
                with torch.inference_mode():
                    emb = style_model.embed_audio(audio, SAMPLE_RATE)
                sims = (genre_emb @ emb).tolist()
                nearest = names[int(np.argmax(sims))]
                report.style.append(
                    {
                        "genre": genre,
                        "seed": seed,
                        "nearest": nearest,
                        "own_cos": round(sims[gi], 4),
                        "best_cos": round(max(sims), 4),
                    }
                )
    if "pitch" in checks:
        if pitch_reference:
            report.pitch_corpus = corpus_pitch_content(pitch_reference, style_seconds)
        else:
            report.missing.append("pitch_content_corpus: no --corpus given")
    if "seams" in checks:
        if not seam_clips:  # seams only: the tempo clips' settings, without the beat tracking
            for bpm in TEMPO_BPMS:
                for seed in seeds:
                    seam_clips.append((make(DRUM_PROMPTS[0], bpm, seconds, seed, bars_per_chunk=2), 4 * 60.0 / bpm))
        report.seams = seam_statistics(seam_clips)
    report.rtf = audio_s / wall if wall > 0 else None
    return report
