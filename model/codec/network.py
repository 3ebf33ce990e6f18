"""SpectroStream-style neural codec: 48 kHz stereo <-> RVQ tokens at 25 frames/s.

Shape of the thing (SEED.md section 4, real SpectroStream figures):
  audio [B, 2, T] --STFT (hop 480, 100 Hz)--> power-compressed complex spectra
  --ConvNeXt stack @100 Hz--> stride-4 conv --> ConvNeXt @25 Hz --> latent [B, D, T/1920]
  --residual VQ (up to 32 levels x 1024 codes, quantizer dropout)--> tokens [B, frames, levels]
  and back: tokens -> latent -> ConvNeXt @25 Hz -> x4 transposed conv -> ConvNeXt @100 Hz
  -> magnitude + phase per bin (a Vocos-style head) -> inverse STFT by overlap-add.

Why an iSTFT head rather than transposed convolutions up to 48 kHz: it produces 100
spectral frames a second instead of 48,000 samples, so the decoder does almost all its
work at 100 Hz; that is what makes >= 25x real time on two CPU cores possible at all.

Streaming: the stacks look at a few frames either side, so the decoder is not causal.
Chunks are joined as in Magenta RT v1: each chunk is decoded with some frames of left
context, its last 40 ms frame is held back, and the next chunk's version of that frame
is cross-faded in with an equal-power curve (`StreamingDecoder`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model.codec.spectral import frame_stft, hybrid_latent_dim, overlap_add
from model.errors import JamstreamError
from model.io.audio import CHANNELS, SAMPLE_RATE
from model.io.checkpoint import load_model, save_model

FRAME_RATE = 25
FRAME_SAMPLES = SAMPLE_RATE // FRAME_RATE  # 1920


@dataclass(frozen=True)
class CodecConfig:
    n_fft: int = 1920
    hop: int = 480  # 4 STFT frames per codec frame
    compress: float = 0.3  # |X|^0.3 * e^{i angle X}: tames the spectrum's dynamic range
    # What the encoder sees per bin: "logmag" (log |X|) or "complex" (compressed re/im).
    encoder_input: str = "logmag"
    width_fast: int = 192  # channels of the 100 Hz stacks (where the compute is)
    width_slow: int = 320  # channels of the 25 Hz stacks (where the parameters are)
    expand: int = 2  # ConvNeXt MLP ratio
    blocks_fast: int = 2
    blocks_slow: int = 2
    dec_blocks_fast: int = 3
    dec_blocks_slow: int = 3
    latent_dim: int = 64  # 32 codebooks x 1024 x 64 halves = 4 MB of the 15 MB budget
    # "learned": the encoder and decoder above. "hybrid" (model/codec/hybrid.py): a fixed
    # pitch-keeping spectrum as the latent (linear bins below split_hz, bands_per_octave
    # bands above, of a synth_fft-point STFT; L/R balance in coarse bands), a learned
    # decoder correcting the fixed synthesis, phase rebuilt from the magnitudes' peaks.
    design: str = "learned"
    synth_fft: int = 3840
    split_hz: float = 650.0
    bands_per_octave: int = 36
    # How much of the quantizer's effort each latent value gets: the residual VQ spends its
    # bits on Euclidean error, so values scaled down here are quantized more coarsely. Bands
    # above high_hz (no chroma lives there) and the L/R balance matter less than the notes.
    high_hz: float = 20_000.0
    high_scale: float = 1.0
    balance_scale: float = 1.0
    # Valley companding of the mid spectrum (hybrid): a value more than valley_knee nepers
    # below its frame's peak keeps only valley_slope of the distance beyond the knee, so the
    # VQ's Euclidean error stops paying for the noise between partials. Residual k-means
    # probe, 16 levels, held-out real music: chroma 0.567 -> 0.673 at knee 4, slope 0.3,
    # DAC mel no worse (2.683 -> 2.671). knee 0 turns it off (the first hybrid weights).
    valley_knee: float = 0.0
    valley_slope: float = 1.0
    # What the hybrid decoder's learned log-magnitude correction may do: "free" (either sign,
    # the first hybrid weights) or "positive" (softplus: it may only lift bins). Measured on
    # the shipped codec-hybrid, 16 levels, held-out real music (chroma / DAC mel): fixed
    # inverse alone 0.543 / 2.714, whole correction 0.497 / 1.827, its positive part alone
    # 0.531 / 1.879 - the lowering half buys little DAC mel and costs the partials.
    # "valleys": positive, and only more than 4 nepers under the frame's peak (a trained
    # positive correction's part near the partials is what cost its chroma: 0.615 whole,
    # 0.655 in the valleys alone, 0.660 none).
    correction: str = "free"
    levels: int = 32
    codebook_size: int = 1024
    commitment_weight: float = 1.0
    ema_decay: float = 0.99
    # A code whose EMA usage (codes per batch) falls below this is re-seeded from the batch.
    # The EMA settles at (frames per batch) / codebook_size for an evenly used book: 0.2 for
    # 8 one-second crops, so the old threshold of 2 re-seeded ~77% of every level's codes at
    # every step (measured on a trained checkpoint's cluster sizes). The tiny codec keeps 2
    # (its shipped weights were trained so); new designs use a tenth of even usage.
    dead_code_threshold: float = 2.0

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def stft_per_frame(self) -> int:
        return FRAME_SAMPLES // self.hop


def _hybrid_config(**kw) -> CodecConfig:
    base = CodecConfig(design="hybrid", **kw)
    dim = hybrid_latent_dim(base.synth_fft, SAMPLE_RATE, base.split_hz, base.bands_per_octave)
    return CodecConfig(**{**asdict(base), "latent_dim": dim})


CONFIGS = {
    "tiny": CodecConfig(),
    "tiny-complex": CodecConfig(encoder_input="complex"),
    # the pitch codec: fixed hybrid spectrum -> RVQ -> learned correction + peak-locked phase;
    # codes re-seeded only when used 10x less than evenly (see dead_code_threshold)
    "hybrid": _hybrid_config(dead_code_threshold=0.02, valley_knee=4.0, valley_slope=0.3),
}
# the hybrid, its correction only lifting bins (CodecConfig.correction), or only between the partials
CONFIGS["hybrid-positive"] = replace(CONFIGS["hybrid"], correction="positive")
CONFIGS["hybrid-valleys"] = replace(CONFIGS["hybrid"], correction="valleys")


class ConvNeXtBlock(nn.Module):
    """Depthwise conv for time context, pointwise MLP for mixing - Vocos' backbone block."""

    def __init__(self, dim: int, kernel: int = 7, expand: int = 3):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * expand)
        self.down = nn.Linear(dim * expand, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, N]
        h = self.dw(x).transpose(1, 2)
        h = self.down(F.gelu(self.up(self.norm(h))))
        return x + (self.scale * h).transpose(1, 2)


