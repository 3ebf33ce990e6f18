"""The live bridge's parts without JACK: live clocks, the shared ring, resampling, metronome."""

from __future__ import annotations

import numpy as np
import pytest
from support.clicks import click_onsets

from bridge.jam.time.clock import ChunkLength, FixedClock
from bridge.jam.time.followers import LiveClock, MidiClockFollower, quarters_from_bbt
from bridge.jam.time.grid import chunk_grid
from bridge.live import ring as R
from bridge.live.metronome import MetronomeGenerator
from bridge.live.worker import RateWriter


def test_live_clock_matches_a_fixed_clock_when_the_host_keeps_one_tempo():
    live, fixed = LiveClock(126, (4, 4)), FixedClock(126, (4, 4))
    for s in (0.0, 0.7, 3.1):  # the host reports what a fixed clock would say
        p = fixed.position(s)
        assert not live.observe_bbt(s, p.bar, p.beat, p.tick, 1920, 4, 4, 126.0)
    t = np.linspace(0, 20, 500)
    np.testing.assert_allclose(live.timing(t), fixed.timing(t), atol=1e-4)
    assert live.next_boundary(3.0, "bar") == pytest.approx(fixed.next_boundary(3.0, "bar"))


def test_tempo_change_appends_a_segment_and_keeps_the_bars():
    live = LiveClock(120, (4, 4))
    # at 4 s the host (bar 3) goes to 90 bpm
    assert live.observe(4.0, 8.0, 90.0, (4, 4))
    assert live.reanchors == 0 and len(live.map.t_q) == 2
    assert live.next_boundary(4.01, "bar") == pytest.approx(4.0 + 4 * 60 / 90)
    assert live.position(3.0).bpm == pytest.approx(120) and live.position(5.0).bpm == pytest.approx(90)


def test_a_report_the_map_cannot_explain_reanchors_it():
    live = LiveClock(120, (4, 4))
    # the host's bar 1 sits at 1.25 s (a pre-roll), in 3/4 at 100 bpm
    q = quarters_from_bbt(1, 1, 0, 1920, 3, 4)
    assert live.observe(1.25, q, 100.0, (3, 4))
    assert live.reanchors == 1
    p = live.position(1.25 + 3 * 0.6)  # one 3/4 bar at 100 bpm later
    assert (p.bar, p.beat, p.meter) == (2, 1, (3, 4))
    assert live.next_boundary(1.3, "bar") == pytest.approx(1.25 + 1.8)
    chunks = list(zip(range(3), chunk_grid(live, ChunkLength(1, "bar"), 1.3)))
    assert chunks[1][1].start_seconds() == pytest.approx(1.25 + 1.8, abs=0.02)


def test_midi_clock_follower_start_ticks_spp_and_tempo():
    rate = 48000
    mc = MidiClockFollower(rate)
    step = rate * 60 / (100 * 24)  # 100 bpm
    t = 0
    for _ in range(30):  # a running clock before start gives the tempo
        mc.feed(0xF8, b"", int(t))
        t += step
    assert mc.bpm == pytest.approx(100, abs=0.05) and not mc.running
    mc.feed(0xFA, b"", int(t))
    assert mc.running and not mc.placed
    for k in range(48):
        mc.feed(0xF8, b"", int(t))
        t += step
    assert mc.placed and mc.quarters_at_tick == pytest.approx(47 / 24)
    mc.feed(0xFC, b"", int(t))
    assert not mc.running
    mc.feed(0xF2, bytes([16, 0]), int(t))  # song position: 16 sixteenths = bar 2 in 4/4
    mc.feed(0xFB, b"", int(t))
    mc.feed(0xF8, b"", int(t))
    assert mc.quarters_at_tick == 4.0
    late = MidiClockFollower(rate)
    times = np.arange(100) * step
    times[50] += 300  # one tick 6 ms late
    for x in times:
        late.feed(0xF8, b"", int(x))
    assert late.bpm == pytest.approx(100, rel=2e-3)


