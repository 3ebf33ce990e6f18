"""Pieces every subcommand shares: help formatting, one-line usage errors, output."""

from __future__ import annotations

import argparse
import json

from model.errors import JamstreamError


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our paragraphs as written and show each option's default once.

    argparse appends "(default: X)" to every help text; where the text already says its
    default ("(default: the preset's)") or there is none to show (None, a flag's False, an
    empty list), that would print it twice or print noise."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors become our one-line errors
        raise JamstreamError(f"{self.prog}: {message}")


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (frames, runs, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


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
    p.add_argument("--draft", default=None, help="draft weights for --speculative (default: shipped; implies it)")


def speculative_from(args: argparse.Namespace) -> bool:
    return bool(args.speculative or args.draft)
