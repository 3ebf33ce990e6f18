"""`jamstream jam --clock link` against a private dummy JACK server, the test itself a Link peer.

The test process joins an Ableton Link session (aalink, quantum 4) and `jam --metronome
--clock link` joins it from its generator process; a HostSim records what jamstream
plays, by JACK frame time. Where the beats should be comes from the test's own peer: its
Link beat read between two readings of JACK's clock (libjack's `jack_get_time`, through
the host's client), i.e. not through the bridge's CLOCK_MONOTONIC reference. Then the
test peer changes the session tempo and the clicks must follow within a bar.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from support.clicks import click_onsets, onset_errors
from support.jackd import need_jackd
from support.rig import METRONOME_PRESET as PRESET
from support.rig import Rig

pytestmark = [pytest.mark.slow, pytest.mark.network]  # Link multicasts: only in a private namespace
QUANTUM = 4


class LinkRig(Rig):
    """The rig with `--clock link`, the host recording jamstream's audio by JACK frame time, the
    test's own Link peer, and a reader of JACK's clock on the host's client."""

    def __init__(self, tmp, peer):
        from bridge.live.jack_time import JackClock

        args = ["--preset", PRESET, "--metronome", "--clock", "link"]
        # audio only: no MIDI back to jamstream, so the graph has no cycle and no period of delay
        super().__init__(tmp, args, record_seconds=30, timebase=False, midi_to_jam=False)
        self.peer = peer
        self.jack_clock = JackClock(self.host.client)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    need_jackd()
    from aalink import Link

    loop = asyncio.new_event_loop()

    async def make():
        return Link(100.0)

    peer = loop.run_until_complete(make())
    peer.quantum = QUANTUM
    peer.enabled = True
    try:
        with LinkRig(tmp_path_factory.mktemp("jam-link"), peer) as rig:
            jam = rig.jam
            jam.wait_for(
                lambda s: s.get("clock") == "link" and (s.get("link_peers") or 0) >= 1, 20, "joining the Link session"
            )
            peer.tempo = 100.0  # whichever peer's tempo the session kept when they met, this is the session's now
            jam.wait_for(
                lambda s: s.get("bpm") == pytest.approx(100.0, abs=0.01) and s.get("chunks", 0) > 1, 20, "100 bpm"
            )
            # Peers' clock sync converges over the first seconds after they meet, and the bridge
            # re-places its timeline when Link's beat moves past its tolerance (seen: 13 ms, once,
            # mid-take). So: wait until a whole queue of audio has played with no re-placement
            # since the bridge's reading sat on the test peer's beat line - chunks made before
            # that must have played (counted in periods, which a re-placement cannot fool).
            for _ in range(5):
                agreed = jam.wait_for(
                    lambda s: (
                        s.get("link_last") is not None and abs(link_apart(s, link_now(rig), rig.host.rate)) < 0.0005
                    ),
                    20,
                    "the bridge's Link reading on the test peer's beat line",
                )
                queued = max(end for _, end, *_ in agreed["recent_chunks"]) - agreed["song_frame"]
                played = jam.wait_for(
                    lambda s: (s["periods"] - agreed["periods"]) * s["period"] >= queued,
                    20,
                    "the chunks made before the session settled played",
                )
                if played["link_placements"] == agreed["link_placements"]:
                    break
            yield rig
    finally:
        peer.enabled = False
        loop.close()


def link_now(rig) -> tuple[float, float, float]:
    """(beat, tempo, JACK frame time of that beat reading) from the test's own peer."""
    jc, peer = rig.jack_clock, rig.peer
    best = None
    for _ in range(5):
        u0 = jc.usecs()
        beat = peer.beat
        u1 = jc.usecs()
        if best is None or u1 - u0 < best[0]:
            best = (u1 - u0, beat, (u0 + u1) / 2)
    frame = rig.host.client.last_frame_time
    at = frame + (best[2] - jc.frame_usecs(frame)) * rig.host.rate / 1e6
    return best[1], float(peer.tempo), at


def link_apart(status: dict, reading: tuple[float, float, float], rate: int) -> float:
    """Seconds between the bridge's latest Link reading (put on JACK frames through its
    CLOCK_MONOTONIC reference) and the test peer's `reading` (link_now, through JACK's
    clock): the same beat line gives ~0 (beat numbers may differ by whole bars)."""
    beat, tempo, frame = status["link_last"]
    apart = (beat - reading[0]) * 60.0 / tempo - (frame - reading[2]) / rate
    bar = QUANTUM * 60.0 / tempo
    return (apart + bar / 2) % bar - bar / 2


