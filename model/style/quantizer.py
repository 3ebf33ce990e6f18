"""Style tokens: residual k-means over the style space, 12 levels of 1024 codes.

Why plain k-means per level and not vector-quantize-pytorch's ResidualVQ: the codebooks
are fit once, offline, on a fixed set of points, after the towers are trained. ResidualVQ
is built for online training inside a network (one k-means on the first batch, then EMA
updates over many steps); here Lloyd's algorithm on each level's residuals is exactly
the fit we want, is deterministic for a seed, and runs in about a minute on one core.

Two choices keep it honest and small:
- Code 0 of every level is pinned to the zero vector. Assigning to the nearest code can
  then never make a residual longer, so the quantization error falls (never rises) as
  levels are added, for any input, not just the fit points.
- The codes live in a PCA subspace (`quant_dim`, 256 by default) of the 512-d space.
  12 x 1024 x 512 half-precision codes alone would be 12.6 MB, past the 10 MB budget of
  the shipped file; the fit points span far fewer than 256 directions (measured and
  reported by `fit`), so the subspace costs almost nothing in accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.errors import JamstreamError


class StyleQuantizer(torch.nn.Module):
    def __init__(self, dim: int = 512, levels: int = 12, codes: int = 1024, quant_dim: int = 256):
        super().__init__()
        self.dim, self.levels, self.codes, self.quant_dim = dim, levels, codes, min(quant_dim, dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, self.quant_dim))
        self.register_buffer("codebooks", torch.zeros(levels, codes, self.quant_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())

    @torch.no_grad()
    def fit(self, points: torch.Tensor, iters: int = 20, seed: int = 0) -> dict:
        """Fit PCA basis and per-level codebooks on `points` [n, dim]; returns fit figures."""
        points = points.detach().float().cpu()
        if points.ndim != 2 or points.shape[1] != self.dim or points.shape[0] < 2:
            raise JamstreamError(f"quantizer fit needs [n >= 2, {self.dim}] points, got {tuple(points.shape)}")
        gen = torch.Generator().manual_seed(seed)
        mean = points.mean(0)
        centered = points - mean
        evals, evecs = torch.linalg.eigh(centered.T @ centered / len(points))
        order = evals.argsort(descending=True)[: self.quant_dim]
        basis = evecs[:, order]
        explained = float(evals[order].sum() / evals.sum().clamp_min(1e-12))
        residual = centered @ basis
        codebooks = torch.zeros(self.levels, self.codes, self.quant_dim)
        errors = []
        for level in range(self.levels):
            book = _kmeans(residual, self.codes, iters, gen)
            codebooks[level] = book
            residual = residual - book[_nearest(residual, book)]
            errors.append(float(residual.norm(dim=1).mean()))
        self.mean.copy_(mean)
        self.basis.copy_(basis)
        self.codebooks.copy_(codebooks)
        self.fitted.fill_(1)
        return {
            "points": len(points),
            "pca_variance_kept": round(explained, 5),
            "residual_by_level": [round(e, 5) for e in errors],
        }

    def _check(self, levels: int | None) -> int:
        if not self.is_fitted:
            raise JamstreamError(
                "this style model's quantizer was never fit; re-run `jamstream train style` to the end"
            )
        levels = self.levels if levels is None else levels
        if not 1 <= levels <= self.levels:
            raise JamstreamError(f"style token levels must be in 1..{self.levels}, got {levels}")
        return levels

    @torch.no_grad()
    def quantize(self, embedding: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Int64 tokens [..., levels] for embeddings [..., dim]."""
        levels = self._check(levels)
        flat = embedding.reshape(-1, self.dim).float()
        residual = (flat - self.mean.float()) @ self.basis.float()
        tokens = []
        for level in range(levels):
            book = self.codebooks[level].float()
            idx = _nearest(residual, book)
            residual = residual - book[idx]
            tokens.append(idx)
        return torch.stack(tokens, dim=-1).reshape(*embedding.shape[:-1], levels)

    @torch.no_grad()
    def dequantize(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embeddings [..., dim] from tokens [..., L] (any prefix of levels)."""
        levels = self._check(tokens.shape[-1])
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.codes:
            raise JamstreamError(f"style tokens must be in 0..{self.codes - 1}")
        flat = tokens.reshape(-1, levels)
        z = sum(self.codebooks[level].float()[flat[:, level]] for level in range(levels))
        out = self.mean.float() + z @ self.basis.float().T
        if normalize:
            out = F.normalize(out, dim=-1)
        return out.reshape(*tokens.shape[:-1], self.dim)


def _nearest(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    dist = (x * x).sum(1, keepdim=True) - 2 * x @ book.T + (book * book).sum(1)[None]
    return dist.argmin(dim=1)


def _kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with code 0 pinned at zero (see the module docstring)."""
    n = len(x)
    pick = torch.randperm(n, generator=gen)[: k - 1] if n >= k - 1 else torch.randint(0, n, (k - 1,), generator=gen)
    book = torch.cat([torch.zeros(1, x.shape[1]), x[pick] + 1e-4 * torch.randn(k - 1, x.shape[1], generator=gen)])
    for _ in range(iters):
        idx = _nearest(x, book)
        sums = torch.zeros_like(book).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).float()
        empty = counts == 0
        book = torch.where(empty[:, None], book, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # an unused code restarts on a random point
            n_empty = int(empty.sum())
            book[empty] = x[torch.randint(0, n, (n_empty,), generator=gen)]
        book[0] = 0
    return book
