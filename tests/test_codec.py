"""The neural codec: token shapes and ranges, streaming decode, quality by level count,
checkpoints (good and bad) and `jamstream eval codec`.

Everything that does not need trained weights runs on a small freshly built codec; the
tests that judge sound (seams, quality by levels) need the shipped weights and skip
until model/weights/codec.safetensors exists (or JAMSTREAM_TEST_CODEC names a file).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import manifest_rows, music_like, run_cli, small_codec, small_codec_config

from model.codec.network import FRAME_SAMPLES, Codec, StreamingDecoder, bitrate, codebook_states, load_codec, save_codec
from model.errors import JamstreamError
from model.eval.metrics import mel_distance
from model.io.audio import load_audio, write_audio
from model.io.checkpoint import load_tensors, save_checkpoint
from model.weights import WEIGHTS_DIR

SEAM_SAMPLES = 32
LOCAL_SAMPLES = 4800  # 100 ms either side of a seam


@pytest.fixture(scope="module")
def codec() -> Codec:
    return small_codec()


@pytest.fixture(scope="module")
def trained_codec() -> Codec:
    path = Path(os.environ.get("JAMSTREAM_TEST_CODEC") or WEIGHTS_DIR / "codec.safetensors")
    if not path.is_file():
        pytest.skip(f"needs trained codec weights at {path} (not shipped yet; train and export them first)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_codec(path)


@pytest.fixture(scope="module")
def codec_file(codec, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codec") / "small.safetensors"
    save_codec(codec, path)
    return path


def real_clip(corpus: Path, seconds: float) -> torch.Tensor:
    """The first `seconds` of the corpus's longest clip, 48 kHz stereo."""
    row = max(manifest_rows(corpus), key=lambda r: r["duration"])
    audio = load_audio(corpus / row["path"])
    return torch.from_numpy(audio[:, : int(seconds * 48_000)])


def max_jump(x: torch.Tensor) -> float:
    return float(x.diff(dim=-1).abs().max())


# ------------------------------------------------------------------ tokens
def test_encode_pads_to_whole_frames_and_gives_int64_tokens_in_codebook_range(codec):
    cfg = codec.config
    samples = 5 * FRAME_SAMPLES + 777
    audio = music_like(1, samples, seed=3)[0]  # [2, T], not a multiple of 1920
    tokens = codec.encode(audio, levels=cfg.levels)
    frames = math.ceil(samples / FRAME_SAMPLES)
    assert tokens.shape == (1, frames, cfg.levels)
    assert tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < cfg.codebook_size
    decoded = codec.decode(tokens)
    assert decoded.shape == (1, 2, frames * FRAME_SAMPLES)
    assert torch.isfinite(decoded).all()


def test_any_prefix_of_levels_encodes_and_decodes(codec):
    audio = music_like(1, 4 * FRAME_SAMPLES, seed=4)
    full = codec.encode(audio, levels=codec.levels)
    for levels in range(1, codec.levels + 1):
        # Residual VQ: encoding with fewer levels gives exactly the prefix of the full code.
        assert torch.equal(codec.encode(audio, levels=levels), full[..., :levels])
        decoded = codec.decode(full[..., :levels])
        assert decoded.shape == (1, 2, 4 * FRAME_SAMPLES) and torch.isfinite(decoded).all()


@pytest.mark.parametrize("levels", [0, -1, 9])
def test_level_counts_outside_one_to_config_levels_are_rejected(codec, levels):
    assert codec.levels == 8
    audio = music_like(1, FRAME_SAMPLES, seed=5)
    with pytest.raises(JamstreamError, match="levels"):
        codec.encode(audio, levels=levels)
    with pytest.raises(JamstreamError, match="levels"):
        codec.decode(torch.zeros(1, 3, max(levels, 0), dtype=torch.long))


