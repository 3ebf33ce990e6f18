"""Preset text the engine and worker tests share: two prompt slots on CC 20/21, 4/4 at
120 bpm, one-bar chunks, 500 ms lookahead, no smoothing (a CC lands at once)."""

TWO_SLOT_PRESET = """\
name = "test"
bpm = 120
meter = "4/4"
chunk = "1 bar"
lookahead_ms = 500
smoothing_ms = 0

[slots.A]
prompt = "techno music"
cc = 20
weight = 1.0

[slots.B]
prompt = "ambient music"
cc = 21
weight = 0.0
"""
