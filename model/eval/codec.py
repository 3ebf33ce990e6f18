"""How good is the codec: per-file quality, bitrate and speed, beside real codecs.

Peers: MP3 at 32 kbps (8x our 16-level bitrate), which a listener knows by ear, and Opus
at 6 and 12 kbps (opusenc/opusdec from Debian's opus-tools), the codec a 4 kbps neural
codec has to be compared with. Every peer and every level count gets the same figures:
SI-SNR/SI-SDR, our log-mel distance, and the pitch-aware `chroma_corr`, `cqt_distance` and
`dac_mel` (model/eval/pitch.py), which a codec that drops the partials cannot pass.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.codec.network import Codec, bitrate
from model.errors import JamstreamError
from model.eval.metrics import mel_distance, si_snr
from model.eval.pitch import pitch_quality
from model.io.audio import SAMPLE_RATE, AudioReadError, load_audio, write_audio
from model.progress import progress as progress_bar

MP3_KBPS = 32
OPUS_KBPS = (6, 12)
MAX_MP3_DELAY = 4096  # samples; LAME's encoder delay plus padding is well under this
SILENT_PEAK = 1e-4  # a file whose peak stays under -80 dBFS has no pitch to keep
QUALITY_KEYS = ("si_snr_db", "si_sdr_db", "mel_distance", "chroma_corr", "cqt_distance", "dac_mel")


@dataclass
class CodecEvalResult:
    files: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    mean: dict = field(default_factory=dict)


def mp3_roundtrip(audio: np.ndarray, kbps: int = MP3_KBPS) -> np.ndarray:
    """Encode to CBR MP3 with pedalboard (LAME) and decode, aligned to the input."""
    from pedalboard.io import AudioFile

    with tempfile.TemporaryDirectory(prefix="jamstream-mp3-") as tmp:
        path = str(Path(tmp) / "x.mp3")
        with AudioFile(path, "w", SAMPLE_RATE, audio.shape[0], quality=str(kbps)) as f:
            f.write(audio)
        with AudioFile(path) as f:
            decoded = f.read(f.frames)
    return align(decoded, audio)


def opus_available() -> bool:
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def opus_roundtrip(audio: np.ndarray, kbps: int) -> np.ndarray:
    """Encode with opusenc at `kbps` and decode with opusdec at 48 kHz, aligned to the input."""
    if not opus_available():
        raise JamstreamError("opusenc/opusdec not found: install Debian's opus-tools (scripts/setup.sh does)")
    with tempfile.TemporaryDirectory(prefix="jamstream-opus-") as tmp:
        wav, opus, back = Path(tmp) / "x.wav", Path(tmp) / "x.opus", Path(tmp) / "y.wav"
        write_audio(wav, audio)
        for cmd in (
            ["opusenc", "--quiet", "--bitrate", str(kbps), str(wav), str(opus)],
            ["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(opus), str(back)],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise JamstreamError(f"{cmd[0]} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        decoded = load_audio(back)
    return align(decoded, audio)


def align(decoded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Remove codec delay: the lag (0..MAX_MP3_DELAY) that best correlates, then crop/pad."""
    n = reference.shape[1]
    ref = reference.mean(0)[: min(n, SAMPLE_RATE * 5)]
    dec = decoded.mean(0)
    best, best_lag = -np.inf, 0
    for lag in range(0, min(MAX_MP3_DELAY, max(0, dec.shape[0] - ref.shape[0])) + 1, 1):
        c = float(np.dot(dec[lag : lag + ref.shape[0]], ref))
        if c > best:
            best, best_lag = c, lag
    out = decoded[:, best_lag : best_lag + n]
    if out.shape[1] < n:
        out = np.pad(out, ((0, 0), (0, n - out.shape[1])))
    return out


def _quality(estimate: np.ndarray | torch.Tensor, reference: torch.Tensor) -> dict:
    est = torch.as_tensor(estimate, dtype=torch.float32)[..., : reference.shape[-1]]
    snr = si_snr(est, reference)
    return {
        "si_snr_db": snr,
        "si_sdr_db": snr,  # scale-invariant SNR is SI-SDR; both names are asked for
        "mel_distance": float(mel_distance(est, reference)),
        **pitch_quality(est.numpy(), reference.numpy()),
    }


def peers(audio: np.ndarray, ref: torch.Tensor) -> dict:
    """The real codecs' figures on one file: MP3 32 kbps and Opus at each OPUS_KBPS."""
    out = {"mp3_32k": _quality(mp3_roundtrip(audio), ref)}
    for kbps in OPUS_KBPS:
        out[f"opus_{kbps}k"] = _quality(opus_roundtrip(audio, kbps), ref)
    return out


