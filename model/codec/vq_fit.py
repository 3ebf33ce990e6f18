"""Fit a codec's residual VQ offline, by Lloyd's k-means over many frames.

Why: the hybrid codec's encoder is fixed signal processing, so its quantizer's whole job
is residual k-means on a fixed set of vectors. Trained online, vector-quantize-pytorch's
EMA codebooks see 200 frames a step (8 one-second crops) for 1024 codes each, after a
k-means initialisation on one such batch; on the held-out real excerpts that trained VQ
kept 16-level chroma 0.497, below what 12 Lloyd iterations over 40,000 frames keep with
no network at all (0.567; scripts/vq_space_probe.py). A learned encoder's latent moves
with training, so only a fixed-latent codec is refitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from model.codec.network import FRAME_RATE, FRAME_SAMPLES, Codec, codebook_states
from model.errors import JamstreamError


@dataclass
class VQFitConfig:
    frames: int = 40_000  # latent frames sampled from the train split (25 Hz: ~27 minutes)
    crop_seconds: float = 4.0  # frames come as crops of this length, from random clips
    iters: int = 12  # Lloyd iterations per level
    seed: int = 0
    batch_frames: int = 200  # frames per training step, to scale usage counts like the EMA's


def sample_latents(codec: Codec, split, cfg: VQFitConfig, progress: bool = True) -> torch.Tensor:
    """[frames, latent_dim]: the encoder's latent of random crops of `split` (an AudioSplit)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    per_crop = int(cfg.crop_seconds * FRAME_RATE)
    crops = -(-cfg.frames // per_crop)
    out = []
    with torch.inference_mode(), tqdm(total=crops, desc="latents", unit="crop", disable=not progress) as bar:
        for start in range(0, crops, 16):
            audio = split.crops(min(16, crops - start), per_crop * FRAME_SAMPLES, gen)
            out.append(codec.encode_latent(audio).reshape(-1, codec.config.latent_dim))
            bar.update(audio.shape[0])
    return torch.cat(out)[: cfg.frames].float()


def nearest(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest code (squared Euclidean), in blocks to bound memory."""
    norms = (codes * codes).sum(1)
    return torch.cat([(norms - 2 * xb @ codes.T).argmin(1) for xb in x.split(8192)])


def lloyd(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """k-means of rows of x: random rows to start, empty clusters re-seeded from random rows."""
    if len(x) < k:
        raise JamstreamError(f"fitting {k} codes needs at least {k} frames, not {len(x)}")
    codes = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = nearest(x, codes)
        sums = torch.zeros_like(codes).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        reseed = x[torch.randint(len(x), (k,), generator=gen)]
        codes = torch.where((counts == 0)[:, None], reseed, sums / counts.clamp_min(1)[:, None])
    return codes


def require_fixed_latent(codec: Codec) -> None:
    """One-line refusal for a codec whose latent moves with training (design 'learned')."""
    if codec.config.design != "hybrid":
        raise JamstreamError(
            f"only a hybrid codec (a fixed latent) can have its VQ fitted offline; "
            f"a {codec.config.design!r} codec's latent moves with training"
        )


def residual_kmeans(
    x: torch.Tensor, levels: int, k: int, iters: int, gen: torch.Generator, progress: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """Residual k-means of rows of x: (codes per level, each level's assignment of the
    rows, mean squared residual after each level)."""
    residual = x.clone()
    books, assignments, errors = [], [], []
    for _ in tqdm(range(levels), desc="fit VQ", unit="level", disable=not progress):
        codes = lloyd(residual, k, iters, gen)
        assign = nearest(residual, codes)
        residual -= codes[assign]
        books.append(codes)
        assignments.append(assign)
        errors.append(float(residual.pow(2).mean()))
    return books, assignments, errors


@torch.no_grad()
def fit_codebooks(codec: Codec, latents: torch.Tensor, cfg: VQFitConfig, progress: bool = True) -> list[float]:
    """Refit every level on the residual the levels before it leave; returns the mean
    squared residual after each level (it must fall level by level).

    The EMA state is set as if training had seen these frames (usage scaled to
    `batch_frames` a step), so training can continue from the fitted books."""
    require_fixed_latent(codec)
    gen = torch.Generator().manual_seed(cfg.seed)
    c = codec.config
    books, assignments, errors = residual_kmeans(latents, c.levels, c.codebook_size, cfg.iters, gen, progress)
    for book, codes, assign in zip(codebook_states(codec.rvq), books, assignments):
        usage = torch.bincount(assign, minlength=len(codes)).float() * (cfg.batch_frames / len(latents))
        book.embed.copy_(codes.unsqueeze(0))
        book.cluster_size.copy_(usage.unsqueeze(0))
        book.initted.fill_(True)
    codec.rebuild_training_state()  # embed_avg from the codes and usage, as the EMA keeps it
    return errors
