"""A private JACK server: `jackd -n <unique name> -d dummy -r RATE -p PERIOD`.

The tests, `make run`'s demo and `jamstream bench latency` each start their own server
rather than borrow a user's: the dummy driver runs its cycles on a timer, so no sound card
is needed, nothing a musician has running is disturbed, and runs on one machine do not
share a server (each gets a unique name). It is stopped by its PID - never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from model.errors import JamstreamError

START_TIMEOUT_S = 10.0


def jackd_path() -> str:
    """jackd's path; a JamstreamError (with the fix) where it is not installed."""
    path = shutil.which("jackd")
    if path is None:
        raise JamstreamError("jackd is not installed (apt install jackd2; scripts/setup.sh does it)")
    return path


def client_can_open(name: str) -> bool:
    """Whether a client opens on server `name` now. libjack reports a missing server on
    stderr (several lines a try) through its error function, so that is silenced for the probe."""
    import jack

    jack.set_error_function(lambda _msg: None)
    jack.set_info_function(lambda _msg: None)
    try:
        jack.Client("jamstream-probe", no_start_server=True, servername=name).close()
        return True
    except jack.JackOpenError:
        return False
    finally:
        jack.set_error_function(None)  # libjack's own again (stderr) for the clients that follow
        jack.set_info_function(None)


class Jackd:
    """`jackd -n NAME -d dummy -r RATE -p PERIOD`, started at construction and answering.

    `log` is where jackd's stderr goes (its xrun reports name the late client, which only
    that log tells); None discards it."""

    def __init__(
        self,
        rate: int = 48000,
        period: int = 256,
        name: str | None = None,
        log: str | Path | None = None,
        prefix: str = "jamstream",
    ):
        self.exe = jackd_path()
        self.name = name or f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start it and return once a client can open on it (JamstreamError if it never can)."""
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")  # no D-Bus device reservation: a dummy needs none
        with open(self.log or os.devnull, "a") as err:
            self.proc = subprocess.Popen(
                [self.exe, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if client_can_open(self.name):
                return
            time.sleep(0.1)
        code = self.proc.poll()
        self.stop()
        why = f"it exited with code {code}" if code is not None else f"no client could open in {START_TIMEOUT_S:g} s"
        raise JamstreamError(f"could not start a dummy JACK server {self.name!r} ({why})")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; harmless when it is not running."""
        terminate(self.proc, 5.0)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without telling its clients (the reconnect test)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> Jackd:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def terminate(proc: subprocess.Popen | None, timeout: float) -> int | None:
    """SIGTERM `proc`, SIGKILL it if it is still there after `timeout` s; its exit code
    (None for no process). Harmless on one that already ended."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