def evaluate_codec(codec: Codec, paths: list[Path], levels: list[int], progress: bool = True) -> CodecEvalResult:
    result = CodecEvalResult()
    max_levels = max(levels)
    bar = progress_bar(total=len(paths), desc="eval codec", unit="file", enabled=progress)
    for path in paths:
        bar.update(1)
        try:
            audio = load_audio(path)
        except AudioReadError as exc:
            result.skipped.append({"path": str(path), "reason": str(exc)})
            continue
        if audio.shape[1] < SAMPLE_RATE // 10:
            result.skipped.append({"path": str(path), "reason": f"{path}: shorter than 0.1 s"})
            continue
        if float(np.abs(audio).max()) < SILENT_PEAK:
            result.skipped.append({"path": str(path), "reason": f"{path}: silent (peak under -80 dBFS)"})
            continue
        seconds = audio.shape[1] / SAMPLE_RATE
        ref = torch.from_numpy(audio)
        start = time.perf_counter()
        tokens = codec.encode(ref, levels=max_levels)
        encode_time = time.perf_counter() - start
        row: dict = {"path": str(path), "seconds": round(seconds, 3), "levels": {}}
        for lv in levels:
            start = time.perf_counter()
            decoded = codec.decode(tokens[..., :lv])[0]
            decode_time = time.perf_counter() - start
            q = _quality(decoded, ref)
            row["levels"][str(lv)] = {
                **q,
                "bitrate_bps": bitrate(lv, codec.config.codebook_size),
                "encode_rtf": seconds / encode_time,  # encode ran once at the largest level count
                "decode_rtf": seconds / decode_time,
            }
        row.update(peers(audio, ref))
        result.files.append(row)
    bar.close()
    result.mean = summarize(result.files, levels)
    return result


def summarize(files: list[dict], levels: list[int]) -> dict:
    """Means per level count; each level's entry also carries the peers' means as
    `<peer>_<key>` (e.g. `opus_6k_chroma_corr`), so one level's row reads against them."""
    if not files:
        return {}
    peer_names = [k for k in files[0] if k in ("mp3_32k",) or k.startswith("opus_")]
    peer_means = {
        f"{peer}_{key}": float(np.mean([f[peer][key] for f in files])) for peer in peer_names for key in QUALITY_KEYS
    }
    mean: dict = {}
    for lv in levels:
        rows = [f["levels"][str(lv)] for f in files]
        mean[str(lv)] = {
            **{key: float(np.mean([r[key] for r in rows])) for key in QUALITY_KEYS},
            "bitrate_bps": rows[0]["bitrate_bps"],
            **peer_means,
            "encode_rtf": float(np.median([r["encode_rtf"] for r in rows])),
            "decode_rtf": float(np.median([r["decode_rtf"] for r in rows])),
        }
    return mean


def format_table(result: CodecEvalResult) -> str:
    lines = [f"{len(result.files)} files evaluated, {len(result.skipped)} skipped"]
    for s in result.skipped:
        lines.append(f"  skipped: {s['reason']}")
    head = f"{'':>10}  {'kbps':>5}  {'chroma':>6}  {'CQT L1':>6}  {'DAC mel':>7}  {'mel':>6}  {'SI-SDR':>7}"
    lines.append(head + "  | enc RTF  dec RTF")

    def row(name: str, kbps: float, m: dict, prefix: str = "") -> str:
        g = lambda k: m[prefix + k]  # noqa: E731
        return (
            f"{name:>10}  {kbps:>5.1f}  {g('chroma_corr'):>6.3f}  {g('cqt_distance'):>6.3f}  {g('dac_mel'):>7.3f}  "
            f"{g('mel_distance'):>6.3f}  {g('si_sdr_db'):>7.2f}"
        )

    for lv, m in result.mean.items():
        lines.append(
            row(f"{lv} levels", m["bitrate_bps"] / 1000, m) + f"  | {m['encode_rtf']:>7.1f}  {m['decode_rtf']:>7.1f}"
        )
    if result.mean:
        m = next(iter(result.mean.values()))
        lines.append(row("MP3", MP3_KBPS, m, "mp3_32k_"))
        for kbps in OPUS_KBPS:
            lines.append(row("Opus", kbps, m, f"opus_{kbps}k_"))
    return "\n".join(lines)
