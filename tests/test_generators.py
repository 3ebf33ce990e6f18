"""The style generators: length, tempo map, determinism, kit layout and captions."""

from __future__ import annotations

import random

import pytest

from model.corpus.arrangement import swung
from model.corpus.harmony import parse_roman
from model.corpus.piece import DRUM_CHANNEL, PITCH_CLASS_NAMES, to_midi
from model.corpus.styles import STYLES, generate, spread_tempo_range

REQUIRED = (
    "swing jazz",
    "bossa nova",
    "techno",
    "house",
    "rock",
    "funk",
    "lofi hip hop",
    "reggae",
    "drum and bass",
    "ambient",
    "synthwave",
)


def midi_tempo_and_meter(piece) -> tuple[float, tuple[int, int]]:
    """bpm (in the meter's beat unit) and meter, as a MIDI reader would see them."""
    mid = to_midi(piece)
    tempo = meter = None
    for msg in mid.tracks[0]:
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif msg.type == "time_signature":
            meter = (msg.numerator, msg.denominator)
    assert tempo is not None and meter is not None
    quarters_per_minute = 60_000_000 / tempo
    return quarters_per_minute * meter[1] / 4, meter


def test_all_required_styles_are_offered():
    assert set(REQUIRED) <= set(STYLES)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("target", [10.0, 21.5, 30.0])
def test_clip_lasts_10_to_30_seconds_and_midi_carries_bpm_and_meter(style, target):
    for seed in range(4):
        piece = generate(style, seed, target)
        assert 10.0 <= piece.seconds <= 30.0
        # the bar count is the feasible one that lands closest to the target
        bar_seconds = piece.beats_per_bar * 60 / piece.bpm
        feasible = [b * bar_seconds for b in range(1, 200) if 10 <= b * bar_seconds <= 30]
        assert abs(piece.seconds - target) <= min(abs(s - target) for s in feasible) + 1e-9
        bpm, meter = midi_tempo_and_meter(piece)
        assert abs(bpm - piece.bpm) < 0.01
        assert meter == piece.meter
        assert 60 <= piece.bpm <= 180


@pytest.mark.parametrize("style", STYLES)
def test_same_seed_reproduces_identical_piece(style):
    a, b = generate(style, 123, 20), generate(style, 123, 20)
    assert a.notes == b.notes and a.tracks == b.tracks
    assert (a.bpm, a.key, a.meter, a.mood, a.extra_tags) == (b.bpm, b.key, b.meter, b.mood, b.extra_tags)


@pytest.mark.parametrize("style", STYLES)
def test_different_seeds_give_different_pieces_with_varied_tempo_and_key(style):
    pieces = [generate(style, seed, 20) for seed in range(12)]
    assert len({tuple(p.notes) for p in pieces}) == len(pieces)
    assert len({p.bpm for p in pieces}) >= 4
    assert len({p.key for p in pieces}) >= 4
    assert len({p.extra_tags["density"] for p in pieces}) >= 2
    assert len({p.caption() for p in pieces}) >= 6


def test_generation_never_touches_global_random_state():
    random.seed(99)
    before = random.getstate()
    for style in STYLES:
        generate(style, 5, 15)
    assert random.getstate() == before


@pytest.mark.parametrize("style", STYLES)
def test_drums_on_channel_9_and_a_bass_track(style):
    for seed in range(3):
        piece = generate(style, seed, 15)
        roles = [t.role for t in piece.tracks]
        assert "bass" in roles
        bass = roles.index("bass")
        assert any(n.track == bass for n in piece.notes)
        drum_tracks = [i for i, t in enumerate(piece.tracks) if t.is_drum]
        if style != "ambient":
            assert len(drum_tracks) == 1
        mid = to_midi(piece)
        for i in drum_tracks:
            channels = {m.channel for m in mid.tracks[i + 1] if m.type == "note_on"}
            assert channels == {DRUM_CHANNEL}
        for i, t in enumerate(piece.tracks):
            if not t.is_drum:
                channels = {m.channel for m in mid.tracks[i + 1] if m.type == "note_on"}
                assert DRUM_CHANNEL not in channels


@pytest.mark.parametrize("style", STYLES)
def test_every_beat_has_a_drum_hit_exactly_on_the_grid(style):
    """Drums carry the beat labels: each beat gets an unhumanized hit at its exact time."""
    for seed in range(3):
        piece = generate(style, seed, 12)
        drum = {n.start for n in piece.notes if piece.tracks[n.track].is_drum}
        missing = [b for b in range(int(piece.total_beats)) if float(b) not in drum]
        assert not missing, f"beats without a drum hit: {missing[:5]}"


