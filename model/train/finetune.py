"""Fine-tune the LM on a musician's own recordings: LoRA adapters and a captured style.

`finetune(FinetuneConfig)` is what `jamstream finetune DIR --name NAME` runs:

1. Read every audio file under DIR (wav/flac/mp3/ogg/aiff, any rate or channel count,
   through model.audio.load_audio: 48 kHz stereo). Unreadable, silent and too-short
   files are skipped and listed; no usable audio at all is a one-line error.
2. Per file, once (cached under <adapters>/.cache/, keyed by the file's bytes and the
   codec and style weights): codec tokens, per-frame timing and the style model's audio
   embedding. User recordings have no beat annotations, so the timing (bpm, beat and bar
   phase per frame, as the LM was trained with) comes from librosa's beat tracker; bars
   are assumed to be 4 beats, with the downbeat phase that has the strongest onsets.
3. The captured style is the duration-weighted mean of the recordings' audio embeddings
   (optionally mixed with a --prompt): a made-up adapter name means nothing to a text
   encoder, the recordings themselves do. Its 12 style tokens condition every training
   crop, so the same style asks the adapted LM for this music at generation time.
4. Validation split: with 4 or more recordings, whole recordings (about 15%, at least
   one); with fewer, the last 15% of each. LoRA (peft) on the attention and MLP
   projections, base frozen (optionally quantized: int8 anywhere, nf4 via bitsandbytes),
   trained by the shared Trainer (atomic checkpoints, resume, progress bar) with
   validation at every epoch's end and early stopping.
5. adapters/NAME/: adapter.safetensors (the best epoch's), adapter.json, style.safetensors,
   report.json. See model/adapters/store.py for reading them, model/adapters/lora.py for
   applying them.
"""

from __future__ import annotations

import hashlib
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.adapters import lora, names, quantize, store
from model.codec.network import FRAME_RATE
from model.errors import JamstreamError
from model.io.atomic import atomic_path, write_json
from model.io.audio import READABLE_SUFFIXES, AudioReadError, load_audio
from model.progress import progress

MIN_SECONDS = 2.0  # shorter recordings teach nothing about continuation
SILENCE_PEAK = 1e-4  # -80 dBFS: a file whose loudest sample is below this is silence
VAL_SHARE = 0.15
CACHE_VERSION = 1
BEATS_PER_BAR = 4


@dataclass
class FinetuneConfig:
    data: str
    name: str
    adapters_dir: str = "adapters"
    prompt: str | None = None
    prompt_weight: float = 0.25
    rank: int = 8
    alpha: float = 16.0
    epochs: int = 20
    patience: int = 3
    lr: float = 2e-3
    frames_per_batch: int = 512
    quantize: str = "none"
    device: str = "cpu"
    base: str | None = None  # LM weights (default: shipped)
    codec: str | None = None
    style: str | None = None
    levels: int | None = None  # codec levels (default: the base LM's)
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None
    resume: bool = False
    show_progress: bool = True


@dataclass
class Recording:
    path: Path
    seconds: float
    tokens: torch.Tensor  # int16 [frames, levels]
    timing: torch.Tensor  # float32 [frames, 3]
    embedding: torch.Tensor  # [512]
    bpm: float


@dataclass
class ScanResult:
    recordings: list[Recording]
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}
    tokenize_seconds: float = 0.0


