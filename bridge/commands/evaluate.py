"""`jamstream eval codec|...`: quality and speed figures for each model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Formatter, Parser, emit


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels wants comma-separated integers, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("--levels is empty")
    return levels


def expand_inputs(items: list[str], split: str = "test") -> list[Path]:
    """Audio files as given; a corpus directory or manifest.jsonl stands for its test split."""
    from model.corpus.manifest import read_manifest

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and (p / "manifest.jsonl").is_file():
            paths += [r.path for r in read_manifest(p, split)]
        elif p.name == "manifest.jsonl" and p.is_file():
            paths += [r.path for r in read_manifest(p.parent, split)]
        else:
            paths.append(p)
    return paths


def cmd_eval_codec(args: argparse.Namespace) -> int:
    import torch

    from model.codec import load_codec
    from model.errors import JamstreamError
    from model.eval_codec import evaluate_codec, format_table

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = load_codec(args.checkpoint)
    bad = [lv for lv in args.levels if not 1 <= lv <= codec.levels]
    if bad:
        raise JamstreamError(f"--levels {bad} outside 1..{codec.levels}")
    paths = expand_inputs(args.inputs, args.split)
    if not paths:
        raise JamstreamError("nothing to evaluate: the inputs name no audio files")
    result = evaluate_codec(codec, paths, args.levels)
    if not result.files:
        reasons = "; ".join(s["reason"] for s in result.skipped[:3])
        raise JamstreamError(f"no readable audio among the inputs ({reasons})")
    out = {"files": result.files, "skipped": result.skipped, "mean": result.mean}
    emit(out, args.json, format_table(result))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="measure a model's quality and speed",
        description="Quality and speed figures for jamstream's models.",
        formatter_class=Formatter,
    )
    esub = ev.add_subparsers(dest="model", metavar="{codec}", parser_class=Parser)
    esub.required = True
    c = esub.add_parser(
        "codec",
        help="SI-SNR, mel distance, bitrate and real-time factors, beside MP3 at 32 kbps",
        description="Encode and decode each input at several level counts and compare with the input, and "
        "with an MP3 re-encode at 32 kbps as a reference peer. Any wav/flac/mp3/ogg/aiff at any rate or "
        "channel count is converted to 48 kHz stereo; unreadable files are reported and skipped.",
        epilog="examples:\n  jamstream eval codec corpus                  # the corpus's test split\n"
        "  jamstream eval codec --levels 8,16 take1.wav take2.flac --json",
        formatter_class=Formatter,
    )
    c.add_argument("inputs", nargs="+", metavar="AUDIO_OR_MANIFEST", help="audio files, corpus dirs or manifest.jsonl")
    c.add_argument("--checkpoint", default=None, help="codec weights (default: the shipped ones)")
    c.add_argument("--levels", type=_levels, default=[8, 16, 32], help="RVQ level counts to decode with")
    c.add_argument("--split", default="test", choices=["train", "val", "test"], help="split used for corpus inputs")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    c.add_argument("--json", action="store_true", help="one JSON object: files, skipped, mean (per level count)")
    c.set_defaults(func=cmd_eval_codec)