@pytest.mark.parametrize("bad", [-1, 64, 10_000])
def test_out_of_range_tokens_are_rejected(codec, bad):
    tokens = torch.zeros(1, 3, 4, dtype=torch.long)
    tokens[0, 1, 2] = bad
    with pytest.raises(JamstreamError, match="tokens must lie in 0..63"):
        codec.decode(tokens)


def test_audio_of_the_wrong_shape_is_rejected(codec):
    with pytest.raises(JamstreamError, match="batch, 2, samples"):
        codec.encode(torch.zeros(1, 1, FRAME_SAMPLES))


def test_first_training_forward_k_means_initialises_every_level_despite_quantizer_dropout():
    torch.manual_seed(1)
    fresh = Codec(small_codec_config()).train()
    assert not any(bool(book.initted) for book in codebook_states(fresh.rvq))
    for _ in range(2):
        fresh(music_like(4, 6 * FRAME_SAMPLES, seed=2))
    assert all(bool(book.initted) for book in codebook_states(fresh.rvq))
    assert fresh.rvq.quantize_dropout  # dropout is back on for the steps after


def test_encode_refuses_a_codec_that_was_never_trained_rather_than_initialising_on_its_input():
    fresh = Codec(small_codec_config()).eval()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(JamstreamError, match="never trained"):
        fresh.encode(music_like(1, 2 * FRAME_SAMPLES), levels=4)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items())


def test_encoding_does_not_change_the_codec(codec):
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    codec.encode(music_like(1, 3 * FRAME_SAMPLES, seed=12), levels=codec.levels)
    assert all(torch.equal(v, codec.state_dict()[k]) for k, v in before.items())


def test_bitrate_is_frames_times_levels_times_bits_per_code():
    assert bitrate(16) == 25 * 16 * 10 == 4000
    assert bitrate(8, codebook_size=64) == 25 * 8 * 6


# ------------------------------------------------------------------ streaming
CHUNKS = [3, 7, 1, 9, 5, 2, 13]  # 40 frames, 7 pushes of varied sizes


def stream(codec: Codec, tokens: torch.Tensor, sizes: list[int], context: int = 4):
    """Push `tokens` [frames, L] in chunks; (audio, [(start, window_start, window_end)] per push)."""
    dec = StreamingDecoder(codec, context=context)
    outs, pushes, i = [], [], 0
    for size in sizes:
        hist = 0 if dec.history is None else dec.history.shape[0]
        pushes.append((i, i - hist, i + size))
        outs.append(dec.push(tokens[i : i + size]))
        i += size
    assert i == tokens.shape[0]
    outs.append(dec.flush())
    return torch.cat(outs, dim=1), pushes


def test_streamed_output_is_exactly_as_long_as_the_whole_decode(codec):
    tokens = codec.encode(music_like(1, 40 * FRAME_SAMPLES, seed=6), levels=8)[0]
    whole = codec.decode(tokens.unsqueeze(0))[0]
    dec = StreamingDecoder(codec)
    lengths, i = [], 0
    for size in CHUNKS:
        out = dec.push(tokens[i : i + size])
        lengths.append(out.shape[1])
        i += size
    tail = dec.flush()
    # One frame of latency: the first push holds its last frame back, flush releases it.
    assert lengths[0] == (CHUNKS[0] - 1) * FRAME_SAMPLES
    assert lengths[1:] == [s * FRAME_SAMPLES for s in CHUNKS[1:]]
    assert tail.shape == (2, FRAME_SAMPLES)
    assert sum(lengths) + tail.shape[1] == whole.shape[1] == 40 * FRAME_SAMPLES
    assert dec.flush().shape == (2, 0)


def receptive_radius(codec: Codec, tokens: torch.Tensor) -> int:
    """How many frames either side one frame's tokens reach in the decoded audio."""
    n, mid = tokens.shape[0], tokens.shape[0] // 2
    changed = tokens.clone()
    changed[mid] = (changed[mid] + 1) % codec.config.codebook_size
    a = codec.decode(tokens.unsqueeze(0))[0].reshape(2, n, FRAME_SAMPLES)
    b = codec.decode(changed.unsqueeze(0))[0].reshape(2, n, FRAME_SAMPLES)
    touched = torch.nonzero((a - b).abs().amax(dim=(0, 2)) > 0).flatten()
    return int((touched - mid).abs().max())


