"""Presets: the shipped ones load, and every kind of mistake is one line naming file, key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bridge.jam.presets import PRESETS_DIR, Preset, find_preset, load_preset, shipped_preset_names
from bridge.jam.time.clock import ChunkLength
from model.errors import JamstreamError

GOOD = """\
name = "test"
bpm = 120
meter = "4/4"
chunk = "1 bar"
smoothing_ms = 100

[slots.A]
prompt = "laid-back swing jazz trio"
cc = 20
weight = 1.0

[slots.B]
prompt = "breezy bossa nova trio"
cc = 21
weight = 0.0

[controls.temperature]
cc = 71
min = 0.8
max = 1.6
curve = "exponential"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(JamstreamError) as info:
        load_preset(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_every_shipped_preset_validates_with_two_slots_on_distinct_ccs():
    names = shipped_preset_names()
    assert len(names) >= 6
    for name in names:
        preset = find_preset(name)
        assert isinstance(preset, Preset)
        assert len(preset.slots) >= 2
        keys = [k for s in preset.slots for k in s.cc.keys()]
        assert len(keys) == len(set(keys))
        assert preset.limiter is not None and preset.limiter.ceiling_db == -1.0


def test_shipped_presets_are_musically_distinct():
    prompts = [tuple(s.value for s in find_preset(n).slots) for n in shipped_preset_names()]
    assert len(set(prompts)) == len(prompts)
    assert len({p for group in prompts for p in group}) == sum(len(g) for g in prompts)


def test_a_good_preset_loads_with_its_values(tmp_path):
    preset = load_preset(write(tmp_path, GOOD))
    assert [s.name for s in preset.slots] == ["A", "B"]
    assert preset.slots[0].cc.channel == 1 and preset.slots[0].cc.number == 20 and preset.slots[0].cc.bits == 7
    assert preset.chunk == ChunkLength(1, "bar")
    assert preset.controls["temperature"].curve == "exponential"
    assert preset.controls["temperature"].initial == pytest.approx(1.1)  # the sampling default


def test_unknown_key_suggests_the_closest_known_key(tmp_path):
    message = load_error(tmp_path, GOOD.replace("smoothing_ms", "smothing_ms"))
    assert "smothing_ms" in message and "did you mean 'smoothing_ms'" in message
    message = load_error(tmp_path, GOOD.replace("weight = 1.0", "wieght = 1.0"))
    assert "slots.A.wieght" in message and "'weight'" in message


def test_cc_number_out_of_range(tmp_path):
    message = load_error(tmp_path, GOOD.replace("cc = 20", "cc = 130"))
    assert "slots.A.cc.number" in message and "130" in message and "0..127" in message


def test_channel_out_of_range(tmp_path):
    message = load_error(tmp_path, GOOD.replace("cc = 20", "cc = { channel = 17, number = 20 }"))
    assert "slots.A.cc.channel" in message and "17" in message and "1..16" in message
    message = load_error(tmp_path, "channel = 0\n" + GOOD)
    assert ": channel:" in message


def test_weight_out_of_range(tmp_path):
    message = load_error(tmp_path, GOOD.replace("weight = 1.0", "weight = 1.5"))
    assert "slots.A.weight" in message and "0..1" in message


def test_missing_audio_file_names_the_path_relative_to_the_preset(tmp_path):
    message = load_error(tmp_path, GOOD.replace('prompt = "breezy bossa nova trio"', 'audio = "takes/missing.wav"'))
    assert "slots.B.audio" in message and "takes/missing.wav" in message and "relative to the preset" in message


def test_audio_file_beside_the_preset_resolves(tmp_path):
    (tmp_path / "takes").mkdir()
    (tmp_path / "takes" / "mine.wav").write_bytes(b"RIFF")
    preset = load_preset(write(tmp_path, GOOD.replace('prompt = "breezy bossa nova trio"', 'audio = "takes/mine.wav"')))
    assert preset.slot("B").kind == "audio" and Path(preset.slot("B").value) == tmp_path / "takes" / "mine.wav"


def test_adapter_slot(tmp_path):
    preset = load_preset(write(tmp_path, GOOD.replace('prompt = "breezy bossa nova trio"', 'adapter = "my-band"')))
    assert preset.slot("B").ref == "adapter:my-band"


@pytest.mark.parametrize("name", ["x" * 65, "-band", "my band"])
def test_adapter_names_follow_the_adapter_stores_rule(tmp_path, name):
    message = load_error(tmp_path, GOOD.replace('prompt = "breezy bossa nova trio"', f'adapter = "{name}"'))
    assert "slots.B.adapter" in message and "not an adapter name" in message


@pytest.mark.parametrize(
    "meter, problem",
    [('"4-4"', "is not a meter"), ("4", "is not a meter"), ('"3/5"', "out of range"), ('"17/4"', "out of range")],
)
def test_bad_meter_names_the_key_and_the_rule(tmp_path, meter, problem):
    message = load_error(tmp_path, GOOD.replace('meter = "4/4"', f"meter = {meter}"))
    assert ": meter:" in message and problem in message and "denominator 1, 2, 4, 8 or 16" in message


def test_sampling_ranges_hold_in_both_tables(tmp_path):
    message = load_error(tmp_path, GOOD + "\n[sampling]\ntop_k = 2000\n")
    assert "sampling.top_k" in message and "0..1024" in message
    message = load_error(tmp_path, GOOD.replace("min = 0.8", "min = 11.0"))
    assert "controls.temperature.min" in message and "0..10" in message


def test_duplicate_cc_binding(tmp_path):
    message = load_error(tmp_path, GOOD.replace("cc = 21", "cc = 20"))
    assert "slots.B.cc" in message and "channel 1 CC 20" in message and "slots.A.cc" in message


def test_duplicate_via_a_14_bit_lsb(tmp_path):
    text = GOOD.replace("cc = 20", "cc = { number = 1, bits = 14 }").replace("cc = 21", "cc = 33")
    message = load_error(tmp_path, text)
    assert "slots.B.cc" in message and "CC 33" in message and "LSB" in message


def test_same_cc_on_another_channel_is_fine(tmp_path):
    preset = load_preset(write(tmp_path, GOOD.replace("cc = 21", "cc = { channel = 2, number = 20 }")))
    assert preset.slot("B").cc.channel == 2


def test_14_bit_bindings(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            GOOD.replace("cc = 20", "cc = { number = 1, bits = 14 }").replace(
                "cc = 21", "cc = { number = 70, lsb = 90 }"
            ),
        )
    )
    assert preset.slot("A").cc.lsb == 33 and preset.slot("B").cc.lsb == 90 and preset.slot("B").cc.bits == 14
    message = load_error(tmp_path, GOOD.replace("cc = 20", "cc = { number = 40, bits = 14 }"))
    assert "slots.A.cc.number" in message and "lsb" in message


