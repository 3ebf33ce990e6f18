"""What does a trained hybrid codec's learned correction do to the notes? No training: the
same tokens of each held-out real excerpt are decoded with the correction transformed -
whole, none (the fixed inverse), smoothed along frequency, only its positive or negative
part, only in the valleys (more than 4 nepers under the frame's peak) or only near the
peaks - and each is scored by chroma_corr and DAC mel. A part of the correction that buys
DAC mel without costing chroma is one a training constraint can keep.

  python scripts/correction_probe.py model/weights/codec-hybrid.safetensors --real /work/realmusic
~4 min for 8 excerpts at 16 levels on 2 cores; prints one line per excerpt, then the means as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.codec.hybrid import MAX_LOG_MAGNITUDE, HybridCodec  # noqa: E402
from model.codec.network import load_codec  # noqa: E402
from model.corpus.manifest import read_manifest  # noqa: E402
from model.eval.pitch import chroma_corr, dac_mel  # noqa: E402
from model.io.audio import SAMPLE_RATE, load_audio  # noqa: E402


def octave_smoother(codec: HybridCodec, sigma_octaves: float) -> torch.Tensor:
    """[bins, bins] Gaussian smoothing in log frequency, rows summing to one."""
    freqs = (torch.arange(codec.synth_bins) * SAMPLE_RATE / codec.config.synth_fft).clamp_min(20.0)
    kernel = torch.exp(-0.5 * (torch.log2(freqs[:, None] / freqs[None, :]) / sigma_octaves) ** 2)
    return kernel / kernel.sum(1, keepdim=True)


def variants(codec: HybridCodec, fixed: torch.Tensor, correction: torch.Tensor) -> dict[str, torch.Tensor]:
    valley = codec.valleys(fixed)
    return {
        "whole": correction,
        "none": torch.zeros_like(correction),
        "smoothed_1/6_octave": correction @ octave_smoother(codec, 1 / 6).T,
        "smoothed_1/2_octave": correction @ octave_smoother(codec, 1 / 2).T,
        "negative_part": correction.clamp(max=0),
        "positive_part": correction.clamp(min=0),
        "valleys_only": correction * valley,
        "peaks_only": correction * (1 - valley),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a hybrid codec's weights")
    ap.add_argument("--real", default="/work/realmusic", help="a corpus whose test split is scored")
    ap.add_argument("--levels", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.checkpoint)
    if not isinstance(codec, HybridCodec):
        raise SystemExit(f"correction_probe: {args.checkpoint} is not a hybrid codec")
    scores: dict[str, dict[str, list[float]]] = {}
    with torch.inference_mode():
        for row in read_manifest(args.real, "test"):
            audio = load_audio(row.path)
            latent = codec.dequantize(codec.encode(torch.from_numpy(audio), levels=args.levels))
            fixed = codec.fixed_log_magnitude(latent)
            correction = codec.log_magnitude(latent) - fixed
            for name, part in variants(codec, fixed, correction).items():
                logmag = (fixed + part).clamp(max=MAX_LOG_MAGNITUDE)
                est = codec.synthesize(logmag)[0][0, :, : audio.shape[1]].numpy()
                s = scores.setdefault(name, {"chroma_corr": [], "dac_mel": []})
                s["chroma_corr"].append(chroma_corr(est, audio))
                s["dac_mel"].append(dac_mel(est, audio))
            print(row.path, {k: round(v["chroma_corr"][-1], 3) for k, v in scores.items()}, file=sys.stderr)
    means = {k: {m: round(float(np.mean(v)), 3) for m, v in s.items()} for k, s in scores.items()}
    print(json.dumps({"checkpoint": args.checkpoint, "levels": args.levels, **means}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