# ------------------------------------------------------------------ recordings -> tokens
def audio_files(folder: Path) -> tuple[list[Path], list[dict]]:
    """Audio files under `folder` (recursive, sorted), and the other files as skipped."""
    if not folder.exists():
        raise JamstreamError(f"{folder}: no such directory")
    if not folder.is_dir():
        raise JamstreamError(f"{folder} is not a directory; give the folder that holds your recordings")
    files, other = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        (files if p.suffix.lower() in READABLE_SUFFIXES else other).append(p)
    return files, [{"file": str(p), "reason": "not an audio file (wav/flac/mp3/ogg/aiff)"} for p in other]


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def beat_grid(audio: np.ndarray, sr: int = 48_000) -> tuple[list[float], list[float], float]:
    """(beat times, downbeat times, bpm) from librosa's beat tracker on a mono 22.05 kHz mix.

    Downbeats: every 4th beat, starting at whichever of the first four beats gives the
    strongest mean onset strength. Fewer than 4 beats found (rubato, drones): a 120 bpm
    grid from 0, which is what the LM saw most.
    """
    import librosa
    from scipy.signal import resample_poly

    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    y = resample_poly(mono, 147, 320).astype(np.float32)  # 48000 * 147/320 = 22050
    hop = 512
    onset = librosa.onset.onset_strength(y=y, sr=22050, hop_length=hop)
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=22050, hop_length=hop)
    frames = np.asarray(frames, dtype=int)
    if frames.size < 4:
        seconds = len(y) / 22050
        beats = list(np.arange(0.0, seconds + 0.5, 0.5))
        return beats, beats[::BEATS_PER_BAR], 120.0
    times = librosa.frames_to_time(frames, sr=22050, hop_length=hop)
    strength = [float(onset[frames[k::BEATS_PER_BAR]].mean()) for k in range(BEATS_PER_BAR)]
    first = int(np.argmax(strength))
    bpm = float(60.0 / np.median(np.diff(times)))
    return [float(t) for t in times], [float(t) for t in times[first::BEATS_PER_BAR]], bpm


def scan_recordings(
    folder,
    codec,
    codec_path: Path,
    style_model,
    style_path: Path,
    levels: int,
    cache_dir: Path,
    show_progress: bool = True,
) -> ScanResult:
    """Every usable recording under `folder`, tokenized and beat-tracked (cached per file)."""
    from model.train.token_data import frame_timing

    folder = Path(folder)
    files, skipped = audio_files(folder)
    if not files:
        what = f" ({len(skipped)} other files)" if skipped else ""
        raise JamstreamError(f"{folder} has no audio files (wav/flac/mp3/ogg/aiff){what}; put your recordings there")
    models_key = hashlib.sha1(
        f"{_digest(Path(codec_path))}:{_digest(Path(style_path))}:{levels}:{CACHE_VERSION}".encode()
    ).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    recordings: list[Recording] = []
    started = time.perf_counter()
    for path in progress(files, desc="tokenize", unit="file", enabled=show_progress):
        key = hashlib.sha1(f"{_digest(path)}:{models_key}".encode()).hexdigest()[:20]
        cache = cache_dir / f"rec-{key}.pt"
        entry = None
        if cache.is_file():
            try:
                entry = torch.load(cache, weights_only=False)
            except Exception:  # a damaged cache entry is recomputed, never trusted
                entry = None
        if entry is None:
            try:
                audio = load_audio(path)
            except AudioReadError as exc:
                skipped.append({"file": str(path), "reason": f"unreadable ({str(exc).split(': ', 1)[-1]})"})
                continue
            seconds = audio.shape[1] / 48_000
            peak = float(np.abs(audio).max()) if audio.size else 0.0
            if not np.isfinite(audio).all():
                skipped.append({"file": str(path), "reason": "contains NaN or infinite samples"})
                continue
            if seconds < MIN_SECONDS:
                skipped.append({"file": str(path), "reason": f"too short ({seconds:.2f} s < {MIN_SECONDS:g} s)"})
                continue
            if peak < SILENCE_PEAK:
                skipped.append({"file": str(path), "reason": "silent"})
                continue
            with torch.inference_mode():
                tokens = codec.encode(torch.from_numpy(audio), levels=levels)[0].to(torch.int16)
                embedding = style_model.embed_audio(audio, 48_000).float()
            beats, downbeats, bpm = beat_grid(audio)
            timing = torch.from_numpy(frame_timing(beats, downbeats, tokens.shape[0], FRAME_RATE))
            timing[:, 0] = timing[:, 0].clamp(20.0, 400.0)
            entry = {"seconds": seconds, "tokens": tokens, "timing": timing, "embedding": embedding, "bpm": bpm}
            with atomic_path(cache) as tmp:
                torch.save(entry, tmp)
        recordings.append(
            Recording(
                path, float(entry["seconds"]), entry["tokens"], entry["timing"], entry["embedding"], float(entry["bpm"])
            )
        )
    if not recordings:
        listed = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise JamstreamError(f"{folder}: no usable audio ({listed}{more})")
    return ScanResult(recordings, skipped, time.perf_counter() - started)


