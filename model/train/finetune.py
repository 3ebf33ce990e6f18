"""Fine-tune the LM on a musician's own recordings: LoRA adapters and a captured style.

`finetune(FinetuneConfig)` is what `jamstream finetune DIR --name NAME` runs:

1. Read every audio file under DIR (wav/flac/mp3/ogg/aiff, any rate or channel count,
   through model.io.audio.load_audio: 48 kHz stereo). Unreadable, silent and too-short
   files are skipped and listed; no usable audio at all is a one-line error.
2. Per file, once (cached): codec tokens, per-frame timing from a beat tracker and the
   style model's audio embedding (model/train/recordings.py).
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

import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from model.adapters import lora, names, quantize, store
from model.codec.network import FRAME_RATE
from model.errors import JamstreamError
from model.io.atomic import write_json
from model.lm.network import LMConfig
from model.train.lora_task import LoRATask, LoRATrainConfig, steps_per_epoch
from model.train.recordings import Recording, ScanResult, file_digest, scan_recordings
from model.train.trainer import TrainConfig, Trainer

VAL_SHARE = 0.15


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
CHECKPOINT_FILE = "checkpoint.safetensors"
STATE_FILE = "train_state.json"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


@dataclass
class Models:
    """The frozen models a fine-tune reads: the base LM (its config), codec and style model."""

    base_path: Path
    codec_path: Path
    style_path: Path
    lm_config: LMConfig
    base_parameters: int
    base_digest: str
    levels: int
    codec: object
    style: object


def check_request(cfg: FinetuneConfig) -> Path:
    """Every bad option is a one-line error before any model work; returns adapters/NAME."""
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
    out = Path(cfg.adapters_dir) / cfg.name
    checkpoint = out / CHECKPOINT_FILE
    if cfg.resume and not checkpoint.is_file():
        raise JamstreamError(f"--resume: no fine-tuning checkpoint at {checkpoint}; drop --resume to start")
    finished = (out / store.REPORT_FILE).is_file()
    if not cfg.resume and (checkpoint.is_file() or finished):
        raise JamstreamError(f"{out} exists; pass --resume to continue it or choose another --name")
    if not cfg.resume:  # a run stopped before its first checkpoint (its first epoch, a full disk): start over
        for leftover in (STATE_FILE, store.ADAPTER_FILE):
            (out / leftover).unlink(missing_ok=True)
    return out


def load_models(cfg: FinetuneConfig) -> Models:
    from model.codec.network import load_codec
    from model.generator import check_pair
    from model.lm.network import count_parameters, load_lm
    from model.style.network import load_style
    from model.weights import default_weight_path

    base_path = Path(cfg.base) if cfg.base else default_weight_path("lm")
    codec_path = Path(cfg.codec) if cfg.codec else default_weight_path("codec")
    style_path = Path(cfg.style) if cfg.style else default_weight_path("style")
    base = load_lm(base_path)  # fails fast, one line, on a bad base file
    codec = load_codec(codec_path)
    check_pair(base, codec)  # adapters on tokens the base never learned would train on noise
    return Models(
        base_path,
        codec_path,
        style_path,
        base.config,
        count_parameters(base),
        file_digest(base_path)[:16],
        cfg.levels or base.config.levels,
        codec,
        load_style(style_path),
    )


def captured_style(recordings: list[Recording], style_model, cfg: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(captured style, the recordings' mean audio embedding): the mean, optionally mixed with --prompt."""
    from model.style.network import mix_embeddings

    audio_style = mix_embeddings([(r.embedding, r.seconds) for r in recordings])
    if not cfg.prompt:
        return audio_style, audio_style
    if not 0 <= cfg.prompt_weight <= 1:
        raise JamstreamError(f"--prompt-weight must be in [0, 1] (got {cfg.prompt_weight})")
    text = style_model.embed_text([cfg.prompt])[0]
    if cfg.prompt_weight == 1:
        return text, audio_style
    return mix_embeddings([(audio_style, 1 - cfg.prompt_weight), (text, cfg.prompt_weight)]), audio_style


