"""The hybrid codec keeps the notes by construction: its fixed spectrum and peak-locked
phase resynthesise pitch, its decoder starts as their exact inverse, and it is a codec
like any other (RVQ prefixes, streaming, save/load)."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from conftest import small_hybrid_config
from test_pitch_metrics import harmonic_chords

from model.codec.hybrid import HybridCodec
from model.codec.network import FRAME_SAMPLES, StreamingDecoder, build_codec, load_codec, save_codec
from model.codec.spectral import (
    PHASE_FLOOR,
    frame_stft,
    overlap_add,
    overlap_add_frames,
    peak_locked_phase,
    peak_locked_phase_frames,
    polar_frames,
)
from model.errors import JamstreamError
from model.eval.pitch import chroma_corr

SMALL = small_hybrid_config()


@pytest.fixture(scope="module")
def hybrid():
    torch.manual_seed(0)
    codec = build_codec(SMALL).train()
    with torch.no_grad():
        codec(torch.from_numpy(harmonic_chords(seconds_per_chord=0.5)).unsqueeze(0))  # k-means-initialise every level
    return codec.eval()


def test_overlap_add_inverts_the_framed_stft():
    x = torch.from_numpy(harmonic_chords())[:, : 20 * FRAME_SAMPLES]
    window = torch.hann_window(3840)
    back = overlap_add(frame_stft(x, 3840, 480, window), x.shape[1], 480, window)
    assert torch.allclose(back, x, atol=1e-4)


def test_peak_locked_phase_puts_a_tone_between_bins_back_at_its_frequency():
    """At 3840 points a bin is 12.5 Hz: 110.3 Hz sits a quarter-bin off, and only the
    interpolated peak frequency, not the bin's, brings it back within a fraction of a Hz."""
    rate, f0 = 48_000, 110.3
    t = torch.arange(4 * rate) / rate
    x = (0.3 * torch.sin(2 * torch.pi * f0 * t)).unsqueeze(0)
    window = torch.hann_window(3840)
    mag = frame_stft(x, 3840, 480, window).abs()
    y = overlap_add(torch.polar(mag, peak_locked_phase(mag, 480, 3840)[0]), x.shape[1], 480, window)[0].numpy()
    spec = np.abs(np.fft.rfft(y[rate:] * np.hanning(3 * rate)))
    assert abs(np.fft.rfftfreq(3 * rate, 1 / rate)[np.argmax(spec)] - f0) < 0.5


def test_magnitudes_with_peak_locked_phase_keep_the_chords_and_random_phase_does_not():
    x = torch.from_numpy(harmonic_chords())
    window = torch.hann_window(3840)
    mag = frame_stft(x, 3840, 480, window).abs()
    locked = overlap_add(torch.polar(mag, peak_locked_phase(mag, 480, 3840)[0]), x.shape[1], 480, window)
    random = overlap_add(torch.polar(mag, torch.rand_like(mag) * 6.283), x.shape[1], 480, window)
    assert chroma_corr(locked.numpy(), x.numpy()) > 0.9
    assert chroma_corr(random.numpy(), x.numpy()) < chroma_corr(locked.numpy(), x.numpy()) - 0.1


def test_the_untrained_decoder_is_the_exact_fixed_inverse_and_keeps_the_chords():
    codec = build_codec(SMALL).eval()
    x = torch.from_numpy(harmonic_chords()).unsqueeze(0)
    with torch.no_grad():
        y = codec.decode_latent(codec.encode_latent(x))[0]
    assert chroma_corr(y.numpy(), x[0].numpy()) > 0.85


