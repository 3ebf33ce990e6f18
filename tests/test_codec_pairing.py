"""An LM names the codec whose tokens it learned, and a mismatched pair is refused: the
shipped default pair must stay consistent at every commit, whichever codec is default."""

from __future__ import annotations

import pytest
from conftest import run_cli, small_codec

from model.codec.network import codec_fingerprint, load_codec, save_codec
from model.errors import JamstreamError
from model.generator import Generator
from model.io.checkpoint import read_metadata
from model.lm.network import DepthformerLM, LMConfig, load_lm, save_lm
from model.weights import LEGACY_CODEC_FINGERPRINT

SMALL_LM = LMConfig(width=32, heads=2, temporal_layers=1, depth_layers=1, levels=4, codebook_size=64, window=16)


def test_the_shipped_lm_and_codec_are_a_pair():
    lm, codec = load_lm(), load_codec()
    assert lm.codec_fingerprint == codec_fingerprint(codec)
    Generator(lm, codec)


def test_an_lm_saved_before_fingerprints_learned_the_first_shipped_codec(tmp_path):
    path = tmp_path / "old.safetensors"
    save_lm(DepthformerLM(SMALL_LM), path)  # no fingerprint in its metadata
    assert load_lm(path).codec_fingerprint == LEGACY_CODEC_FINGERPRINT


def test_the_fingerprint_survives_export_to_half_precision(tmp_path):
    codec = small_codec(3)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_codec(codec, full)
    save_codec(codec, half, half=True)
    assert codec_fingerprint(load_codec(full)) == codec_fingerprint(load_codec(half)) == codec_fingerprint(codec)
    assert codec_fingerprint(small_codec(4)) != codec_fingerprint(codec)


def test_a_mismatched_pair_is_refused_in_one_line(tmp_path):
    mine, other = small_codec(1), small_codec(2)
    path = tmp_path / "lm.safetensors"
    save_lm(DepthformerLM(SMALL_LM), path, extra={"codec_fingerprint": codec_fingerprint(mine)})
    lm = load_lm(path)
    Generator(lm, mine)
    with pytest.raises(JamstreamError) as err:
        Generator(lm, other)
    assert "\n" not in str(err.value) and codec_fingerprint(mine) in str(err.value) and "--codec" in str(err.value)


def test_generate_with_another_codec_exits_2_with_one_line(tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_codec(small_codec(5), other)
    code, out, err = run_cli(
        ["generate", "funk", "--seconds", "1", "-o", str(tmp_path / "x.wav"), "--codec", str(other)], capsys
    )
    assert code == 2 and err.startswith("jamstream: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "x.wav").exists()


def test_train_lm_records_the_fingerprint_of_the_codec_it_tokenized_with(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "lm.safetensors"
    code, _, err = run_cli(
        ["train", "lm", "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "1", "--threads", "1"], capsys
    )
    assert code == 0, err
    assert read_metadata(out, "lm")[1]["codec_fingerprint"] == codec_fingerprint(load_codec())
