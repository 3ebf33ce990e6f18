"""Shared fixtures: a tiny real corpus, rendered once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main as jamstream

TINY_MINUTES = 2.0
TINY_SEED = 7


def run_cli(args: list[str], capsys=None) -> tuple[int, str, str]:
    """Run the real CLI in-process; returns (exit code, stdout, stderr)."""
    code = jamstream(args)
    if capsys is None:
        return code, "", ""
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    code = jamstream(["corpus", "build", "--out", str(out), "--minutes", str(TINY_MINUTES), "--seed", str(TINY_SEED), "--jobs", "2"])
    assert code == 0
    return out


def manifest_rows(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
