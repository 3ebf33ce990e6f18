"""`jamstream plot`: a spectrogram PNG a musician can read the notes from, or one line."""

from __future__ import annotations

import numpy as np
from conftest import run_cli
from support.synth_clips import piano_chords

from model.io.audio import write_audio
from model.io.spectrogram_plot import BINS_PER_OCTAVE, cqt_db

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_picture_of_a_chord_shows_its_notes_as_rows():
    db = cqt_db(piano_chords(4.0), 48_000)  # bar 1: C major, C3 under C4-E4-G4
    level = np.median(db[:, 20:150], axis=1)  # the first chord, its attack left out
    note = {name: BINS_PER_OCTAVE * (octave - 1) + 3 * semitone for name, octave, semitone in
            [("C4", 4, 0), ("E4", 4, 4), ("G4", 4, 7), ("C#4", 4, 1), ("F#4", 4, 6)]}  # fmt: skip
    for played in ("C4", "E4", "G4"):
        for absent in ("C#4", "F#4"):
            assert level[note[played]] > level[note[absent]] + 10.0  # dB: a bright row, a dark one


def test_plot_draws_a_png_per_file_row_next_to_the_audio(tmp_path, capsys):
    a, b = tmp_path / "a.flac", tmp_path / "b.wav"
    write_audio(a, piano_chords(3.0))
    write_audio(b, np.zeros((2, 48_000 * 2), dtype=np.float32))
    code, out, _ = run_cli(["plot", str(a)], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
    code, _, _ = run_cli(["plot", str(a), str(b), "--start", "0.5", "--seconds", "1", "-o", str(tmp_path / "ab.png")])
    assert code == 0 and (tmp_path / "ab.png").stat().st_size > (tmp_path / "a.png").stat().st_size / 3


def test_bad_plot_arguments_are_one_line_and_leave_no_picture(tmp_path, capsys):
    a = tmp_path / "a.flac"
    write_audio(a, piano_chords(1.0))
    for args, said in [
        ([str(tmp_path / "missing.wav")], "no such file"),
        ([str(a), "--seconds", "0"], "--seconds"),
        ([str(a), "--start", "30"], "nothing to draw"),
        ([str(a), "-o", "/proc/x.png"], "cannot write"),
    ]:
        code, out, err = run_cli(["plot", *args], capsys)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac"]