def test_streamed_audio_equals_whole_decode_wherever_the_window_held_the_full_context(codec):
    tokens = codec.encode(music_like(1, 40 * FRAME_SAMPLES, seed=7), levels=8)[0]
    n = tokens.shape[0]
    radius = receptive_radius(codec, tokens)
    assert 1 <= radius < 10
    context = radius + 2
    whole = codec.decode(tokens.unsqueeze(0))[0]
    streamed, pushes = stream(codec, tokens, CHUNKS, context=context)
    per_frame = (streamed - whole).abs().reshape(2, n, FRAME_SAMPLES).amax(dim=(0, 2))
    peak = float(whole.abs().max())
    checked, far = 0, []
    for k, (start, w0, w1) in enumerate(pushes):
        first = start if k else 0  # frame start-1 is the cross-faded seam; the last frame of a push is held back
        for f in range(first, start + (w1 - start) - 1):
            left_ok = w0 == 0 or f - w0 >= radius
            right_ok = w1 == n or w1 - 1 - f >= radius
            if left_ok and right_ok:
                checked += 1
                assert per_frame[f] <= 1e-5 * peak, (f, float(per_frame[f]), peak)
            else:
                far.append(float(per_frame[f]))
    assert checked >= 15
    # Where the window cut the context short the two decodes do differ (a seam is needed at all).
    assert max(far) > 1e-4 * peak


def test_streamed_seams_are_no_sharper_than_the_music_around_them(trained_codec, request):
    audio = real_clip(request.getfixturevalue("tiny_corpus"), 4.0)  # rendered only when the codec exists
    tokens = trained_codec.encode(audio, levels=16)[0]
    n = tokens.shape[0]
    sizes = [7, 13, 5, 20, 9, 30]
    sizes.append(n - sum(sizes))
    assert sizes[-1] > 0
    streamed, pushes = stream(trained_codec, tokens, sizes)
    assert streamed.shape[1] == n * FRAME_SAMPLES
    for start, _, _ in pushes[1:]:
        # Both ends of the one-frame cross-fade: where the old chunk hands over, where the new one takes over.
        for seam in ((start - 1) * FRAME_SAMPLES, start * FRAME_SAMPLES):
            around = streamed[:, seam - SEAM_SAMPLES : seam + SEAM_SAMPLES + 1]
            local = max(
                max_jump(streamed[:, seam - LOCAL_SAMPLES : seam - SEAM_SAMPLES]),
                max_jump(streamed[:, seam + SEAM_SAMPLES + 1 : seam + LOCAL_SAMPLES]),
            )
            assert max_jump(around) <= local, (seam, max_jump(around), local)


def test_quality_rises_with_every_doubling_of_levels(trained_codec, request):
    audio = real_clip(request.getfixturevalue("tiny_corpus"), 8.0)
    tokens = trained_codec.encode(audio, levels=32)
    distances = []
    for levels in (1, 2, 4, 8, 16, 32):
        decoded = trained_codec.decode(tokens[..., :levels])[0, :, : audio.shape[1]]
        distances.append(float(mel_distance(decoded, audio)))
    assert all(a > b for a, b in zip(distances, distances[1:])), distances


# ------------------------------------------------------------------ checkpoints
def test_saved_codec_loads_back_and_decodes_identically(codec, codec_file):
    tokens = codec.encode(music_like(1, 6 * FRAME_SAMPLES, seed=8), levels=8)
    loaded = load_codec(codec_file)
    assert loaded.config == codec.config and not loaded.training
    assert torch.equal(loaded.decode(tokens), codec.decode(tokens))
    assert torch.equal(loaded.encode(music_like(1, 6 * FRAME_SAMPLES, seed=8), levels=8), tokens)


