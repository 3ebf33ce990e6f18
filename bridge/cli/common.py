"""Pieces every subcommand shares: help formatting, one-line usage errors, output."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from model.errors import JamstreamError


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our paragraphs as written and show each option's default once.

    argparse appends "(default: X)" to every help text; where the text already says its
    default ("(default: the preset's)") or there is none to show (None, a flag's False, an
    empty list), that would print it twice or print noise."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default  # by identity: `0 in (False,)` is True, and a 0 default is worth showing
        if "(default" in text or default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors become our one-line errors
        raise JamstreamError(f"{self.prog}: {message}")


@dataclass(frozen=True)
class Bounded:
    """An argparse type: a finite number (whole with `integer`) in a range, checked while
    the command line is parsed, so a bad value is one line naming its option before any
    model loads or any work starts. "nan" and "inf" are never numbers here: float() takes
    them, and a NaN compares False with every bound a command checks afterwards."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is out of range
    integer: bool = False

    @property
    def __name__(self) -> str:  # argparse names a type by it
        return "whole number" if self.integer else "number"

    def __call__(self, text: str) -> float | int:
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {self.__name__}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if self.low_open else '>='} {self.low:g} (got {value:g})")
        if self.high is not None and value > self.high:
            raise argparse.ArgumentTypeError(f"must be <= {self.high:g} (got {value:g})")
        return value

    def outside(self) -> list[str]:
        """Values just out of range (for the tests that sweep every option)."""
        out = []
        if self.low is not None:
            out.append(f"{self.low:g}" if self.low_open else f"{self.low - (1 if self.integer else 0.5):g}")
        if self.high is not None:
            out.append(f"{self.high + (1 if self.integer else 0.5):g}")
        return out


number = Bounded()  # any finite number
POSITIVE = Bounded(0.0, low_open=True)  # seconds, minutes, tempi, learning rates
NON_NEGATIVE = Bounded(0.0)  # loss weights, guidance, a start time
positive_int = Bounded(1, integer=True)  # counts: steps, frames, runs, threads
NON_NEGATIVE_INT = Bounded(0, integer=True)  # seeds, warm-up steps, 0-means-off counts
MIDI_DATA = Bounded(0, 127, integer=True)  # a CC number
PROBABILITY = Bounded(0.0, 1.0, low_open=True)  # top-p


def weights_file(text: str) -> str:
    """argparse type for weights or a checkpoint to read (--lm, --codec, --checkpoint, ...):
    a missing file is one line while parsing, before the other models load for seconds."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"checkpoint not found: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    return text


def output_file(text: str) -> str:
    """argparse type for a file a command writes (-o, --out, --json-status): its folder is
    made and must take a file, so an hour's job never ends in 'cannot write'."""
    from model.io.audio import check_writable

    try:
        check_writable(text)
    except JamstreamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def emit(obj: dict, as_json: bool, text: str) -> None:
    """Machine-readable JSON on stdout with --json, else the human text."""
    print(json.dumps(obj) if as_json else text)


def add_speculative_args(p: argparse.ArgumentParser) -> None:
    """`--speculative` / `--draft`: the same music from fewer LM passes (see `bench lm`)."""
    p.add_argument(
        "--speculative",
        action="store_true",
        help="speculative decoding: a small draft proposes each frame's next levels and the LM checks several in "
        "one pass; the output keeps the LM's distribution exactly",
    )
    p.add_argument(
        "--draft",
        type=weights_file,
        default=None,
        help="draft weights for --speculative (default: shipped; implies it)",
    )


def speculative_from(args: argparse.Namespace) -> bool:
    return bool(args.speculative or args.draft)
