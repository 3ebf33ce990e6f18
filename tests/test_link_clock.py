"""The Link follower without JACK: Link beats put on JACK frames land on the LiveClock's grid.

`LinkTimeline` is a Link session's beat timeline as Link defines it (piecewise-linear beats
over time, continuous at each tempo change); the follower reads it at instants mapped to
JACK frames the way the worker does, and the tests ask the LiveClock where our beats and
bars are - in JACK frames - against the timeline's own.
"""

from __future__ import annotations

import math

import pytest

from bridge.jam.time.followers import LiveClock
from bridge.live.link import LinkFollower, LinkSample, jack_frame_at

RATE = 48_000
REF = (1_000_000, 5_000_000_000_000)  # JACK frame time 1e6 happened at CLOCK_MONOTONIC 5000 s
MS = 1_000_000  # ns


class LinkTimeline:
    """Beats of a Link session vs CLOCK_MONOTONIC ns: (start ns, beat there, bpm) segments."""

    def __init__(self, bpm: float, beat_at_ref: float):
        self.segments = [(REF[1], beat_at_ref, bpm)]
        self.playing = False

    def set_tempo(self, at_ns: int, bpm: float) -> None:
        self.segments.append((at_ns, self.beat(at_ns), bpm))

    def renumber(self, at_ns: int, by_beats: float) -> None:
        self.segments.append((at_ns, self.beat(at_ns) + by_beats, self.segments[-1][2]))

    def beat(self, ns: int) -> float:
        t0, b0, bpm = [s for s in self.segments if s[0] <= ns][-1]
        return b0 + (ns - t0) / 1e9 * bpm / 60.0

    def ns_of_beat(self, beat: float) -> float:
        t0, b0, bpm = ([s for s in self.segments if s[1] <= beat] or self.segments)[-1]  # latest segment holding it
        return t0 + (beat - b0) * 60.0 / bpm * 1e9

    def sample(self, ns: int) -> LinkSample:
        return LinkSample(self.beat(ns), [s for s in self.segments if s[0] <= ns][-1][2], ns, self.playing, 1)


def follow(tl: LinkTimeline, follower: LinkFollower, start_ns: int, end_ns: int, every_ns: int = 20 * MS) -> None:
    for ns in range(start_ns, end_ns, every_ns):
        follower.update(tl.sample(ns), jack_frame_at(ns, REF, RATE))


def assert_beats_on_link_grid(
    tl: "LinkTimeline", clock: LiveClock, follower: LinkFollower, q_from: float, q_to: float
) -> None:
    """Each whole song quarter in [q_from, q_to), placed by the LiveClock on JACK frames,
    sits within half a frame of Link's beat `origin + q`."""
    for q in range(math.ceil(q_from), math.ceil(q_to)):
        ours = clock.seconds_at_quarters(q) * RATE - follower.offset
        assert ours == pytest.approx(link_frame(tl, follower.origin + q), abs=0.5), q


def link_frame(tl: LinkTimeline, beat: float) -> float:
    return jack_frame_at(int(round(tl.ns_of_beat(beat))), REF, RATE)


def test_jack_frame_at_counts_the_server_rate_from_the_reference():
    assert jack_frame_at(REF[1], REF, RATE) == REF[0]
    assert jack_frame_at(REF[1] + 500 * MS, REF, RATE) == pytest.approx(REF[0] + 24_000)
    assert jack_frame_at(REF[1] - 10 * MS, REF, 44_100) == pytest.approx(REF[0] - 441)


def test_beats_and_bars_land_on_the_link_grid():
    tl = LinkTimeline(100.0, beat_at_ref=37.3)  # mid-bar, bar 10 of a quantum-4 session
    clock = LiveClock(120.0, (4, 4))
    f = LinkFollower(clock, RATE)
    follow(tl, f, REF[1], REF[1] + 3000 * MS)
    assert f.placements == 1 and f.origin == 36.0  # bar 1 of the song = the Link bar we joined in
    assert clock.bpm(0.0) == pytest.approx(100.0)
    q_now = tl.beat(REF[1] + 3000 * MS) - f.origin
    assert_beats_on_link_grid(tl, clock, f, 1, q_now + 8)
    # our bar lines are Link's phase 0 at quantum 4
    bar2 = clock.seconds_at_bbt(2) * RATE - f.offset
    assert bar2 == pytest.approx(link_frame(tl, 40.0), abs=0.5)
    assert f.rolling  # nobody uses start/stop sync: play free on the grid


