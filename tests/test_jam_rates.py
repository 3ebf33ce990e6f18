"""`jamstream jam` on servers that are not 48 kHz / 256 frames.

A module of its own so no client of another test's server is open in this process
meanwhile (libjack clients of two servers in one process crashed on shutdown here).
"""

from __future__ import annotations

import numpy as np
import pytest
from jackutil import Jackd, Jam, click_onsets, onset_errors
from test_jam import PRESET, play_from, record

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("rate,period", [(44100, 1024), (96000, 64)])
def test_other_rates_and_periods(tmp_path, rate, period):
    """Not 48 kHz: the worker resamples with a StreamResampler; beats still land."""
    from bridge.live.host_sim import HostSim

    jackd = Jackd(rate=rate, period=period)
    jam = Jam(jackd.name, ["--preset", PRESET, "--metronome"], tmp_path)
    host = None
    try:
        jam.wait_for(lambda s: s.get("ready"), 60, "the worker")
        host = HostSim(server=jackd.name, bpm=120, record_seconds=6)
        host.connect_from()
        play_from(host, 0)
        audio, frames, rolling = record(host, 3.5, host.client.transport_start)
        timeline = host.on_timeline(audio, frames, rolling, int(3.3 * rate))
        beats = host.beat_frames(int(0.2 * rate), int(3.2 * rate))
        err = onset_errors(click_onsets(timeline[0], min_gap=rate // 10), beats, rate)
        assert len(err) == len(beats) and np.max(np.abs(err)) <= 0.020, err
        s = jam.status()
        assert s["sample_rate"] == rate and s["period"] == period and s["underruns"] == 0
    finally:
        if host is not None:
            host.close()
        assert jam.stop() == 0
        jackd.stop()


def test_live_input_ports_and_slot(tmp_path):
    """--input: in_L/in_R exist and a 'live' slot rides its CC like any other."""

    import jack

    from bridge.live.host_sim import HostSim

    jackd = Jackd()
    jam = Jam(jackd.name, ["--preset", PRESET, "--metronome", "--input", "--input-cc", "22"], tmp_path)
    host = None
    try:
        jam.wait_for(lambda s: s.get("ready"), 60, "the worker")
        host = HostSim(server=jackd.name, bpm=120, record_seconds=4)
        host.connect_from()
        names = [p.name for p in host.client.get_ports("jamstream:")]
        assert {"jamstream:in_L", "jamstream:in_R", "jamstream:out_L", "jamstream:midi_in"} <= set(names)
        play_from(host, 0)
        host.client.transport_start()
        host.send(bytes([0xB0, 22, 127]))
        s = jam.wait_for(lambda s: s.get("weights", {}).get("live", 0) > 0.9, 15, "the live slot's weight")
        assert set(s["weights"]) == {"A", "B", "live"}
        playback = host.client.get_port_by_name("jamstream:midi_in")
        assert isinstance(playback, jack.MidiPort)
    finally:
        if host is not None:
            host.close()
        assert jam.stop() == 0
        jackd.stop()