class Codec(nn.Module):
    # Its two decodes of a held-back frame are unrelated in phase (the phase is learned per
    # window), so the streaming seam fades them by power.
    coherent_seams = False

    def __init__(self, config: CodecConfig = CodecConfig()):
        super().__init__()
        from loguru import logger
        from vector_quantize_pytorch import ResidualVQ

        logger.disable("vector_quantize_pytorch")  # its k-means warnings would break the progress bar

        self.config = c = config
        self.codebooks_frozen = False  # freeze_codebooks(); a training setting, not saved
        self._build_encoder(c)
        self.rvq = ResidualVQ(
            dim=c.latent_dim,
            num_quantizers=c.levels,
            codebook_size=c.codebook_size,
            kmeans_init=True,
            kmeans_iters=10,
            decay=c.ema_decay,
            threshold_ema_dead_code=c.dead_code_threshold,
            commitment_weight=c.commitment_weight,
            quantize_dropout=True,
        )
        self._build_decoder(c)

    def _build_encoder(self, c: CodecConfig) -> None:
        feat = CHANNELS * (1 if c.encoder_input == "logmag" else 2) * c.bins
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.enc_in = nn.Conv1d(feat, c.width_fast, 1)
        self.enc_fast = nn.Sequential(*[ConvNeXtBlock(c.width_fast, expand=c.expand) for _ in range(c.blocks_fast)])
        self.enc_down = nn.Conv1d(c.width_fast, c.width_slow, kernel_size=c.stft_per_frame, stride=c.stft_per_frame)
        self.enc_slow = nn.Sequential(*[ConvNeXtBlock(c.width_slow, expand=c.expand) for _ in range(c.blocks_slow)])
        self.enc_out = nn.Conv1d(c.width_slow, c.latent_dim, 1)

    def _build_decoder(self, c: CodecConfig) -> None:
        self.dec_in = nn.Conv1d(c.latent_dim, c.width_slow, 3, padding=1)
        self.dec_slow = nn.Sequential(*[ConvNeXtBlock(c.width_slow, expand=c.expand) for _ in range(c.dec_blocks_slow)])
        self.dec_up = nn.ConvTranspose1d(
            c.width_slow, c.width_fast, kernel_size=c.stft_per_frame, stride=c.stft_per_frame
        )
        self.dec_fast = nn.Sequential(*[ConvNeXtBlock(c.width_fast, expand=c.expand) for _ in range(c.dec_blocks_fast)])
        self.dec_norm = nn.LayerNorm(c.width_fast)
        self.dec_head = nn.Linear(c.width_fast, CHANNELS * 2 * c.bins)

    # ------------------------------------------------------------ spectra
    def analysis(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 2, T] (T a multiple of 1920) -> features [B, ch*F (logmag) or ch*2F (complex), T/hop]."""
        c = self.config
        b, ch, t = audio.shape
        spec = frame_stft(audio.reshape(b * ch, t).float(), c.n_fft, c.hop, self.window)  # [B*ch, F, N]
        mag = spec.abs().clamp_min(1e-7)
        if c.encoder_input == "logmag":
            feats = torch.log(mag.clamp_min(1e-5))
        else:
            spec = spec * (mag ** (c.compress - 1.0))
            feats = torch.cat([spec.real, spec.imag], dim=1)  # [B*ch, 2F, N]
        return feats.reshape(b, -1, feats.shape[-1])

    def synthesis(self, head: torch.Tensor, samples: int) -> torch.Tensor:
        """Head output [B, N, 4F] (log-magnitude, phase per channel) -> audio [B, 2, samples]."""
        c = self.config
        b, n, _ = head.shape
        head = head.float().reshape(b, n, CHANNELS, 2, c.bins)
        mag = torch.exp(head[..., 0, :].clamp(max=6.0))
        phase = head[..., 1, :]
        spec = torch.polar(mag, phase).permute(0, 2, 3, 1).reshape(b * CHANNELS, c.bins, n)  # [B*ch, F, N]
        return overlap_add(spec, samples, c.hop, self.window).reshape(b, CHANNELS, samples)

    # ------------------------------------------------------------ encoder / decoder
    def encode_latent(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 2, T] -> continuous latent [B, frames, D]."""
        h = self.enc_fast(self.enc_in(self.analysis(audio)))
        h = self.enc_slow(self.enc_down(h))
        return self.enc_out(h).transpose(1, 2)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, frames, D] -> audio [B, 2, frames * 1920]."""
        frames = latent.shape[1]
        h = self.dec_slow(self.dec_in(latent.transpose(1, 2)))
        h = self.dec_fast(self.dec_up(h)).transpose(1, 2)
        head = self.dec_head(self.dec_norm(h))
        return self.synthesis(head, frames * FRAME_SAMPLES)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, commitment loss, codes). Quantizer dropout is on in train mode.

        Except while any codebook is still uninitialised (the first step): then every level
        runs, so all of them k-means-initialise on that (large) first batch rather than the
        levels past the dropout cut waiting for a later, smaller one.
        """
        latent = self.encode_latent(audio)
        dropout = self.rvq.quantize_dropout
        self.rvq.quantize_dropout = dropout and self._codebooks_initialised(self.levels)
        try:
            quantized, codes, commit = self.rvq(latent, freeze_codebook=self.codebooks_frozen)
        finally:
            self.rvq.quantize_dropout = dropout
        return self.decode_latent(quantized), commit.sum(), codes

    def freeze_codebooks(self) -> None:
        """Stop training from moving the codebooks (no EMA update, no dead-code re-seeding):
        for a decoder trained on books fitted offline (`jamstream train codebooks`), which
        the online EMA, seeing ~200 frames a step for 1024 codes, would only degrade."""
        self.codebooks_frozen = True

    def _codebooks_initialised(self, levels: int) -> bool:
        return all(bool(book.initted) for book in codebook_states(self.rvq)[:levels])

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, levels: int = 16) -> torch.Tensor:
        """Audio [B, 2, T] or [2, T] at 48 kHz -> int64 tokens [B, frames, levels].

        T is padded with silence up to a whole number of 40 ms frames.
        """
        audio = _batch(audio)
        self._check_levels(levels)
        if not self._codebooks_initialised(levels):  # the quantizer would k-means-initialise on this very input
            raise JamstreamError("this codec's codebooks were never trained; load trained weights before encoding")
        pad = (-audio.shape[-1]) % FRAME_SAMPLES
        if pad:
            audio = F.pad(audio, (0, pad))
        residual = self.encode_latent(audio)
        codes = []
        for layer in self.rvq.layers[:levels]:
            quantized, index, _ = layer(residual)
            residual = residual - quantized
            codes.append(index)
        return torch.stack(codes, dim=-1)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, frames, L] (any prefix of levels, L <= 32) -> audio [B, 2, frames * 1920]."""
        tokens = tokens if tokens.dim() == 3 else tokens.unsqueeze(0)
        self._check_tokens(tokens)
        return self.decode_latent(self.dequantize(tokens))

    def decode_stream(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, None]:
        """One window of a stream: (audio, state for the next window). This decoder has no
        state of its own between windows (its phase is in its output); the hybrid has."""
        return self.decode(tokens), None

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        self._check_levels(tokens.shape[-1])
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.config.codebook_size):
            raise JamstreamError(f"codec tokens must lie in 0..{self.config.codebook_size - 1}")

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, frames, L] -> latent [B, frames, D]: the sum of each level's code.

        A direct gather per level; the library's get_output_from_indices pads to all 32
        levels and masks, which costs 100x more and dominated decode time.
        """
        tokens = tokens.long()
        out = None
        for level in range(tokens.shape[-1]):
            codes = F.embedding(tokens[..., level], self.rvq.layers[level].codebook)
            out = codes if out is None else out + codes
        return out

    @torch.no_grad()
    def rebuild_training_state(self) -> None:
        """EMA sums from codes and usage counts, for weights shipped without them.

        vector-quantize-pytorch keeps embed = embed_avg / smoothed(cluster_size); shipped
        weights drop embed_avg (half the codebook bytes), so fine-tuning from them needs it
        rebuilt exactly rather than left at its initial value.
        """
        for cb in codebook_states(self.rvq):
            cs = cb.cluster_size
            smoothed = (cs + cb.eps) / (cs.sum(-1, keepdim=True) + cs.shape[-1] * cb.eps) * cs.sum(-1, keepdim=True)
            cb.embed_avg.copy_(cb.embed * smoothed.unsqueeze(-1))

    def _check_levels(self, levels: int) -> None:
        if not 1 <= levels <= self.config.levels:
            raise JamstreamError(f"codec levels must be 1..{self.config.levels}, not {levels}")

    @property
    def levels(self) -> int:
        return self.config.levels


