"""A full disk for the disk-full tests: a small tmpfs in a private mount namespace (root,
as CI is); without one the test skips."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JAM = [sys.executable, "-m", "bridge.cli"]


def in_small_disk(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace where $DISK is a 3 MB tmpfs."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare -m, as root) for a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    jam = " ".join(JAM)
    body = f"set -u; DISK={disk}; JAM='{jam}'; mount -t tmpfs -o size=3m tmpfs $DISK || exit 77; {script}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", body], cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode == 77:
        pytest.skip("cannot mount a tmpfs here")
    return done