@pytest.mark.parametrize("style", STYLES)
def test_notes_are_valid_midi_inside_the_clip(style):
    for seed in range(3):
        piece = generate(style, seed, 25)
        assert piece.notes
        used = {n.track for n in piece.notes}
        assert used == set(range(len(piece.tracks))), "every track plays something"
        for n in piece.notes:
            assert 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127
            assert 0 <= n.start < piece.total_beats
            assert n.duration > 0 and n.start + n.duration <= piece.total_beats + 1e-9
            if not piece.tracks[n.track].is_drum:
                assert 21 <= n.pitch <= 108


@pytest.mark.parametrize("style", STYLES)
def test_metadata_and_caption(style):
    piece = generate(style, 42, 20)
    assert piece.piece_id == f"gen:{style}:42"
    assert piece.source == "generator" and piece.genre == style
    assert piece.extra_tags["density"] in ("sparse", "medium", "busy")
    assert piece.mood and piece.ensemble
    tonic, mode = piece.key.rsplit(" ", 1)
    assert tonic in PITCH_CLASS_NAMES and mode in ("major", "minor")
    caption = piece.caption()
    assert f"{round(piece.bpm)} bpm" in caption and piece.key in caption
    assert all(t.instrument in caption for t in piece.tracks)


def test_styles_vary_meter_where_the_style_allows():
    assert {generate("rock", s, 20).meter for s in range(40)} >= {(4, 4), (6, 8)}
    assert {generate("jazz waltz", s, 20).meter for s in range(5)} == {(3, 4)}
    assert {generate("techno", s, 20).meter for s in range(10)} == {(4, 4)}


def test_style_tempo_ranges_are_idiomatic():
    assert all(70 <= generate("lofi hip hop", s, 20).bpm <= 90 for s in range(20))
    assert all(160 <= generate("drum and bass", s, 20).bpm <= 180 for s in range(20))
    assert all(60 <= generate("ambient", s, 20).bpm <= 80 for s in range(20))
    assert all(90 <= generate("synthwave", s, 20).bpm <= 120 for s in range(20))


def test_tempo_spread_one_is_the_default_draw_so_old_corpora_rebuild_identically():
    for style in ("reggae", "techno", "rock"):
        for seed in range(5):
            assert generate(style, seed, 20, tempo_spread=1.0).notes == generate(style, seed, 20).notes


def test_tempo_spread_takes_half_the_clips_beyond_the_native_range_and_never_past_its_bounds():
    native = [generate("reggae", s, 20).bpm for s in range(60)]
    spread = [generate("reggae", s, 20, tempo_spread=1.5).bpm for s in range(60)]
    assert all(66 <= b <= 90 for b in native)
    lo, hi = spread_tempo_range(66, 90, 1.5)
    assert (lo, hi) == (56, 135)
    assert all(lo <= b <= hi for b in spread)
    outside = sum(not 66 <= b <= 90 for b in spread)
    assert 10 <= outside <= 40, outside  # about half of the wide half lands outside 66-90
    assert max(spread) > 110  # reggae reaches techno tempi
    assert spread_tempo_range(160, 180, 1.5) == (107, 190)  # capped at SPREAD_BPM


def test_unknown_style_raises_value_error_naming_known_styles():
    with pytest.raises(ValueError) as err:
        generate("polka", 1, 20)
    assert "swing jazz" in str(err.value) and "techno" in str(err.value)


def test_roman_numerals_are_relative_to_the_major_scale_of_the_tonic():
    assert sorted(parse_roman("bVImaj7", 0).pcs) == sorted([8, 0, 3, 7])  # A-flat maj7 in C
    assert sorted(parse_roman("ii7", 10).pcs) == sorted([0, 3, 7, 10])  # C m7 in B-flat
    assert parse_roman("V7", 9).pcs == [4, 8, 11, 2]  # E7 in A


def test_swing_delays_only_offbeat_eighths():
    assert swung(1.0, 2 / 3) == 1.0
    assert swung(1.5, 2 / 3) == pytest.approx(1 + 2 / 3)
    assert swung(2.25, 0.6, unit=0.25) == pytest.approx(2.3)
    assert swung(2.5, 0.6, unit=0.25) == 2.5
