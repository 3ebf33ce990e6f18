"""The rig every JACK test plays on: a private dummy jackd, `jamstream jam` on it, and a
HostSim (bridge/live/host_sim.py) as the DAW - started in that order, closed in reverse.

`Rig` is the one implementation; `rig_fixture` makes a module-scoped pytest fixture of it,
and `play_from` / `record` are the transport moves the tests share.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from support.jackd import Jackd, need_jackd
from support.jam import STATUS_LAG_S, Jam

# The metronome tests' preset: slots A (CC20) and B (CC21), 7-bit, channel 1; 4/4, 1-bar chunks, lookahead 400 ms
METRONOME_PRESET = "jazz-trio-bossa"


class Rig:
    """jackd + `jamstream jam JAM_ARGS` + a HostSim connected to it, once the jam is ready.

    `midi_to_jam=False` connects only jamstream's audio to the host (no MIDI back), so the
    graph has no cycle and no period of delay (the Link test). `close()` closes the host
    before its server stops: libjack crashes otherwise."""

    def __init__(
        self,
        tmp: Path,
        jam_args: list[str],
        *,
        rate: int = 48000,
        period: int = 256,
        bpm: float = 120.0,
        record_seconds: float = 40.0,
        timebase: bool = True,
        midi_to_jam: bool = True,
        ready_timeout: float = 60.0,
    ):
        need_jackd()
        self.tmp = tmp
        self.bpm = bpm
        self.host = None
        self.jackd = Jackd(rate=rate, period=period)
        self.jam = Jam(self.jackd.name, jam_args, tmp)
        try:
            self.jam.wait_for(lambda s: s.get("ready"), ready_timeout, "the worker")
            self.host = self.new_host(record_seconds, timebase=timebase, midi_to_jam=midi_to_jam)
        except BaseException:
            self.close()
            raise

    def new_host(self, record_seconds: float, timebase: bool = True, midi_to_jam: bool = True):
        """A HostSim on this rig's server, connected to jamstream (after a server restart too)."""
        from bridge.live.host_sim import HostSim

        host = HostSim(server=self.jackd.name, bpm=self.bpm, record_seconds=record_seconds, timebase=timebase)
        if midi_to_jam:
            host.connect_from()
        else:
            host.client.connect("jamstream:out_L", host.in_l)
            host.client.connect("jamstream:out_R", host.in_r)
        return host

    def reset_host(self) -> None:
        """The host back to how the module's tests expect to find it: one tempo from frame 0,
        transport stopped, no MIDI clock, nothing queued, not recording - so a test that
        failed half-way does not leave the next one a different song."""
        host = self.host
        if host is None:
            return
        host.recording = False
        host.clock_bpm = None
        with host._ev_lock:
            host.events = []
        host.set_tempo(self.bpm, 0)
        host.client.transport_stop()

    def close(self) -> int:
        """Close host, jam and server (in that order); the jam's exit code."""
        if self.host is not None:
            self.host.close()
            self.host = None
        code = self.jam.stop()
        self.jackd.stop()
        return code

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rig_fixture(jam_args: list[str], scope: str = "module", **rig_kwargs):
    """A pytest fixture (default: one rig per module) yielding a started `Rig`."""

    @pytest.fixture(scope=scope)
    def rig(tmp_path_factory):
        with Rig(tmp_path_factory.mktemp("jam"), jam_args, **rig_kwargs) as started:
            yield started

    return rig


def wait_until(pred, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def play_from(host, frame: int = 0, jam=None, timeout: float = 10.0) -> None:
    """Stop and locate the transport, and return once JACK reports it stopped at `frame`
    and two more cycles have run - every client's process callback has seen the locate.

    With `jam`, also wait for a status from after the locate saying it is stopped there at
    the host's tempo: only then is the start's first chunk made on the host's tempo map.
    (jack2 shows the cycle after a locate without BBT; on that one reading the worker takes
    the preset's tempo - or a stale MIDI-clock one after a reconnect - and prepares the start
    at it, and a start before it has seen the BBT again plays that chunk: issue 14's report.)"""
    jack = host.jack
    host.client.transport_stop()
    host.client.transport_frame = frame

    def stopped_there() -> bool:
        state, pos = host.client.transport_query()
        return state == jack.STOPPED and pos["frame"] == frame

    wait_until(stopped_there, timeout, f"the transport stopped at frame {frame}")
    seen = host.client.frame_time + 2 * host.client.blocksize
    wait_until(lambda: host.client.frame_time >= seen, timeout, "two cycles after the locate")
    if jam is not None:
        bpm = host.bpm_at(frame)
        jam.wait_for(
            lambda s: not s["rolling"] and s["song_frame"] == frame and abs((s["bpm"] or 0) - bpm) < 1e-3 * bpm,
            timeout,
            f"the jam stopped at frame {frame} at {bpm} bpm",
            written_after=time.time() + STATUS_LAG_S,
        )


def record(host, seconds: float, during=None):
    """Record `seconds` of jamstream's output, running `during()` (if given) right after the
    recording starts; (audio, transport frame per period, rolling per period)."""
    host.start_recording()
    if during:
        during()
    time.sleep(seconds)
    return host.stop_recording()


def record_until(host, song_frame: int, timeout: float, during=None):
    """Record jamstream's output until the rolling transport has played past `song_frame`
    (however long the start waited in jamstream's slow-sync pre-roll), running `during()`
    right after the recording starts; what `record` returns."""
    jack = host.jack
    host.start_recording()
    if during:
        during()

    def played_past() -> bool:
        state, pos = host.client.transport_query()
        return state == jack.ROLLING and pos["frame"] >= song_frame + host.client.blocksize

    try:
        wait_until(played_past, timeout, f"the transport past song frame {song_frame}", poll=0.01)
    finally:
        audio = host.stop_recording()
    return audio


def pre_roll_seconds(host, rolling) -> float:
    """How long the recording waited before the transport rolled (slow-sync pre-roll)."""
    first = np.flatnonzero(rolling)
    periods = int(first[0]) if first.size else len(rolling)
    return periods * host.client.blocksize / host.rate


def assert_silent_after_stop(audio: np.ndarray, rolling: np.ndarray, period: int) -> None:
    """What was recorded across a stop: sound before it, and exact silence from one period
    after the stopped period on (the fade-out takes at most that)."""
    stopped = np.flatnonzero(rolling == 0)
    assert stopped.size, "the transport never stopped"
    p = stopped[0]
    assert np.abs(audio[:, : p * period]).max() > 0.05  # it was playing
    assert np.abs(audio[:, (p + 1) * period :]).max() == 0.0
