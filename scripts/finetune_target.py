"""Is a fine-tuned adapter's music nearer its recordings than the base model's best prompt?

    python scripts/finetune_target.py --adapter adapters/afro --lm LM.safetensors \
        --ref held-out-recordings/ [--seconds 10 --seeds 3 --bpm 112 --threads 1 --json]

Embeds the reference recordings with the style model (audio tower) and generates, for
each seed, one clip per condition:
  adapter   the adapter at strength 1 + its captured style
  base      the base LM + the text prompt nearest (cosine) to the captured style, among
            "<genre> music" for every genre the corpus knows (held-out ones included)
  base+captured   the base LM + the captured style (does the style alone do it?)
and reports each condition's mean cosine between a generation's embedding and the
references' mean embedding (and the mean over individual references).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from model.adapters.store import Adapter
    from model.codec.network import Codec
    from model.lm.sampling import SamplingConfig
    from model.style.network import StyleModel


@dataclass
class References:
    """The held-out recordings as the style model hears them: each one's embedding and
    their normalised mean, the two things every generation is scored against."""

    files: list[Path]
    embeddings: torch.Tensor
    centroid: torch.Tensor


@dataclass
class Bench:
    """What every condition is generated and scored with - the same codec, style model,
    sampling, seeds and references - so the conditions differ only in LM and style."""

    args: argparse.Namespace
    style_model: StyleModel
    codec: Codec
    sampling: SamplingConfig
    adapters_dir: Path | None  # where `adapter:<name>` styles are looked up (None: the default)
    refs: References


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", required=True)
    p.add_argument("--lm", required=True)
    p.add_argument("--ref", required=True, help="folder of reference recordings (not trained on)")
    p.add_argument("--codec", default=None)
    p.add_argument("--style", default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--bpm", type=float, default=112.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder to write the generated clips to")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Score the three conditions and print them with what the comparison rests on (the
    nearest prompt and how near it and the captured style are to the references)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    from model.adapters import store
    from model.codec.network import load_codec
    from model.lm.sampling import SamplingConfig
    from model.style.network import load_style

    style_model = load_style(args.style)
    refs = embed_references(style_model, Path(args.ref))
    ad = store.load_adapter(args.adapter)
    prompt, prompt_cos = nearest_genre_prompt(ad.style, style_model)
    text_style = style_model.embed_text([prompt])[0]
    codec = load_codec(args.codec)
    sampling = SamplingConfig()
    captured, adapters_dir = captured_style(args.adapter)
    bench = Bench(args, style_model, codec, sampling, adapters_dir, refs)

    start = time.perf_counter()
    result = {
        "references": len(refs.files),
        "nearest_prompt": prompt,
        "nearest_prompt_cos_to_captured": round(prompt_cos, 4),
        "captured_cos_to_ref_centroid": round(float(ad.style @ refs.centroid), 4),
        "prompt_cos_to_ref_centroid": round(float(text_style @ refs.centroid), 4),
        "adapter": score_condition(bench, ad, captured, "adapter"),
        "base": score_condition(bench, None, prompt, "base"),
        "base+captured": score_condition(bench, None, captured, "base-captured"),
        "seconds": args.seconds,
        "seeds": args.seeds,
        "bpm": args.bpm,
    }
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


def embed_references(style_model: StyleModel, folder: Path) -> References:
    from model.io.audio import load_audio
    from model.train.recordings import audio_files

    files, _ = audio_files(folder)
    embeddings = torch.stack([style_model.embed_audio(load_audio(f), 48_000) for f in files])
    return References(files, embeddings, F.normalize(embeddings.mean(0), dim=0))


def nearest_genre_prompt(captured: torch.Tensor, style_model: StyleModel) -> tuple[str, float]:
    """The base model's best text prompt for the captured style, and its cosine to it: the
    nearest "<genre> music" over every genre the corpus knows, held-out ones included."""
    from model.corpus import scores
    from model.corpus.styles import ALL_STYLES
    from model.style.network import genre_prompt
    from model.train.finetune import nearest_prompt

    prompts = [genre_prompt(g) for g in tuple(scores.GENRES) + tuple(ALL_STYLES)]
    return nearest_prompt(captured, style_model, prompts)


def captured_style(adapter: str) -> tuple[str, Path | None]:
    """The adapter's captured style as a style name (`adapter:<name>`), and the folder that
    name is found in: `--adapter` is a folder, or a name under the default adapters dir."""
    given = Path(adapter)
    return (f"adapter:{given.name}", given.parent) if given.is_dir() else (f"adapter:{adapter}", None)


def score_condition(bench: Bench, adapter: Adapter | None, style: str, tag: str) -> dict:
    """One condition: the LM (a fresh load, with `adapter` at strength 1 if given) played
    in `style` once per seed; how near its clips sit to the references. With `--out` the
    clips are written as <tag>-<seed>.wav."""
    from bridge.jam.offline import render_clip
    from model.adapters import lora
    from model.generator import Generator
    from model.io.audio import write_audio
    from model.lm.network import load_lm

    args, refs = bench.args, bench.refs
    lm = load_lm(args.lm)
    if adapter is not None:
        lora.apply_adapter(lm, adapter, 1.0)
    gen = Generator(lm, bench.codec)
    cos_c, cos_r, wall = [], [], 0.0
    for seed in range(args.seeds):
        clip = render_clip(
            gen,
            bench.style_model,
            [(style, 1.0)],
            args.bpm,
            (4, 4),
            args.seconds,
            seed,
            bench.sampling,
            adapters_dir=bench.adapters_dir,
        )
        wall += clip.wall_seconds
        e = bench.style_model.embed_audio(clip.audio.numpy(), 48_000)
        cos_c.append(float(e @ refs.centroid))
        cos_r.append(float((refs.embeddings @ e).mean()))
        if args.out:
            write_audio(Path(args.out) / f"{tag}-{seed}.wav", clip.audio.numpy())
    return {
        "cos_to_ref_centroid": sum(cos_c) / len(cos_c),
        "cos_to_refs_mean": sum(cos_r) / len(cos_r),
        "per_seed": [round(c, 4) for c in cos_c],
        "generation_seconds": round(wall, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
