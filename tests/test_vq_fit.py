"""A hybrid codec's residual VQ fitted offline by k-means: each level lowers the residual,
it quantizes better than codebooks initialised on one short batch, the decoder is kept,
and `jamstream train codebooks` refuses what it cannot fit with one line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import music_like, run_cli, small_hybrid_config
from test_pitch_metrics import harmonic_chords

from model.codec.network import CONFIGS, build_codec, load_codec, save_codec
from model.codec.vq_fit import VQFitConfig, fit_codebooks
from model.errors import JamstreamError

SMALL = small_hybrid_config(codebook_size=32)


def _error(codec, latents: torch.Tensor, levels: int) -> float:
    residual = latents.clone()
    for layer in codec.rvq.layers[:levels]:
        quantized, _, _ = layer(residual)
        residual = residual - quantized
    return float(residual.pow(2).mean())


@pytest.fixture(scope="module")
def chords() -> torch.Tensor:
    """Eight 2 s clips of tones and noise, as one 16 s stream (400 frames for 32 codes)."""
    clips = music_like(8, 96_000, seed=3)
    return torch.cat(list(clips), dim=-1).unsqueeze(0)


def test_offline_fit_lowers_the_residual_level_by_level_and_beats_a_first_batch_init(chords):
    torch.manual_seed(0)
    online = build_codec(SMALL).train()
    with torch.no_grad():
        online(chords[..., : 48_000 * 2])  # the library's k-means init, on the first 2 s only
    online.eval()
    fitted = build_codec(SMALL).eval()
    fitted.load_state_dict(online.state_dict())
    with torch.no_grad():
        latents = fitted.encode_latent(chords)[0]
        errors = fit_codebooks(fitted, latents, VQFitConfig(iters=8), progress=False)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * float(latents.var(0).mean()), errors
    with torch.no_grad():
        assert _error(fitted, latents, 4) < 0.8 * _error(online, latents, 4)
    # the decoder is kept: only the codebooks changed
    for name, value in online.state_dict().items():
        if "rvq" not in name:
            assert torch.equal(value, fitted.state_dict()[name]), name
    tokens = fitted.encode(chords, levels=4)  # usable at once: every level marked initialised
    assert tokens.shape[-1] == 4


def test_a_learned_codec_or_too_few_frames_is_a_one_line_error():
    learned = build_codec(replace(CONFIGS["tiny"], levels=2, codebook_size=16))
    with pytest.raises(JamstreamError, match="fixed latent"):
        fit_codebooks(learned, torch.randn(100, learned.config.latent_dim), VQFitConfig(), progress=False)
    hybrid = build_codec(SMALL)
    with pytest.raises(JamstreamError, match="at least 32 frames"):
        fit_codebooks(hybrid, torch.randn(10, SMALL.latent_dim), VQFitConfig(), progress=False)


def test_train_codebooks_writes_a_checkpoint_that_loads_and_records_the_fit(tiny_corpus, tmp_path, capsys):
    torch.manual_seed(0)
    codec = build_codec(SMALL).train()
    with torch.no_grad():
        codec(torch.from_numpy(harmonic_chords(seconds_per_chord=0.25)).unsqueeze(0))
    src, out = tmp_path / "hybrid.safetensors", tmp_path / "fitted.safetensors"
    save_codec(codec.eval(), src)
    args = ["train", "codebooks", str(src), "--corpus", str(tiny_corpus), "--out", str(out)]
    code, stdout, err = run_cli([*args, "--frames", "400", "--iters", "3", "--json"], capsys)
    assert code == 0, err
    info = json.loads(stdout)
    assert info["frames"] == 400 and len(info["residual_mse"]) == SMALL.levels
    back = load_codec(out)
    assert back.config == codec.config
    assert not torch.equal(back.rvq.layers[0].codebook, codec.rvq.layers[0].codebook)


def test_train_codebooks_bad_input_exits_2_with_one_stderr_line(tiny_corpus, tmp_path, capsys):
    learned = tmp_path / "learned.safetensors"
    save_codec(build_codec(replace(CONFIGS["tiny"], levels=2, codebook_size=16)), learned)
    cases = [
        ([str(learned)], "only a hybrid codec"),
        ([str(tmp_path / "missing.safetensors")], "missing.safetensors"),
    ]
    for checkpoint, message in cases:
        out = str(tmp_path / "o.safetensors")
        args = ["train", "codebooks", *checkpoint, "--corpus", str(tiny_corpus), "--out", out]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.startswith("jamstream: error:") and err.count("\n") == 1 and message in err, err
    out = str(tmp_path / "o.safetensors")
    args = ["train", "codebooks", str(learned), "--corpus", str(tmp_path / "nope"), "--out", out]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert not (tmp_path / "o.safetensors").exists()


def test_a_decoder_trained_on_frozen_codebooks_leaves_the_fitted_books_as_they_were(tiny_corpus, tmp_path):
    from model.train.codec_task import CodecTask, CodecTrainConfig
    from model.train.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    codec = build_codec(SMALL).train()
    with torch.no_grad():
        codec(torch.from_numpy(harmonic_chords(seconds_per_chord=0.25)).unsqueeze(0))
    init = tmp_path / "fitted.safetensors"
    save_codec(codec.eval(), init)
    out = tmp_path / "decoder.safetensors"
    task = CodecTask(
        SMALL, CodecTrainConfig(corpus=str(tiny_corpus), batch_size=2, crop_frames=5, freeze_codebooks=True)
    )
    Trainer(task, TrainConfig(out=str(out), steps=3, warmup_steps=0, init_from=str(init), threads=1)).fit()
    trained = load_codec(out)
    for before, after in zip(codec.rvq.layers, trained.rvq.layers):
        assert torch.equal(before.codebook, after.codebook)
    assert not torch.equal(codec.dec_head.weight, trained.dec_head.weight)  # the decoder did train


def test_freezing_codebooks_without_init_weights_is_a_one_line_error(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    args = ["train", "codec", "--corpus", str(tiny_corpus), "--config", "hybrid", "--freeze-codebooks"]
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--init" in err, err
    assert not out.exists()
