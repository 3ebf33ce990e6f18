"""A full disk during a long job: one line, exit 2, nothing half-written under a final
name, and the job resumes once there is room. A small tmpfs in a private mount namespace
is the full disk (root, as CI is); without that the tests skip."""

from __future__ import annotations

import errno

from support.disk import in_small_disk

from bridge import cli


def test_render_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    song = tmp_path / "song.mid"
    from bridge.jam.conductor import write_conductor

    write_conductor(song, [(0.0, 120.0)], 16, [], (4, 4))
    done = in_small_disk(
        f'$JAM render {song} --preset techno-dub -o $DISK/song.wav --seconds 30; echo "rc=$?"; ls -A $DISK', tmp_path
    )
    out = done.stdout.strip().splitlines()
    assert "rc=2" in out, (done.stdout, done.stderr)
    assert out[-1] == "rc=2", f"files left on the full disk: {out}"  # ls printed nothing after it
    errors = [line for line in done.stderr.splitlines() if line.startswith("jamstream: error:")]
    assert len(errors) == 1 and "no space left" in errors[0], done.stderr


def test_a_corpus_build_stopped_by_a_full_disk_resumes_when_there_is_room(tmp_path):
    script = (
        '$JAM corpus build --out $DISK/c --minutes 0.6 --seed 5 --jobs 1 2>$DISK/../err1; echo "first=$?"; '
        "mount -o remount,size=64m $DISK; "
        '$JAM corpus build --out $DISK/c --minutes 0.6 --seed 5 --jobs 1 2>/dev/null; echo "second=$?"; '
        "cat $DISK/c/manifest.jsonl | wc -l"
    )
    done = in_small_disk(script, tmp_path)
    lines = done.stdout.strip().splitlines()
    assert "first=2" in lines and "second=0" in lines, (done.stdout, done.stderr)
    first_err = (tmp_path / "err1").read_text().strip().splitlines()
    assert len([e for e in first_err if e.startswith("jamstream: error:")]) == 1 and "no space left" in first_err[-1], (
        first_err
    )
    assert any("already done" in line for line in lines) and int(lines[-1]) >= 2, lines


def test_a_full_disk_anywhere_is_one_line_not_a_traceback(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/runs/lm.safetensors")

    import argparse

    monkeypatch.setattr(cli.Parser, "parse_args", lambda self, argv=None: argparse.Namespace(func=full))
    code = cli.main(["corpus", "stats", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no space left writing /data/runs/lm.safetensors" in err, err
