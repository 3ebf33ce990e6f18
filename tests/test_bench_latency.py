"""`jamstream bench latency` runs end to end on its own private dummy JACK server.

The metronome stands in for the model (seconds to load, no weights), so this checks the
bench's plumbing - a private server, jam, the scripted DAW, the three phases and the report -
and that each figure comes out finite. The figures themselves are not asserted against the
targets: a bench reports. --flip-seconds 5 leaves each level plateau time to settle (the
metronome reads the level only on its clicks, a beat apart) before the next flip.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from support.jackd import need_jackd

REPO = Path(__file__).resolve().parents[1]
KEYS = (
    "cc_to_audible_median_s",
    "cc_to_audible_max_s",
    "gain_median_s",
    "gain_max_s",
    "gain_measured",
    "gain_unmeasured",
    "style_median_s",
    "style_max_s",
    "style_measured",
    "style_unmeasured",
    "tempo_follow_s",
    "underruns",
    "xruns",
    "lookahead_ms",
    "piece_frames",
    "margin_ms",
    "smoothing_ms",
    "smoothing_half_s",
    "rtf",
    "preset",
    "log_dir",
)


def test_bench_latency_with_the_metronome_reports_finite_latencies():
    need_jackd()
    cmd = [sys.executable, "-m", "bridge.cli", "bench", "latency", "--metronome", "--json"]
    cmd += ["--preset", "jazz-trio-bossa", "--flips", "2", "--flip-seconds", "5", "--tempo-seconds", "5"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert all(k in report for k in KEYS), sorted(set(KEYS) - set(report))
    figures = ("cc_to_audible_median_s", "cc_to_audible_max_s", "gain_median_s", "style_median_s", "tempo_follow_s")
    for key in figures:
        assert report[key] is not None and math.isfinite(report[key]) and report[key] >= 0, (key, report)
    assert report["gain_measured"] >= 1 and report["style_measured"] >= 1, report
    assert report["cc_to_audible_max_s"] >= report["cc_to_audible_median_s"]
    assert report["tempo_follow_method"] == "metronome clicks on the new grid"
    assert Path(report["log_dir"], "jam.log").is_file()
    assert "bench latency: gain flip 1/2" in proc.stderr  # a progress line per phase


@pytest.mark.parametrize(
    "args, message",
    [
        (["--flips", "0"], "--flips: must be >= 1"),
        (["--flip-seconds", "-3"], "--flip-seconds: must be > 0"),
        (["--tempo-to", "many"], "not a number"),
        (["--preset", "no-such-preset"], "no preset file or shipped preset named 'no-such-preset'"),
        (["--flip-seconds", "0.5"], "--flip-seconds must be >= 1"),
    ],
)
def test_bench_latency_bad_argument_is_one_line_and_exit_2(args, message, capsys):
    code, out, err = run_cli(["bench", "latency", *args], capsys)
    assert code == 2, err
    assert out == "" and err.startswith("jamstream: error:") and err.count("\n") == 1 and message in err, err