def codebook_states(rvq) -> list[nn.Module]:
    """Each level's codebook module, for what vector-quantize-pytorch (1.32.0) has no public
    accessor for: the k-means `initted` flag and the EMA state (`cluster_size`, `embed_avg`,
    `eps`). Its public `codebooks`/`codebook` give the vectors only, so this is the one place
    that reaches into `_codebook`; a library upgrade that renames it breaks here alone."""
    return [layer._codebook for layer in rvq.layers]


def _batch(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.dim() == 2:
        audio = audio.unsqueeze(0)
    if audio.dim() != 3 or audio.shape[1] != CHANNELS:
        raise JamstreamError(f"codec wants audio shaped [batch, 2, samples], got {tuple(audio.shape)}")
    return audio


def bitrate(levels: int, codebook_size: int = 1024) -> float:
    """Bits per second of a token stream: frames/s x levels x log2(codebook)."""
    return FRAME_RATE * levels * math.log2(codebook_size)


# ---------------------------------------------------------------- streaming decode
def equal_power_fade(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def equal_gain_fade(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos^2 / sin^2: the two gains sum to one, right for two versions that are in phase
    (equal-power fading swells such a pair by up to 3 dB mid-fade)."""
    out, into = equal_power_fade(n)
    return out**2, into**2


class StreamingDecoder:
    """Decode a token stream chunk by chunk, Magenta RT v1 style.

    Each chunk is decoded together with `context` frames of the stream before it (so the
    convolutions see what came before), and its last frame is held back; the next chunk
    re-decodes that frame with the new tokens after it and cross-fades the two versions
    over one 40 ms frame with an equal-power curve. Latency: one frame.
    """

    def __init__(self, codec: Codec, context: int = 4):
        self.codec = codec
        self.context = context
        self.history: torch.Tensor | None = None  # last tokens, [frames, L]
        self.tail: torch.Tensor | None = None  # held-back last frame's audio, [2, 1920]
        self.phase: torch.Tensor | None = None  # the decoder's own stream state (hybrid: phase track before `history`)
        # Versions of the held-back frame that share one phase track are coherent: fade them by gain.
        fade = equal_gain_fade if codec.coherent_seams else equal_power_fade
        self.fade_out, self.fade_in = fade(FRAME_SAMPLES)

    def reset(self) -> None:
        self.history, self.tail, self.phase = None, None, None

    def state(self) -> dict:
        return {"history": self.history, "tail": self.tail, "phase": self.phase}

    def load_state(self, state: dict) -> None:
        self.history, self.tail, self.phase = state["history"], state["tail"], state.get("phase")

    @torch.inference_mode()
    def push(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [frames, L] -> audio [2, frames * 1920] (delayed by one frame)."""
        hist = self.history if self.history is not None else tokens[:0]
        window = torch.cat([hist, tokens], dim=0)
        audio, track = self.codec.decode_stream(window.unsqueeze(0), self.phase)
        audio = audio[0]
        # The window's audio covers hist + tokens; keep from one frame before the new tokens.
        start = (hist.shape[0] - 1) * FRAME_SAMPLES if hist.shape[0] else 0
        body = audio[:, start:]
        if self.tail is not None:
            seam = self.tail * self.fade_out + body[:, :FRAME_SAMPLES] * self.fade_in
            body = torch.cat([seam, body[:, FRAME_SAMPLES:]], dim=1)
        out, self.tail = body[:, :-FRAME_SAMPLES], body[:, -FRAME_SAMPLES:].clone()
        self.history = window[-self.context :].clone() if self.context else window[:0]
        before = window.shape[0] - self.history.shape[0] - 1  # the frame before the next window
        if track is not None and before >= 0:
            self.phase = track[before].clone()
        return out

    def flush(self) -> torch.Tensor:
        """The held-back frame, faded out: call at the end of a stream."""
        if self.tail is None:
            return torch.zeros(CHANNELS, 0)
        out = self.tail * self.fade_out
        self.tail = None
        return out


# ---------------------------------------------------------------- persistence
def save_codec(codec: Codec, path, half: bool = False, extra: dict | None = None) -> None:
    save_model(codec, path, "codec", asdict(codec.config), half, extra)


def codec_fingerprint(codec: Codec) -> str:
    """Who these tokens belong to: a hash of every level's codebook at half precision (what
    shipped weights hold), so a training checkpoint and its export agree, a new config
    field changes nothing, and an LM can name the codec whose tokens it learned."""
    import hashlib

    h = hashlib.sha256()
    for book in codec.rvq.codebooks:  # [levels, codes, dim]
        h.update(book.detach().to("cpu", torch.float16).numpy().tobytes())
    return h.hexdigest()[:16]


def build_codec(config: CodecConfig) -> Codec:
    """The codec class its config's design names."""
    if config.design == "hybrid":
        from model.codec.hybrid import HybridCodec

        return HybridCodec(config)
    if config.design != "learned":
        raise JamstreamError(f"codec design must be 'learned' or 'hybrid', not {config.design!r}")
    return Codec(config)


def load_codec(path=None, device: str = "cpu") -> Codec:
    """A trained codec: `path`, or the shipped default weights when path is None."""
    from model.weights import default_weight_path

    return load_model(path or default_weight_path("codec"), "codec", CodecConfig, build_codec).to(device).eval()