def test_midi_clock_follower_ignores_ticks_a_stalled_cycle_delivers_late():
    """A skipped JACK cycle hands its ticks over at frame 0 of the next one (CI saw 40 ms).
    Neither the tempo nor the phase of the following ticks may move by more than jitter."""
    rate, period = 48000, 256
    step = rate * 60 / (100 * 24)
    mc = MidiClockFollower(rate)
    stall = (450 * period, 450 * period + 8 * period)  # 8 periods (43 ms) skipped, 2.4 s in
    checked = 0
    mc.feed(0xFA, b"", 0)
    for k in range(24 * 8):
        true = k * step
        at = stall[1] if stall[0] <= true < stall[1] else true
        mc.feed(0xF8, b"", int(at))
        if at >= stall[1] and k % 6 == 0:  # after the stall: every so often, check the fit
            assert mc.bpm == pytest.approx(100, rel=2e-3), k
            assert abs(mc.fitted_tick_time - true) < 0.001 * rate, k
            checked += 1
    assert checked >= 10


def test_midi_clock_follower_counts_a_tick_the_server_lost():
    """After a stall jackd2 loses one cycle's MIDI between clients (measured: 211 ticks
    sent, 209 received): the position must not stay a tick (25 ms at 100 bpm) behind."""
    rate = 48000
    step = rate * 60 / (100 * 24)
    mc = MidiClockFollower(rate)
    mc.feed(0xFA, b"", 0)
    for k in range(120):
        if k not in (60, 90, 91):  # one tick lost, later two in a row
            mc.feed(0xF8, b"", int(k * step))
    assert mc.dropped == 3
    assert mc.quarters_at_tick == pytest.approx(119 / 24)
    assert abs(mc.fitted_tick_time - 119 * step) < 0.001 * rate
    assert mc.bpm == pytest.approx(100, rel=2e-3)


def test_a_midi_clock_from_before_a_server_restart_is_not_active():
    """A restarted server's frame times start again near 0: the old clock's last byte then
    lies in the future, and must not count as a running MIDI clock (it set a fresh
    server's first bar to a tempo two tests old)."""
    mc = MidiClockFollower(48000)
    mc.feed(0xF8, b"", 5_000_000)
    assert mc.active(5_000_000 + 1000) and not mc.active(5_000_000 + 60_000)
    assert not mc.active(2000)  # the new server's frame count


def test_midi_clock_follower_takes_a_sudden_half_time_for_a_tempo_not_for_lost_ticks():
    rate = 48000
    mc = MidiClockFollower(rate)
    mc.feed(0xFA, b"", 0)
    t, count = 0.0, 0
    for bpm, ticks in ((140, 24 * 4), (70, 24 * 2)):
        for _ in range(ticks):
            mc.feed(0xF8, b"", int(t))
            t += rate * 60 / (bpm * 24)
            count += 1
    assert mc.dropped == 0 and mc.quarters_at_tick == pytest.approx((count - 1) / 24)
    assert mc.bpm == pytest.approx(70, rel=2e-3)


def test_midi_clock_follower_follows_a_tempo_change_within_two_beats():
    rate = 48000
    mc = MidiClockFollower(rate)
    t = 0.0
    for bpm, ticks in ((120, 24 * 6), (90, 48)):
        for _ in range(ticks):
            mc.feed(0xF8, b"", int(t))
            t += rate * 60 / (bpm * 24)
    assert mc.bpm == pytest.approx(90, rel=2e-3)
    assert abs(mc.fitted_tick_time - (t - rate * 60 / (90 * 24))) < 0.001 * rate


def test_midi_clock_follower_places_a_restarted_clock_by_its_new_ticks_alone():
    """Stop, then start within the stale gap, with the new tick train at another phase
    (a master that stops its clock at the stop): the old train must not pull the fit."""
    rate = 48000
    step = rate * 60 / (100 * 24)
    mc = MidiClockFollower(rate)
    mc.feed(0xFA, b"", 0)
    for k in range(24 * 4):
        mc.feed(0xF8, b"", int(k * step))
    mc.feed(0xFC, b"", int(24 * 4 * step))
    t0 = 24 * 4 * step + 0.3 * rate + 0.37 * step  # the new train: 0.3 s later, off the old phase
    for k in range(12):  # half a beat of ticks before the start, as a master running its clock sends
        mc.feed(0xF8, b"", int(t0 + k * step))
    mc.feed(0xFA, b"", int(t0 + 11.5 * step))
    for k in range(12, 18):  # a quarter of a beat into the new take
        mc.feed(0xF8, b"", int(t0 + k * step))
        assert abs(mc.fitted_tick_time - int(t0 + k * step)) < 0.001 * rate, k
    assert mc.placed and mc.quarters_at_tick == pytest.approx(5 / 24)
    assert mc.bpm == pytest.approx(100, rel=2e-3)


