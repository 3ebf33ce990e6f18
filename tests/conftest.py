"""Shared fixtures: a tiny real corpus, rendered once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from netns import install_socket_guard, outside_reason

from bridge.cli import main as jamstream

install_socket_guard()


def pytest_runtest_setup(item):
    """A test marked `network` opens sockets: outside a loopback-only namespace it skips."""
    if item.get_closest_marker("network") is not None:
        reason = outside_reason()
        if reason is not None:
            pytest.skip(reason)


TINY_MINUTES = 2.0
TINY_SEED = 7


def run_cli(args: list[str], capsys=None) -> tuple[int, str, str]:
    """Run the real CLI in-process; returns (exit code, stdout, stderr)."""
    code = jamstream(args)
    if capsys is None:
        return code, "", ""
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    code = jamstream(
        ["corpus", "build", "--out", str(out), "--minutes", str(TINY_MINUTES), "--seed", str(TINY_SEED), "--jobs", "2"]
    )
    assert code == 0
    return out


def manifest_rows(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]


def small_codec_config():
    """A codec small enough to build, train and decode in well under a second."""
    from model.codec.network import CodecConfig

    return CodecConfig(
        width_fast=32,
        width_slow=48,
        expand=2,
        blocks_fast=1,
        blocks_slow=1,
        dec_blocks_fast=1,
        dec_blocks_slow=1,
        latent_dim=16,
        levels=8,
        codebook_size=64,
    )


def small_hybrid_config(**overrides):
    """The hybrid codec's config at a size that builds and decodes in well under a second
    (its latent width follows from the fixed spectrum, so only the decoder and VQ shrink)."""
    from dataclasses import replace

    from model.codec.network import CONFIGS

    small = dict(width_fast=32, width_slow=48, expand=2, blocks_fast=1, blocks_slow=1, dec_blocks_fast=1)
    return replace(CONFIGS["hybrid"], **{**small, "dec_blocks_slow": 1, "levels": 4, "codebook_size": 64, **overrides})


def music_like(batch: int, samples: int, seed: int = 0):
    """Stereo test audio [batch, 2, samples]: a few harmonic tones with a little noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float32) / 48_000
    out = torch.zeros(batch, 2, samples)
    for b in range(batch):
        for _ in range(4):
            f = float(torch.empty(1).uniform_(80, 2000, generator=g))
            phase = float(torch.rand(1, generator=g)) * 6.28
            out[b] += 0.1 * torch.sin(2 * torch.pi * f * t + phase) * torch.rand(2, 1, generator=g)
        out[b] += 0.01 * torch.randn(2, samples, generator=g)
    return out


def small_codec(seed: int = 0):
    """A fresh small codec whose codebooks are k-means initialised (one training-mode forward)."""
    import torch

    from model.codec.network import FRAME_SAMPLES, Codec

    torch.manual_seed(seed)
    codec = Codec(small_codec_config())
    codec.train()
    with torch.no_grad():
        codec(music_like(8, 10 * FRAME_SAMPLES, seed))
    return codec.eval()