def test_half_precision_codec_loads_and_decodes_close_to_full(codec, tmp_path):
    path = tmp_path / "half.safetensors"
    save_codec(codec, path, half=True)
    assert all(t.dtype != torch.float32 for t in load_tensors(path, "model").values())
    assert path.stat().st_size < 0.6 * sum(t.numel() * t.element_size() for t in codec.state_dict().values())
    tokens = codec.encode(music_like(1, 6 * FRAME_SAMPLES, seed=9), levels=8)
    full, half = codec.decode(tokens), load_codec(path).decode(tokens)
    assert half.dtype == torch.float32
    assert float((full - half).abs().max()) <= 0.02 * float(full.abs().max())


def _bad_checkpoint(kind: str, codec: Codec, good: Path, folder: Path) -> Path:
    path = folder / f"{kind}.safetensors"
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong_kind":
        tensors = {f"model.{k}": v for k, v in codec.state_dict().items()}
        save_checkpoint(path, "lm", {"layers": 2}, tensors)
    elif kind == "wrong_config":
        # Tensors of the small codec under the header of a wider one.
        from dataclasses import asdict, replace

        other = asdict(replace(codec.config, width_fast=24, latent_dim=12))
        save_checkpoint(path, "codec", other, {f"model.{k}": v for k, v in codec.state_dict().items()})
    elif kind == "unknown_config":
        from dataclasses import asdict

        config = {**asdict(codec.config), "flux_capacitor": 3}
        save_checkpoint(path, "codec", config, {f"model.{k}": v for k, v in codec.state_dict().items()})
    elif kind == "nan":
        tensors = {f"model.{k}": v.clone() for k, v in codec.state_dict().items()}
        next(v for v in tensors.values() if v.is_floating_point() and v.numel() > 1).view(-1)[1] = float("nan")
        save_checkpoint(path, "codec", asdict_config(codec), tensors)
    elif kind == "missing":
        pass
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


BAD_KINDS = {
    "corrupt": "corrupt or truncated|not a jamstream checkpoint",
    "truncated": "corrupt or truncated",
    "empty": "corrupt or truncated",
    "wrong_kind": "holds a 'lm' model, not a 'codec' model",
    "wrong_config": "does not match this model's config",
    "unknown_config": "codec config this version does not know",
    "missing": "checkpoint not found",
    "nan": "holds NaN or infinite values",
}


