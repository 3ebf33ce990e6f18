"""A real Ableton Link session (aalink, the `link` extra the test install includes): our
LinkSession joins a peer in this process, follows its tempo, and stamps its readings with
the right CLOCK_MONOTONIC instant. And without aalink, `--clock link` is a one-line error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.live.link import LinkSession

REPO = Path(__file__).resolve().parent.parent


def new_peer(bpm: float, quantum: float = 4.0):
    """A second peer, the way any aalink user makes one (inside a running loop)."""
    from aalink import Link

    loop = asyncio.new_event_loop()

    async def make():
        return Link(bpm)

    link = loop.run_until_complete(make())
    link.quantum = quantum
    link.enabled = True
    return link, loop


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def peers():
    peer, loop = new_peer(100.0)
    ours = LinkSession(120.0, 4)
    try:
        assert wait_until(lambda: ours.link.num_peers >= 1 and peer.num_peers >= 1), "the two peers never met"
        yield ours, peer
    finally:
        ours.close()
        peer.enabled = False
        loop.close()


@pytest.mark.network
def test_joins_a_peer_and_follows_its_tempo(peers):
    ours, peer = peers
    peer.tempo = 93.0
    assert wait_until(lambda: abs(ours.sample().tempo - 93.0) < 1e-3), ours.sample()
    s = ours.sample()
    assert s.peers >= 1 and ours.quantum == 4.0
    # same bar phase at quantum 4 (both read now; 93 bpm = 1.55 beats/s, so 1 ms ~ 0.0016 beats)
    assert (s.beat - peer.beat + 2) % 4 - 2 == pytest.approx(0.0, abs=0.01)


@pytest.mark.network
def test_a_reading_is_stamped_with_its_monotonic_instant(peers):
    """The peer's beat read between two CLOCK_MONOTONIC readings, moved at the session
    tempo to our reading's stamp, is our beat: the stamps put readings on one clock."""
    ours, peer = peers
    for _ in range(5):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        b_peer = peer.beat
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        time.sleep(0.037)
        s = ours.sample()
        moved = b_peer + (s.mono_ns - (m0 + m1) / 2) / 1e9 * s.tempo / 60.0
        assert (s.beat - moved + 2) % 4 - 2 == pytest.approx(0.0, abs=0.5e-3 * s.tempo / 60.0)  # 0.5 ms


@pytest.mark.parametrize("flag", [["--clock", "link"], ["--link"]])
def test_link_without_aalink_is_a_one_line_error(flag):
    code = (
        "import sys; sys.modules['aalink'] = None; from bridge.cli import main; "
        f"sys.exit(main(['jam', '--preset', 'techno-dub', *{flag!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and f"{' '.join(flag)} needs Ableton Link support" in lines[0] and "jamstream[link]" in lines[0]
    ), r.stderr
