"""A private JACK server for one test module: bridge/live/jackd_server.py's Jackd, which
skips the test (rather than failing it) where jackd is missing or never comes up."""

from __future__ import annotations

import os
import shutil

import pytest

from bridge.live import jackd_server
from model.errors import JamstreamError


def need_jackd() -> str:
    """jackd's path, or skip the test where it is not installed."""
    path = shutil.which("jackd")
    if path is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    return path


class Jackd(jackd_server.Jackd):
    """`jackd -n NAME -d dummy -r RATE -p PERIOD` with a unique test name; its stderr goes to
    $JAMTEST_JACKD_LOG when set (the soak reads the xruns jackd blames on a client there)."""

    def __init__(self, rate: int = 48000, period: int = 256, name: str | None = None):
        need_jackd()
        super().__init__(rate, period, name, log=os.environ.get("JAMTEST_JACKD_LOG"), prefix="jamtest")

    def start(self) -> None:
        """Start it and return once a client can open on it (skip the test if it never can)."""
        try:
            super().start()
        except JamstreamError as exc:
            pytest.skip(str(exc))
