"""What comes from outside, generated at random (hypothesis): MIDI bytes into the controls
and the MIDI clock follower, and preset documents. Nothing raises, the counts add up, a
valid message after garbage still lands, and a bad preset is one line naming its file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.jam.controls import STAT_KEYS, Controls
from bridge.jam.presets import load_preset
from bridge.jam.time.followers import MidiClockFollower
from model.errors import JamstreamError

PRESETS = Path(__file__).resolve().parents[1] / "presets"
PRESET = load_preset(PRESETS / "jazz-trio-bossa.toml")  # slots A on CC20, B on CC21, channel 1
RUNS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

midi_bytes = st.binary(min_size=0, max_size=200)


@RUNS
@given(chunks=st.lists(midi_bytes, max_size=8))
def test_random_midi_bytes_never_raise_and_every_message_is_counted(chunks):
    controls = Controls(PRESET)
    for data in chunks:
        before = dict(controls.stats)
        applied = controls.feed(data)
        grew = {k: controls.stats[k] - before[k] for k in STAT_KEYS}
        assert all(v >= 0 for v in grew.values())
        assert applied == grew["applied"] + grew["program_change"]  # what it says it applied is what it counted
        assert sum(grew.values()) >= (1 if data else 0)  # no byte goes unaccounted for
    controls.advance(1.0)
    for w in controls.style_weights().values():
        assert math.isfinite(w) and 0.0 <= w <= 1.0
    assert math.isfinite(controls.gain_db())


@RUNS
@given(garbage=midi_bytes, value=st.integers(0, 127))
def test_a_valid_cc_after_garbage_still_lands(garbage, value):
    """The parser resynchronises on the next status byte; only an unterminated sysex may
    swallow what follows it, so an end-of-exclusive closes one off first."""
    controls = Controls(PRESET)
    controls.feed(garbage + bytes([0xF7, 0xB0, 21, value]))
    assert controls.target_weights()["B"] == pytest.approx(value / 127, abs=1e-6)


@RUNS
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([0xF8, 0xFA, 0xFB, 0xFC, 0xF2, 0xF3, 0x90, 0xB0]),
            st.binary(max_size=3),
            st.integers(0, 5000),
        ),
        max_size=120,
    )
)
def test_the_midi_clock_follower_takes_any_event_stream(events):
    follower = MidiClockFollower(48_000)
    t = 0
    for status, data, gap in events:
        t += gap
        follower.feed(status, data, t)
        bpm = follower.bpm
        assert bpm is None or (math.isfinite(bpm) and bpm > 0)
        assert math.isfinite(follower.fitted_tick_time) and math.isfinite(follower.quarters_at_tick)
    # after any of that and a second's silence, a clean 120 bpm clock is read at 120 bpm
    t += 48_000 + 1
    follower.feed(0xFA, b"", t)
    for _ in range(48):
        t += 1000  # 48 kHz / (2 beats/s * 24 ticks)
        follower.feed(0xF8, b"", t)
    assert follower.running and follower.bpm == pytest.approx(120.0, rel=1e-6)


KEYS = ["name", "description", "bpm", "meter", "chunk", "lookahead_ms", "smoothing_ms", "seed", "bogus"]
SLOT_KEYS = ["prompt", "cc", "weight", "channel", "bits", "lsb", "bogus"]
CONTROL_KEYS = ["cc", "min", "max", "curve", "initial", "bogus"]
values = st.one_of(
    st.integers(-300, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet="abc 4/bar-xyz", max_size=12),
    st.lists(st.integers(-3, 200), max_size=3),
)


def table(keys) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    top=table(KEYS),
    slots=st.dictionaries(st.sampled_from(["A", "B", "C"]), table(SLOT_KEYS), max_size=3),
    controls=st.dictionaries(
        st.sampled_from(["temperature", "guidance", "top_k", "gain", "wobble"]), table(CONTROL_KEYS), max_size=3
    ),
)
def test_a_random_preset_loads_or_is_one_line_naming_its_file(tmp_path, top, slots, controls):
    path = tmp_path / "random.toml"
    path.write_text(tomli_w.dumps({**top, "slots": slots, "controls": controls}))
    try:
        preset = load_preset(path)
    except JamstreamError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
    else:
        assert preset.slots and math.isfinite(preset.bpm) and preset.bpm > 0


def flat_keys(doc, prefix: tuple = ()) -> list[tuple]:
    """Paths to every scalar of a TOML document (tables and arrays of tables walked)."""
    items = (
        doc.items()
        if isinstance(doc, dict)
        else enumerate(doc)
        if isinstance(doc, list) and doc and isinstance(doc[0], dict)
        else None
    )
    if items is None:
        return [prefix]
    return [path for k, v in items for path in flat_keys(v, (*prefix, k))]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data(), preset=st.sampled_from(sorted(p.name for p in PRESETS.glob("*.toml"))))
def test_one_bad_value_in_a_shipped_preset_is_one_line_naming_that_key(tmp_path, data, preset):
    import tomllib

    doc = tomllib.loads((PRESETS / preset).read_text())
    key = data.draw(st.sampled_from(flat_keys(doc)))
    value = data.draw(values)
    node = doc
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    path = tmp_path / preset
    path.write_text(tomli_w.dumps(doc))
    try:
        load_preset(path)
    except JamstreamError as exc:
        message = str(exc)
        named = str(key[-1]) if isinstance(key[-1], str) else str(key[-2])  # in [[effects]], the table's key
        assert "\n" not in message and str(path) in message and named in message, (key, value, message)