def make_task(cfg: FinetuneConfig, out: Path, models: Models, clips, recordings: list[Recording]) -> LoRATask:
    """The LoRA task, writing each new best adapter (with the run's facts) to `out`."""
    adapter_cfg = store.AdapterConfig(cfg.rank, cfg.alpha)
    per_epoch = steps_per_epoch(clips, cfg.frames_per_batch)
    train_cfg = LoRATrainConfig(frames_per_batch=cfg.frames_per_batch, steps_per_epoch=per_epoch, patience=cfg.patience)
    meta = {
        "prompt": cfg.prompt,
        "base": {"path": str(models.base_path), "digest": models.base_digest},
        "codec_levels": models.levels,
        "quantize_during_training": cfg.quantize,
        "recordings": [str(r.path) for r in recordings],
    }
    lm_config = asdict(models.lm_config)

    def save_best(tensors: dict, record: dict) -> None:
        facts = {"epoch": record["epoch"], "step": record["step"], "val_nll": record["val_nll"]}
        store.save_adapter(out, cfg.name, adapter_cfg, lm_config, tensors, {**meta, **facts})

    return LoRATask(
        models.base_path,
        models.base_digest,
        models.lm_config,
        adapter_cfg,
        train_cfg,
        clips,
        cfg.name,
        cfg.quantize,
        cfg.device,
        state_path=out / STATE_FILE,
        on_best=save_best,
    )


def measure_before(task: LoRATask, cfg: FinetuneConfig) -> None:
    """Validation NLL before training (a resumed run keeps its first measurement): the fresh
    adapter (B = 0) is the (possibly quantized) base exactly."""
    if cfg.resume:
        task.load_state()
    if task.state.get("before") is not None:
        return
    torch.manual_seed(cfg.seed)
    probe = task.build_model()
    task.state["before"] = task.evaluate(probe)
    task.state["trainable_parameters"] = sum(p.numel() for p in task.trainable_parameters(probe))
    task.state["base_projection_bytes"] = task.base_weight_bytes
    task.save_state()