def split_clips(recordings: list[Recording], style_tokens: torch.Tensor, min_frames: int = 25):
    """TokenClips with a validation split: whole recordings when there are 4+, else tails."""
    from model.train.token_data import TokenClip

    n = len(recordings)
    clips = []
    if n >= 4:
        n_val = max(1, round(n * VAL_SHARE))
        val = {min(n - 1, int((k + 0.5) * n / n_val)) for k in range(n_val)}
        for i, r in enumerate(recordings):
            clips.append(
                TokenClip(r.path.name, "val" if i in val else "train", "user", r.tokens, r.timing, style_tokens)
            )
        return clips, "recordings"
    for r in recordings:
        frames = r.tokens.shape[0]
        cut = frames - max(min_frames, int(round(frames * VAL_SHARE)))
        if cut < min_frames:  # too short to share: all of it trains
            clips.append(TokenClip(r.path.name, "train", "user", r.tokens, r.timing, style_tokens))
            continue
        clips.append(TokenClip(r.path.name, "train", "user", r.tokens[:cut], r.timing[:cut], style_tokens))
        clips.append(TokenClip(r.path.name + "#val", "val", "user", r.tokens[cut:], r.timing[cut:], style_tokens))
    if not any(c.split == "val" for c in clips):
        raise JamstreamError("the recordings are too short to hold out a validation part; give at least 4 s of audio")
    return clips, "tails"


