"""Style training: symmetric InfoNCE between 10 s audio crops and caption variants.

A batch is genre-stratified (e.g. 8 genres x 4 clips): every clip has same-genre clips
beside it, so the loss must tell a techno clip's caption from another techno clip's -
hard negatives - as well as techno from chorale. Captions that are the very same string
(two clips of one genre both drawing "techno music") are counted as positives for each
other, not as false negatives. The temperature is learned (CLIP's logit scale, clamped
at 100). Only the audio tower and the text projection train: the sentence encoder is
frozen and its outputs are cached, so a step is one audio-tower pass.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from model.style.network import StyleConfig, StyleModel
from model.train.style_data import StyleData, genre_prompt, load_style_data, random_crop
from model.train.trainer import Task


@dataclass
class StyleTrainConfig:
    corpus: str
    genres_per_batch: int = 8
    clips_per_genre: int = 4
    freq_mask: int = 8  # SpecAugment: up to this many mel bins masked per crop
    time_mask: int = 50  # and up to this many frames
    quantizer_points: int = 24_000  # points the style codebooks are fit on after training
    quantizer_iters: int = 20


class StyleTask(Task):
    kind = "style"

    def __init__(self, model_config: StyleConfig, train_config: StyleTrainConfig, data: StyleData | None = None):
        self.model_cfg = model_config
        self.cfg = train_config
        self._data = data

    @property
    def data(self) -> StyleData:
        if self._data is None:
            self._data = load_style_data(Path(self.cfg.corpus), self.model_cfg, "train")
        return self._data

    def model_config(self) -> dict:
        return asdict(self.model_cfg)

    def build_model(self) -> torch.nn.Module:
        return StyleModel(self.model_cfg)

    def batch(self, step: int, rank: int, world: int, generator: torch.Generator, device: torch.device) -> dict:
        data = self.data
        genres = data.genres
        pick = torch.randperm(len(genres), generator=generator)[: self.cfg.genres_per_batch].tolist()
        clips: list[int] = []
        for g in pick:
            members = data.by_genre[genres[g]]
            order = torch.randperm(len(members), generator=generator).tolist()
            clips += [members[order[i % len(order)]] for i in range(self.cfg.clips_per_genre)]
        frames = self.model_cfg.window_frames
        mels = torch.stack([random_crop(data.mels[c], frames, generator) for c in clips]).float()
        self._spec_augment(mels, generator)
        text_idx = [
            data.variants[c][int(torch.randint(0, len(data.variants[c]), (1,), generator=generator))] for c in clips
        ]
        texts = [data.texts[i] for i in text_idx]
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        return {"mels": mels.to(device), "text": data.text_emb[text_idx].to(device), "positives": same.to(device)}

    def _spec_augment(self, mels: torch.Tensor, generator: torch.Generator) -> None:
        b, n_mels, frames = mels.shape
        fill = mels.mean(dim=(1, 2))
        for i in range(b):
            f = int(torch.randint(0, self.cfg.freq_mask + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, n_mels - f + 1, (1,), generator=generator))
            t = int(torch.randint(0, self.cfg.time_mask + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, frames - t + 1, (1,), generator=generator))
            mels[i, f0 : f0 + f, :] = fill[i]
            mels[i, :, t0 : t0 + t] = fill[i]

    def loss(self, model: torch.nn.Module, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        audio, text, scale = model(batch["mels"], batch["text"])
        logits = scale * audio.float() @ text.float().T
        positives = batch["positives"]
        a2t = -(F.log_softmax(logits, dim=1) * positives / positives.sum(1, keepdim=True)).sum(1).mean()
        t2a = -(F.log_softmax(logits.T, dim=1) * positives / positives.sum(1, keepdim=True)).sum(1).mean()
        total = (a2t + t2a) / 2
        with torch.no_grad():
            hit = positives.gather(1, logits.argmax(1, keepdim=True)).mean()
        return total, {"loss": total.item(), "acc": hit.item(), "scale": scale.item()}


@torch.no_grad()
def quantizer_points(model: StyleModel, data: StyleData, count: int, seed: int = 0) -> torch.Tensor:
    """Points spread over the space the LM will see: audio windows, captions, genre prompts, mixes.

    The corpus has only a few hundred clips, far fewer than 1024 codes a level, so the fit
    set is widened: several random windows per clip, every caption variant, every genre
    prompt, and random convex mixes of pairs (renormalized, as `mix` makes them).
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    frames = model.config.window_frames
    windows_per_clip = max(1, count // (4 * max(1, len(data.mels))))
    audio = []
    for mel in data.mels:
        crops = torch.stack([random_crop(mel, frames, gen) for _ in range(windows_per_clip)]).float()
        for chunk in crops.split(64):
            audio.append(F.normalize(model.audio(chunk), dim=-1))
    audio_emb = torch.cat(audio)
    text_emb = model.project_text(data.text_emb)
    prompts = model.project_text(_genre_prompt_embeddings(model, data))
    base = torch.cat([audio_emb, text_emb, prompts])
    n_mix = max(0, count - len(base))
    i = torch.randint(0, len(base), (n_mix,), generator=gen)
    j = torch.randint(0, len(base), (n_mix,), generator=gen)
    w = torch.rand(n_mix, 1, generator=gen)
    mixes = F.normalize(w * base[i] + (1 - w) * base[j], dim=-1)
    return torch.cat([base, mixes]).float()


def _genre_prompt_embeddings(model: StyleModel, data: StyleData) -> torch.Tensor:
    from model.style.network import encode_sentences

    return encode_sentences([genre_prompt(g) for g in data.genres] + data.genres, model.config.text_encoder)


def fit_quantizer(checkpoint: str | Path, task: StyleTask, seed: int = 0) -> dict:
    """Fit the style codebooks on the trained towers and write them into the checkpoint.

    The rest of the checkpoint (optimizer moments, step, metrics) is kept, so `--resume`
    still works; a resumed run simply refits at its end.
    """
    from model.io.checkpoint import load_state_into, load_tensors, read_metadata, save_checkpoint

    config, extra = read_metadata(checkpoint, "style")
    model = StyleModel(StyleConfig(**config))
    tensors = load_tensors(checkpoint)
    load_state_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, checkpoint)
    torch.manual_seed(seed)
    random.seed(seed)
    points = quantizer_points(model, task.data, task.cfg.quantizer_points, seed)
    info = model.quantizer.fit(points, iters=task.cfg.quantizer_iters, seed=seed)
    for k, v in model.quantizer.state_dict().items():
        tensors[f"model.quantizer.{k}"] = v
    extra = {**extra, "quantizer": info}
    save_checkpoint(checkpoint, "style", config, tensors, extra)
    return info
