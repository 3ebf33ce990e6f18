"""What a plugin instance and `jamstream serve` say to each other, and where.

One Unix stream socket per user (no network: nothing leaves the machine). A client sends
one JSON line and reads one back:

- `{"op": "attach", "preset", "mode", "seed", "adapter", "rate", "block", "name"}` ->
  `{"ok": true, "id", "shm", "size", "capacity", "midi_slots", "live_capacity", "layout"}`:
  the name and geometry of the instance's shared block (bridge/live/ring.py's layout,
  which bridge/lv2/jamstream.c mirrors), or `{"ok": false, "error": "one line"}`. The
  connection then stays open - closing it detaches the instance - and the daemon sends
  `{"log": text, "level": "note" | "error"}` lines for the host's log.
- `{"op": "status"}` -> the daemon's status (what `jamstream serve --status` prints).

Flat keys, and string values without escapes where the C side reads them, keep the
plugin's parser a few strstr calls.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

SOCKET_ENV = "JAMSTREAM_SOCKET"
ATTACH_KEYS = ("preset", "mode", "seed", "adapter", "rate", "block", "name")
MODES = ("model", "metronome")
MAX_LINE = 64 * 1024


def default_socket() -> Path:
    """$JAMSTREAM_SOCKET, else $XDG_RUNTIME_DIR/jamstream/serve.sock, else
    /tmp/jamstream-UID/serve.sock - the rule the plugin follows too."""
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "jamstream" / "serve.sock"
    return Path(f"/tmp/jamstream-{os.getuid()}") / "serve.sock"


def encode(message: dict) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


class LineReader:
    """Whole lines from a stream socket (None at EOF); a line over MAX_LINE is an error."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def line(self) -> str | None:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def request(path: Path, message: dict, timeout: float = 5.0) -> dict:
    """One request to a running daemon and its one-line answer (OSError when none runs)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(encode(message))
        line = LineReader(sock).line()
    if line is None:
        raise ConnectionError(f"the daemon at {path} closed the connection without answering")
    return json.loads(line)
