"""`jamstream jam` against a private dummy JACK server, with a test client as the DAW.

The bridge runs with `--metronome` (clicks on the beats through the same engine, ring
and callback as the model), so these tests measure the bridge itself - transport
follow, tempo, MIDI clock, fades, reconnect - in seconds and without weights.
tests/test_jam_model.py plays the real model the same way.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from netns import network_sockets, process_tree
from support.clicks import click_onsets, describe, onset_errors
from support.rig import METRONOME_PRESET as PRESET
from support.rig import assert_silent_after_stop, play_from, pre_roll_seconds, record, record_until, rig_fixture
from support.takes import retake_when_jack_stalled

from bridge.jam.time.followers import PHASE_TOLERANCE_S

pytestmark = pytest.mark.slow

rig = rig_fixture(["--preset", PRESET, "--metronome", "--reconnect"], record_seconds=40)

# How far a click may sit from its beat. Measured: over 11 runs of this module on the loaded
# 2-core test machine the clicks sat 0.02-0.38 ms from the host's beats (at most 18 samples:
# where click_onsets reads a click's rise). The clock follower keeps its tempo map while
# a host report is within PHASE_TOLERANCE_S (2 ms) of it, so that much is allowed by design;
# 1 ms more is margin for the detector. That is still under one JACK period (5.3 ms), the
# smallest misplacement a bug in following the host makes (a period early or late).
BEAT_BOUND_S = PHASE_TOLERANCE_S + 0.001


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def test_plays_on_the_host_beats_and_follows_cc(rig):
    host, jam = rig.host, rig.jam
    rate = host.rate
    play_from(host, 0, jam)
    before = jam.status()["underruns"]

    def go():
        host.client.transport_start()
        host.schedule_cc_sweep(1, 21, 1.5, 3.0, 0, 127)
        host.schedule_cc_sweep(1, 20, 1.5, 3.0, 127, 0)

    audio, frames, rolling = record(host, 9.0, go)
    timeline = host.on_timeline(audio, frames, rolling, int(8.5 * rate))
    status = jam.status()
    assert status["clock"] == "jack-bbt" and status["bpm"] == pytest.approx(120.0)
    assert status["underruns"] == before, status
    beats = host.beat_frames(int(0.1 * rate), int(8.4 * rate))
    onsets = click_onsets(timeline[0])
    err = onset_errors(onsets, beats, rate)
    describe("jack-bbt 120 bpm", err)
    assert len(err) == len(beats), f"{len(err)} of {len(beats)} beats had a click: non-silent after the pre-roll"
    assert abs(np.median(err)) <= BEAT_BOUND_S and np.max(np.abs(err)) <= BEAT_BOUND_S, err
    # style follows the CC: the metronome's pitch is the A/B mix (A 500 Hz ... B 2000 Hz)
    first = dominant_hz(timeline[0, onsets[1] : onsets[1] + 480], rate)
    last = dominant_hz(timeline[0, onsets[-1] : onsets[-1] + 480], rate)
    assert first < 700 and last > 1700, (first, last)
    assert status["weights"]["B"] > 0.9 and status["weights"]["A"] < 0.1, status["weights"]
    # the ports report the lookahead the worker measured (the preset's is "auto"), + one period
    assert status["lookahead_auto"] and 50 <= status["lookahead_ms"] < 400, status
    assert status["latency_frames"] == round(status["lookahead_ms"] / 1000 * rate) + 256


def test_jam_without_link_opens_no_network_socket(rig):
    tree = process_tree(rig.jam.proc.pid)
    assert len(tree) >= 2, tree  # the bridge and its generator process
    assert {pid: network_sockets(pid) for pid in tree} == {pid: [] for pid in tree}


def test_garbage_midi_is_ignored_and_counted(rig):
    host, jam = rig.host, rig.jam
    host.client.transport_start()  # CCs are applied chunk by chunk
    before = jam.status()["cc"]["malformed"]
    host.send(b"\x14\x15\x16")  # data bytes without a status
    host.send(b"\xb0\x14")  # a truncated CC
    s = jam.wait_for(lambda s: s["cc"]["malformed"] >= before + 2, 10, "malformed MIDI counted")
    assert s["rolling"]


def test_stop_is_silent_one_period_after_the_fade(rig):
    host = rig.host
    audio, frames, rolling = record(host, 1.5, lambda: (time.sleep(1.0), host.client.transport_stop()))
    assert_silent_after_stop(audio, rolling, host.client.blocksize)


def test_locate_realigns(rig):
    host, jam = rig.host, rig.jam
    rate = host.rate
    starts = jam.status()["starts"]
    play_from(host, 0, jam)
    host.client.transport_start()
    # the locate below must find the jam playing: it follows this start and has audio under the playhead
    playing = jam.wait_for(
        lambda s: s["starts"] > starts and s["rolling"] and s["buffer_fill"] > 0, 10, "playing from the start"
    )
    target = host.frame_at_bar(9) + rate // 3  # mid-beat, not on the grid
    locates = playing["locates"]
    audio, frames, rolling = record(host, 4.0, lambda: setattr(host.client, "transport_frame", target))
    assert jam.status()["locates"] > locates
    end = target + int(3.5 * rate)
    timeline = host.on_timeline(audio, frames, rolling, end)
    onsets = click_onsets(timeline[0, target:]) + target
    beats = host.beat_frames(target + int(0.8 * rate), end - rate // 10)
    err = onset_errors(onsets, beats, rate)
    describe("after the locate", err)
    assert len(err) == len(beats) and np.max(np.abs(err)) <= BEAT_BOUND_S, (err, beats)


def test_tempo_change_puts_the_clicks_on_the_new_grid_within_half_a_second(rig):
    """Mid-chunk: the next piece reads the new tempo (and the queued ones are made again when
    there is time; tests/test_jam_pieces.py checks that with a longer lookahead)."""
    host, jam = rig.host, rig.jam
    rate = host.rate
    try:
        play_from(host, 0, jam)
        host.client.transport_start()
        time.sleep(1.0)
        change = int(host.frame_at_beats(9.0))  # bar 3 beat 2, 4.5 s in at 120 bpm: mid-chunk
        host.set_tempo(90.0, change)
        audio, frames, rolling = record(host, 9.5)
        end = int(frames[rolling.astype(bool)].max())
        timeline = host.on_timeline(audio, frames, rolling, end)
        s = jam.status()
        assert s["bpm"] == pytest.approx(90.0)
        beats = host.beat_frames(change + rate // 2, end - rate // 10)
        assert len(beats) >= 6
        onsets = click_onsets(timeline[0])
        err = onset_errors(onsets, beats, rate)
        describe("0.5 s after 120 -> 90 bpm", err)
        assert len(err) == len(beats) and np.max(np.abs(err)) <= BEAT_BOUND_S, (
            err,
            beats,
            onsets[onsets > change],
            jam.status(),
        )
    finally:
        rig.reset_host()  # back to one tempo, stopped, for the tests after (also when this one failed)


def midi_clock_take(rig, stall: bool) -> None:
    """MIDI clock alone at 100 bpm for ~5 s; with `stall`, the server is stopped (SIGSTOP)
    for 60 ms mid-take, so the ticks of the skipped cycle arrive late and bunched."""
    host, jam = rig.host, rig.jam
    rate = host.rate
    host.client.transport_stop()
    host.client.release_timebase()
    host.clock_bpm = 100.0
    try:
        time.sleep(0.5)
        host.midi_clock_start()

        def pause_server():
            time.sleep(2.2)
            if stall:
                rig.jackd.proc.send_signal(signal.SIGSTOP)
                time.sleep(0.06)
                rig.jackd.proc.send_signal(signal.SIGCONT)

        audio, frames, rolling = record(host, 2.8, pause_server)
        s = jam.status()
        assert s["clock"] == "midi" and s["bpm"] == pytest.approx(100.0, abs=0.5), s
        assert not rolling.any()  # JACK's transport never moved
        timeline, holes = host.on_jack_time(audio)  # a skipped cycle must not shift the beats
        start = host.clock_start_time - host.rec_time[0]  # timeline sample of the first tick = beat 1
        beats = start + np.arange(0, 8) * 60 / 100 * rate
        beats = beats[(beats > start + 0.9 * rate) & (beats < timeline.shape[1] - rate // 10)]
        near_hole = [holes[max(0, int(b) - rate // 50) : int(b) + rate // 50].any() for b in beats]
        beats = beats[
            ~np.asarray(near_hole, bool)
        ]  # a click lost in a skipped cycle is the server's xrun, counted elsewhere
        assert len(beats) >= 4, beats
        err = onset_errors(click_onsets(timeline[0]), beats, rate)
        describe(f"MIDI clock 100 bpm{', stalled server' if stall else ''}", err)
        # one period of the error is the test graph's cycle (host -> jamstream -> host): measured
        # +5.354 ms in every run = 256 frames + the click's 1-sample rise
        bound = host.client.blocksize / rate + BEAT_BOUND_S
        if stall:
            # Not tightened: across a stall JACK can drop a cycle's MIDI on the way to us (two
            # plain clients lose ~1 tick in 3 stalls), and the follower counts ticks, so a lost
            # tick puts the grid one tick (25 ms at 100 bpm) late for the rest of the take - seen
            # in a full-suite run as +5.4 ms before the stall, +30.4 ms after. A bridge bug
            # (issue 14's report); this bound, as it was, still fails on it.
            bound = 0.020
        assert len(err) == len(beats) and np.max(np.abs(err)) <= bound, (err, beats, jam.status(), rig.jam.log_path)
    finally:
        host.send(b"\xfc")  # stop
        host.clock_bpm = None
        jam.wait_for(lambda s: not s["rolling"], 5, "MIDI stop")
        host.client.set_timebase_callback(host._timebase)


@retake_when_jack_stalled()
def test_midi_clock_as_the_only_source(rig):
    midi_clock_take(rig, stall=False)


def test_midi_clock_as_the_only_source_even_through_a_stalled_server(rig):
    """Before the follower fitted medians, a stall (seen once in CI) bent the tempo and
    re-anchored the grid 40-74 ms off for the rest of the chunk. Run after the plain take,
    it also proves a restarted clock is placed by its new tick train alone."""
    midi_clock_take(rig, stall=True)


def test_sighup_and_program_change_reload_without_stopping(rig):
    host, jam = rig.host, rig.jam
    play_from(host, 0, jam)
    host.client.transport_start()
    jam.wait_for(lambda s: s["rolling"] and s["chunks"] > 0, 10, "rolling")
    before = jam.status()
    jam.proc.send_signal(signal.SIGHUP)
    jam.wait_for(lambda s: s["reloads"] >= before["reloads"] + 1, 10, "the SIGHUP reload")
    host.send(b"\xc0\x05")  # program change, channel 1
    reloaded = jam.wait_for(lambda s: s["reloads"] >= before["reloads"] + 2, 10, "the program-change reload")
    # over a chunk made after both reloads, played to its end: no underrun, no new stream
    made = jam.wait_for(lambda s: s["chunks"] > reloaded["chunks"], 10, "a chunk after the reloads")
    s = jam.wait_until_played(made["recent_chunks"][-1][1], 10, "that chunk played")
    assert s["underruns"] == before["underruns"] and s["streams"] == before["streams"], s
    assert s["chunks"] > before["chunks"] and s["error"] is None


def test_server_killed_and_restarted_reconnects(rig):
    rig.host.close()
    rig.host = None
    rig.jackd.kill()
    rig.jam.wait_for(lambda s: not s["connected"], 10, "the shutdown")
    rig.jackd.start()
    rig.jam.wait_for(lambda s: s["connected"] and s["reconnects"] >= 1, 20, "the reconnect")
    host = rig.host = rig.new_host(record_seconds=10)
    play_from(host, 0, rig.jam)
    # until the song has played to 2.8 s: the start may wait in the pre-roll for the first chunk
    audio, frames, rolling = record_until(host, int(2.8 * host.rate), 9.0, host.client.transport_start)
    print(f"after the reconnect: the start waited {pre_roll_seconds(host, rolling):.2f} s in the pre-roll")
    timeline = host.on_timeline(audio, frames, rolling, int(2.8 * host.rate))
    beats = host.beat_frames(int(0.5 * host.rate), int(2.7 * host.rate))
    err = onset_errors(click_onsets(timeline[0]), beats, host.rate)
    describe("after the reconnect", err)
    assert len(err) == len(beats) and np.max(np.abs(err)) <= BEAT_BOUND_S, err


def test_sigterm_exits_cleanly(rig):
    assert rig.jam.stop(signal.SIGTERM) == 0
    ports = [p.name for p in rig.host.client.get_ports("jamstream:")]
    assert ports == []
