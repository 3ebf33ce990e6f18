"""The per-piece live engine on a private dummy jackd, with an explicit pacing (3-frame
pieces, 300 ms lookahead) so both tests know what is queued.

- A live take is, sample for sample, the render of the same CCs at the same pacing.
  `jamstream jam --metronome` (the bridge's real engine, worker, ring and callback; the
  click's pitch is the style mix, its level the gain knob) plays while a second JACK
  client sends CC moves; the host records the output on the song timeline. The same CCs,
  stamped at the song frames the bridge received them, then go through an offline Engine
  with the same generator, preset and pacing - what `jamstream render` does with a MIDI
  file - and the two must agree to float precision. The graph has no cycle (CC sender ->
  jamstream -> host), so every client sees a CC and its audio in the cycle it was sent.
- A host tempo change mid-chunk: the queued pieces (up to the 300 ms lookahead) are made
  again on the new grid, so the clicks are on it well before a lookahead has passed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from support.presets import TWO_SLOT_PRESET
from support.rig import Rig, play_from, record

pytestmark = pytest.mark.slow

RATE = 48_000
PRESET = (
    TWO_SLOT_PRESET.replace("lookahead_ms = 500\n", "lookahead_ms = 300\npiece_frames = 3\nlimiter = false\n").replace(
        "smoothing_ms = 0\n", "smoothing_ms = 150\n"
    )
    + "\n[controls.gain]\ncc = 7\nmin = -30.0\nmax = 0.0\ninitial = 0.0\n"
)
# (seconds after the transport starts, CC number, value): a crossfade A -> B, the gain down
# and up again, each off any piece boundary
MOVES = [(0.93, 21, 127), (1.41, 20, 10), (2.07, 7, 20), (2.66, 7, 127), (3.18, 21, 30)]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offline-live")
    path = tmp / "take.toml"
    path.write_text(PRESET)
    with Rig(tmp, ["--preset", str(path), "--metronome"], record_seconds=12, midi_to_jam=False) as started:
        yield started


def test_a_live_take_is_the_render_of_the_same_ccs_sample_for_sample(rig):
    from bridge.jam.engine import Engine
    from bridge.jam.pacing import Pacing
    from bridge.jam.presets import load_preset
    from bridge.jam.time.clock import FixedClock
    from bridge.live.host_sim import HostSim
    from bridge.live.metronome import MetronomeGenerator, MetronomeSlots, MetronomeStyle

    host, jam = rig.host, rig.jam
    sender = HostSim(name="ccs", server=rig.jackd.name, timebase=False, record_seconds=1)
    try:
        sender.client.connect(sender.midi_out, "jamstream:midi_in")
        play_from(host, 0, jam)
        sent: list[tuple[int, bytes]] = []

        def go():
            host.client.transport_start()
            now = sender.client.frame_time
            sent.extend((now + int(t * RATE), bytes([0xB0, cc, value])) for t, cc, value in MOVES)
            sender._queue(sent)

        audio, frames, rolling = record(host, 4.5, go)
        times = host.rec_time[: len(frames)]
    finally:
        sender.close()
    status = jam.status()
    assert status["piece_frames"] == 3 and status["lookahead_ms"] == 300.0 and not status["lookahead_auto"], status
    keys = ("rejoins", "rewinds", "late_pieces", "last_rewind", "clock_reanchors", "clock_last_reanchor", "streams")
    seen = {k: status.get(k) for k in keys}
    assert status["rejoins"] == 0 and status["rewinds"] == 0 and status["late_pieces"] == 0, str(seen)
    live_rolling = rolling.astype(bool)
    end = int(frames[live_rolling].max())
    timeline = host.on_timeline(audio, frames, rolling, end)

    # each CC's song frame: the transport frame of the period it was sent in + its offset
    n = host.client.blocksize
    stamps = []
    for t, data in sent:
        p = int(np.flatnonzero((times <= t) & (t < times + n))[0])
        assert live_rolling[p]
        stamps.append((frames[p] + (t - times[p]), data))

    preset = load_preset(rig.tmp / "take.toml")
    engine = Engine(
        MetronomeGenerator(),
        MetronomeStyle(),
        preset,
        FixedClock(120.0),
        slot_styles=MetronomeSlots(len(preset.slots)),
        pacing=Pacing(3, 0.3),
    )
    engine.start(0.0)
    for frame, data in stamps:
        engine.feed_midi(data, frame / RATE)
    rendered = np.zeros((2, end), np.float32)
    while engine.piece_start_sample() < end:
        block = engine.next_piece()
        lo, hi = max(0, block.start_sample), min(end, block.end_sample)
        rendered[:, lo:hi] = block.audio[:, lo - block.start_sample : hi - block.start_sample]

    # from the second rolling period: in the first, the callback fades in from the stopped
    # transport's silence (its own 5 ms start fade, not the engine's)
    first = int(frames[live_rolling].min()) + n
    live, offline = timeline[:, first:end], rendered[:, first:end]
    assert np.abs(offline).max() > 0.1  # clicks, in both
    heard = [np.abs(offline[0, int(t * RATE) : int((t + 0.6) * RATE)]).max() for t, _, _ in MOVES]
    assert min(heard) > 0.005  # the gain went down to -30 dB, not silence: every move is in the comparison
    diff = np.abs(live - offline)
    worst = int(np.argmax(diff.max(axis=0)))
    assert diff.max() <= 1e-6, f"live and render differ by {diff.max():.3g} at song frame {first + worst}"


def test_a_tempo_change_remakes_the_queued_pieces_on_the_new_grid(rig):
    from support.clicks import click_onsets, describe, onset_errors

    host, jam = rig.host, rig.jam
    rate = host.rate
    before = jam.status()["rewinds"]
    try:
        play_from(host, 0, jam)
        host.client.transport_start()
        time.sleep(1.0)
        change = int(host.frame_at_beats(9.0))  # bar 3 beat 2 at 120 bpm: mid-chunk
        host.set_tempo(90.0, change)
        audio, frames, rolling = record(host, 9.0)
        end = int(frames[rolling.astype(bool)].max())
        timeline = host.on_timeline(audio, frames, rolling, end)
        s = jam.status()
        assert s["bpm"] == pytest.approx(90.0) and s["rewinds"] > before, s
        # Without the rewind the queue (lookahead 0.3 s + a 0.12 s piece) would play the old
        # tempo; with it only what could not be remade in time: the first 90 bpm beat after
        # the change (0.67 s later) is already on the new grid.
        beats = host.beat_frames(change + int(0.15 * rate), end - rate // 10)
        assert len(beats) >= 6
        err = onset_errors(click_onsets(timeline[0]), beats, rate)
        describe("0.15 s after 120 -> 90 bpm, 300 ms lookahead", err)
        assert len(err) == len(beats) and np.max(np.abs(err)) <= 0.003, (err, beats)
    finally:
        rig.reset_host()
