"""Piece -> MIDI -> beat times: the tempo map is the single source of the beat grid."""

from __future__ import annotations

import mido
import pytest

from model.corpus.piece import Note, Piece, Track, beat_times, quarter_tempo_us, to_midi


def _piece(bpm: float, meter: tuple[int, int], bars: int = 4) -> Piece:
    return Piece(
        piece_id="test",
        source="generator",
        genre="test",
        bpm=bpm,
        meter=meter,
        key="C major",
        bars=bars,
        tracks=[Track("keys", 0, "piano"), Track("drums", 0, "drum kit", is_drum=True)],
        notes=[Note(b, 0.5, 60, 90, 0) for b in range(bars * meter[0])] + [Note(0, 0.25, 36, 100, 1)],
    )


@pytest.mark.parametrize("bpm,meter", [(120, (4, 4)), (96, (3, 4)), (150, (6, 8)), (70, (4, 2))])
def test_midi_carries_the_bpm_and_meter_and_beats_follow_them(bpm, meter):
    piece = _piece(bpm, meter)
    mid = to_midi(piece)
    tempos = [m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"]
    sigs = [(m.numerator, m.denominator) for t in mid.tracks for m in t if m.type == "time_signature"]
    assert tempos == [quarter_tempo_us(bpm, meter)]
    assert sigs == [meter]
    # Read back as a listener would: seconds per beat of the meter's denominator.
    quarter_seconds = mido.tempo2bpm(tempos[0])
    assert abs(quarter_seconds * meter[1] / 4 - bpm) < 1e-3
    beats, downbeats = beat_times(mid, piece.seconds)
    assert len(beats) == piece.bars * meter[0]
    assert len(downbeats) == piece.bars
    assert abs(beats[1] - 60.0 / bpm) < 1e-4
    assert abs(downbeats[1] - meter[0] * 60.0 / bpm) < 1e-4
    assert abs(mid.length - piece.seconds) < 1e-3


def test_drums_land_on_channel_ten_and_melodic_tracks_get_their_program():
    mid = to_midi(_piece(100, (4, 4)))
    drum_notes = [m for m in mid.tracks[2] if m.type == "note_on"]
    assert drum_notes and all(m.channel == 9 for m in drum_notes)
    programs = [m.program for m in mid.tracks[1] if m.type == "program_change"]
    assert programs == [0]


def test_caption_names_mood_ensemble_instruments_tempo_and_key():
    p = _piece(96, (3, 4))
    p.mood, p.ensemble = "laid-back", "jazz duo"
    assert p.caption() == "laid-back jazz duo, piano and drum kit, 96 bpm, in 3/4, C major"
