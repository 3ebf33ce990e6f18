"""The one way jamstream writes a file: whole or not at all.

Every file a run leaves behind (checkpoints, adapters, audio, caches, manifests, reports)
is written to a temp file beside its final name, flushed to disk, then renamed over it.
A rename within one folder is atomic, so a reader - or the next run after a crash, a
kill or a full disk - sees the old file or the new one, never half of one; and the temp
file is removed on any error, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

FILE_MODE = 0o644  # mkstemp makes 0600; what we write (shipped weights included) is for everyone to read


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in `path`'s folder (made if missing) to write the file to; on a
    clean exit it is fsynced and renamed to `path`, on an error it is removed and the error
    goes on. `suffix` ends the temp name, for writers that pick the format by extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".partial{suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to `path`, atomically. Serialized in memory first, then written as plain
    bytes: torch's zip writer meets a full disk with a RuntimeError ("unexpected pos ...")
    where a write of bytes raises OSError(ENOSPC), which the CLI turns into one line."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON for people: indented, keys sorted, a final newline."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
