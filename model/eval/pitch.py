"""Measures that a codec which keeps only rhythm and envelope cannot pass.

The older figures (SI-SNR, our log-mel distance) reward a smooth spectral envelope, so a
codec that drops every partial still scored well on them. These judge the notes:

- `chroma_corr`: librosa's CQT chroma of the reference and the estimate (22.05 kHz mono),
  Pearson-correlated frame by frame over the frames where the reference sounds. A copy
  pitch-shifted by a semitone keeps its envelope and scores far below 0.5.
- `cqt_distance`: L1 between log-magnitude CQTs at 3 bins per semitone, so a partial
  that moves by a third of a semitone already costs.
- `dac_mel`: the DAC paper's mel distance (7 scales, windows 32..2048, hop window/4,
  5..320 mel bins over 0..Nyquist, L1 of log10(max(mel magnitude, 1e-5)) summed over
  scales, at 44.1 kHz), so our figures sit beside the paper's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from model.io.audio import SAMPLE_RATE

CHROMA_RATE = 22_050
CQT_BINS_PER_OCTAVE = 36  # 3 bins per semitone
CQT_OCTAVES = 7  # C1 (32.7 Hz) .. C8 (4186 Hz)
CQT_HOP = 512
SOUNDING_DB = -50.0  # a reference frame this far under the clip's loudest frame is silence
DAC_RATE = 44_100
DAC_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_MELS = (5, 10, 20, 40, 80, 160, 320)
DAC_FLOOR = 1e-5


def _mono(audio: np.ndarray | torch.Tensor, rate: int, target: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    x = x.mean(axis=0) if x.ndim == 2 else x
    if rate != target:
        import librosa

        x = librosa.resample(x, orig_sr=rate, target_sr=target)
    return x.astype(np.float32)


def _sounding(ref: np.ndarray) -> np.ndarray:
    """Frames (CQT_HOP at 22.05 kHz) where the reference is within SOUNDING_DB of its peak."""
    import librosa

    rms = librosa.feature.rms(y=ref, frame_length=2048, hop_length=CQT_HOP)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(float(rms.max()), 1e-10))
    return db > SOUNDING_DB


def chroma_corr(estimate, reference, rate: int = SAMPLE_RATE) -> float:
    """Mean frame-wise Pearson correlation of CQT chroma (1 = the same pitch classes)."""
    import librosa

    ref, est = _mono(reference, rate, CHROMA_RATE), _mono(estimate, rate, CHROMA_RATE)
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    cr = librosa.feature.chroma_cqt(y=ref, sr=CHROMA_RATE, hop_length=CQT_HOP)
    ce = librosa.feature.chroma_cqt(y=est, sr=CHROMA_RATE, hop_length=CQT_HOP)
    frames = min(cr.shape[1], ce.shape[1])
    cr, ce = cr[:, :frames], ce[:, :frames]
    keep = _sounding(ref)[:frames]
    cr, ce = cr[:, keep] - cr[:, keep].mean(0), ce[:, keep] - ce[:, keep].mean(0)
    norm = np.linalg.norm(cr, axis=0) * np.linalg.norm(ce, axis=0)
    valid = norm > 1e-9
    if not valid.any():
        return 0.0
    return float(np.mean((cr * ce).sum(0)[valid] / norm[valid]))


def cqt_distance(estimate, reference, rate: int = SAMPLE_RATE) -> float:
    """Mean |log10 CQT(est) - log10 CQT(ref)| at 36 bins per octave over the sounding frames."""
    import librosa

    ref, est = _mono(reference, rate, CHROMA_RATE), _mono(estimate, rate, CHROMA_RATE)
    n = min(len(ref), len(est))
    kwargs = {
        "sr": CHROMA_RATE,
        "hop_length": CQT_HOP,
        "bins_per_octave": CQT_BINS_PER_OCTAVE,
        "n_bins": CQT_BINS_PER_OCTAVE * CQT_OCTAVES,
        "fmin": librosa.note_to_hz("C1"),
    }
    cr = np.abs(librosa.cqt(ref[:n], **kwargs))
    ce = np.abs(librosa.cqt(est[:n], **kwargs))
    keep = _sounding(ref[:n])[: cr.shape[1]]
    d = np.abs(np.log10(np.maximum(ce, 1e-5)) - np.log10(np.maximum(cr, 1e-5)))[:, keep]
    return float(d.mean()) if d.size else 0.0


@lru_cache(maxsize=None)
def _dac_mel_basis(n_fft: int, n_mels: int) -> torch.Tensor:
    import warnings

    import librosa

    with warnings.catch_warnings():  # the 32-sample window's 5 mel bands leave empty filters, as in DAC
        warnings.simplefilter("ignore")
        basis = librosa.filters.mel(sr=DAC_RATE, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=DAC_RATE / 2)
    return torch.from_numpy(basis).float()


def dac_mel(estimate, reference, rate: int = SAMPLE_RATE) -> float:
    """DAC's multi-scale mel distance at 44.1 kHz, per channel, summed over the 7 scales."""
    import librosa

    def prep(x) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.ndim == 1 else x
        if rate != DAC_RATE:
            x = librosa.resample(x, orig_sr=rate, target_sr=DAC_RATE, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    ref, est = prep(reference), prep(estimate)
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n], est[..., :n]
    return sum(
        float((_dac_log_mel(est, w, m) - _dac_log_mel(ref, w, m)).abs().mean()) for w, m in zip(DAC_WINDOWS, DAC_MELS)
    )


def _dac_log_mel(x: torch.Tensor, window: int, mels: int) -> torch.Tensor:
    spec = torch.stft(x, window, window // 4, window=torch.hann_window(window), center=True, return_complex=True).abs()
    return torch.log10((_dac_mel_basis(window, mels) @ spec).clamp_min(DAC_FLOOR))


def pitch_quality(estimate, reference, rate: int = SAMPLE_RATE) -> dict:
    """The three pitch-aware figures of one estimate against its reference. librosa warns
    that a clip under ~1 s is short for its longest windows; the figures stand as they are."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _pitch_quality(estimate, reference, rate)


def _pitch_quality(estimate, reference, rate: int) -> dict:
    return {
        "chroma_corr": chroma_corr(estimate, reference, rate),
        "cqt_distance": cqt_distance(estimate, reference, rate),
        "dac_mel": dac_mel(estimate, reference, rate),
    }
