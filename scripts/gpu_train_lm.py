"""Train the LM on a lent GPU (the `device` tool) from a token cache made here.

Why a script and not `jamstream train lm`: the GPU machine gets at most 64 MiB of files
and no corpus audio, so it cannot tokenize; it gets the token cache that `jamstream train
lm` wrote on the CPU machine (`<corpus>/.cache/tokens-*.pt`, optionally xz-compressed)
and the style weights whose codebooks the LM reads. Everything else - LMTask, the shared
Trainer, checkpoint format - is the project's own code, so a run here is a run there.

Steps come from PASSES over the train frames (or --steps); the --minutes cap stops a
variant early, scored, if the machine is slower than planned. (A probe that timed a few
steps to fit the schedule to the time misread the speed 3-5x, start-up and the other
variant's loading dominating it, so it is gone.) Measured on one H100: tiny, 4096 frames
a step, ~60 ms/step alone, ~65 ms each with two variants at once.

Each variant trains with bf16 autocast; every --val-every steps (and at its last step) the
Trainer's validation stage scores the val split (`heldout_nll`) and keeps the best state,
so a variant that starts to overfit its passes returns the weights from before it did.
The best variant is written in float16, split into parts of under 16 MB (what the device
tool returns), with a JSON report:

  python3 scripts/gpu_train_lm.py --tokens .gpu/tok/a.pt.xz --tokens .gpu/tok/b.pt.xz --out $OUT \\
      --variant e:13:4096:2e-3 --steps 2800 --minutes 3.9 --val-every 700 --val-stride 2
  cat $OUT/lm.part-* > lm.safetensors     # on this machine
"""

from __future__ import annotations

import argparse
import json
import lzma
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PART_BYTES = 15_000_000


@dataclass
class Variant:
    name: str
    passes: float
    frames_per_batch: int
    lr: float


def parse_variant(text: str) -> Variant:
    name, passes, fpb, lr = text.split(":")
    return Variant(name, float(passes), int(fpb), float(lr))


def load_clips(paths: list[str]):
    """Clips of every cache, in order (corpora built with different seeds have distinct ids)."""
    from model.train.token_data import TokenClip

    clips = []
    for path in map(Path, paths):
        opener = lzma.open if path.suffix == ".xz" else open
        with opener(path, "rb") as fh:
            clips += [TokenClip(**d) for d in torch.load(fh, weights_only=False)]
    return clips


def train_variant(v: Variant, args: argparse.Namespace, out: Path) -> dict:
    """One training run; returns its report (the best state is saved as <name>-best.safetensors)."""
    from model.eval.nll import heldout_nll
    from model.io.checkpoint import save_model
    from model.lm.network import CONFIGS
    from model.style.network import load_style
    from model.train.lm_task import LMTask, LMTrainConfig
    from model.train.trainer import TrainConfig, Trainer
    from model.train.validation import Validation

    clips = load_clips(args.tokens)
    val = [c for c in clips if c.split == "val"][:: args.val_stride]
    config = CONFIGS[args.config]
    codebooks = load_style(args.style).quantizer.codebooks
    train_frames = sum(c.tokens.shape[0] for c in clips if c.split == "train")
    started = time.perf_counter()
    steps = args.steps or max(100, int(v.passes * train_frames / v.frames_per_batch))
    passes = steps * v.frames_per_batch / train_frames
    print(f"[{v.name}] {steps} steps of {v.frames_per_batch} frames ({passes:.1f} passes)", flush=True)

    class ValidatedLMTask(LMTask):
        def validation(self) -> Validation:
            # at_end: the last step is scored too, also when --minutes stops the run early
            return Validation(every=args.val_every, at_end=True, metric="val_nll")

        def validate(self, model: torch.nn.Module, step: int) -> dict[str, float]:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda"):
                nll = heldout_nll(model, val)
            print(f"[{v.name}] step {step}/{steps} val {nll:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
            return {"val_nll": nll}

    task = ValidatedLMTask(config, LMTrainConfig(frames_per_batch=v.frames_per_batch), clips, codebooks)
    ckpt = out / f"{v.name}.ckpt.safetensors"
    trainer = Trainer(
        task,
        TrainConfig(
            out=str(ckpt),
            steps=steps,
            lr=v.lr,
            warmup_steps=args.warmup,
            checkpoint_every=steps,
            device=args.device,
            bf16=args.device == "cuda",
            seed=args.seed,
            max_minutes=args.minutes - (time.perf_counter() - started) / 60,  # the cap counts from loading
        ),
    )
    result = trainer.fit()
    best = result["best"]
    model = task.build_model()
    model.load_state_dict(trainer.best_state)
    report = {
        "variant": v.__dict__,
        "steps_planned": steps,
        "steps_run": result["step"],
        "stopped_early": result["stopped_early"],
        "seconds": round(time.perf_counter() - started, 1),
        "train_frames": train_frames,
        "best_val_nll": round(best["val_nll"], 4),
        "best_step": best["step"],
        "val_curve": [(r["step"], round(r["val_nll"], 4)) for r in result["validations"]],
        "final_batch": result["metrics"],
    }
    save_model(
        model,
        out / f"{v.name}-best.safetensors",
        "lm",
        task.model_config(),
        half=True,
        extra={
            "step": best["step"],
            "metrics": {"val_nll": round(best["val_nll"], 4)},
            "codec_fingerprint": args.codec_fingerprint,
            "recipe": f"scripts/gpu_train_lm.py variant {v.__dict__}, best val at step {best['step']}",
        },
    )
    ckpt.unlink(missing_ok=True)
    return report


def _run(payload):
    v, args, out = payload
    return train_variant(v, args, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tokens",
        required=True,
        action="append",
        help="token cache (.pt or .pt.xz) written by `jamstream train lm`; repeat to train on several corpora",
    )
    p.add_argument("--style", default=str(ROOT / "model/weights/style.safetensors"), help="style weights (codebooks)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        required=True,
        help="NAME:PASSES:FRAMES_PER_BATCH:LR; variants run at once, one process each",
    )
    p.add_argument("--config", default="tiny")
    p.add_argument("--minutes", type=float, default=6.0, help="wall-time cap per variant")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--steps", type=int, default=0, help="steps per variant, overriding PASSES")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--val-stride", type=int, default=1, help="score every n-th val clip (faster validation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--codec-fingerprint",
        required=True,
        help="model.codec.codec_fingerprint of the codec that made the token caches (recorded in the LM, so "
        "a mismatched pair is refused): python -c 'from model.codec import *; "
        "print(codec_fingerprint(load_codec(PATH)))'",
    )
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(args.variant)) as pool:
        reports = pool.map(_run, [(v, args, out) for v in args.variant])
    winner = min(reports, key=lambda r: r["best_val_nll"])
    name = winner["variant"]["name"]
    blob = (out / f"{name}-best.safetensors").read_bytes()
    for i in range(0, len(blob), PART_BYTES):
        (out / f"lm.part-{i // PART_BYTES:02d}").write_bytes(blob[i : i + PART_BYTES])
    for r in reports:
        (out / f"{r['variant']['name']}-best.safetensors").unlink()
    (out / "report.json").write_text(json.dumps({"winner": name, "runs": reports}, indent=1))
    print(
        json.dumps(
            {
                "winner": name,
                "runs": [
                    {k: r[k] for k in ("variant", "best_val_nll", "best_step", "steps_run", "seconds")} for r in reports
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