# ------------------------------------------------------------------ the run
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def finetune(cfg: FinetuneConfig) -> dict:
    from model.codec.network import load_codec
    from model.generator import check_pair
    from model.lm.network import count_parameters, load_lm
    from model.style.network import load_style, mix_embeddings
    from model.train.lora_task import LoRATask, LoRATrainConfig, steps_per_epoch
    from model.train.trainer import TrainConfig, Trainer
    from model.weights import default_weight_path

    wall_start = time.perf_counter()
    names.check_name(cfg.name)
    if cfg.epochs < 1:
        raise JamstreamError(f"--epochs must be >= 1 (got {cfg.epochs})")
    if cfg.quantize not in quantize.QUANTIZE_MODES:
        raise JamstreamError(f"--quantize must be one of {', '.join(quantize.QUANTIZE_MODES)} (got {cfg.quantize!r})")
    if cfg.device not in ("cpu", "cuda"):
        raise JamstreamError(f"--device must be cpu or cuda (got {cfg.device!r})")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise JamstreamError("--device cuda asked for, but this machine has no CUDA GPU")
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise JamstreamError("--prompt is empty; describe the style in a few words or leave it out")
    store.AdapterConfig(cfg.rank, cfg.alpha).validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.adapters_dir) / cfg.name
    checkpoint = out / "checkpoint.safetensors"
    if cfg.resume and not checkpoint.is_file():
        raise JamstreamError(f"--resume: no fine-tuning checkpoint at {checkpoint}; drop --resume to start")
    if not cfg.resume and (checkpoint.is_file() or (out / store.ADAPTER_FILE).is_file()):
        raise JamstreamError(f"{out} exists; pass --resume to continue it or choose another --name")
    if not cfg.resume and (out / "train_state.json").is_file():  # a run stopped before its first epoch
        (out / "train_state.json").unlink()

    base_path = Path(cfg.base) if cfg.base else default_weight_path("lm")
    codec_path = Path(cfg.codec) if cfg.codec else default_weight_path("codec")
    style_path = Path(cfg.style) if cfg.style else default_weight_path("style")
    base = load_lm(base_path)  # fails fast, one line, on a bad base file
    codec = load_codec(codec_path)
    check_pair(base, codec)  # adapters on tokens the base never learned would train on noise
    lm_cfg = base.config
    base_params = count_parameters(base)
    base_digest = _digest(base_path)[:16]
    del base
    levels = cfg.levels or lm_cfg.levels
    style_model = load_style(style_path)
    scan = scan_recordings(
        cfg.data,
        codec,
        codec_path,
        style_model,
        style_path,
        levels,
        Path(cfg.adapters_dir) / ".cache",
        cfg.show_progress,
    )
    recs = scan.recordings
    del codec
    rss_after_tokenize = _peak_rss_mb()

    # the captured style: the recordings' mean audio embedding (+ an optional prompt)
    audio_style = mix_embeddings([(r.embedding, r.seconds) for r in recs])
    style = audio_style
    if cfg.prompt:
        if not 0 <= cfg.prompt_weight <= 1:
            raise JamstreamError(f"--prompt-weight must be in [0, 1] (got {cfg.prompt_weight})")
        style = (
            mix_embeddings(
                [(audio_style, 1 - cfg.prompt_weight), (style_model.embed_text([cfg.prompt])[0], cfg.prompt_weight)]
            )
            if cfg.prompt_weight < 1
            else style_model.embed_text([cfg.prompt])[0]
        )
    style_tokens = style_model.quantize(style).reshape(-1).long()
    clips, split_kind = split_clips(recs, style_tokens)

    adapter_cfg = store.AdapterConfig(cfg.rank, cfg.alpha)
    per_epoch = steps_per_epoch(clips, cfg.frames_per_batch)
    train_cfg = LoRATrainConfig(frames_per_batch=cfg.frames_per_batch, steps_per_epoch=per_epoch, patience=cfg.patience)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "prompt": cfg.prompt,
        "base": {"path": str(base_path), "digest": base_digest},
        "codec_levels": levels,
        "quantize_during_training": cfg.quantize,
        "recordings": [str(r.path) for r in recs],
    }

    def save_best(tensors: dict, entry: dict) -> None:
        store.save_adapter(
            out,
            cfg.name,
            adapter_cfg,
            asdict(lm_cfg),
            tensors,
            {**meta, "epoch": entry["epoch"], "step": entry["step"], "val_nll": entry["val_nll"]},
        )

    task = LoRATask(
        base_path,
        base_digest,
        lm_cfg,
        adapter_cfg,
        train_cfg,
        clips,
        cfg.name,
        cfg.quantize,
        cfg.device,
        state_path=out / "train_state.json",
        on_best=save_best,
    )
    store.save_style(
        out,
        style,
        style_tokens,
        {
            "recordings": len(recs),
            "seconds": sum(r.seconds for r in recs),
            "prompt": cfg.prompt,
            "prompt_weight": cfg.prompt_weight if cfg.prompt else 0.0,
        },
    )

    # validation NLL before: the fresh adapter (B = 0) is the (possibly quantized) base exactly
    if cfg.resume:
        from model.io.checkpoint import read_metadata

        _, extra = read_metadata(checkpoint, "lora")
        task.load_state(int(extra.get("step", 0)))
    if task.state.get("before") is None:
        torch.manual_seed(cfg.seed)
        probe = task.build_model()
        task.state["before"] = task.evaluate(probe)
        task.state["trainable_parameters"] = sum(p.numel() for p in task.trainable_parameters(probe))
        task.state["base_projection_bytes"] = task.base_weight_bytes
        del probe
        task.save_state()

    result = {"step": 0, "stopped_early": False}
    if not task.state.get("stopped"):
        train = TrainConfig(
            out=str(checkpoint),
            steps=cfg.epochs * per_epoch,
            lr=cfg.lr,
            warmup_steps=min(50, max(1, per_epoch // 2)),
            checkpoint_every=per_epoch,
            seed=cfg.seed,
            device=cfg.device,
            resume=cfg.resume and checkpoint.is_file(),
            max_minutes=cfg.max_minutes,
            threads=cfg.threads,
        )
        if cfg.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        task._last_eval_time = time.perf_counter()
        result = Trainer(task, train).fit()
    evals = task.state["evals"]
    best = task.best()
    if best is None:
        raise JamstreamError(
            f"fine-tuning stopped before its first epoch ended; run again with --resume to continue {out}"
        )
    after = best["val_nll"]
    before = task.state["before"]
    fp32_after = None
    if cfg.quantize != "none":  # what generation will see: the adapter on the full-precision base
        lm = load_lm(base_path, cfg.device)
        lora.apply_adapter(lm, store.load_adapter(out))
        fp32_after = task.evaluate(lm)
    epoch_times = [e["train_seconds"] for e in evals]
    finished = task.state.get("stopped") or result.get("step", 0) >= cfg.epochs * per_epoch
    report = {
        "name": cfg.name,
        "adapter": str(out / store.ADAPTER_FILE),
        "recordings": len(recs),
        "audio_seconds": round(sum(r.seconds for r in recs), 2),
        "train_seconds_audio": round(sum(c.tokens.shape[0] for c in clips if c.split == "train") / FRAME_RATE, 2),
        "val_seconds_audio": round(sum(c.tokens.shape[0] for c in clips if c.split == "val") / FRAME_RATE, 2),
        "validation_split": split_kind,
        "skipped": scan.skipped,
        "rank": cfg.rank,
        "alpha": cfg.alpha,
        "targets": list(adapter_cfg.targets),
        "quantize": cfg.quantize,
        "device": cfg.device,
        "trainable_parameters": task.state["trainable_parameters"],
        "base_parameters": base_params,
        "trainable_share": task.state["trainable_parameters"] / base_params,
        "base_projection_megabytes": round(task.state.get("base_projection_bytes", 0) / 1e6, 3)
        if cfg.quantize != "none"
        else None,
        "peak_rss_megabytes": round(_peak_rss_mb(), 1),
        "peak_rss_megabytes_before_training": round(rss_after_tokenize, 1),  # codec/style models, tokenizing
        "peak_cuda_megabytes": round(torch.cuda.max_memory_allocated() / 1e6, 1) if cfg.device == "cuda" else None,
        "steps_per_epoch": per_epoch,
        "frames_per_batch": cfg.frames_per_batch,
        "epochs_run": len(evals),
        "best_epoch": best["epoch"],
        "seconds_per_epoch": round(sum(epoch_times) / len(epoch_times), 2),
        "epoch_seconds": epoch_times,
        "val_nll_before": round(before, 5),
        "val_nll_after": round(after, 5),
        "val_nll_change": round((after - before) / before, 5),
        "val_nll_after_full_precision_base": None if fp32_after is None else round(fp32_after, 5),
        "val_nll_by_epoch": [round(e["val_nll"], 5) for e in evals],
        "early_stopped": bool(task.state.get("stopped")),
        "finished": bool(finished),
        "tokenize_seconds": round(scan.tokenize_seconds, 2),
        "wall_seconds": round(time.perf_counter() - wall_start, 2),
        "captured_style_cosine_to_audio_mean": round(float(torch.dot(style, audio_style)), 4),
        "base": meta["base"],
        "prompt": cfg.prompt,
    }
    write_json(out / store.REPORT_FILE, report)
    return report


def nearest_prompt(embedding: torch.Tensor, style_model, prompts) -> tuple[str, float]:
    """The text prompt whose style embedding is nearest (cosine) to `embedding`."""
    emb = style_model.embed_text(list(prompts))
    cos = emb @ torch.nn.functional.normalize(embedding.float(), dim=0)
    i = int(cos.argmax())
    return list(prompts)[i], float(cos[i])
