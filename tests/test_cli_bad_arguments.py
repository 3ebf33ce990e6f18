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


def _arguments():
    """(subcommand words, option or None for a positional, the argparse action) for every
    argument of every subcommand."""
    import argparse

    from bridge.cli import build_parser

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*words, name])
            else:
                yield words, action.option_strings[-1] if action.option_strings else None, action

    return list(walk(build_parser(), []))


def _typed_arguments():
    """(words, option, its argparse type) for every argument that has a type (choices aside)."""
    return [(w, o, a.type) for w, o, a in _arguments() if a.type is not None and a.choices is None]


def _numeric_options():
    """(subcommand words, option, its type) for every option of every subcommand that takes
    a number: the sweeps below cover what the CLI grows without a list to keep."""
    from bridge.cli.common import output_file, weights_file

    return [(w, o, t) for w, o, t in _typed_arguments() if o and t not in (str, weights_file, output_file)]


def _path_cases(kind_name):
    """(words, option) of every argument whose type is common.`kind_name`."""
    from bridge.cli import common

    return [(w, o) for w, o, t in _typed_arguments() if t is getattr(common, kind_name)]


NUMERIC_OPTIONS = _numeric_options()


def test_the_sweep_finds_the_numeric_options_of_every_subcommand():
    commands = {" ".join(w) for w, _, _ in NUMERIC_OPTIONS}
    assert {
        "generate",
        "render",
        "jam",
        "serve",
        "train lm",
        "finetune",
        "eval generation",
        "bench lm",
        "plot",
    } <= commands
    assert len(NUMERIC_OPTIONS) > 80


@pytest.mark.parametrize(
    "words, option, kind", NUMERIC_OPTIONS, ids=[f"{' '.join(w)} {o}" for w, o, _ in NUMERIC_OPTIONS]
)
def test_every_numeric_option_refuses_garbage_and_out_of_range_in_one_line(words, option, kind, capsys):
    """Not a number, NaN, infinity and (for a ranged option) values just outside its range
    are refused while the command line is parsed - one line naming the option, exit 2 -
    so no model loads and no job starts on a value it cannot use."""
    values = ["abc", "nan", "inf", "-inf"] + list(getattr(kind, "outside", lambda: [])())
    for value in values:
        code, out, err = run_cli([*words, f"{option}={value}"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and option in lines[0], (value, err)
        assert "Traceback" not in err and out == ""


def test_every_count_and_duration_has_a_range():
    """A count, a duration or a rate given as a bare int or float would take 0 or -1 and
    fail later, deep in a job: each such option says its range (bridge/cli/common.py)."""
    from bridge.cli.common import Bounded

    bare = [f"{' '.join(w)} {o}" for w, o, kind in NUMERIC_OPTIONS if kind in (int, float)]
    assert bare == []
    unbounded = [
        f"{' '.join(w)} {o}"
        for w, o, kind in NUMERIC_OPTIONS
        if isinstance(kind, Bounded) and kind.low is None and kind.high is None
    ]
    assert unbounded == []


POSITIONALS_BEFORE = {("export",): ["lm"]}  # a positional's value goes after those before it


def _command_line(words, option, value):
    if option:
        return [*words, f"{option}={value}"]
    return [*words, *POSITIONALS_BEFORE.get(tuple(words), []), value]


@pytest.mark.parametrize(
    "words, option", _path_cases("weights_file"), ids=lambda x: " ".join(x) if isinstance(x, list) else str(x)
)
def test_every_weights_argument_refuses_a_missing_file_or_a_folder_in_one_line(words, option, tmp_path, capsys):
    for value, said in [
        (str(tmp_path / "missing.safetensors"), "checkpoint not found"),
        (str(tmp_path), "not a regular file"),
    ]:
        code, out, err = run_cli(_command_line(words, option, value), capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and said in lines[0] and value in lines[0], (value, err)


@pytest.mark.parametrize(
    "words, option", _path_cases("output_file"), ids=lambda x: " ".join(x) if isinstance(x, list) else str(x)
)
def test_every_output_argument_refuses_an_unwritable_place_or_a_folder_in_one_line(words, option, tmp_path, capsys):
    for value, said in [("/proc/jamstream/out.wav", "cannot write there"), (str(tmp_path), "is a folder")]:
        code, out, err = run_cli(_command_line(words, option, value), capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and said in lines[0] and (option or "") in lines[0], (value, err)


def test_every_model_and_output_path_is_checked_while_parsing():
    """The options that name weights to read or a file to write carry the type that checks
    them (bridge/cli/common.py), in every subcommand."""
    from bridge.cli.common import output_file, weights_file

    weights = {"--lm", "--codec", "--style", "--draft", "--checkpoint", "--base", "--init"}
    outputs = {"--output", "--json-status"}
    for words, option, action in _arguments():
        if option in weights:
            assert action.type is weights_file, (words, option)
        if option in outputs:
            assert action.type is output_file, (words, option)