@pytest.mark.parametrize("chunk", ["one bar", "2 measures", "0 bars", "1.5 beats", "bar"])
def test_bad_chunk_syntax(tmp_path, chunk):
    message = load_error(tmp_path, GOOD.replace('chunk = "1 bar"', f'chunk = "{chunk}"'))
    assert ": chunk:" in message and '"2 beats"' in message


def test_chunk_syntax_accepts_beats_and_bars():
    assert ChunkLength.parse("2 beats") == ChunkLength(2, "beat")
    assert ChunkLength.parse(" 4 Bars ") == ChunkLength(4, "bar")
    assert str(ChunkLength(1, "bar")) == "1 bar"


def test_malformed_toml_gives_the_line_number(tmp_path):
    text = GOOD.replace('meter = "4/4"', "meter = 4/4")  # line 3
    message = load_error(tmp_path, text)
    assert "not valid TOML" in message and re.search(r"line 3\b", message)


def test_no_slots_and_all_zero_weights_are_refused(tmp_path):
    assert "slots" in load_error(tmp_path, "bpm = 120\n")
    assert "weight > 0" in load_error(tmp_path, GOOD.replace("weight = 1.0", "weight = 0.0"))


def test_control_mistakes(tmp_path):
    message = load_error(tmp_path, GOOD.replace("[controls.temperature]", "[controls.temprature]"))
    assert "controls.temprature" in message and "'temperature'" in message
    message = load_error(tmp_path, GOOD.replace('curve = "exponential"', 'curve = "cubic"'))
    assert "controls.temperature.curve" in message
    message = load_error(tmp_path, GOOD.replace("min = 0.8", "min = 0.0"))
    assert "exponential curve needs min and max > 0" in message


def test_effect_chain_ends_in_a_limiter_that_holds_minus_1_dbfs(tmp_path):
    import pedalboard

    preset = find_preset("techno-dub")
    chain = preset.effect_chain()
    assert isinstance(chain, pedalboard.Pedalboard)
    assert isinstance(chain[-2], pedalboard.Limiter) and isinstance(chain[-1], pedalboard.Gain)
    assert chain[-1].gain_db == pytest.approx(-1.0)
    sr = 48_000
    t = np.arange(sr) / sr
    loud = (8.0 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)[None].repeat(2, 0)
    out = chain(loud, sr)
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-4


def test_limiter_is_unity_gain_below_its_threshold(tmp_path):
    preset = load_preset(write(tmp_path, GOOD))
    chain = preset.effect_chain()
    sr = 48_000
    t = np.arange(sr) / sr
    quiet = (0.05 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None].repeat(2, 0)
    out = chain(quiet, sr)
    assert 20 * np.log10(np.abs(out[:, sr // 2 :]).max() / 0.05) == pytest.approx(0.0, abs=0.1)


def test_limiter_off_only_when_asked(tmp_path):
    preset = load_preset(write(tmp_path, "limiter = false\n" + GOOD))
    assert preset.limiter is None and len(preset.effect_chain()) == 0
    assert "limiter" in load_error(tmp_path, 'limiter = "off"\n' + GOOD)


def test_effect_mistakes(tmp_path):
    message = load_error(tmp_path, GOOD + '\n[[effects]]\ntype = "reverbb"\n')
    assert "effects[0].type" in message and "'reverb'" in message
    message = load_error(tmp_path, GOOD + '\n[[effects]]\ntype = "reverb"\nroom = 0.5\n')
    assert "effects[0].room" in message and "room_size" in message
    message = load_error(tmp_path, GOOD + '\n[[effects]]\ntype = "delay"\nfeedback = 1.5\n')
    assert "effects[0].feedback" in message


def test_find_preset_suggests_a_shipped_name():
    with pytest.raises(JamstreamError, match="techno-dub"):
        find_preset("techno-dbu")
    assert (PRESETS_DIR / "techno-dub.toml").is_file()


def test_max_bpm_matches_the_generator():
    from bridge.jam.time.clock import MAX_BPM
    from model.generator import MAX_BPM as GENERATOR_MAX_BPM

    assert MAX_BPM == GENERATOR_MAX_BPM


def test_the_readme_example_validates(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Presets", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "takes").mkdir()
    (tmp_path / "takes" / "bossa.wav").write_bytes(b"RIFF")
    preset = load_preset(write(tmp_path, example))
    assert [s.kind for s in preset.slots] == ["prompt", "audio", "adapter"]
    assert preset.slot("B").cc.lsb == 33 and preset.limiter.ceiling_db == -1.0
