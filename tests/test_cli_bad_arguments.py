"""Bad arguments a new user tries first are one line and exit 2, never a traceback, and
an unwritable output is refused before any work is done."""

from __future__ import annotations

import pytest
from conftest import run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "lm", "--frames", "-5"], "--frames: must be >= 1"),
        (["bench", "lm", "--frames", "many"], "not a whole number"),
        (["eval", "codec", "/dev/null"], "/dev/null: not a regular file"),
        (["generate", "funk", "--seconds", "1", "-o", "/proc/x.wav"], "/proc/x.wav: cannot write there"),
        (["generate", "funk", "--seconds", "1", "-o", "@dir"], "is a folder"),
    ],
)
def test_bad_argument_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    args = [str(tmp_path) if a == "@dir" else a for a in args]
    code, out, err = run_cli(args, capsys)
    assert code == 2, err
    assert out == "" and err.startswith("jamstream: error:") and err.count("\n") == 1 and message in err, err


def test_an_unwritable_render_output_is_refused_before_rendering(tmp_path, capsys):
    from bridge.jam.conductor import write_conductor

    song = write_conductor(tmp_path / "s.mid", [(0.0, 120.0)], 2, [], (4, 4))
    code, out, err = run_cli(["render", str(song), "--preset", "techno-dub", "-o", "/proc/song.wav"], capsys)
    assert code == 2 and err.count("\n") == 1 and "/proc/song.wav: cannot write there" in err, err
    assert "render" not in out  # refused before the progress of a bounce
