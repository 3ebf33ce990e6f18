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
from pathlib import Path

import torch
import torch.nn.functional as F


def main(argv=None) -> int:
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from bridge.jam.offline import render_clip
    from model.adapters import lora, store
    from model.codec.network import load_codec
    from model.corpus import scores
    from model.corpus.styles import ALL_STYLES
    from model.generator import Generator
    from model.io.audio import load_audio, write_audio
    from model.lm.network import load_lm
    from model.lm.sampling import SamplingConfig
    from model.style.network import genre_prompt, load_style
    from model.train.finetune import nearest_prompt
    from model.train.recordings import audio_files

    style_model = load_style(args.style)
    files, _ = audio_files(Path(args.ref))
    refs = torch.stack([style_model.embed_audio(load_audio(f), 48_000) for f in files])
    centroid = F.normalize(refs.mean(0), dim=0)
    ad = store.load_adapter(args.adapter)
    prompts = [genre_prompt(g) for g in tuple(scores.GENRES) + tuple(ALL_STYLES)]
    prompt, prompt_cos = nearest_prompt(ad.style, style_model, prompts)
    text_style = style_model.embed_text([prompt])[0]
    codec = load_codec(args.codec)
    sampling = SamplingConfig()

    given = Path(args.adapter)  # a folder, or a name under the adapters dir
    captured, adapters_dir = (
        (f"adapter:{given.name}", given.parent) if given.is_dir() else (f"adapter:{args.adapter}", None)
    )

    def run(with_adapter: bool, style: str, tag: str) -> dict:
        lm = load_lm(args.lm)
        if with_adapter:
            lora.apply_adapter(lm, ad, 1.0)
        gen = Generator(lm, codec)
        cos_c, cos_r, wall = [], [], 0.0
        for seed in range(args.seeds):
            clip = render_clip(
                gen,
                style_model,
                [(style, 1.0)],
                args.bpm,
                (4, 4),
                args.seconds,
                seed,
                sampling,
                adapters_dir=adapters_dir,
            )
            wall += clip.wall_seconds
            e = style_model.embed_audio(clip.audio.numpy(), 48_000)
            cos_c.append(float(e @ centroid))
            cos_r.append(float((refs @ e).mean()))
            if args.out:
                write_audio(Path(args.out) / f"{tag}-{seed}.wav", clip.audio.numpy())
        return {
            "cos_to_ref_centroid": sum(cos_c) / len(cos_c),
            "cos_to_refs_mean": sum(cos_r) / len(cos_r),
            "per_seed": [round(c, 4) for c in cos_c],
            "generation_seconds": round(wall, 1),
        }

    start = time.perf_counter()
    result = {
        "references": len(files),
        "nearest_prompt": prompt,
        "nearest_prompt_cos_to_captured": round(prompt_cos, 4),
        "captured_cos_to_ref_centroid": round(float(ad.style @ centroid), 4),
        "prompt_cos_to_ref_centroid": round(float(text_style @ centroid), 4),
        "adapter": run(True, captured, "adapter"),
        "base": run(False, prompt, "base"),
        "base+captured": run(False, captured, "base-captured"),
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


if __name__ == "__main__":
    sys.exit(main())
