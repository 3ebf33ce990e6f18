"""Controls: CCs move slots and knobs, smoothing is one-pole, junk is counted and ignored."""

from __future__ import annotations

import math
from pathlib import Path

import mido
import pytest
import torch

from bridge.jam.controls import Controls
from bridge.jam.presets import load_preset

PRESET = """\
smoothing_ms = 200

[slots.A]
prompt = "laid-back swing jazz trio"
cc = 20
weight = 1.0

[slots.B]
prompt = "breezy bossa nova trio"
cc = 21
weight = 0.0

[slots.C]
prompt = "hypnotic techno track"
cc = { number = 1, bits = 14 }
weight = 0.0

[controls.temperature]
cc = 71
min = 0.5
max = 2.0
curve = "exponential"

[controls.guidance]
cc = 72
min = 1.0
max = 9.0

[controls.top_k]
cc = 73
min = 10
max = 250
curve = "log"

[controls.gain]
cc = { channel = 2, number = 7 }
min = -40.0
max = 0.0
"""


@pytest.fixture
def controls(tmp_path: Path) -> Controls:
    path = tmp_path / "c.toml"
    path.write_text(PRESET)
    return Controls(load_preset(path))


def cc(channel: int, number: int, value: int) -> bytes:
    return bytes([0xB0 | (channel - 1), number, value])


def test_starts_at_the_preset_weights(controls):
    assert controls.style_weights() == {"A": 1.0, "B": 0.0, "C": 0.0}


def test_cc_moves_the_bound_slot_after_smoothing(controls):
    assert controls.feed(cc(1, 21, 127)) == 1
    assert controls.target_weights()["B"] == 1.0
    assert controls.style_weights()["B"] == 0.0  # nothing moves until time passes
    controls.advance(10.0)
    assert controls.style_weights()["B"] == pytest.approx(1.0)
    assert controls.style_weights()["A"] == pytest.approx(1.0)


def test_mido_messages_work_like_bytes(controls):
    controls.feed(mido.Message("control_change", channel=0, control=20, value=0))
    controls.advance(10.0)
    assert controls.style_weights()["A"] == pytest.approx(0.0)


def test_smoothing_reaches_63_percent_after_one_time_constant(controls):
    controls.feed(cc(1, 21, 127))
    controls.advance(0.2)
    assert controls.style_weights()["B"] == pytest.approx(1 - math.exp(-1), abs=1e-6)
    # the same time in small steps lands in the same place: smoothing is in time, not calls
    controls.feed(cc(1, 20, 0))
    for _ in range(50):
        controls.advance(0.004)
    assert controls.style_weights()["A"] == pytest.approx(math.exp(-1), abs=1e-6)


def test_14_bit_pair_updates_on_either_byte(controls):
    controls.feed(cc(1, 1, 64))  # MSB
    assert controls.target_weights()["C"] == pytest.approx((64 << 7) / 16383)
    controls.feed(cc(1, 33, 127))  # LSB
    assert controls.target_weights()["C"] == pytest.approx(((64 << 7) | 127) / 16383)
    controls.feed(cc(1, 1, 127))
    assert controls.target_weights()["C"] == pytest.approx(1.0)


def test_temperature_follows_its_exponential_curve(controls):
    controls.feed(cc(1, 71, 0))
    assert controls.sampling().temperature == pytest.approx(0.5)
    controls.feed(cc(1, 71, 127))
    assert controls.sampling().temperature == pytest.approx(2.0)
    controls.feed(cc(1, 71, 64))
    assert controls.sampling().temperature == pytest.approx(0.5 * 4 ** (64 / 127))  # geometric midpoint ~1.0


def test_guidance_is_linear_and_top_k_an_integer(controls):
    controls.feed(cc(1, 72, 127))
    assert controls.sampling().guidance == pytest.approx(9.0)
    controls.feed(cc(1, 72, 0))
    assert controls.sampling().guidance == pytest.approx(1.0)
    controls.feed(cc(1, 73, 100))
    top_k = controls.sampling().top_k
    assert isinstance(top_k, int) and top_k == round(10 * 25 ** (100 / 127))


