"""Codec training: reconstruction losses on random crops of the corpus's train split.

Loss = log-mel L1 (multi-resolution) + spectral convergence + log-magnitude L1
(multi-resolution STFT) + the RVQ commitment loss, and optionally the pitch-sensitive
terms of model/eval/metrics.py (peak: linear-magnitude convergence at 11.7 Hz bins; logfreq:
log spectrum at 3 bins per semitone). No adversarial term yet.

Every `eval_every` steps the codec is scored on fixed crops of the val split at 16 levels
by the figures `jamstream eval codec` reports for pitch (chroma_corr, dac_mel): the
progress line shows them and `val_log` (JSON lines) keeps them, so an hours-long run says
whether the notes are coming back long before it ends.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.codec.network import FRAME_SAMPLES, CodecConfig, build_codec
from model.errors import JamstreamError
from model.eval.metrics import logfreq_loss, mel_distance, peak_loss, stft_loss
from model.eval.pitch import chroma_corr, dac_mel
from model.io.audio import SAMPLE_RATE
from model.train.audio_data import AudioSplit, load_splits
from model.train.trainer import Task
from model.train.validation import Validation

KMEANS_INIT_CROPS = 64
VAL_CROPS, VAL_SECONDS, VAL_LEVELS, VAL_SEED = 8, 4, 16, 1234


@dataclass
class CodecTrainConfig:
    corpus: str | list[str]  # one corpus directory, or several joined
    batch_size: int = 8
    crop_frames: int = 25  # 1 s crops
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    # Summed over 32 levels, weight 1 pushed the encoder onto the level-1 codes: at 750
    # steps 1 level and 32 levels gave the same mel distance. 0.03 (~ a mean over levels)
    # let the fine levels carry information (0.336 at 1 level -> 0.289 at 32).
    commit_weight: float = 0.03
    peak_weight: float = 0.0
    logfreq_weight: float = 0.0
    # Keep the codebooks as --init gave them (fitted offline by `jamstream train codebooks`).
    freeze_codebooks: bool = False
    eval_every: int = 0  # steps between val pitch figures; 0 = never
    val_log: str | None = None  # JSON lines of the val figures, beside the checkpoint


class CodecTask(Task):
    kind = "codec"

    def __init__(self, model_config: CodecConfig, train_config: CodecTrainConfig, data: AudioSplit | None = None):
        self.model_cfg = model_config
        self.cfg = train_config
        self._data = data
        self._val: torch.Tensor | None = None

    @property
    def data(self) -> AudioSplit:
        if self._data is None:
            self._data = load_splits(self.cfg.corpus, "train")
        return self._data

    def model_config(self) -> dict:
        return asdict(self.model_cfg)

    def build_model(self) -> torch.nn.Module:
        codec = build_codec(self.model_cfg)
        if self.cfg.freeze_codebooks:
            codec.freeze_codebooks()
        return codec

    def batch(self, step: int, rank: int, world: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        # Step 0 also k-means-initialises the 1024-code books: give it enough frames to cluster.
        size = max(self.cfg.batch_size, KMEANS_INIT_CROPS) if step == 0 else self.cfg.batch_size
        crops = self.data.crops(size, self.cfg.crop_frames * FRAME_SAMPLES, generator)
        # Random polarity and channel swap: free variety the music itself allows.
        flip = (torch.rand(crops.shape[0], 1, 1, generator=generator) < 0.5).float() * 2 - 1
        crops = crops * flip
        swap = torch.rand(crops.shape[0], generator=generator) < 0.5
        crops[swap] = crops[swap].flip(1)
        return crops.to(device)

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        recon, commit, _ = model(batch)
        recon = recon.float()
        mel = mel_distance(recon, batch, SAMPLE_RATE)
        sc, logmag = stft_loss(recon, batch)
        total = self.cfg.mel_weight * mel + self.cfg.stft_weight * (sc + logmag) + self.cfg.commit_weight * commit
        parts = {"mel": mel.item(), "sc": sc.item(), "logmag": logmag.item(), "commit": commit.item()}
        if self.cfg.peak_weight:
            peak = peak_loss(recon, batch)
            total = total + self.cfg.peak_weight * peak
            parts["peak"] = peak.item()
        if self.cfg.logfreq_weight:
            logfreq = logfreq_loss(recon, batch)
            total = total + self.cfg.logfreq_weight * logfreq
            parts["logfreq"] = logfreq.item()
        return total, {"loss": total.item(), **parts}

    # ------------------------------------------------------------ val pitch figures
    def val_crops(self) -> torch.Tensor:
        """The same VAL_CROPS crops of the first corpus's val split on every run (its train
        split if it has no val clips), so runs on the same corpus compare."""
        if self._val is None:
            first = self.cfg.corpus if isinstance(self.cfg.corpus, str) else self.cfg.corpus[0]
            try:
                split = load_splits(first, "val", show_progress=False)
            except JamstreamError:
                split = load_splits(first, "train", show_progress=False)
            self._val = split.crops(
                VAL_CROPS, VAL_SECONDS * FRAME_SAMPLES * 25, torch.Generator().manual_seed(VAL_SEED)
            )
        return self._val

    def validation(self) -> Validation:
        return Validation(every=self.cfg.eval_every)

    def validate(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        """The val crops' pitch figures at 16 levels, logged to `val_log` and stderr."""
        crops = self.val_crops()
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            levels = min(VAL_LEVELS, model.levels)
            out = model.decode(model.encode(crops.to(device), levels=levels)).float().cpu().numpy()
        finally:
            model.train(was_training)
        ref = crops.numpy()
        figures = {
            "val_chroma": float(np.mean([chroma_corr(o, r) for o, r in zip(out, ref)])),
            "val_dac_mel": float(np.mean([dac_mel(o, r) for o, r in zip(out, ref)])),
        }
        if self.cfg.val_log:
            with open(self.cfg.val_log, "a") as f:
                f.write(json.dumps({"step": step, **figures}) + "\n")
        from tqdm import tqdm

        tqdm.write(
            f"step {step}: val chroma {figures['val_chroma']:.3f}, DAC mel {figures['val_dac_mel']:.3f}",
            file=sys.stderr,
        )
        return figures
