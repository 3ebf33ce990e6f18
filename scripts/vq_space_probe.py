"""Which space should the hybrid codec's residual VQ quantize? No network, no training:
residual k-means (16 levels x 1024 codes, 12 Lloyd iterations a level) on 40,000 hybrid
latent frames of the corpus's and the real recordings' train clips, then each held-out
real excerpt encoded, quantized at 8 and 16 levels, decoded by the fixed inverse (an
untrained hybrid codec) and scored by chroma_corr and DAC mel. A space is a transform of
the latent and its inverse; the VQ's Euclidean error is spent where the transform puts
variance, so a space that shrinks what does not carry pitch keeps more of it.

  python scripts/vq_space_probe.py --corpus /work/corpus --real /work/realmusic raw compand:4:0.3
Spaces: raw | floor:R (values clipped R nepers below the frame's peak) | compand:KNEE:SLOPE
(depth beyond KNEE scaled by SLOPE) | any of them +hi4k:S (values above 4 kHz and the L/R
balance scaled by S). ~2.5 min a space on 2 cores; prints one JSON line per space.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace

import numpy as np
import torch

from model.codec.network import CONFIGS, build_codec
from model.codec.vq_fit import nearest, residual_kmeans
from model.corpus.manifest import read_manifest
from model.eval.pitch import chroma_corr, dac_mel
from model.io.audio import load_audio


def split(root: str, name: str) -> list[str]:
    return sorted(str(row.path) for row in read_manifest(root, name))


def quantize(x: torch.Tensor, books: list[torch.Tensor], levels: int) -> torch.Tensor:
    q, r = torch.zeros_like(x), x.clone()
    for codes in books[:levels]:
        v = codes[nearest(r, codes)]
        q, r = q + v, r - v
    return q


def space(spec: str, dim: int, centres: torch.Tensor, width: int):
    """(forward, inverse) for a space name."""
    parts = spec.split("+")
    base, scale = parts[0], None
    if len(parts) > 1:
        scale = torch.ones(width)
        s = float(parts[1].split(":")[1])
        scale[:dim] = torch.where(centres > 4000, s, 1.0)
        scale[dim:] = s
    kind, *args = base.split(":")

    def depth_map(z: torch.Tensor, fn) -> torch.Tensor:
        z = z.clone()
        top = z[:, :dim].amax(1, keepdim=True)
        z[:, :dim] = top - fn(top - z[:, :dim])
        return z

    if kind == "raw":
        fwd, inv = (lambda z: z), (lambda z: z)
    elif kind == "floor":
        r = float(args[0])
        fwd, inv = (lambda z: depth_map(z, lambda d: d.clamp(max=r))), (lambda z: z)
    elif kind == "compand":
        knee, slope = float(args[0]), float(args[1])
        fwd = lambda z: depth_map(z, lambda d: torch.where(d > knee, knee + (d - knee) * slope, d))  # noqa: E731
        inv = lambda z: depth_map(z, lambda d: torch.where(d > knee, knee + (d - knee) / slope, d))  # noqa: E731
    else:
        raise SystemExit(f"unknown space {spec!r}")
    if scale is None:
        return fwd, inv
    return (lambda z: fwd(z) * scale), (lambda x: inv(x / scale))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spaces", nargs="+")
    ap.add_argument("--corpus", default="/work/corpus")
    ap.add_argument("--real", default="/work/realmusic")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    # companding off: the probe applies each space itself, around the plain latent
    codec = build_codec(replace(CONFIGS["hybrid"], valley_knee=0.0, valley_slope=1.0)).eval()
    dim, centres = codec.spectrum.dim, torch.tensor(codec.spectrum.centres, dtype=torch.float32)

    def latent(path: str, seconds: float | None = None):
        audio = load_audio(path)
        if seconds:
            audio = audio[:, : int(seconds * 48_000)]
        with torch.no_grad():
            return codec.encode_latent(torch.from_numpy(audio)[None])[0], audio

    corpus, real = split(args.corpus, "train"), split(args.real, "train")
    random.shuffle(corpus)
    random.shuffle(real)
    frames = [latent(f, 12)[0] for f in corpus[:150] + real[:100]]
    x = torch.cat([z[torch.randperm(len(z))[:160]] for z in frames])
    tests = [latent(f) for f in split(args.real, "test")]
    for spec in args.spaces:
        t0 = time.time()
        fwd, inv = space(spec, dim, centres, x.shape[1])
        books = residual_kmeans(fwd(x), 16, 1024, 12, torch.Generator().manual_seed(0))[0]
        row = {"space": spec}
        for levels in (0, 8, 16):
            chroma, mel = [], []
            for z, audio in tests:
                zq = inv(quantize(fwd(z), books, levels)) if levels else inv(fwd(z))
                with torch.no_grad():
                    y = codec.decode_latent(zq[None])[0].numpy()
                n = min(y.shape[1], audio.shape[1])
                chroma.append(chroma_corr(y[:, :n], audio[:, :n]))
                mel.append(dac_mel(y[:, :n], audio[:, :n]))
            figures = {"chroma_corr": float(np.mean(chroma)), "dac_mel": float(np.mean(mel))}
            row[f"levels_{levels or 'none'}"] = {k: round(v, 3) for k, v in figures.items()}
        row["seconds"] = round(time.time() - t0)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
