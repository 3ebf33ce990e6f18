"""`jamstream jam` as a subprocess, read through its JSON status file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The worker reports every 0.25 s and the bridge drains the reports every 0.1 s: a status
# file written this long after an event holds a worker report from after it.
STATUS_LAG_S = 0.4


class Jam:
    """`python -m bridge.cli jam --server SERVER --json-status ...` with its output in a log file.

    The status file is rewritten about once a second, so a test waits on it with `wait_for`
    (a condition and a timeout) rather than sleeping a guessed time. What it says of the
    worker (bpm, chunks, ...) is the worker's latest report, up to STATUS_LAG_S older."""

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

    def status(self, written_after: float | None = None) -> dict:
        """The latest status written ({} before the first, or while it is being replaced);
        with `written_after` (a time.time()), {} unless the file was written since then."""
        try:
            if written_after is not None and self.status_path.stat().st_mtime <= written_after:
                return {}
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_for(self, pred, timeout: float, what: str, written_after: float | None = None) -> dict:
        """The first status (written after `written_after`, if given) for which `pred` holds;
        fails (with the log's tail) on a timeout or an exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"jam exited ({self.proc.returncode}) waiting for {what}: {self.log_path.read_text()[-2000:]}"
                )
            s = self.status(written_after)
            if s and pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; status {self.status()}; log {self.log_path.read_text()[-2000:]}"
        )

    def wait_until_played(self, song_frame: int, timeout: float, what: str) -> dict:
        """Wait until the playhead (rolling) has passed `song_frame`: what was in the ring up to
        there has been heard."""
        return self.wait_for(lambda s: s["rolling"] and s["song_frame"] >= song_frame, timeout, what)

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        """Signal it and return its exit code (SIGKILL after `timeout`); repeating it is harmless."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
