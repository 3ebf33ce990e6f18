"""Codec training: reconstruction losses on random crops of the corpus's train split.

Loss = log-mel L1 (multi-resolution; the eval metric itself) + spectral convergence +
log-magnitude L1 (multi-resolution STFT) + the RVQ commitment loss. No adversarial term
yet: on a CPU budget of an hour the discriminator's extra cost buys fewer steps of the
terms that move the mel distance (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..audio import SAMPLE_RATE
from ..codec import FRAME_SAMPLES, Codec, CodecConfig
from ..metrics import mel_distance, stft_loss
from .audio_data import AudioSplit, load_split


KMEANS_INIT_CROPS = 64


@dataclass
class CodecTrainConfig:
    corpus: str
    batch_size: int = 8
    crop_frames: int = 25  # 1 s crops
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    # Summed over 32 levels, weight 1 pushed the encoder onto the level-1 codes: at 750
    # steps 1 level and 32 levels gave the same mel distance. 0.03 (~ a mean over levels)
    # let the fine levels carry information (0.336 at 1 level -> 0.289 at 32).
    commit_weight: float = 0.03


class CodecTask:
    kind = "codec"

    def __init__(self, model_config: CodecConfig, train_config: CodecTrainConfig, data: AudioSplit | None = None):
        self.model_cfg = model_config
        self.cfg = train_config
        self._data = data

    @property
    def data(self) -> AudioSplit:
        if self._data is None:
            self._data = load_split(Path(self.cfg.corpus), "train")
        return self._data

    def model_config(self) -> dict:
        return asdict(self.model_cfg)

    def build_model(self) -> torch.nn.Module:
        return Codec(self.model_cfg)

    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

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
        return total, {"loss": total.item(), "mel": mel.item(), "sc": sc.item(), "logmag": logmag.item(), "commit": commit.item()}
