"""`jamstream jam` on servers that are not 48 kHz / 256 frames.

A module of its own so no client of another test's server is open in this process
meanwhile (libjack clients of two servers in one process crashed on shutdown here).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.clicks import click_onsets, describe, onset_errors
from support.rig import METRONOME_PRESET as PRESET
from support.rig import Rig, play_from, pre_roll_seconds, record_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("rate,period", [(44100, 1024), (96000, 64)])
def test_other_rates_and_periods(tmp_path, rate, period):
    """Not 48 kHz: the worker resamples with a StreamResampler; beats still land."""
    rig = Rig(tmp_path, ["--preset", PRESET, "--metronome"], rate=rate, period=period, record_seconds=6)
    host, jam = rig.host, rig.jam
    try:
        play_from(host, 0, jam)
        audio, frames, rolling = record_until(host, int(3.3 * rate), 5.5, host.client.transport_start)
        print(f"{rate} Hz: the start waited {pre_roll_seconds(host, rolling):.2f} s in the pre-roll")
        timeline = host.on_timeline(audio, frames, rolling, int(3.3 * rate))
        beats = host.beat_frames(int(0.2 * rate), int(3.2 * rate))
        err = onset_errors(click_onsets(timeline[0], min_gap=rate // 10), beats, rate)
        describe(f"{rate} Hz, period {period}", err)
        assert len(err) == len(beats) and np.max(np.abs(err)) <= 0.020, err
        s = jam.status()
        assert s["sample_rate"] == rate and s["period"] == period and s["underruns"] == 0
    finally:
        assert rig.close() == 0


def test_live_input_ports_and_slot(tmp_path):
    """--input: in_L/in_R exist and a 'live' slot rides its CC like any other."""

    import jack

    rig = Rig(tmp_path, ["--preset", PRESET, "--metronome", "--input", "--input-cc", "22"], record_seconds=4)
    host, jam = rig.host, rig.jam
    try:
        names = [p.name for p in host.client.get_ports("jamstream:")]
        assert {"jamstream:in_L", "jamstream:in_R", "jamstream:out_L", "jamstream:midi_in"} <= set(names)
        play_from(host, 0, jam)
        host.client.transport_start()
        host.send(bytes([0xB0, 22, 127]))
        s = jam.wait_for(lambda s: s.get("weights", {}).get("live", 0) > 0.9, 15, "the live slot's weight")
        assert set(s["weights"]) == {"A", "B", "live"}
        playback = host.client.get_port_by_name("jamstream:midi_in")
        assert isinstance(playback, jack.MidiPort)
    finally:
        assert rig.close() == 0