def asdict_config(codec: Codec) -> dict:
    from dataclasses import asdict

    return asdict(codec.config)


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_checkpoints_raise_a_one_line_error(kind, codec, codec_file, tmp_path):
    path = _bad_checkpoint(kind, codec, codec_file, tmp_path)
    with pytest.raises(JamstreamError, match=BAD_KINDS[kind]) as err:
        load_codec(path)
    message = str(err.value)
    assert message and "\n" not in message and str(path) in message


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_eval_with_a_bad_checkpoint_exits_2_with_one_stderr_line(kind, codec, codec_file, tmp_path, capsys):
    path = _bad_checkpoint(kind, codec, codec_file, tmp_path)
    wav = tmp_path / "file.wav"
    write_audio(wav, music_like(1, 12_000, seed=1)[0].numpy())
    code, out, err = run_cli(["eval", "codec", "--checkpoint", str(path), "--levels", "2", str(wav)], capsys)
    assert code == 2, err
    assert out == ""
    assert err.startswith("jamstream: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ jamstream eval codec
@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory) -> dict[str, Path]:
    from pedalboard.io import AudioFile

    folder = tmp_path_factory.mktemp("eval-inputs")
    good = folder / "good.wav"
    t = np.arange(44_100, dtype=np.float32) / 44_100  # 1 s at 44.1 kHz, mono: eval must convert
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1330 * t)).astype(np.float32)
    with AudioFile(str(good), "w", 44_100, 1) as f:
        f.write(tone[None, :])
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    corrupt = folder / "corrupt.flac"  # FLAC magic, then garbage where the stream info should be
    corrupt.write_bytes(b"fLaC" + np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    notes = folder / "notes.txt"
    notes.write_text("remember to practise the bridge\n")
    silent = folder / "silent.wav"
    with AudioFile(str(silent), "w", 48_000, 2) as f:
        f.write(np.zeros((2, 48_000), dtype=np.float32))
    return {"good": good, "empty": empty, "corrupt": corrupt, "notes": notes, "silent": silent}


def test_eval_reports_each_level_count_beside_mp3_and_skips_unreadable_files(codec_file, eval_inputs, capsys):
    inputs = [str(eval_inputs[k]) for k in ("good", "empty", "corrupt", "notes", "silent")]
    code, out, err = run_cli(
        ["eval", "codec", "--checkpoint", str(codec_file), "--levels", "2,4", *inputs, "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out)
    assert [f["path"] for f in result["files"]] == [inputs[0]]
    # 44.1 kHz mono in, 48 kHz stereo inside: one second stays one second.
    assert result["files"][0]["seconds"] == pytest.approx(1.0, abs=1e-3)
    skipped = {s["path"]: s["reason"] for s in result["skipped"]}
    assert sorted(skipped) == sorted(inputs[1:])
    for path, reason in skipped.items():
        assert reason.startswith(path) and "\n" not in reason
    assert "empty file" in skipped[inputs[1]]
    assert "silent" in skipped[inputs[4]]
    assert set(result["mean"]) == {"2", "4"}
    pitch_keys = ("chroma_corr", "cqt_distance", "dac_mel", "si_sdr_db")
    peer_keys = tuple(f"{peer}_{key}" for peer in ("mp3_32k", "opus_6k", "opus_12k") for key in pitch_keys)
    for lv, m in result["mean"].items():
        for key in (
            "si_snr_db",
            "mel_distance",
            "mp3_32k_mel_distance",
            "encode_rtf",
            "decode_rtf",
            *pitch_keys,
            *peer_keys,
        ):
            assert math.isfinite(m[key]), (lv, key, m[key])
        assert m["bitrate_bps"] == bitrate(int(lv), 64)
        assert m["mel_distance"] > 0 and m["encode_rtf"] > 0 and m["decode_rtf"] > 0
    # MP3 at 32 kbps of a pure two-tone signal is close to transparent; Opus 12k keeps its pitch.
    assert result["mean"]["2"]["mp3_32k_mel_distance"] < 0.5
    assert result["mean"]["2"]["opus_12k_chroma_corr"] > 0.9
    assert result["mean"]["2"]["opus_12k_cqt_distance"] < result["mean"]["2"]["cqt_distance"]


def test_eval_table_names_the_files_evaluated_and_skipped(codec_file, eval_inputs, capsys):
    code, out, err = run_cli(
        [
            "eval",
            "codec",
            "--checkpoint",
            str(codec_file),
            "--levels",
            "4",
            str(eval_inputs["good"]),
            str(eval_inputs["notes"]),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("1 files evaluated, 1 skipped") and "notes.txt" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--levels", "2", "@empty", "@corrupt", "@notes"],  # nothing readable
        ["--levels", "9", "@good"],  # more levels than the codec has
        ["--levels", "two", "@good"],
        [],  # no inputs
    ],
)
def test_eval_bad_input_exits_2_with_one_stderr_line(codec_file, eval_inputs, capsys, args):
    args = [str(eval_inputs[a[1:]]) if a.startswith("@") else a for a in args]
    code, out, err = run_cli(["eval", "codec", "--checkpoint", str(codec_file), *args], capsys)
    assert code == 2, err
    assert out == ""
    assert err.startswith("jamstream: error:") and err.count("\n") == 1, err