def link_beats(
    reading: tuple[float, float, float], rate: int, first: float, last: float
) -> tuple[np.ndarray, np.ndarray]:
    """JACK frame times and Link beat numbers of the whole beats between frames first..last
    on the line through `reading` (one tempo)."""
    beat, tempo, at = reading
    fpb = 60.0 / tempo * rate
    k = np.arange(np.ceil(beat + (first - at) / fpb), np.floor(beat + (last - at) / fpb) + 1)
    return at + (k - beat) * fpb, k


def check_clicks(rig, audio, beats_frames, beat_numbers, label: str, at_least: int = 4) -> np.ndarray:
    """Every Link beat has a click within 20 ms (the MIDI-clock test's bound), accented on
    Link's bar lines (beat = 0 mod quantum); returns the errors in seconds."""
    host = rig.host
    rate = host.rate
    timeline, holes = host.on_jack_time(audio)
    pos = beats_frames - host.rec_time[0]
    keep = [
        not holes[max(0, int(p) - rate // 50) : int(p) + rate // 50].any() for p in pos
    ]  # a skipped cycle is an xrun
    pos, beat_numbers = pos[np.asarray(keep, bool)], beat_numbers[np.asarray(keep, bool)]
    assert len(pos) >= at_least, (label, pos)
    onsets = click_onsets(timeline[0])
    err = onset_errors(onsets, pos, rate)
    assert len(err) == len(pos) and np.max(np.abs(err)) <= 0.020, (
        label,
        err,
        pos,
        onsets,
        rig.jam.status(),
        rig.jam.log_path,
    )
    print(
        f"{label}: {len(err)} beats, error median {np.median(err) * 1e3:+.2f} ms, max |err| "
        f"{np.max(np.abs(err)) * 1e3:.2f} ms"
    )
    return err


def test_plays_on_the_link_sessions_beats_and_bars(rig):
    host, jam = rig.host, rig.jam
    rate = host.rate
    offset = jam.status()["link_offset"]
    host.start_recording()
    time.sleep(5.0)
    reading = link_now(rig)
    audio, _, rolling = host.stop_recording()
    s = jam.status()
    apart = link_apart(s, reading, rate)
    print(f"bridge's Link reading vs the test peer's: {apart * 1e3:+.3f} ms")
    assert abs(apart) < 0.001, apart
    assert s["clock"] == "link" and s["link_peers"] >= 1 and s["bpm"] == pytest.approx(100.0, abs=0.01), s
    assert not rolling.any()  # JACK's transport never moved: Link alone
    end = host.rec_time[0] + audio.shape[1]
    frames, numbers = link_beats(reading, rate, host.rec_time[0] + 0.2 * rate, end - rate // 10)
    check_clicks(rig, audio, frames, numbers, "link 100 bpm")
    # The engine's 1-bar chunks end on Link's bar lines (frame-rounded: within half a codec
    # frame, 20 ms). The chunk log is in song frames; song frame = JACK frame time + offset.
    assert s["link_offset"] == offset  # one timeline all along: no re-placement while the session was steady
    ends = np.array([end + 1920 for _, end, _, _, last in s["recent_chunks"] if last], np.float64) - offset
    ends = ends[(ends > host.rec_time[0]) & (ends < end)]
    assert len(ends) >= 1, s["recent_chunks"]
    beats_at = reading[0] + (ends - reading[2]) / rate * reading[1] / 60.0
    off_bar = (beats_at + QUANTUM / 2) % QUANTUM - QUANTUM / 2  # Link beats from the nearest bar line
    print(f"chunk ends vs Link bar lines (ms): {np.round(off_bar * 60.0 / reading[1] * 1e3, 2).tolist()}")
    assert np.all(np.abs(off_bar) * 60.0 / reading[1] <= 0.0205), off_bar


def test_a_peer_tempo_change_moves_the_grid_within_a_bar(rig):
    host, jam = rig.host, rig.jam
    rate = host.rate
    host.start_recording()
    time.sleep(2.5)
    before = link_now(rig)
    rig.peer.tempo = 80.0  # Link keeps the beat continuous at the change
    after = link_now(rig)
    time.sleep(6.5)
    audio, _, _ = host.stop_recording()
    assert jam.status()["bpm"] == pytest.approx(80.0, abs=0.01)
    change = after[2]
    start = host.rec_time[0]
    frames, numbers = link_beats(before, rate, start + 0.2 * rate, before[2])
    check_clicks(rig, audio, frames, numbers, "before the change", at_least=3)
    one_bar = QUANTUM * 60.0 / 80.0 * rate
    frames, numbers = link_beats(after, rate, change + one_bar, start + audio.shape[1] - rate // 10)
    check_clicks(rig, audio, frames, numbers, "one bar after 100 -> 80 bpm")