def test_shared_ring_is_time_addressed_and_attaches_by_name():
    a = R.Shared(capacity=4096, midi_slots=16, live_capacity=1024)
    b = R.Shared(**a.spec())
    try:
        x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
        b.write_audio(a.capacity - 300, x)  # wraps
        np.testing.assert_array_equal(a.audio[:, a.capacity - 300 :], x[:, :300])
        np.testing.assert_array_equal(a.audio[:, :700], x[:, 300:])
        a.ctl[R.TP_SEQ] = 2
        a.tp[R.TP_BPM] = 123.0
        assert b.transport()[R.TP_BPM] == 123.0
        for i, msg in enumerate((b"\xb0\x14\x7f", b"\xf8")):
            a.midi_time[i], a.midi_song[i], a.midi_len[i] = 10 + i, 5, len(msg)
            a.midi_data[i, : len(msg)] = np.frombuffer(msg, np.uint8)
        a.ctl[R.MIDI_W] = 2
        got = list(b.drain_midi())
        assert [g[2] for g in got] == [b"\xb0\x14\x7f", b"\xf8"] and b.ctl[R.MIDI_R] == 2
    finally:
        b.close()
        a.close()


@pytest.mark.parametrize("rate", [44100, 96000])
def test_rate_writer_places_resampled_blocks_on_the_song_timeline(rate):
    w = RateWriter(rate)
    n = 1920 * 25
    clicks = np.zeros((2, 3 * n), np.float32)
    at = [4800, 60000, 130000]  # 48 kHz samples
    for a in at:
        clicks[:, a : a + 48] = np.hanning(48)
    out = np.zeros((2, 4 * rate), np.float32)
    for k in range(3):  # three contiguous blocks share one resampler
        pos, y = w.convert(k * n, clicks[:, k * n : (k + 1) * n])
        out[:, pos : pos + y.shape[1]] += y
    for a in at:
        expect = (a + 24) * rate / 48000
        seg = out[0, int(expect) - 200 : int(expect) + 200]
        assert abs(int(expect) - 200 + int(np.argmax(seg)) - expect) <= 2


def metronome_take(clock, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The metronome's left channel over one-bar chunks of `clock`, and its click onsets."""
    gen = MetronomeGenerator()
    state = gen.new_state()
    audio = []
    for chunk in chunk_grid(clock, ChunkLength(1, "bar"), 0.0, seconds):
        y, state = gen.generate_chunk(state, np.array([1000, 0]), chunk.timing, chunk.n_frames)
        audio.append(y.numpy())
    x = np.concatenate(audio, axis=1)[0]
    return x, click_onsets(x, threshold=0.05, min_gap=4800)


def test_metronome_clicks_on_the_beats_one_frame_late_like_the_codec():
    x, onsets = metronome_take(FixedClock(120), 4.0)
    np.testing.assert_allclose(onsets, 1920 + np.arange(len(onsets)) * 24000, atol=3)  # the sine rises from 0
    assert len(onsets) == 8


@pytest.mark.parametrize("shift_s", [0.0, 3.9e-6, -3.9e-6, 30e-6])
def test_metronome_clicks_once_per_beat_and_accents_only_bar_one(shift_s):
    """At 100 bpm every beat falls on a frame boundary, or a few µs off it when an external
    clock (Link) places the grid: the frame before used to click such a beat too (doubling
    it to the accent's level), or neither frame did (silence)."""
    clock = LiveClock(100, (4, 4))
    clock.reset(100, (4, 4), shift_s, 0.0)
    x, onsets = metronome_take(clock, 7.2)
    assert len(onsets) == 12
    peaks = np.array([np.abs(x[o : o + 480]).max() for o in onsets])
    np.testing.assert_allclose(peaks[::4], peaks[0])
    np.testing.assert_allclose(np.delete(peaks, np.s_[::4]), peaks[0] / 2, rtol=1e-5)
