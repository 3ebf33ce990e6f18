"""The hybrid codec: a latent that keeps the notes by construction, a decoder that learns.

Why not learn the encoder: measured on held-out real recordings, the `tiny` codec's
learned 64-d latent keeps chroma 0.04 (Opus 6 kbps: 0.94), and CPU probes of several
learned autoencoders stayed at 0.1-0.2 after 15 minutes. Its free phase alone costs
most of it (model/codec/spectral.py). Here the latent of a 40 ms frame is fixed signal
processing, which the residual VQ quantizes:
  - the mid (mean of |L|, |R|) magnitude spectrum of a 3840-point STFT, linear below
    650 Hz and 36 bands per octave above, as logs, averaged over the frame's four 10 ms
    STFT frames (230 values);
  - the L/R balance, half the log ratio of L to R in 21 coarse bands (2 per octave);
  - valleys companded (CodecConfig.valley_knee): depth below the frame's peak beyond a
    knee is scaled down before the VQ and back up after it.
The decoder starts as the exact fixed inverse (band values spread back over their bins,
balance applied per channel) and learns a log-magnitude correction on top of it at
100 Hz (ConvNeXt stacks, the `tiny` decoder's shape, head initialised to zero). Phase is
rebuilt from the corrected magnitudes' peaks, so the decoder spends nothing on it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.codec.network import FRAME_SAMPLES, Codec, CodecConfig
from model.codec.spectral import (
    BALANCE_BANDS_PER_OCTAVE,
    BALANCE_SPLIT_HZ,
    PHASE_FLOOR,
    HybridSpectrum,
    frame_stft,
    hybrid_latent_dim,
    overlap_add_frames,
    peak_locked_phase_frames,
    polar_frames,
)
from model.errors import JamstreamError
from model.io.audio import CHANNELS, SAMPLE_RATE

LOG_FLOOR = 1e-5
MAX_LOG_MAGNITUDE = 6.0
# A "positive" correction is softplus(head + this): the zero-initialised head then starts
# within 0.02 nepers of the fixed inverse, as the "free" one starts on it exactly.
POSITIVE_OFFSET = -4.0
# A "valleys" correction acts only this far under its frame's peak: near the partials a
# lift spreads each into its neighbouring CQT bins (scripts/correction_probe.py).
VALLEY_NEPERS = 4.0
CORRECTIONS = ("free", "positive", "valleys")


def _latent_dim(c: CodecConfig) -> int:
    return hybrid_latent_dim(c.synth_fft, SAMPLE_RATE, c.split_hz, c.bands_per_octave)


class HybridCodec(Codec):
    coherent_seams = True  # streamed windows continue one phase track (decode_stream)

    def _build_encoder(self, c: CodecConfig) -> None:
        if c.correction not in CORRECTIONS:
            choices = ", ".join(CORRECTIONS)
            raise JamstreamError(f"a hybrid codec's correction must be one of {choices}, not {c.correction!r}")
        if c.latent_dim != _latent_dim(c):
            raise JamstreamError(
                f"a hybrid codec's latent_dim follows from its spectrum: {_latent_dim(c)}, not {c.latent_dim}"
            )
        if FRAME_SAMPLES % c.hop:
            raise JamstreamError(f"hop {c.hop} must divide the 1920-sample frame")
        self.register_buffer("window", torch.hann_window(c.synth_fft), persistent=False)
        self.spectrum = HybridSpectrum(c.synth_fft, SAMPLE_RATE, c.split_hz, c.bands_per_octave)
        self.balance = HybridSpectrum(c.synth_fft, SAMPLE_RATE, BALANCE_SPLIT_HZ, BALANCE_BANDS_PER_OCTAVE)
        weight = torch.ones(c.latent_dim)
        weight[: self.spectrum.dim][torch.from_numpy(self.spectrum.centres > c.high_hz)] = c.high_scale
        weight[self.spectrum.dim :] = c.balance_scale
        self.register_buffer("latent_weight", weight, persistent=False)  # latent = features * weight

    def _build_decoder(self, c: CodecConfig) -> None:
        super()._build_decoder(c)
        self.synth_bins = c.synth_fft // 2 + 1
        self.dec_head = nn.Linear(c.width_fast, CHANNELS * self.synth_bins)
        nn.init.zeros_(self.dec_head.weight)  # start as the fixed inverse exactly
        nn.init.zeros_(self.dec_head.bias)

    def encode_latent(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 2, T] -> [B, frames, latent_dim]: log mid spectrum + L/R balance, per 40 ms."""
        c = self.config
        b, ch, t = audio.shape
        mag = frame_stft(audio.reshape(b * ch, t).float(), c.synth_fft, c.hop, self.window).abs()
        mag = mag.reshape(b, ch, mag.shape[1], mag.shape[2])
        mid = torch.log(self.spectrum.bands(mag.mean(1)).clamp_min(LOG_FLOOR))
        left = torch.log(self.balance.bands(mag[:, 0]).clamp_min(LOG_FLOOR))
        right = torch.log(self.balance.bands(mag[:, 1]).clamp_min(LOG_FLOOR))
        feats = torch.cat([mid, 0.5 * (left - right)], dim=1)  # [B, D, N]
        per = c.stft_per_frame
        frames = feats.shape[-1] // per
        feats = feats[..., : frames * per].reshape(b, feats.shape[1], frames, per).mean(-1).transpose(1, 2)
        return self._compand(feats, c.valley_slope) * self.latent_weight

    def _compand(self, feats: torch.Tensor, slope: float) -> torch.Tensor:
        """Scale each mid value's depth below its frame's peak by `slope` beyond the knee
        (1 / slope undoes it: the peak, and so the knee, is the same on both sides)."""
        knee = self.config.valley_knee
        if knee <= 0:
            return feats
        mid, rest = feats[..., : self.spectrum.dim], feats[..., self.spectrum.dim :]
        top = mid.amax(-1, keepdim=True)
        depth = top - mid
        depth = torch.where(depth > knee, knee + (depth - knee) * slope, depth)
        return torch.cat([top - depth, rest], dim=-1)

    def fixed_log_magnitude(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, frames, D] -> the exact inverse's log magnitudes [B, 2, frames * 4, bins]
        (frames-major: the layout the phase and the inverse FFT work in)."""
        z = self._compand(latent / self.latent_weight, 1.0 / self.config.valley_slope)
        z = z.repeat_interleave(self.config.stft_per_frame, dim=1)
        mid_dim = self.spectrum.dim
        mid = torch.exp(z[..., :mid_dim].clamp(max=MAX_LOG_MAGNITUDE))
        base = torch.log(self.spectrum.unbands(mid).clamp_min(LOG_FLOOR))
        balance = self.balance.unbands(z[..., mid_dim:])
        return torch.stack([base + balance, base - balance], dim=1)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, frames, D] -> audio [B, 2, frames * 1920]."""
        return self.decode_latent_phased(latent)[0]

    @torch.inference_mode()
    def decode_stream(
        self, tokens: torch.Tensor, start_turns: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, frames, L] -> (audio, turns [frames, B*2, bins]: the phase track after
        each frame), continuing the phase track `start_turns` of an earlier window."""
        self._check_tokens(tokens)
        latent = self.dequantize(tokens)
        frames = latent.shape[1]
        # The window's last frame is held back and cross-faded with its next decode: give it
        # the overlap-add of the frames after it (a 3840-point frame spans two codec frames)
        # by repeating it once, so the held-back version is whole rather than half-built.
        latent = torch.cat([latent, latent[:, -1:]], dim=1)
        audio, turns = self.decode_latent_phased(latent, start_turns)
        per = self.config.stft_per_frame
        return audio[..., : frames * FRAME_SAMPLES], turns[:, per - 1 : frames * per : per].transpose(0, 1)

    def log_magnitude(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, frames, D] -> the decoder's log magnitudes [B, 2, frames * 4, bins]: the fixed
        inverse plus the learned correction."""
        b = latent.shape[0]
        h = self.dec_slow(self.dec_in(latent.transpose(1, 2)))
        h = self.dec_fast(self.dec_up(h)).transpose(1, 2)
        correction = self.dec_head(self.dec_norm(h)).reshape(b, h.shape[1], CHANNELS, self.synth_bins).transpose(1, 2)
        fixed = self.fixed_log_magnitude(latent)
        if self.config.correction != "free":
            correction = torch.nn.functional.softplus(correction + POSITIVE_OFFSET)
        if self.config.correction == "valleys":
            correction = correction * self.valleys(fixed)
        return (fixed + correction).float().clamp(max=MAX_LOG_MAGNITUDE)

    def valleys(self, fixed: torch.Tensor) -> torch.Tensor:
        """1 where a fixed-inverse log magnitude lies more than VALLEY_NEPERS under its STFT
        frame's peak (the noise between partials), else 0."""
        return (fixed < fixed.amax(-1, keepdim=True) - VALLEY_NEPERS).to(fixed.dtype)

    def decode_latent_phased(
        self, latent: torch.Tensor, start_turns: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.synthesize(self.log_magnitude(latent), start_turns)

    def synthesize(
        self, logmag: torch.Tensor, start_turns: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log magnitudes [B, 2, N, bins] -> (audio [B, 2, N * hop], the phase track): phase
        rebuilt from the magnitudes' peaks, then the inverse STFT by overlap-add."""
        c = self.config
        b, _, n, _ = logmag.shape
        logmag = logmag.reshape(b * CHANNELS, n, self.synth_bins)  # frames-major throughout
        locked = logmag.detach().clamp_min(math.log(PHASE_FLOOR))
        phase, turns = peak_locked_phase_frames(locked, c.hop, c.synth_fft, start_turns)
        spec = polar_frames(torch.exp(logmag), phase)
        audio = overlap_add_frames(spec, n * c.hop, c.hop, self.window)
        return audio.reshape(b, CHANNELS, -1), turns
