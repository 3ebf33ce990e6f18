"""The plugin when its generator is missing, refuses, or dies: silence, a line in the
host's log, recovery when the daemon returns - and never a host crash (jalv lives on).

jalv runs the plugin on a private dummy JACK server with a HostSim client as the DAW
(timebase master, recorder); the plugin plays the metronome so nothing loads weights."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.clicks import click_onsets
from support.jackd import Jackd
from support.plugin import Jalv, need, plugin_env
from support.rig import wait_until
from support.serve import Serve

from bridge.serve.protocol import request

pytestmark = pytest.mark.slow

PRESET = "jazz-trio-bossa"
JAMSTREAM = str(Path(sys.executable).parent / "jamstream")


class Host:
    """jackd + HostSim (timebase master at 120 bpm, recording) + jalv with the plugin."""

    def __init__(self, tmp: Path, state_dir: Path | None = None, **env: str):
        need("jalv")
        self.tmp = tmp
        self.socket = tmp / "serve.sock"
        self.jackd = Jackd(rate=48000, period=256)
        self.host = self.jalv = None
        try:
            from bridge.live.host_sim import HostSim

            self.host = HostSim(server=self.jackd.name, record_seconds=30)
            defaults = {"JAMSTREAM_MODE": "metronome", "JAMSTREAM_PRESET": PRESET}
            env = plugin_env(self.jackd.name, self.socket, **{**defaults, **env})
            self.jalv = Jalv(tmp, "jsplug", env, state_dir=state_dir)
            wait_until(self._connect, 20, "jalv's ports to connect")
        except BaseException:
            self.close()
            raise

    def _connect(self) -> bool:
        """Connect jalv's outputs to the recorder; False until jalv's client is active."""
        import jack

        client = self.host.client
        try:
            for src, dst in (("jsplug:out_l", self.host.in_l), ("jsplug:out_r", self.host.in_r)):
                if dst.name not in [p.name for p in client.get_all_connections(src)]:
                    client.connect(src, dst)
            return True
        except jack.JackError:
            return False

    def record(self, seconds: float, during=None) -> np.ndarray:
        self.host.start_recording()
        if during:
            during()
        time.sleep(seconds)
        audio, _, _ = self.host.stop_recording()
        return audio

    def alive(self) -> bool:
        return self.jalv.proc.poll() is None

    def close(self) -> None:
        for part in (self.jalv, self.host):
            if part is not None:
                part.close()
        self.jackd.stop()


def stop_daemon_at(socket: Path) -> None:
    """SIGTERM whatever daemon serves `socket` (one the plugin started itself)."""
    try:
        pid = request(socket, {"op": "status"}, timeout=2)["pid"]
    except (OSError, ValueError):
        return
    import os

    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not socket.exists(), 20, "the plugin-started daemon to stop")


def test_the_plugin_starts_the_daemon_when_none_runs(tmp_path):
    rig = Host(tmp_path, JAMSTREAM_BIN=JAMSTREAM)
    try:
        text = rig.jalv.wait_log(r"ready: latency \d+ frames", 90)
        assert "started the generator daemon" in text, text
        status = request(rig.socket, {"op": "status"})
        assert [i["mode"] for i in status["instances"]] == ["metronome"], status
        rig.host.client.transport_start()
        audio = rig.record(2.0)
        assert len(click_onsets(audio[0])) >= 2
    finally:
        rig.close()
        stop_daemon_at(tmp_path / "serve.sock")


def test_no_daemon_program_is_silence_and_one_line_then_a_daemon_is_found(tmp_path):
    rig = Host(tmp_path, JAMSTREAM_BIN=str(tmp_path / "no-such-jamstream"))
    serve = None
    try:
        text = rig.jalv.wait_log("cannot start the generator daemon", 20)
        assert "no-such-jamstream" in text
        rig.host.client.transport_start()
        assert np.abs(rig.record(1.0)).max() == 0.0 and rig.alive()
        serve = Serve(tmp_path)  # the musician starts one: the plugin finds it
        rig.jalv.wait_log(r"ready: latency \d+ frames", 60)
        audio = rig.record(2.0)
        assert len(click_onsets(audio[0])) >= 2
    finally:
        rig.close()
        if serve is not None:
            serve.stop()


def test_a_preset_that_fails_to_load_is_silence_and_its_reason_in_the_log(tmp_path):
    serve = Serve(tmp_path)
    rig = Host(tmp_path, JAMSTREAM_PRESET="no-such-preset")
    try:
        text = rig.jalv.wait_log("no-such-preset", 30)
        assert "no preset file or shipped preset named 'no-such-preset'" in text, text
        rig.host.client.transport_start()
        assert np.abs(rig.record(1.0)).max() == 0.0 and rig.alive()
        assert serve.status()["instances"] == []
    finally:
        rig.close()
        serve.stop()


def test_a_daemon_killed_mid_play_is_silence_a_log_line_and_recovery(tmp_path):
    serve = Serve(tmp_path)
    rig = Host(tmp_path, JAMSTREAM_BIN=JAMSTREAM)  # so the plugin may start the next one itself
    try:
        rig.jalv.wait_log(r"ready: latency \d+ frames", 60)
        rig.host.client.transport_start()
        time.sleep(1.0)
        audio = rig.record(12.0, lambda: (time.sleep(1.0), serve.proc.send_signal(signal.SIGKILL)))
        text = rig.jalv.wait_log("reattached", 30)
        assert "generator daemon went away" in text, text
        assert rig.alive()
        rate = rig.host.rate
        onsets = click_onsets(audio[0])
        gaps = np.diff(onsets) / rate
        assert onsets[0] < 1.1 * rate and gaps.max() > 1.0, onsets / rate  # it played, then stopped
        gap_at = int(np.argmax(gaps))
        silent = audio[:, onsets[gap_at] + 4800 : onsets[gap_at + 1] - 4800]
        assert np.abs(silent).max() == 0.0  # silence, not a loop of stale ring audio
        assert len(onsets) - gap_at - 1 >= 2, "no clicks after the daemon came back"
        status = json.loads(json.dumps(request(rig.socket, {"op": "status"})))
        assert status["pid"] != serve.proc.pid and len(status["instances"]) == 1
    finally:
        rig.close()
        serve.log.close()
        stop_daemon_at(tmp_path / "serve.sock")


STATE_TTL = """@prefix atom: <http://lv2plug.in/ns/ext/atom#> .
@prefix lv2: <http://lv2plug.in/ns/lv2core#> .
@prefix pset: <http://lv2plug.in/ns/ext/presets#> .
@prefix state: <http://lv2plug.in/ns/ext/state#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

<>
    a pset:Preset ;
    lv2:appliesTo <urn:jamstream:lv2:instrument> ;
    state:state [
        <urn:jamstream:lv2:preset> "techno-dub" ;
        <urn:jamstream:lv2:mode> "metronome" ;
        <urn:jamstream:lv2:seed> "7"^^xsd:int ;
        <urn:jamstream:lv2:adapter> ""
    ] .
"""


def test_a_saved_state_restores_preset_mode_and_seed(tmp_path):
    """What a host's session recall does: the state jalv loads (-l) is what the plugin attaches with."""
    serve = Serve(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.ttl").write_text(STATE_TTL)
    rig = Host(tmp_path, state_dir=state, JAMSTREAM_PRESET=PRESET, JAMSTREAM_MODE="model")  # defaults it overrides
    try:
        rig.jalv.wait_log(r"ready: latency \d+ frames", 60)
        (inst,) = serve.status()["instances"]
        assert (inst["preset"], inst["mode"], inst["seed"]) == ("Techno <-> dub", "metronome", 7), inst
    finally:
        rig.close()
        serve.stop()
