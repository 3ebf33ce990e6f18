"""`jamstream serve` as a subprocess on a private socket, and a client that attaches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bridge.live.jackd_server import terminate
from bridge.serve.protocol import LineReader, encode, request

REPO = Path(__file__).resolve().parents[2]


class Serve:
    """The daemon on `tmp/serve.sock`, its stderr in `tmp/serve.log`."""

    def __init__(self, tmp: Path, *args: str, timeout: float = 30.0):
        self.socket = tmp / "serve.sock"
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "w")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve", "--socket", str(self.socket), *args],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"jamstream serve did not come up:\n{self.log_text()}") from None
                time.sleep(0.1)

    def status(self) -> dict:
        return request(self.socket, {"op": "status"})

    def wait_for(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if pred(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(status)}\n{self.log_text()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self, timeout: float = 30.0) -> int | None:
        terminate(self.proc, timeout)
        self.log.close()
        return self.proc.returncode


def attach_request(**over) -> dict:
    message = {
        "op": "attach",
        "preset": "jazz-trio-bossa",
        "mode": "metronome",
        "seed": 0,
        "adapter": "",
        "rate": 48000,
        "block": 256,
        "name": "test",
    }
    message.update(over)
    return message


class Client:
    """One attached connection, as a plugin instance holds it (close = detach)."""

    def __init__(self, path: Path, **over):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30.0)
        self.sock.connect(str(path))
        self.sock.sendall(encode(attach_request(**over)))
        self.reader = LineReader(self.sock)
        self.reply = json.loads(self.reader.line())

    def next_line(self) -> dict | None:
        line = self.reader.line()
        return None if line is None else json.loads(line)

    def close(self) -> None:
        self.sock.close()
