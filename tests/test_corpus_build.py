"""The corpus builder: real renders, exact beats, disjoint splits, resumable, strict input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import TINY_MINUTES, TINY_SEED, manifest_rows, run_cli

from model.corpus.build import ClipSpec, build_clip, build_corpus, plan_clips
from model.corpus.synth import default_soundfont
from model.io.audio import load_audio


def test_tiny_build_has_rows_with_captions_tags_and_beats(tiny_corpus):
    rows = manifest_rows(tiny_corpus)
    assert len(rows) >= 4
    for row in rows:
        assert row["caption"] and str(round(row["tags"]["bpm"])) in row["caption"]
        for key in ("genre", "instruments", "bpm", "key", "meter", "source"):
            assert key in row["tags"]
        assert 60 <= row["tags"]["bpm"] <= 180
        assert 10.0 <= row["duration"] <= 30.5
        beats, downbeats = row["beats"], row["downbeats"]
        assert beats[0] == 0.0 and downbeats[0] == 0.0
        assert set(downbeats) <= set(beats)
        assert np.all(np.diff(beats) > 0)
        # Constant tempo: beat spacing is exactly 60 / bpm.
        assert np.allclose(np.diff(beats), 60.0 / row["tags"]["bpm"], atol=2e-3)


def test_rendered_audio_is_48k_stereo_nonsilent_and_of_manifest_duration(tiny_corpus):
    from pedalboard.io import AudioFile

    for row in manifest_rows(tiny_corpus):
        with AudioFile(str(tiny_corpus / row["path"])) as f:
            assert f.samplerate == 48000
            assert f.num_channels == 2
            assert abs(f.frames / 48000 - row["duration"]) < 1e-3
            audio = f.read(f.frames)
        rms = float(np.sqrt(np.mean(audio**2)))
        assert rms > 0.01, f"{row['id']} is near-silent (rms {rms})"


def test_splits_are_disjoint_by_source_piece(tiny_corpus):
    by_split: dict[str, set[str]] = {}
    for row in manifest_rows(tiny_corpus):
        by_split.setdefault(row["split"], set()).add(row["piece_id"])
    splits = list(by_split.values())
    for i in range(len(splits)):
        for j in range(i + 1, len(splits)):
            assert not splits[i] & splits[j]
    ids = [r["piece_id"] for r in manifest_rows(tiny_corpus)]
    assert len(ids) == len(set(ids))


def test_plan_is_deterministic_and_prefix_stable_across_sizes():
    small, large = plan_clips(3, 2.0), plan_clips(3, 6.0)
    assert small == plan_clips(3, 2.0)
    assert large[: len(small)] == small
    assert plan_clips(4, 2.0) != small


def test_plan_covers_both_sources_and_every_genre_in_ten_minutes():
    specs = plan_clips(0, 10.0)
    assert {s.source for s in specs} == {"music21", "generator"}
    assert len({s.genre for s in specs}) >= 12


def test_rerun_is_idempotent_and_redoes_a_half_written_clip(tiny_corpus, capsys):
    manifest = (tiny_corpus / "manifest.jsonl").read_bytes()
    rows = manifest_rows(tiny_corpus)
    mtimes = {r["id"]: os.stat(tiny_corpus / r["path"]).st_mtime_ns for r in rows}
    code, out, _ = run_cli(
        [
            "corpus",
            "build",
            "--out",
            str(tiny_corpus),
            "--minutes",
            str(TINY_MINUTES),
            "--seed",
            str(TINY_SEED),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["built"] == 0 and summary["skipped_finished"] == len(rows)
    assert (tiny_corpus / "manifest.jsonl").read_bytes() == manifest
    assert {r["id"]: os.stat(tiny_corpus / r["path"]).st_mtime_ns for r in rows} == mtimes

    # A crash mid-clip: its row never got written and a partial file lies around.
    victim = rows[0]
    (tiny_corpus / "rows" / f"{victim['id']}.json").unlink()
    audio_path = tiny_corpus / victim["path"]
    original = load_audio(audio_path)
    audio_path.write_bytes(b"half a flac")
    code, out, _ = run_cli(
        [
            "corpus",
            "build",
            "--out",
            str(tiny_corpus),
            "--minutes",
            str(TINY_MINUTES),
            "--seed",
            str(TINY_SEED),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["built"] == 1
    assert (tiny_corpus / "manifest.jsonl").read_bytes() == manifest
    # Same seed, same render: the redone clip is sample-identical to the first one.
    np.testing.assert_array_equal(load_audio(audio_path), original)


@pytest.mark.parametrize("genre", ["techno", "rock", "funk", "house"])
def test_annotated_beats_agree_with_audio_onsets_on_drum_heavy_clips(tmp_path, genre):
    import librosa

    spec = ClipSpec(
        clip_id=f"t-{genre}", index=0, source="generator", genre=genre, seed=11, target_seconds=15.0, split="train"
    )
    row = build_clip(spec, tmp_path, default_soundfont())
    audio = load_audio(tmp_path / row["path"]).mean(axis=0)
    sr = 48000
    onsets = librosa.onset.onset_detect(y=audio, sr=sr, units="time", hop_length=256, backtrack=False)
    beats = np.array(row["beats"])
    errors = np.array([np.min(np.abs(onsets - b)) for b in beats])
    assert np.median(errors) < 0.030, f"{genre}: median beat-to-onset error {np.median(errors) * 1000:.1f} ms"


def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cases = [
        ["corpus", "build", "--out", str(blocker / "corpus"), "--minutes", "1"],
        ["corpus", "build", "--out", str(tmp_path / "c1"), "--minutes", "0"],
        ["corpus", "build", "--out", str(tmp_path / "c2"), "--minutes", "-3"],
        [
            "corpus",
            "build",
            "--out",
            str(tmp_path / "c3"),
            "--minutes",
            "1",
            "--soundfont",
            str(tmp_path / "missing.sf2"),
        ],
        ["corpus", "build", "--out", str(tmp_path / "c4"), "--minutes", "lots"],
        ["corpus", "stats", str(tmp_path / "nowhere")],
        ["corpus", "build", "--out", str(tmp_path / "c5"), "--minutes", "1", "--tempo-spread", "0.5"],
    ]
    for args in cases:
        code, out, err = run_cli(args, capsys)
        assert code == 2, args
        assert err.count("\n") == 1 and err.startswith("jamstream: error:"), (args, err)
        assert "Traceback" not in err


def test_extending_a_corpus_with_another_seed_or_tempo_spread_is_refused_and_changes_nothing(tiny_corpus, capsys):
    manifest = (tiny_corpus / "manifest.jsonl").read_bytes()
    for extra in (["--seed", str(TINY_SEED + 1)], ["--seed", str(TINY_SEED), "--tempo-spread", "1.5"]):
        code, _, err = run_cli(
            ["corpus", "build", "--out", str(tiny_corpus), "--minutes", str(TINY_MINUTES * 2), *extra], capsys
        )
        assert code == 2 and err.count("\n") == 1 and "new --out" in err, err
    assert (tiny_corpus / "manifest.jsonl").read_bytes() == manifest


def test_corrupt_manifest_line_is_reported_by_line_number(tiny_corpus, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    lines = (tiny_corpus / "manifest.jsonl").read_text().splitlines()
    lines.insert(1, '{"id": "x", "path": ')
    (broken / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(["corpus", "stats", str(broken)], capsys)
    assert code == 2
    assert "manifest.jsonl:2" in err and err.count("\n") == 1


def test_stats_json_summarises_splits_genres_and_tempi(tiny_corpus, capsys):
    code, out, _ = run_cli(["corpus", "stats", str(tiny_corpus), "--json"], capsys)
    assert code == 0
    stats = json.loads(out)
    for key in ("clips", "minutes", "splits", "genres", "bpm_histogram"):
        assert key in stats
    rows = manifest_rows(tiny_corpus)
    assert stats["clips"] == len(rows)
    assert sum(stats["genres"].values()) == len(rows)
    assert abs(stats["minutes"] - sum(r["duration"] for r in rows) / 60) < 1e-2
    assert sum(s["clips"] for s in stats["splits"].values()) == len(rows)


def test_missing_soundfont_is_caught_before_any_work(tmp_path):
    from model.errors import JamstreamError

    with pytest.raises(JamstreamError, match="soundfont not found"):
        build_corpus(tmp_path / "c", 1.0, soundfont=str(tmp_path / "none.sf2"))
    assert not (tmp_path / "c").exists()
