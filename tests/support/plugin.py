"""The LV2 plugin under real hosts: its bundle built by make, and `jalv` running it on a
private JACK server with the plugin's environment (socket, default preset and mode)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bridge.live.jackd_server import terminate

REPO = Path(__file__).resolve().parents[2]
URI = "urn:jamstream:lv2:instrument"
LV2_SOURCE = REPO / "bridge" / "lv2"
BUNDLE_PARENT = LV2_SOURCE / "build"  # LV2_PATH: make puts jamstream.lv2 here


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh installs them)")


def built_bundle() -> Path:
    """make the bundle (quick when it is up to date); the folder to put on LV2_PATH."""
    need("make", "cc")
    if not Path("/usr/include/lv2/core/lv2.h").exists():
        pytest.skip("the LV2 headers are not installed (lv2-dev; scripts/setup.sh installs it)")
    done = subprocess.run(["make", "-s", "-C", str(LV2_SOURCE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return BUNDLE_PARENT


def plugin_env(server: str, socket: Path, **extra: str) -> dict:
    env = dict(os.environ, JACK_DEFAULT_SERVER=server, LV2_PATH=str(built_bundle()), JAMSTREAM_SOCKET=str(socket))
    env.pop("JAMSTREAM_BIN", None)
    env.update(extra)
    return env


class Jalv:
    """`jalv -n NAME -x URI` (console jalv 1.6) with its stdin kept open - it quits at EOF -
    so `command()` can set controls ("set macro1 0.5"); its output (the plugin's log lines
    among it) in `tmp/NAME.log`."""

    def __init__(self, tmp: Path, name: str, env: dict, state_dir: Path | None = None):
        need("jalv")
        self.name = name
        self.log_path = tmp / f"{name}.log"
        self.log = open(self.log_path, "w")
        cmd = ["jalv", "-n", name, "-x"]
        if state_dir is not None:
            cmd += ["-l", str(state_dir)]
        self.proc = subprocess.Popen(
            [*cmd, URI], stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, env=env, text=True
        )

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log_text()):
            if self.proc.poll() is not None:
                raise AssertionError(f"jalv exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in jalv's log after {timeout} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        return self.log_text()

    def close(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # EOF: jalv quits
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                terminate(self.proc, timeout)
        self.log.close()
        return self.proc.returncode


def port_latency(server: str, port: str) -> dict[str, tuple[int, int]]:
    """`jack_lsp -l PORT`'s latency ranges: {"capture": (min, max), "playback": (min, max)}."""
    need("jack_lsp")
    done = subprocess.run(
        ["jack_lsp", "-l", port], capture_output=True, text=True, env=dict(os.environ, JACK_DEFAULT_SERVER=server)
    )
    out = {}
    for kind, lo, hi in re.findall(r"port (capture|playback) latency = \[ (\d+) (\d+) \]", done.stdout):
        out[kind] = (int(lo), int(hi))
    return out
