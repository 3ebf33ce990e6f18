"""Helpers for tests that run a private JACK server and `jamstream jam` against it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def need_jackd() -> str:
    path = shutil.which("jackd")
    if path is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    return path


class Jackd:
    """`jackd -n NAME -d dummy -r RATE -p PERIOD`, stopped by its PID - never a user's server."""

    def __init__(self, rate: int = 48000, period: int = 256, name: str | None = None):
        self.exe = need_jackd()
        self.name = name or f"jamtest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.proc = None
        self.start()

    def start(self) -> None:
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
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Jam:
    """`jamstream jam` in a subprocess with a JSON status file."""

    def __init__(self, server: str, args: list[str], tmp: Path, name: str = "jamstream"):
        self.status_path = tmp / f"{name}-status.json"
        self.log_path = tmp / f"{name}.log"
        self.status_path.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "bridge.cli",
            "jam",
            "--server",
            server,
            "--name",
            name,
            "--quiet",
            "--json-status",
            str(self.status_path),
            *args,
        ]
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_for(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"jam exited ({self.proc.returncode}) waiting for {what}: {self.log_path.read_text()[-2000:]}"
                )
            s = self.status()
            if s and pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; status {self.status()}; log {self.log_path.read_text()[-2000:]}"
        )

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def click_onsets(x: np.ndarray, threshold: float = 0.05, min_gap: int = 4800) -> np.ndarray:
    """Sample indices where |x| first crosses `threshold` after at least `min_gap` quiet samples."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return loud
    keep = np.concatenate([[True], np.diff(loud) > min_gap])
    return loud[keep]


def onset_errors(onsets: np.ndarray, beats: np.ndarray, rate: int, window_s: float = 0.1) -> np.ndarray:
    """For each host beat with an onset within +-window, the signed distance (s) to the nearest one."""
    if onsets.size == 0:
        return np.zeros(0)
    out = []
    for b in beats:
        i = np.argmin(np.abs(onsets - b))
        d = (onsets[i] - b) / rate
        if abs(d) <= window_s:
            out.append(d)
    return np.array(out)