def train_adapter(task: LoRATask, cfg: FinetuneConfig, checkpoint: Path) -> dict:
    """The shared Trainer's run: validation each epoch, the best adapter kept, early stopping."""
    per_epoch = task.cfg.steps_per_epoch
    train = TrainConfig(
        out=str(checkpoint),
        steps=cfg.epochs * per_epoch,
        lr=cfg.lr,
        warmup_steps=min(50, max(1, per_epoch // 2)),
        checkpoint_every=per_epoch,
        seed=cfg.seed,
        device=cfg.device,
        resume=cfg.resume,
        max_minutes=cfg.max_minutes,
        threads=cfg.threads,
    )
    if cfg.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = Trainer(task, train).fit()
    if result["best"] is None:
        raise JamstreamError(
            f"fine-tuning stopped before its first epoch ended; run again with --resume to continue {checkpoint.parent}"
        )
    return result


def full_precision_nll(task: LoRATask, cfg: FinetuneConfig, models: Models, out: Path) -> float | None:
    """With a quantized base: what generation will see, the adapter on the full-precision base."""
    if cfg.quantize == "none":
        return None
    from model.lm.network import load_lm

    lm = load_lm(models.base_path, cfg.device)
    lora.apply_adapter(lm, store.load_adapter(out))
    return task.evaluate(lm)


def finetune(cfg: FinetuneConfig) -> dict:
    """`jamstream finetune`: the steps of the module docstring; returns (and writes) the report."""
    wall_start = time.perf_counter()
    out = check_request(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    models = load_models(cfg)
    cache = Path(cfg.adapters_dir) / ".cache"
    scan = scan_recordings(
        cfg.data,
        models.codec,
        models.codec_path,
        models.style,
        models.style_path,
        models.levels,
        cache,
        cfg.show_progress,
    )
    models.codec = None  # the codec's part is done: free its memory before training
    rss_after_tokenize = _peak_rss_mb()
    recs = scan.recordings
    style, audio_style = captured_style(recs, models.style, cfg)
    style_tokens = models.style.quantize(style).reshape(-1).long()
    clips, split_kind = split_clips(recs, style_tokens)
    task = make_task(cfg, out, models, clips, recs)
    out.mkdir(parents=True, exist_ok=True)
    seconds = sum(r.seconds for r in recs)
    weight = cfg.prompt_weight if cfg.prompt else 0.0
    style_meta = {"recordings": len(recs), "seconds": seconds, "prompt": cfg.prompt, "prompt_weight": weight}
    store.save_style(out, style, style_tokens, style_meta)
    measure_before(task, cfg)
    result = train_adapter(task, cfg, out / CHECKPOINT_FILE)
    fp32_after = full_precision_nll(task, cfg, models, out)
    report = {
        **run_facts(cfg, out, task, models, scan, clips, split_kind),
        **training_figures(task, cfg, result, fp32_after),
        "peak_rss_megabytes": round(_peak_rss_mb(), 1),
        "peak_rss_megabytes_before_training": round(rss_after_tokenize, 1),  # codec/style models, tokenizing
        "peak_cuda_megabytes": round(torch.cuda.max_memory_allocated() / 1e6, 1) if cfg.device == "cuda" else None,
        "wall_seconds": round(time.perf_counter() - wall_start, 2),
        "captured_style_cosine_to_audio_mean": round(float(torch.dot(style, audio_style)), 4),
    }
    write_json(out / store.REPORT_FILE, report)
    return report


def run_facts(cfg: FinetuneConfig, out: Path, task: LoRATask, models: Models, scan: ScanResult, clips, split_kind):
    """The report's what-was-trained part: data, split, adapter shape, base."""
    recs = scan.recordings
    trainable = task.state["trainable_parameters"]
    projection_bytes = task.state.get("base_projection_bytes", 0)
    return {
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
        "targets": list(task.adapter_cfg.targets),
        "quantize": cfg.quantize,
        "device": cfg.device,
        "trainable_parameters": trainable,
        "base_parameters": models.base_parameters,
        "trainable_share": trainable / models.base_parameters,
        "base_projection_megabytes": round(projection_bytes / 1e6, 3) if cfg.quantize != "none" else None,
        "steps_per_epoch": task.cfg.steps_per_epoch,
        "frames_per_batch": cfg.frames_per_batch,
        "tokenize_seconds": round(scan.tokenize_seconds, 2),
        "base": {"path": str(models.base_path), "digest": models.base_digest},
        "prompt": cfg.prompt,
    }


def training_figures(task: LoRATask, cfg: FinetuneConfig, result: dict, fp32_after: float | None) -> dict:
    """The report's how-it-went part: validation NLL before, per epoch and at the best epoch."""
    records, best = result["validations"], result["best"]
    before, after = task.state["before"], best["val_nll"]
    epoch_times = [r["train_seconds"] for r in records]
    return {
        "epochs_run": len(records),
        "best_epoch": task.epoch(best["step"]),
        "seconds_per_epoch": round(sum(epoch_times) / len(epoch_times), 2),
        "epoch_seconds": epoch_times,
        "val_nll_before": round(before, 5),
        "val_nll_after": round(after, 5),
        "val_nll_change": round((after - before) / before, 5),
        "val_nll_after_full_precision_base": None if fp32_after is None else round(fp32_after, 5),
        "val_nll_by_epoch": [round(r["val_nll"], 5) for r in records],
        "early_stopped": bool(result["out_of_patience"]),
        "finished": bool(result["out_of_patience"] or result["step"] >= cfg.epochs * task.cfg.steps_per_epoch),
    }


def nearest_prompt(embedding: torch.Tensor, style_model, prompts) -> tuple[str, float]:
    """The text prompt whose style embedding is nearest (cosine) to `embedding`."""
    emb = style_model.embed_text(list(prompts))
    cos = emb @ torch.nn.functional.normalize(embedding.float(), dim=0)
    i = int(cos.argmax())
    return list(prompts)[i], float(cos[i])