def test_gain_is_smoothed_in_db(controls):
    assert controls.gain_db() == 0.0
    controls.feed(cc(2, 7, 0))
    controls.advance(10.0)
    assert controls.gain_db() == pytest.approx(-40.0)
    assert controls.gain() == pytest.approx(0.01)


def test_mix_is_the_renormalized_weighted_mean(controls):
    emb = torch.nn.functional.normalize(torch.randn(3, 512, generator=torch.Generator().manual_seed(0)), dim=1)
    assert torch.allclose(controls.mix_embedding(emb), emb[0], atol=1e-6)
    controls.feed(cc(1, 21, 127))
    controls.advance(10.0)
    expected = torch.nn.functional.normalize(emb[0] + emb[1], dim=0)
    assert torch.allclose(controls.mix_embedding(emb), expected, atol=1e-5)
    by_name = controls.mix_embedding({"A": emb[0], "B": emb[1], "C": emb[2]})
    assert torch.allclose(by_name, expected, atol=1e-5)


def test_all_zero_weights_hold_the_last_mix_never_nan(controls):
    emb = torch.nn.functional.normalize(torch.randn(3, 512, generator=torch.Generator().manual_seed(1)), dim=1)
    controls.feed(cc(1, 21, 127))
    controls.advance(10.0)
    last = controls.mix_embedding(emb)
    for number in (20, 21):
        controls.feed(cc(1, number, 0))
    controls.advance(10.0)
    assert controls.style_weights() == pytest.approx({"A": 0.0, "B": 0.0, "C": 0.0}, abs=1e-12)
    held = controls.mix_embedding(emb)
    assert torch.isfinite(held).all() and torch.allclose(held, last)


def test_all_zero_before_any_mix_gives_the_initial_mix(controls):
    emb = torch.nn.functional.normalize(torch.randn(3, 512, generator=torch.Generator().manual_seed(2)), dim=1)
    controls.feed(cc(1, 20, 0))
    controls.advance(10.0)
    assert torch.allclose(controls.mix_embedding(emb), emb[0], atol=1e-6)


def test_unknown_cc_and_other_channel_are_counted_and_ignored(controls):
    before = controls.target_weights()
    assert controls.feed(cc(1, 99, 127)) == 0
    assert controls.feed(cc(5, 20, 127)) == 0
    assert controls.feed(mido.Message("note_on", channel=0, note=60, velocity=100)) == 0
    assert controls.target_weights() == before
    assert controls.stats["ignored_unknown_cc"] == 1
    assert controls.stats["ignored_other_channel"] == 1
    assert controls.stats["ignored_other_type"] == 1
    assert controls.stats["applied"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        bytes([0xB0, 20]),  # truncated
        bytes([0xB0, 20, 200]),  # a data byte > 127
        bytes([20, 127]),  # stray data bytes, no status
        [0xB0, 20, 300],  # not a byte at all
        b"",
    ],
)
def test_malformed_bytes_are_counted_and_ignored(controls, raw):
    before = controls.target_weights()
    assert controls.feed(raw) == 0
    assert controls.target_weights() == before
    if raw == b"":
        assert controls.stats["malformed"] == 0
    else:
        assert controls.stats["malformed"] >= 1  # [B0 14 C8]: a truncated CC, then a bare C8
    assert controls.stats["applied"] == 0


def test_a_buffer_with_junk_and_a_good_message_applies_the_good_one(controls):
    assert controls.feed(bytes([0xF8, 0xB0, 20]) + cc(1, 21, 127)) == 1  # clock tick, truncated CC, good CC
    assert controls.target_weights()["B"] == 1.0
    assert controls.stats["malformed"] == 1 and controls.stats["ignored_other_type"] == 1


def test_program_change_requests_a_reload(controls):
    controls.feed(bytes([0xC0, 5]))
    controls.feed(mido.Message("program_change", channel=0, program=6))
    assert controls.reload_requested == 2 and controls.stats["program_change"] == 2


def test_change_counter_moves_only_on_applied_messages(controls):
    controls.feed(cc(1, 99, 1))
    assert controls.changes == 0
    controls.feed(cc(1, 20, 1))
    assert controls.changes == 1
