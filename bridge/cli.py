"""`jamstream`: one command, a subcommand per job.

Bad input (a missing file, a number out of range, a damaged manifest) is reported as a
single line on stderr with exit code 2 and nothing half-written left behind; a traceback
means a bug in jamstream. `--json` output goes to stdout, progress bars to stderr, so
both can be piped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Sequence

from model.errors import JamstreamError

EXIT_BAD_INPUT = 2

DESCRIPTION = """\
jamstream - a live music model inside your DAW.

The pipeline: a style encoder turns prompts into a style, a token transformer continues
a stream of neural-codec tokens in that style, locked to your tempo, and the codec turns
tokens into 48 kHz stereo audio. These subcommands build its training corpus, train and
evaluate its models, and play it.
"""

EPILOG = """\
examples:
  jamstream corpus build --out corpus --minutes 10     # render ~10 min of captioned music
  jamstream corpus stats corpus                        # what is in it
  jamstream corpus stats corpus --json | jq .genres    # the same, for scripts

Run `jamstream SUBCOMMAND --help` for each subcommand's options.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our paragraphs as written and show every option's default."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors become our one-line errors
        raise JamstreamError(f"{self.prog}: {message}")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def _emit(obj: dict, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=None if as_json else 2) if as_json else text)


# ---------------------------------------------------------------- corpus
def cmd_corpus_build(args: argparse.Namespace) -> int:
    from model.corpus.build import build_corpus

    start = time.perf_counter()
    result = build_corpus(args.out, args.minutes, seed=args.seed, jobs=args.jobs, soundfont=args.soundfont)
    wall = time.perf_counter() - start
    summary = {
        "out": str(result.out_dir),
        "clips": result.clips,
        "built": result.built,
        "skipped_finished": result.skipped,
        "failed": result.failed,
        "audio_minutes": round(result.audio_seconds / 60.0, 3),
        "wall_seconds": round(wall, 2),
        "audio_minutes_per_wall_minute": round(result.audio_seconds / 60.0 / (wall / 60.0), 2) if result.built else None,
    }
    text = (
        f"{result.clips} clips, {summary['audio_minutes']:.2f} min of audio in {result.out_dir} "
        f"({result.built} rendered, {result.skipped} already done, {len(result.failed)} failed) "
        f"in {wall:.1f} s"
    )
    _emit(summary, args.json, text)
    return 0


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from model.corpus.stats import corpus_stats, format_stats

    stats = corpus_stats(args.corpus)
    _emit(stats, args.json, format_stats(stats))
    return 0


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser(
        "corpus",
        help="build and inspect the captioned training corpus",
        description="The training corpus: real scores from music21 and procedural grooves in 11+ "
        "contemporary styles, rendered by FluidSynth to 48 kHz stereo FLAC, with captions, tags "
        "and exact beat times in manifest.jsonl.",
        formatter_class=_Formatter,
    )
    csub = corpus.add_subparsers(dest="corpus_command", metavar="{build,stats}", parser_class=_Parser)
    csub.required = True
    b = csub.add_parser(
        "build",
        help="render a corpus (resumable, deterministic for a seed)",
        description="Render about MINUTES of captioned music into OUT. Re-running the same command "
        "skips finished clips and redoes a half-written one; a larger --minutes extends the same "
        "corpus. Splits are by source piece: no score or generator seed is in two splits.",
        epilog="example: jamstream corpus build --out corpus --minutes 10 --jobs 2",
        formatter_class=_Formatter,
    )
    b.add_argument("--out", required=True, help="corpus directory (created if missing)")
    b.add_argument("--minutes", type=_number, required=True, help="minutes of audio to plan (> 0)")
    b.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    b.add_argument("--jobs", type=int, default=2, help="parallel render processes")
    b.add_argument("--soundfont", default=None, help="GM soundfont (.sf2); default $JAMSTREAM_SOUNDFONT or FluidR3_GM")
    b.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    b.set_defaults(func=cmd_corpus_build)
    s = csub.add_parser(
        "stats",
        help="minutes per split, clips per genre, bpm histogram",
        description="Summarise a corpus from its manifest.",
        formatter_class=_Formatter,
    )
    s.add_argument("corpus", help="corpus directory")
    s.add_argument("--json", action="store_true", help="one JSON object (keys: clips, minutes, splits, genres, ...)")
    s.set_defaults(func=cmd_corpus_stats)


COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [_add_corpus]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jamstream", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except JamstreamError as exc:
        print(f"jamstream: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("jamstream: interrupted; finished work is kept, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
