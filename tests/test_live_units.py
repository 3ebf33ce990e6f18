"""The JACK process pair in-process, without JACK: the worker's scheduling and the
callback's period logic against a real `Shared` block.

The test writes the block in place of the other side - the transport and playhead the
callback would post for the worker, the valid range and audio the worker would write for
the callback - and runs one side's real code on it: `Worker.step()` with the metronome
generator (clicks on the beats, exactly where the song's beats are), and
`JackBridge._process_period()` with a stand-in for the JACK client and its ports (JACK's
objects, not ours: a transport position struct from JACK-Client's own cffi, and numpy
port buffers).
"""

from __future__ import annotations

import queue

import numpy as np
import pytest
from support.presets import TWO_SLOT_PRESET as PRESET

from bridge.live import ring as R
from bridge.live.callback import FADE_SAMPLES, JackBridge
from bridge.live.worker import FRAME_SAMPLES, Worker, WorkerConfig

RATE = 48_000
PERIOD = 256
BEAT = RATE // 2  # 120 bpm
BAR = 4 * BEAT
JACK_STOPPED, JACK_ROLLING = 0, 1


# ---------------------------------------------------------------------- the callback's side, written by the test
def new_shared() -> R.Shared:
    sh = R.Shared(capacity=1 << 18)  # 5.5 s: wraps within the tests
    sh.ctl[R.RATE_SLOT] = RATE
    sh.ctl[R.PERIOD] = PERIOD
    return sh


def post_transport(sh: R.Shared, state: int, frame: int, jack_time: int | None = None) -> None:
    """What the process callback posts each period (no BBT: the worker keeps the preset's tempo)."""
    sh.ctl[R.TP_SEQ] += 1
    sh.tp[R.TP_STATE] = state
    sh.tp[R.TP_FRAME] = frame
    sh.tp[R.TP_JACK_TIME] = frame if jack_time is None else jack_time
    sh.tp[R.TP_BBT] = 0.0
    sh.ctl[R.TP_SEQ] += 1
    sh.ctl[R.PLAY_FRAME] = frame
    sh.ctl[R.ROLLING] = int(state == JACK_ROLLING)


def request(sh: R.Shared, frame: int) -> None:
    """A start/locate/slow-sync request at `frame`, as the callback posts it."""
    sh.ctl[R.TARGET_FRAME] = frame
    sh.ctl[R.TARGET_SEQ] += 1


def ring_frames(sh: R.Shared, start: int, end: int) -> np.ndarray:
    """Song frames start..end of the time-addressed ring (left channel)."""
    return sh.audio[0, np.arange(start, end) & sh.mask]


