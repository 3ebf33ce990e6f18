"""`jamstream`: one command, a subcommand per job.

Bad input (a missing file, a number out of range, a damaged manifest) is reported as a
single line on stderr with exit code 2 and nothing half-written left behind; a traceback
means a bug in jamstream. `--json` output goes to stdout, progress bars to stderr, so
both can be piped.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable, Sequence

from bridge.cli.common import Formatter, Parser
from model.errors import JamstreamError

EXIT_BAD_INPUT = 2
# A full disk, a file-size limit, a read-only or forbidden place: the machine's state, not a
# bug, so one line like any bad input. Every long job writes atomically and resumes, so the
# line can say that re-running keeps what was finished.
FULL_DISK = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}

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
  jamstream generate "bossa nova guitar" --bpm 96 -o bossa.wav
  jamstream render song.mid --preset jazz-bossa -o song.flac   # bounce a song offline
  jamstream jam --preset techno-dub --connect system            # play live in JACK, on the host's beats
  jamstream plot bossa.wav                                      # see its notes: bossa.png

Run `jamstream SUBCOMMAND --help` for each subcommand's options.
"""


def _command_groups() -> list[Callable[[argparse._SubParsersAction], None]]:
    from bridge.cli import bench, corpus, evaluate, finetune, generate, jam, plot, plugin, render, serve, train

    return [
        corpus.add,
        train.add,
        finetune.add,
        evaluate.add,
        generate.add,
        render.add,
        jam.add,
        serve.add,
        plugin.add,
        bench.add,
        plot.add,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jamstream", description=DESCRIPTION, epilog=EPILOG, formatter_class=Formatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True
    for add in _command_groups():
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
    except OSError as exc:
        if exc.errno not in FULL_DISK | NOT_WRITABLE:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        if exc.errno in FULL_DISK:
            print(
                f"jamstream: error: no space left{where} ({exc.strerror}); free some and re-run the same command: "
                "finished work is kept",
                file=sys.stderr,
            )
        else:
            print(f"jamstream: error: cannot write{where} ({exc.strerror})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("jamstream: interrupted; finished work is kept, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