def test_any_prefix_of_levels_decodes_to_audio_of_the_right_length(hybrid):
    x = torch.from_numpy(harmonic_chords(seconds_per_chord=0.5))
    tokens = hybrid.encode(x, levels=4)
    assert tokens.shape == (1, x.shape[1] // FRAME_SAMPLES, 4) and tokens.dtype == torch.int64
    for lv in range(1, 5):
        audio = hybrid.decode(tokens[..., :lv])
        assert audio.shape == (1, 2, tokens.shape[1] * FRAME_SAMPLES) and torch.isfinite(audio).all()


def test_the_streaming_decoder_plays_a_hybrid_stream_whole(hybrid):
    tokens = hybrid.encode(torch.from_numpy(harmonic_chords(seconds_per_chord=0.5)), levels=4)[0]
    stream = StreamingDecoder(hybrid)
    parts = [stream.push(tokens[i : i + 7]) for i in range(0, tokens.shape[0], 7)] + [stream.flush()]
    audio = torch.cat(parts, dim=1)
    assert audio.shape == (2, tokens.shape[0] * FRAME_SAMPLES) and torch.isfinite(audio).all()


def test_streamed_windows_keep_one_phase_track_so_the_stream_equals_the_whole_decode():
    """Each window's phase continues the track the window before left: with the untrained
    (exact-inverse) decoder, whose magnitudes do not depend on the window, a stream in
    7-frame pushes equals the whole decode; restarting the track at every window would not."""
    torch.manual_seed(1)
    codec = build_codec(SMALL).train()
    x = torch.from_numpy(harmonic_chords(seconds_per_chord=0.5))
    with torch.no_grad():
        codec(x.unsqueeze(0))
    codec.eval()
    tokens = codec.encode(x, levels=4)[0]
    whole = codec.decode(tokens.unsqueeze(0))[0]

    def stream(keep_track: bool) -> torch.Tensor:
        dec = StreamingDecoder(codec)
        parts = []
        for i in range(0, tokens.shape[0], 7):
            if not keep_track:
                dec.phase = None
            parts.append(dec.push(tokens[i : i + 7]))
        return torch.cat(parts + [dec.flush()], dim=1)

    body = slice(FRAME_SAMPLES, whole.shape[1] - FRAME_SAMPLES)  # the stream's first and last frames are faded
    kept, restarted = stream(True), stream(False)
    assert torch.allclose(kept[:, body], whole[:, body], atol=2e-3)  # seams: 1e-4..1e-3 of a 0.27 peak
    assert not torch.allclose(restarted[:, body], whole[:, body], atol=1e-2)


def test_a_saved_hybrid_loads_back_as_a_hybrid_and_decodes_identically(hybrid, tmp_path):
    path = tmp_path / "hybrid.safetensors"
    save_codec(hybrid, path)
    back = load_codec(path)
    assert isinstance(back, HybridCodec) and back.config == hybrid.config
    tokens = hybrid.encode(torch.from_numpy(harmonic_chords(seconds_per_chord=0.25)), levels=3)
    assert torch.equal(back.decode(tokens), hybrid.decode(tokens))


def test_a_latent_width_that_does_not_fit_the_spectrum_is_a_one_line_error():
    with pytest.raises(JamstreamError, match="latent_dim follows from its spectrum"):
        build_codec(replace(SMALL, latent_dim=64))
    with pytest.raises(JamstreamError, match="design must be"):
        build_codec(replace(SMALL, design="magic"))


def test_valley_companding_brings_the_quiet_between_partials_nearer_the_peak_and_decodes_back():
    """Below the knee the latent is the spectrum itself; beyond it a value keeps only
    valley_slope of its extra depth, and the fixed inverse undoes that exactly."""
    x = torch.from_numpy(harmonic_chords(seconds_per_chord=0.5)).unsqueeze(0)
    plain = build_codec(replace(SMALL, valley_knee=0.0, valley_slope=1.0)).eval()
    companded = build_codec(SMALL).eval()
    assert SMALL.valley_knee > 0 and SMALL.valley_slope < 1
    dim = companded.spectrum.dim
    raw, squeezed = plain.encode_latent(x)[..., :dim], companded.encode_latent(x)[..., :dim]
    depth, kept = raw.amax(-1, keepdim=True) - raw, squeezed.amax(-1, keepdim=True) - squeezed
    shallow, deep = depth <= SMALL.valley_knee, depth > SMALL.valley_knee + 1
    assert shallow.any() and deep.any()
    assert torch.allclose(kept[shallow], depth[shallow], atol=1e-5)
    expected = SMALL.valley_knee + (depth[deep] - SMALL.valley_knee) * SMALL.valley_slope
    assert torch.allclose(kept[deep], expected, atol=1e-4)
    with torch.no_grad():
        back = companded.fixed_log_magnitude(companded.encode_latent(x))
        assert torch.allclose(back, plain.fixed_log_magnitude(plain.encode_latent(x)), atol=1e-3)


def test_a_hybrid_saved_before_companding_existed_loads_and_decodes_without_it(tmp_path):
    """Checkpoints store their config; one written before valley companding existed has
    no such fields and must decode as it was trained (the first codec-hybrid weights)."""
    from model.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    before = build_codec(replace(SMALL, valley_knee=0.0, valley_slope=1.0)).eval()
    config = {k: v for k, v in asdict(before.config).items() if not k.startswith("valley_")}
    path = tmp_path / "old-hybrid.safetensors"
    save_checkpoint(path, "codec", config, {f"model.{k}": v for k, v in before.state_dict().items()})
    back = load_codec(path)
    assert back.config.valley_knee == 0.0
    tokens = torch.randint(0, SMALL.codebook_size, (1, 10, 3))
    assert torch.equal(back.decode(tokens), before.decode(tokens))


def test_the_frames_major_phase_path_equals_peak_locked_phase_and_polar():
    """The hybrid decoder builds its spectrum frames-major (no transposes, cos/sin rather
    than torch.polar); it must be the same spectrum the documented path gives."""
    torch.manual_seed(0)
    mag = torch.rand(2, 1921, 40) ** 4
    phase, turns = peak_locked_phase(mag, 480, 3840)
    logm = torch.log(mag.transpose(1, 2).clamp_min(PHASE_FLOOR)).contiguous()
    phase_f, turns_f = peak_locked_phase_frames(logm, 480, 3840)
    assert torch.equal(turns, turns_f)
    spec = polar_frames(mag.transpose(1, 2), phase_f)
    assert torch.allclose(spec, torch.polar(mag, phase).transpose(1, 2), atol=1e-6)
    window = torch.hann_window(3840)
    assert torch.allclose(
        overlap_add_frames(spec, 40 * 480, 480, window), overlap_add(spec.transpose(1, 2), 40 * 480, 480, window)
    )


def test_a_positive_correction_only_lifts_bins_and_starts_on_the_fixed_inverse():
    """The "positive" decoder may fill valleys but never lower a partial: measured on the
    shipped hybrid, the lowering half of a free correction is what cost chroma."""
    torch.manual_seed(0)
    codec = build_codec(small_hybrid_config(correction="positive")).eval()
    audio = torch.from_numpy(harmonic_chords(seconds_per_chord=0.5)).unsqueeze(0)[..., : 25 * FRAME_SAMPLES]
    with torch.no_grad():
        latent = codec.encode_latent(audio)
        fixed = codec.fixed_log_magnitude(latent)
        assert (codec.log_magnitude(latent) - fixed).abs().max() < 0.02  # softplus(-4): on the inverse
        torch.nn.init.normal_(codec.dec_head.weight, std=1.0)
        torch.nn.init.normal_(codec.dec_head.bias, std=3.0)
        lifted = codec.log_magnitude(latent)
    assert (lifted >= fixed.clamp(max=6.0) - 1e-5).all()
    assert (lifted - fixed).max() > 1.0  # it does move, upwards
    free = build_codec(small_hybrid_config()).eval()
    free.load_state_dict(codec.state_dict())
    with torch.no_grad():
        assert (free.log_magnitude(latent) < fixed - 1.0).any()  # the same head, free, lowers bins
    with pytest.raises(JamstreamError, match="correction must be"):
        build_codec(small_hybrid_config(correction="sideways"))


def test_a_valleys_correction_leaves_every_bin_near_its_frames_peak_as_the_fixed_inverse_has_it():
    torch.manual_seed(0)
    codec = build_codec(small_hybrid_config(correction="valleys")).eval()
    audio = torch.from_numpy(harmonic_chords(seconds_per_chord=0.5)).unsqueeze(0)[..., : 25 * FRAME_SAMPLES]
    with torch.no_grad():
        torch.nn.init.normal_(codec.dec_head.weight, std=1.0)
        torch.nn.init.normal_(codec.dec_head.bias, std=3.0)
        latent = codec.encode_latent(audio)
        fixed = codec.fixed_log_magnitude(latent)
        lifted = codec.log_magnitude(latent)
    valley = codec.valleys(fixed).bool()
    assert valley.float().mean() > 0.3 and (~valley).any()  # both kinds of bin are there
    near = ~valley & (fixed < 6.0)
    assert torch.equal(lifted[near], fixed[near])
    assert (lifted[valley] >= fixed[valley]).all() and (lifted[valley] - fixed[valley]).max() > 1.0