def onsets(x: np.ndarray) -> np.ndarray:
    """Indices where a click begins: sound after at least 10 ms of silence. (A click is a
    sine from phase 0: its first sample is 0, the sound starts one sample later.)"""
    loud = np.flatnonzero(np.abs(x) > 1e-6)
    return loud[np.diff(loud, prepend=-10_000) > RATE // 100] - 1


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "units.toml"
    path.write_text(PRESET)
    sh = new_shared()
    w = Worker(WorkerConfig(preset=str(path), metronome=True, clock="jack"), sh.spec(), queue.Queue())
    yield sh, w
    w.sh.close()
    sh.close()


# ---------------------------------------------------------------------- the worker
LOOKAHEAD = RATE // 2  # the preset's 500 ms
PIECE = 3 * FRAME_SAMPLES  # the metronome costs nothing: the auto pieces are the shortest


def step_until_idle(w, limit: int = 200) -> int:
    """Run the worker until it has nothing due; how many pieces it made."""
    for made in range(limit):
        if w.step() > 0:
            return made
    raise AssertionError("the worker never went idle")


def test_stopped_at_a_sync_request_the_worker_prepares_the_pieces_the_start_needs(worker):
    sh, w = worker
    post_transport(sh, JACK_STOPPED, 0)
    request(sh, 0)
    assert w.step() == 0.0  # it generated
    made = step_until_idle(w) + 1
    ctl = sh.ctl
    # every piece decided by the stop position: audio up to the lookahead and at most one piece more,
    # starting one held frame before the start (the codec's delay), silent there
    end = int(ctl[R.VALID_END])
    assert ctl[R.VALID_START] == -FRAME_SAMPLES and LOOKAHEAD <= end < LOOKAHEAD + PIECE
    assert ctl[R.STREAM] == 1 and w.stream_pieces == made == (end + FRAME_SAMPLES) // PIECE
    heard = ring_frames(sh, -FRAME_SAMPLES, end)
    np.testing.assert_array_equal(onsets(heard) - FRAME_SAMPLES, [b for b in range(0, end, BEAT)])
    assert np.abs(heard[:FRAME_SAMPLES]).max() == 0.0
    assert w.chunk_log[-1][:2] == (end - PIECE, end) and w.chunk_log[-1][3] == 120.0
    # stopped with the start prepared: nothing more until the transport rolls
    assert w.step() > 0 and ctl[R.VALID_END] == end


def test_rolling_the_worker_generates_each_piece_at_its_decision_time_and_contiguously(worker):
    sh, w = worker
    post_transport(sh, JACK_STOPPED, 0)
    request(sh, 0)
    step_until_idle(w)
    end = int(sh.ctl[R.VALID_END])
    due = end - LOOKAHEAD  # the next piece's decision time: its first audio sample - lookahead
    for _ in range(40):  # two bars, piece by piece (the last piece of a bar is shorter)
        post_transport(sh, JACK_ROLLING, due - 1)
        assert w.step() > 0 and sh.ctl[R.VALID_END] == end  # not a sample early
        post_transport(sh, JACK_ROLLING, due)
        assert w.step() == 0.0 and w.step() > 0  # at it, one piece
        assert end < sh.ctl[R.VALID_END] <= end + PIECE
        end = int(sh.ctl[R.VALID_END])
        due = end - LOOKAHEAD
    ctl = sh.ctl
    assert ctl[R.VALID_START] == -FRAME_SAMPLES and end > 2 * BAR
    heard = ring_frames(sh, -FRAME_SAMPLES, end)
    np.testing.assert_array_equal(onsets(heard) - FRAME_SAMPLES, [b for b in range(0, end, BEAT)])
    assert ctl[R.STREAM] == 1 and min(w.margins) >= LOOKAHEAD / RATE - 1e-9  # one stream, always a lookahead ahead


def test_a_locate_while_rolling_starts_a_stream_where_its_first_piece_can_be_ready(worker):
    sh, w = worker
    post_transport(sh, JACK_ROLLING, 0)
    request(sh, 0)
    w.step()
    at = 3 * BAR + BEAT // 2  # mid-beat in bar 4
    post_transport(sh, JACK_ROLLING, at)
    request(sh, at)
    step_until_idle(w)
    ctl = sh.ctl
    assert ctl[R.STREAM] == 2
    start = int(ctl[R.VALID_START])
    # a lookahead (+ the held frame, rounding) ahead of the playhead, not a bar later: the
    # first piece lands with the whole lookahead to spare
    assert at + LOOKAHEAD < start + FRAME_SAMPLES < at + LOOKAHEAD + int(0.1 * RATE)
    assert ctl[R.VALID_END] == start  # its first piece is decided a moment from now (held frame, rounding) ...
    due = w.engine.decision_sample()
    assert at < due < at + int(0.1 * RATE)
    post_transport(sh, JACK_ROLLING, due)
    step_until_idle(w)
    end = int(ctl[R.VALID_END])
    assert start < end <= start + PIECE  # ... and lands with the lookahead to spare
    heard = ring_frames(sh, start, end)
    beats = [b for b in range(0, 5 * BAR, BEAT) if start + FRAME_SAMPLES <= b < end]
    np.testing.assert_array_equal(onsets(heard) + start, beats)


def test_a_request_the_ring_already_covers_keeps_the_stream(worker):
    sh, w = worker
    post_transport(sh, JACK_STOPPED, 0)
    request(sh, 0)
    step_until_idle(w)
    request(sh, BEAT)  # inside the prepared pieces
    w.step()
    assert sh.ctl[R.STREAM] == 1 and sh.ctl[R.VALID_START] == -FRAME_SAMPLES


def test_a_source_switch_forgets_the_ring_and_follows_the_free_clock(worker):
    sh, w = worker
    post_transport(sh, JACK_STOPPED, 0)
    request(sh, 0)
    w.step()
    w.sources.mode = "free"
    post_transport(sh, JACK_STOPPED, 0, jack_time=10_000)
    sh.ctl[R.ROLLING] = 1  # the callback follows the external timeline: rolling
    w.step()
    ctl = sh.ctl
    assert ctl[R.MODE] == 1 and ctl[R.EXT_ROLLING] == 1 and ctl[R.EXT_OFFSET] == -10_000
    assert ctl[R.STREAM] == 2 and w.sources.name == "free"


# ---------------------------------------------------------------------- the callback
class FakePort:
    """A JACK port's buffer for one period (what `get_array()` hands the callback)."""

    def __init__(self, n: int, events=()):
        self.buf = np.zeros(n, np.float32)
        self.events = list(events)

    def get_array(self) -> np.ndarray:
        return self.buf

    def incoming_midi_events(self):
        yield from self.events


class FakeClient:
    """The two things the process callback asks libjack: the transport and the frame time."""

    def __init__(self):
        import jack

        self.pos = jack._ffi.new("jack_position_t *")
        self.state = JACK_STOPPED
        self.last_frame_time = 0

    def transport_query_struct(self):
        return self.state, self.pos


@pytest.fixture
def bridge():
    sh = new_shared()
    b = JackBridge(sh)
    b._bind_constants()
    b.client = FakeClient()
    b.out_l, b.out_r, b.midi_in = FakePort(PERIOD), FakePort(PERIOD), FakePort(PERIOD)
    b.in_l = b.in_r = None  # no --input
    yield sh, b
    sh.close()


def ring_with_signal(sh: R.Shared, start: int, end: int) -> None:
    """What the worker would publish: audio for song frames start..end (a ramp, so every frame differs)."""
    frames = np.arange(start, end)
    sh.audio[:, frames & sh.mask] = (0.1 + 0.8 * (frames % 1000) / 1000).astype(np.float32)
    sh.ctl[R.VALID_START], sh.ctl[R.VALID_END] = start, end


def period(b: JackBridge, frame: int, rolling: bool = True, midi=()) -> np.ndarray:
    client = b.client
    client.state = JACK_ROLLING if rolling else JACK_STOPPED
    client.pos.frame = frame
    client.last_frame_time = 1_000_000 + frame
    b.midi_in.events = list(midi)
    b._process_period(PERIOD)
    return b.out_l.buf.copy()


def test_the_period_plays_the_ring_at_the_playhead_after_a_fade_in(bridge):
    sh, b = bridge
    ring_with_signal(sh, 0, 10 * PERIOD)
    first = period(b, 0)
    want = ring_frames(sh, 0, PERIOD)
    gain = np.minimum(np.arange(1, PERIOD + 1) / FADE_SAMPLES, 1.0)
    np.testing.assert_allclose(first, want * gain, rtol=1e-6)
    second = period(b, PERIOD)
    np.testing.assert_array_equal(second, ring_frames(sh, PERIOD, 2 * PERIOD))  # exactly the ring
    ctl = sh.ctl
    assert ctl[R.PLAY_FRAME] == PERIOD and ctl[R.ROLLING] == 1 and ctl[R.STARTS] == 1 and ctl[R.PERIODS] == 2
    assert ctl[R.UNDERRUNS] == 0 and ctl[R.STARVED_PERIODS] == 0
    assert sh.tp[R.TP_FRAME] == PERIOD and sh.tp[R.TP_STATE] == JACK_ROLLING and ctl[R.TP_SEQ] % 2 == 0


def test_the_period_counts_one_underrun_when_the_ring_runs_dry_after_playing(bridge):
    sh, b = bridge
    ring_with_signal(sh, 0, 2 * PERIOD + PERIOD // 2)
    period(b, 0)
    period(b, PERIOD)
    last = period(b, 2 * PERIOD)  # the data ends mid-period: faded out before it ends
    assert np.abs(last[PERIOD // 2 :]).max() == 0.0
    assert np.abs(last[PERIOD // 2 - FADE_SAMPLES // 2 : PERIOD // 2]).max() < 0.5
    dry = period(b, 3 * PERIOD)
    assert np.abs(dry).max() == 0.0
    ctl = sh.ctl
    assert ctl[R.UNDERRUNS] == 1 and ctl[R.STARVED_PERIODS] == 2  # one dry spell, two starved periods
    ring_with_signal(sh, 0, 8 * PERIOD)  # the worker caught up
    period(b, 4 * PERIOD)
    period(b, 5 * PERIOD)
    ring_with_signal(sh, 0, 5 * PERIOD)
    period(b, 6 * PERIOD)
    assert ctl[R.UNDERRUNS] == 2


def test_pre_roll_before_the_first_audio_is_starved_not_an_underrun(bridge):
    sh, b = bridge
    ring_with_signal(sh, 2 * PERIOD, 10 * PERIOD)
    assert np.abs(period(b, 0)).max() == 0.0
    assert np.abs(period(b, PERIOD)).max() == 0.0
    ctl = sh.ctl
    assert ctl[R.STARVED_PERIODS] == 2 and ctl[R.UNDERRUNS] == 0
    assert np.abs(period(b, 2 * PERIOD)).max() > 0


def test_the_period_follows_a_locate_and_asks_the_worker_for_the_new_position(bridge):
    sh, b = bridge
    ring_with_signal(sh, 0, 4 * PERIOD)
    period(b, 0)
    period(b, PERIOD)
    ctl = sh.ctl
    assert ctl[R.LOCATES] == 0 and ctl[R.TARGET_SEQ] == 0
    jump = 100 * PERIOD
    out = period(b, jump)  # the host located: not where the last period ended
    assert ctl[R.LOCATES] == 1 and ctl[R.TARGET_SEQ] == 1 and ctl[R.TARGET_FRAME] == jump
    assert ctl[R.PLAY_FRAME] == jump
    assert ctl[R.UNDERRUNS] == 0  # a locate is pre-roll again, not an underrun
    assert np.abs(out[FADE_SAMPLES:]).max() == 0.0  # the ring does not cover the new position: fades out
    period(b, jump + PERIOD)
    assert ctl[R.LOCATES] == 1 and ctl[R.UNDERRUNS] == 0


def test_the_period_follows_the_external_timeline_and_stamps_midi_with_song_frames(bridge):
    sh, b = bridge
    ctl = sh.ctl
    ctl[R.MODE], ctl[R.EXT_ROLLING], ctl[R.EXT_OFFSET] = 1, 1, -1_000_000 + 5 * PERIOD
    ring_with_signal(sh, 0, 20 * PERIOD)
    period(b, 0, rolling=False, midi=[(10, b"\xb0\x14\x7f")])  # JACK's transport stopped: the worker's clock rolls
    assert ctl[R.PLAY_FRAME] == 5 * PERIOD and ctl[R.ROLLING] == 1
    assert list(sh.drain_midi()) == [(1_000_010, 5 * PERIOD + 10, b"\xb0\x14\x7f", 3)]


def test_a_period_jack_runs_again_posts_its_midi_once_and_is_no_locate(bridge):
    """jackd 1.9.21 runs the cycle it caught up on twice at one frame time after a late client,
    and hands the second run the first run's MIDI again (measured with two plain clients): a
    MIDI clock tick counted twice put the grid a tick early for the rest of a CI take."""
    sh, b = bridge
    ctl = sh.ctl
    ring_with_signal(sh, 0, 20 * PERIOD)
    tick, cc = (40, b"\xf8"), (90, b"\xb0\x14\x7f")
    period(b, 0)
    period(b, PERIOD, midi=[tick])
    period(b, PERIOD, midi=[tick, cc])  # the same cycle again: the tick repeated, the CC new
    period(b, 2 * PERIOD, midi=[tick])  # the next cycle: a tick at the same offset is a new tick
    got = [(time, data) for time, _, data, _ in sh.drain_midi()]
    t0 = 1_000_000
    assert got == [(t0 + PERIOD + 40, b"\xf8"), (t0 + PERIOD + 90, b"\xb0\x14\x7f"), (t0 + 2 * PERIOD + 40, b"\xf8")]
    assert ctl[R.REPEATED_CYCLES] == 1 and ctl[R.MIDI_REPEATS] == 1
    assert ctl[R.LOCATES] == 0 and ctl[R.STARTS] == 1  # played where its first run played


# ---------------------------------------------------------------------- the clock choice
def bbt_position(frame: int, jack_time: int, bpm: float) -> np.ndarray:
    """A rolling JACK position from a timebase master at `bpm`, 4/4, at `frame`."""
    tp = np.zeros(R.N_TP)
    beats = frame / RATE * bpm / 60.0
    tp[R.TP_STATE], tp[R.TP_FRAME], tp[R.TP_JACK_TIME] = JACK_ROLLING, frame, jack_time
    tp[R.TP_BBT], tp[R.TP_BAR], tp[R.TP_BEAT] = 1, 1 + int(beats // 4), 1 + int(beats % 4)
    tp[R.TP_TICK], tp[R.TP_TPB], tp[R.TP_BPB], tp[R.TP_BEAT_TYPE] = (beats % 1) * 1920, 1920, 4, 4
    tp[R.TP_BPM] = bpm
    return tp


def test_one_cycle_without_bbt_after_a_locate_keeps_the_masters_tempo():
    """Other clients see one cycle without BBT after every locate (measured). Taken for
    "no timebase master", it set the start's first bar to the preset's tempo."""
    from bridge.live.sources import BBT_GRACE_S, ClockSources

    sources = ClockSources(new_shared(), "auto", 126.0, (4, 4), RATE, link=False)
    sources.follow(bbt_position(RATE * 4, RATE * 10, 120.0), fallback_bpm=126.0)
    assert sources.clock.bpm(4.0) == pytest.approx(120.0)
    blank = bbt_position(RATE * 8, RATE * 10 + PERIOD, 120.0)
    blank[R.TP_BBT] = 0  # the locate's cycle
    sources.follow(blank, fallback_bpm=126.0)
    assert sources.name == "jack-bbt" and sources.clock.bpm(8.0) == pytest.approx(120.0)
    blank[R.TP_JACK_TIME] = RATE * 10 + int(BBT_GRACE_S * RATE) + PERIOD  # the master is really gone
    sources.follow(blank, fallback_bpm=126.0)
    assert sources.name == "jack" and sources.clock.bpm(8.0) == pytest.approx(126.0)


def test_the_status_line_shows_the_lookahead_in_use_and_the_margin():
    from bridge.live.status import StatusBoard

    board = StatusBoard(None, quiet=True)
    s = {
        "bar": 3,
        "beat": 2,
        "bpm": 120.0,
        "clock": "jack-bbt",
        "weights": {"A": 1.0},
        "buffer_fill": 0.2,
        "rtf": 1.3,
        "underruns": 0,
        "xruns": 0,
        "latency_frames": 7424,
        "sample_rate": 48_000,
        "lookahead_ms": 149.3,
        "lookahead_auto": True,
        "piece_frames": 3,
        "margin_ms": 61.8,
    }
    line = board.line(s)
    assert "ahead 149 ms auto, 3-frame pieces margin 62 ms" in line, line
