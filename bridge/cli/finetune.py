"""`jamstream finetune DIR --name NAME`: LoRA adapters and a captured style from your recordings."""

from __future__ import annotations

import argparse

from bridge.cli.common import NON_NEGATIVE_INT, POSITIVE, Bounded, Formatter, emit, positive_int, weights_file

EPILOG = """\
examples:
  jamstream finetune ~/recordings/improvs --name ohhalim
  jamstream finetune takes/ --name ohhalim --epochs 30 --rank 16 --alpha 32 --threads 1
  jamstream finetune takes/ --name ohhalim --resume             # continue an interrupted run
  jamstream generate --adapter ohhalim --bpm 110 --seconds 20 -o me.wav

Writes ADAPTERS-DIR/NAME/: adapter.safetensors (LoRA weights of the best epoch),
adapter.json, style.safetensors (the captured style: the recordings' mean audio
embedding), report.json (trainable parameters, peak memory, time per epoch, validation
NLL before and after). Presets can name the style "adapter:NAME".

--quantize: the frozen base's projections during training. int8 (weight-only, per-row
scales) runs on CPU and GPU; nf4 (QLoRA) needs bitsandbytes, which has CPU kernels in
recent releases but is built for CUDA GPUs. The adapter always applies to the
full-precision base at generation time.
"""


def cmd_finetune(args: argparse.Namespace) -> int:
    from model.train.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        data=args.dir,
        name=args.name,
        adapters_dir=args.adapters_dir,
        prompt=args.prompt,
        prompt_weight=args.prompt_weight,
        rank=args.rank,
        alpha=args.alpha,
        epochs=args.epochs,
        patience=args.patience,
        lr=args.lr,
        frames_per_batch=args.frames_per_batch,
        quantize=args.quantize,
        device=args.device,
        base=args.base,
        codec=args.codec,
        style=args.style,
        seed=args.seed,
        threads=args.threads,
        max_minutes=args.max_minutes,
        resume=args.resume,
    )
    report = finetune(cfg)
    skipped = report["skipped"]
    lines = [
        f"adapter {report['name']!r}: validation NLL {report['val_nll_before']:.4f} -> {report['val_nll_after']:.4f} "
        f"({100 * report['val_nll_change']:+.1f}%) after {report['epochs_run']} epochs "
        f"(best {report['best_epoch']}, {report['seconds_per_epoch']:.1f} s/epoch"
        f"{', stopped early' if report['early_stopped'] else ''})",
        f"{report['recordings']} recordings, {report['audio_seconds'] / 60:.1f} min; "
        f"{report['trainable_parameters']:,} trainable parameters ({100 * report['trainable_share']:.2f}% of the "
        "base); "
        f"peak memory {report['peak_rss_megabytes']:.0f} MB",
    ]
    if skipped:
        lines.append(f"skipped {len(skipped)} files: " + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped))
    if not report["finished"]:
        lines.append("stopped before the last epoch: run the same command with --resume to continue")
    lines.append(f"wrote {report['adapter']} (and adapter.json, style.safetensors, report.json)")
    emit(report, args.json, "\n".join(lines))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "finetune",
        help="fine-tune the LM on your own recordings (LoRA adapters + captured style)",
        description="Teach the model your playing: every audio file under DIR is tokenized with the codec "
        "(cached), beat-tracked for the per-frame tempo and beat phase, and its style captured with the "
        "style model's audio tower; LoRA adapters on the LM's attention and MLP projections are trained "
        "with the base frozen, validated on held-out recordings after every epoch, with early stopping, "
        "atomic checkpoints and --resume. Unreadable, silent or too-short files are skipped and listed.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    f.add_argument(
        "dir", help="folder of recordings (wav/flac/mp3/ogg/aiff; any rate or channel count; searched recursively)"
    )
    f.add_argument(
        "--name",
        required=True,
        help="adapter name (letters, digits, _ - .); `--adapter NAME` and `adapter:NAME` use it",
    )
    f.add_argument(
        "--prompt", default=None, help="a few words mixed into the captured style (the recordings' own embedding leads)"
    )
    f.add_argument(
        "--prompt-weight", type=Bounded(0.0, 1.0), default=0.25, help="share of --prompt in the captured style"
    )
    f.add_argument("--rank", type=positive_int, default=8, help="LoRA rank")
    f.add_argument("--alpha", type=POSITIVE, default=16.0, help="LoRA alpha (scaling = alpha / rank)")
    f.add_argument("--epochs", type=positive_int, default=20, help="most epochs (passes over the training audio)")
    f.add_argument(
        "--patience", type=positive_int, default=3, help="stop after this many epochs without a better validation NLL"
    )
    f.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak learning rate (AdamW, warmup then cosine)")
    f.add_argument("--frames-per-batch", type=positive_int, default=512, help="25 Hz frames per step")
    f.add_argument(
        "--quantize",
        default="none",
        choices=["none", "int8", "nf4"],
        help="quantize the frozen base while training (QLoRA)",
    )
    f.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train")
    f.add_argument(
        "--base", type=weights_file, default=None, help="base LM weights or training checkpoint (default: shipped)"
    )
    f.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    f.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    f.add_argument("--adapters-dir", default="adapters", help="where adapter folders live")
    f.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="same seed, same adapter")
    f.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    f.add_argument(
        "--max-minutes", type=POSITIVE, default=None, help="stop (with a checkpoint) after this much training time"
    )
    f.add_argument("--resume", action="store_true", help="continue the run in ADAPTERS-DIR/NAME")
    f.add_argument("--json", action="store_true", help="print the training report as JSON")
    f.set_defaults(func=cmd_finetune)