def test_a_peer_tempo_change_that_reaches_us_late_is_placed_where_the_peer_made_it():
    tl = LinkTimeline(100.0, beat_at_ref=4.0)
    clock = LiveClock(100.0, (4, 4))
    f = LinkFollower(clock, RATE)
    follow(tl, f, REF[1], REF[1] + 2000 * MS)
    change = REF[1] + 2345 * MS
    tl.set_tempo(change, 80.0)
    # the change reaches us 150 ms late, after a reading that still showed 100 bpm
    follow(tl, f, REF[1] + 2000 * MS + 20 * MS, change + 150 * MS, every_ns=400 * MS)
    follow(tl, f, change + 150 * MS, change + 4000 * MS)
    assert f.placements == 1 and clock.reanchors == 0  # a tempo segment, not a jump
    q_change = tl.beat(change) - f.origin
    assert clock.last_change_quarters == pytest.approx(q_change, abs=1e-6)
    assert_beats_on_link_grid(tl, clock, f, q_change, q_change + 12)


def test_whole_bar_renumbering_keeps_the_timeline_and_a_phase_jump_replaces_it():
    tl = LinkTimeline(120.0, beat_at_ref=0.5)
    clock = LiveClock(120.0, (4, 4))
    f = LinkFollower(clock, RATE)
    follow(tl, f, REF[1], REF[1] + 1000 * MS)
    offset, changes = f.offset, clock.changes
    tl.renumber(REF[1] + 1010 * MS, -8.0)  # e.g. a peer's quantized start: two bars back, same phase
    follow(tl, f, REF[1] + 1020 * MS, REF[1] + 2000 * MS)
    assert (f.placements, f.offset, clock.changes) == (1, offset, changes)
    tl.renumber(REF[1] + 2010 * MS, 0.37)  # the phase itself moved (a peer forced its beat)
    follow(tl, f, REF[1] + 2020 * MS, REF[1] + 3000 * MS)
    assert f.placements == 2 and f.offset != offset
    q_now = tl.beat(REF[1] + 3000 * MS) - f.origin
    assert_beats_on_link_grid(tl, clock, f, q_now, q_now + 4)


def test_start_stop_sync_is_followed_once_the_session_was_seen_playing():
    tl = LinkTimeline(120.0, beat_at_ref=2.0)
    clock = LiveClock(120.0, (4, 4))
    f = LinkFollower(clock, RATE)
    follow(tl, f, REF[1], REF[1] + 500 * MS)
    assert f.rolling and not f.follows_start_stop  # stopped as far as Link knows, but nobody syncs start/stop
    tl.playing = True
    follow(tl, f, REF[1] + 500 * MS, REF[1] + 1000 * MS)
    assert f.rolling and f.follows_start_stop and f.placements == 2  # a start places the song anew, like MIDI start
    tl.playing = False
    follow(tl, f, REF[1] + 1000 * MS, REF[1] + 1500 * MS)
    assert not f.rolling
    tl.playing = True
    follow(tl, f, REF[1] + 1500 * MS, REF[1] + 2000 * MS)
    assert f.rolling and f.placements == 3


def test_three_four_in_eighths_uses_beats_as_the_denominator():
    """6/8: Link beats are eighths (bpm counts the meter's beats), quantum 6, quarters = beats / 2."""
    tl = LinkTimeline(180.0, beat_at_ref=13.0)
    clock = LiveClock(180.0, (6, 8))
    f = LinkFollower(clock, RATE)
    follow(tl, f, REF[1], REF[1] + 1000 * MS)
    assert f.origin == 12.0
    bar2 = clock.seconds_at_bbt(2) * RATE - f.offset
    assert bar2 == pytest.approx(link_frame(tl, 18.0), abs=0.5)
