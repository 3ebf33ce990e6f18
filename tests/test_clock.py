"""Clocks and the chunk grid: beats follow the tempo map, chunks land on bars, no drift."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from bridge.jam.time.clock import (
    ChunkLength,
    Clock,
    FixedClock,
    MidiFileClock,
    bpm_from_seconds_per_quarter,
    parse_meter,
    seconds_per_quarter,
)
from bridge.jam.time.grid import chunk_grid, frame_at
from model.errors import JamstreamError

TPQ = 480


def song_with_tempo_change(path: Path) -> Path:
    """4/4 at 120 bpm for bars 1-2, 90 bpm from bar 3, bar 4 in 3/4, 4/4 again from bar 5.

    Bar starts: 0, 2, 4, 6.667 (3/4 bar), 8.667, then every 2.667 s. A CC on channel 2
    at bar 3 beat 2 (4.667 s) and one on channel 1 at the very start.
    """
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=8 * TPQ))  # bar 3
    conductor.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=4 * TPQ))  # bar 4
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=3 * TPQ))  # bar 5
    notes = mido.MidiTrack()
    notes.append(mido.Message("control_change", channel=0, control=21, value=5, time=0))
    notes.append(mido.Message("control_change", channel=1, control=20, value=100, time=9 * TPQ))
    notes.append(mido.Message("note_on", note=60, velocity=80, time=0))
    notes.append(mido.Message("note_off", note=60, velocity=0, time=10 * TPQ))  # ends at quarter 19: bar 6 beat 1
    mid.tracks += [conductor, notes]
    mid.save(path)
    return path


@pytest.fixture
def song(tmp_path) -> MidiFileClock:
    return MidiFileClock.from_file(song_with_tempo_change(tmp_path / "song.mid"))


BEAT_90 = mido.bpm2tempo(90) / 1e6  # 0.666667 s: MIDI stores whole microseconds per quarter
BAR_STARTS = [0.0, 2.0, 4.0, 4.0 + 4 * BEAT_90, 4.0 + 7 * BEAT_90]  # bars 1-5
BAR_6 = 4.0 + 11 * BEAT_90


# ------------------------------------------------------------------ fixed clock
def test_fixed_clock_phases_match_the_generators_fixed_tempo_timing():
    from model.generator import fixed_tempo_timing

    for bpm, meter in ((120.0, (4, 4)), (96.0, (3, 4)), (137.0, (4, 4))):
        clock = FixedClock(bpm, meter)
        ours = clock.timing(np.arange(300) / 25)
        theirs = fixed_tempo_timing(0, 300, bpm, meter[0]).numpy()
        assert ours.shape == (300, 3) and ours.dtype == np.float32
        assert np.allclose(ours, theirs, atol=1e-5)


def test_fixed_clock_position_and_bbt():
    clock = FixedClock(120, (4, 4))
    assert isinstance(clock, Clock)
    pos = clock.position(2.25)
    assert (pos.bar, pos.beat, pos.tick) == (2, 1, 960)
    assert pos.beat_phase == pytest.approx(0.5) and pos.bar_phase == pytest.approx(0.125)
    assert clock.seconds_at_bbt(3, 2) == pytest.approx(4.5)
    assert clock.quarters_at(3.0) == pytest.approx(6.0) and clock.seconds_at_quarters(6.0) == pytest.approx(3.0)


def test_six_eight_counts_eighth_note_beats():
    clock = FixedClock(180, (6, 8))  # 180 eighths a minute: a 6/8 bar is 2 s
    pos = clock.position(1.0)
    assert pos.bpm == 180 and pos.meter == (6, 8) and pos.beat == 4 and pos.bar_phase == pytest.approx(0.5)
    assert clock.next_boundary(0.1, "bar") == pytest.approx(2.0)


def test_fixed_clock_refuses_impossible_tempo():
    with pytest.raises(JamstreamError):
        FixedClock(0.0)


# ------------------------------------------------------------------ MIDI file clock
def test_beat_times_follow_the_tempo_map(song):
    for bar, start in enumerate(BAR_STARTS, start=1):
        assert song.seconds_at_bbt(bar) == pytest.approx(start)
    assert song.seconds_at_bbt(3, 2) == pytest.approx(4.0 + BEAT_90)
    early, late = song.position(1.0), song.position(5.0)
    assert early.bpm == pytest.approx(120) and late.bpm == pytest.approx(90, rel=1e-5)
    assert (late.bar, late.beat) == (3, 2)
    mid_bar4 = song.position(BAR_STARTS[3] + 1.0)
    assert mid_bar4.meter == (3, 4) and mid_bar4.bar == 4 and mid_bar4.bar_phase == pytest.approx(0.5)
    assert song.position(BAR_STARTS[4]).meter == (4, 4) and song.position(BAR_STARTS[4]).bar == 5


def test_timing_phases_restart_on_each_bar(song):
    times = np.array(BAR_STARTS)
    timing = song.timing(times)
    assert np.allclose(timing[:, 1], 0.0, atol=1e-6) and np.allclose(timing[:, 2], 0.0, atol=1e-6)
    assert np.allclose(timing[:, 0], [120, 120, 90, 90, 90], rtol=1e-5)


def test_cc_events_and_length_are_read_with_times(song):
    assert [(e.channel, e.number, e.value) for e in song.cc_events] == [(1, 21, 5), (2, 20, 100)]
    assert song.cc_events[0].seconds == 0.0
    assert song.cc_events[1].seconds == pytest.approx(4.0 + BEAT_90)
    assert song.length_seconds == pytest.approx(BAR_6)


def test_a_file_without_tempo_uses_the_given_defaults(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    mid.tracks.append(
        mido.MidiTrack([mido.Message("note_on", note=60, time=0), mido.Message("note_off", note=60, time=TPQ)])
    )
    mid.save(tmp_path / "bare.mid")
    assert MidiFileClock.from_file(tmp_path / "bare.mid").position(0).bpm == pytest.approx(120)
    clock = MidiFileClock.from_file(tmp_path / "bare.mid", default_bpm=96, default_meter=(3, 4))
    assert clock.position(0).bpm == pytest.approx(96) and clock.position(0).meter == (3, 4)


def test_truncated_midi_is_one_line_error(tmp_path):
    data = song_with_tempo_change(tmp_path / "song.mid").read_bytes()
    for cut in (len(data) - 3, 20, 6):
        bad = tmp_path / f"cut{cut}.mid"
        bad.write_bytes(data[:cut])
        with pytest.raises(JamstreamError) as info:
            MidiFileClock.from_file(bad)
        assert str(info.value).startswith(f"{bad}: not a valid MIDI file (") and "\n" not in str(info.value)


def test_garbage_midi_is_one_line_error(tmp_path):
    bad = tmp_path / "garbage.mid"
    bad.write_bytes(b"this is not a MIDI file at all" * 3)
    with pytest.raises(JamstreamError, match=r"garbage\.mid: not a valid MIDI file \("):
        MidiFileClock.from_file(bad)
    with pytest.raises(JamstreamError, match="no such MIDI file"):
        MidiFileClock.from_file(tmp_path / "missing.mid")


# ------------------------------------------------------------------ chunk grid
def test_chunk_boundaries_land_on_bars_and_move_with_the_tempo_change(song):
    chunks = list(chunk_grid(song, ChunkLength(1, "bar"), 0.0, end_seconds=BAR_6))
    starts = [c.start_frame for c in chunks]
    assert starts == [frame_at(t) for t in BAR_STARTS]
    assert [c.n_frames for c in chunks] == [
        50,
        50,
        67,
        50,
        66,
    ]  # 2 s, 2 s, 2.667 s, the 3/4 bar 2 s, 2.667 s (rounded from absolute times)
    assert all(c.on_grid for c in chunks)
    for c in chunks:  # each chunk's timing is the clock's at its frames, starting on a downbeat
        assert c.timing.shape == (c.n_frames, 3)
        assert c.timing[0, 2] == pytest.approx(0.0, abs=0.02)
    assert chunks[2].timing[:, 0] == pytest.approx(90.0, rel=1e-5)


def test_beat_chunks_restart_at_a_meter_change(song):
    chunks = list(chunk_grid(song, ChunkLength(2, "beat"), BAR_STARTS[3], end_seconds=BAR_STARTS[4] + 1.0))
    # the 3/4 bar splits 2 + 1 beats, then the 4/4 bar counts afresh
    assert [c.start_frame for c in chunks] == [
        frame_at(BAR_STARTS[3]),
        frame_at(BAR_STARTS[3] + 2 * BEAT_90),
        frame_at(BAR_STARTS[4]),
    ]


def test_no_drift_over_200_bars():
    bpm = 123.0  # a bar is 48.78 frames: rounding lengths and adding them would drift
    clock = FixedClock(bpm, (4, 4))
    bar = 4 * 60 / bpm
    chunks = list(chunk_grid(clock, ChunkLength(1, "bar"), 0.0, end_seconds=200 * bar))
    assert len(chunks) == 200
    assert [c.start_frame for c in chunks] == [frame_at(k * bar) for k in range(200)]
    assert chunks[-1].end_frame == frame_at(200 * bar)
    assert max(abs(c.start_frame - k * bar * 25) for k, c in enumerate(chunks)) <= 0.5
    assert sum(c.n_frames for c in chunks) == chunks[-1].end_frame


def test_no_drift_across_a_tempo_map_over_200_bars(song):
    chunks = list(chunk_grid(song, ChunkLength(1, "bar"), 0.0, end_seconds=song.seconds_at_bbt(201)))
    assert [c.start_frame for c in chunks] == [frame_at(song.seconds_at_bbt(b)) for b in range(1, 201)]


def test_grid_after_a_locate_starts_there_and_snaps_to_the_next_bar(song):
    first = next(chunk_grid(song, ChunkLength(1, "bar"), 9.0))  # a locate to 9 s: inside bar 5
    assert first.start_frame == 225 and first.end_frame == frame_at(BAR_6)


def test_min_and_max_frames(song):
    # starting 2 frames before bar 2: that sliver merges into the next chunk
    first = next(chunk_grid(song, ChunkLength(1, "bar"), 2.0 - 0.08, min_frames=5))
    assert first.start_frame == 48 and first.end_frame == 100
    slow = FixedClock(20, (4, 4))  # a 12 s bar is longer than the LM's 10 s context
    chunks = list(chunk_grid(slow, ChunkLength(1, "bar"), 0.0, end_seconds=24.0, max_frames=250))
    assert [c.n_frames for c in chunks] == [250, 50, 250, 50]
    assert [c.on_grid for c in chunks] == [False, True, False, True]


def test_render_end_cuts_the_last_chunk(song):
    chunks = list(chunk_grid(song, ChunkLength(1, "bar"), 0.0, end_seconds=3.0))
    assert [(c.start_frame, c.n_frames) for c in chunks] == [(0, 50), (50, 25)]
    assert not chunks[-1].on_grid and chunks[-1].n_samples == 25 * 1920


# ------------------------------------------------------------------ meters and tempo units
def test_parse_meter_reads_n_over_d_and_names_the_rule():
    assert parse_meter("4/4") == (4, 4) and parse_meter(" 6 / 8 ") == (6, 8) and parse_meter("16/16") == (16, 16)
    with pytest.raises(JamstreamError, match=r"^--meter must look like 4/4 or 6/8, not '4-4'$"):
        parse_meter("4-4")
    with pytest.raises(JamstreamError, match=r"^--meter '3/5': numerator 1-16 and denominator 1, 2, 4, 8 or 16$"):
        parse_meter("3/5")
    with pytest.raises(JamstreamError, match="numerator 1-16"):
        parse_meter("0/4")


def test_seconds_per_quarter_counts_the_meters_beat_and_inverts():
    assert seconds_per_quarter(120.0, 4) == 0.5  # 120 quarters a minute
    assert seconds_per_quarter(120.0, 8) == 1.0  # 120 eighths a minute: a quarter is two of them
    assert seconds_per_quarter(60.0, 2) == 0.5  # 60 halves a minute
    for bpm, den in ((123.0, 4), (96.5, 8), (400.0, 16), (1.0, 1)):
        assert bpm_from_seconds_per_quarter(seconds_per_quarter(bpm, den), den) == pytest.approx(bpm, rel=1e-12)
    assert FixedClock(137.0, (6, 8)).position(0.0).bpm == pytest.approx(137.0, rel=1e-12)


def test_a_bbt_report_a_period_stale_does_not_move_the_map_but_a_lasting_shift_does():
    """JACK can hand a client that runs before the timebase master a BBT one period stale:
    on and off, that must not re-anchor (each re-anchor remakes the queued pieces); reports
    that stay off for 50 ms of song time are a real shift and do."""
    from bridge.jam.time.followers import LiveClock

    clock = LiveClock(120.0)
    period = 256 / 48_000
    for k in range(20):  # in phase at 120 bpm (2 quarters a second), with stale reports between
        t = 1.0 + k * period
        stale = k % 3 == 1
        assert not clock.observe(t, 2 * (t - period if stale else t), 120.0, (4, 4), confirm_small=True)
    assert clock.reanchors == 0
    shifted = [2.0 + k * period for k in range(12)]  # 64 ms of reports, all 6 ms late
    moved = [clock.observe(t, 2 * (t - 0.006), 120.0, (4, 4), confirm_small=True) for t in shifted]
    assert clock.reanchors == 1 and moved.count(True) == 1 and moved[-1] is False
    assert shifted[moved.index(True)] - shifted[0] >= 0.05
    assert clock.quarters_at(3.0) == pytest.approx(2 * (3.0 - 0.006))
