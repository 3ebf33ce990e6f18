"""`jamstream corpus build|stats`: the captioned training corpus."""

from __future__ import annotations

import argparse
import time

from bridge.cli.common import NON_NEGATIVE_INT, POSITIVE, Bounded, Formatter, Parser, emit, positive_int


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from model.corpus.build import build_corpus

    start = time.perf_counter()
    genres = None if args.styles is None else tuple(args.styles.split(","))
    result = build_corpus(
        args.out,
        args.minutes,
        seed=args.seed,
        jobs=args.jobs,
        soundfont=args.soundfont,
        genres=genres,
        tempo_spread=args.tempo_spread,
    )
    wall = time.perf_counter() - start
    summary = {
        "out": str(result.out_dir),
        "clips": result.clips,
        "built": result.built,
        "skipped_finished": result.skipped,
        "failed": result.failed,
        "audio_minutes": round(result.audio_seconds / 60.0, 3),
        "wall_seconds": round(wall, 2),
        "audio_minutes_per_wall_minute": round(result.audio_seconds / 60.0 / (wall / 60.0), 2)
        if result.built
        else None,
    }
    text = (
        f"{result.clips} clips, {summary['audio_minutes']:.2f} min of audio in {result.out_dir} "
        f"({result.built} rendered, {result.skipped} already done, {len(result.failed)} failed) "
        f"in {wall:.1f} s"
    )
    emit(summary, args.json, text)
    return 0


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from model.corpus.stats import corpus_stats, format_stats

    stats = corpus_stats(args.corpus)
    emit(stats, args.json, format_stats(stats))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser(
        "corpus",
        help="build and inspect the captioned training corpus",
        description="The training corpus: real scores from music21 and procedural grooves in 11+ "
        "contemporary styles, rendered by FluidSynth to 48 kHz stereo FLAC, with captions, tags "
        "and exact beat times in manifest.jsonl.",
        formatter_class=Formatter,
    )
    csub = corpus.add_subparsers(dest="corpus_command", metavar="{build,stats}", parser_class=Parser)
    csub.required = True
    b = csub.add_parser(
        "build",
        help="render a corpus (resumable, deterministic for a seed)",
        description="Render about MINUTES of captioned music into OUT. Re-running the same command "
        "skips finished clips and redoes a half-written one; a larger --minutes extends the same "
        "corpus. Splits are by source piece: no score or generator seed is in two splits.",
        epilog="examples:\n  jamstream corpus build --out corpus --minutes 10 --jobs 2\n"
        "  jamstream corpus build --out afrobeat --minutes 12 --styles afrobeat   # a held-out style",
        formatter_class=Formatter,
    )
    b.add_argument("--out", required=True, help="corpus directory (created if missing)")
    b.add_argument("--minutes", type=POSITIVE, required=True, help="minutes of audio to plan (> 0)")
    b.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="same seed, same corpus")
    b.add_argument("--jobs", type=positive_int, default=2, help="parallel render processes")
    b.add_argument(
        "--styles",
        default=None,
        help="comma-separated genres to render instead of the default mix; may name held-out styles "
        "(afrobeat) that default builds never include, e.g. for `jamstream finetune` experiments",
    )
    b.add_argument(
        "--tempo-spread",
        type=Bounded(1.0),
        default=1.0,
        help="widen generated genres' tempo ranges by this factor each way for half their clips "
        "(e.g. 1.5: reggae 66-90 bpm becomes 56-135), so tempo alone no longer names the genre; "
        "1 keeps each genre's own range",
    )
    b.add_argument("--soundfont", default=None, help="GM soundfont (.sf2); default $JAMSTREAM_SOUNDFONT or FluidR3_GM")
    b.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    b.set_defaults(func=cmd_corpus_build)
    s = csub.add_parser(
        "stats",
        help="minutes per split, clips per genre, bpm histogram",
        description="Summarise a corpus from its manifest.",
        formatter_class=Formatter,
    )
    s.add_argument("corpus", help="corpus directory")
    s.add_argument("--json", action="store_true", help="one JSON object (keys: clips, minutes, splits, genres, ...)")
    s.set_defaults(func=cmd_corpus_stats)
