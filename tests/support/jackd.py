"""A private JACK server for one test module: `jackd -n <unique name> -d dummy`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest


def need_jackd() -> str:
    """jackd's path, or skip the test where it is not installed."""
    path = shutil.which("jackd")
    if path is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    return path


class Jackd:
    """`jackd -n NAME -d dummy -r RATE -p PERIOD`, stopped by its PID - never a user's server.

    The dummy driver runs its cycles on a timer, so no sound card is needed and tests on
    one machine do not share a server (each gets a unique name)."""

    def __init__(self, rate: int = 48000, period: int = 256, name: str | None = None):
        self.exe = need_jackd()
        self.name = name or f"jamtest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.proc = None
        self.start()

    def start(self) -> None:
        """Start it and return once a client can open on it (skip the test if it never can)."""
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        self.proc = subprocess.Popen(
            [self.exe, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("JAMTEST_JACKD_LOG", os.devnull), "a"),
            env=env,
        )
        import jack

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c = jack.Client("probe", no_start_server=True, servername=self.name)
                c.close()
                return
            except jack.JackOpenError:
                time.sleep(0.1)
        self.stop()
        pytest.skip("could not start a dummy jackd")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without telling its clients (the reconnect test)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
