"""LM training: next-token cross-entropy on tokenized corpus crops, with style dropout.

Each step draws a context length (1-12 s, so the model learns to continue from little
or a full window of history), then as many crops as fit a fixed frame budget, so a step
costs about the same whatever the length. Style tokens are the crop's own clip's style:
half the time its audio embedding quantized, half the time one of its caption variants'
(what a prompt gives at inference; see token_data), dropped 10% of the time for
classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from model.lm.network import DepthformerLM, LMConfig, style_prefix
from model.train.token_data import TokenClip
from model.train.trainer import Task


@dataclass
class LMTrainConfig:
    frames_per_batch: int = 1024
    min_frames: int = 25  # 1 s
    max_frames: int = 300  # 12 s: the window (10 s) plus some sliding
    style_dropout: float = 0.1
    text_style: float = 0.5  # share of crops conditioned on a caption's style tokens, not the audio's


class LMTask(Task):
    kind = "lm"

    # --init from an LM trained before the codebook-feature path existed: those parts start fresh
    init_new_keys = ("style_code_features", "style_feature_proj.")

    def __init__(
        self,
        model_config: LMConfig,
        train_config: LMTrainConfig,
        clips: list[TokenClip],
        style_codebooks: torch.Tensor | None = None,
        codec_fingerprint: str | None = None,
    ):
        """`style_codebooks`: the style quantizer's codebooks the clips' style tokens came
        from (`StyleModel.quantizer.codebooks`); needed to build a fresh LM whose config has
        style_features (a loaded LM carries them)."""
        self.model_cfg = model_config
        self.style_codebooks = style_codebooks
        self.codec_fingerprint = codec_fingerprint  # recorded in every checkpoint: whose tokens these are
        self.cfg = train_config
        self.clips = [c for c in clips if c.split == "train" and c.tokens.shape[0] >= train_config.min_frames]
        if not self.clips:
            raise ValueError("no training clips long enough")
        self.lengths = torch.tensor([c.tokens.shape[0] for c in self.clips], dtype=torch.float64)

    def model_config(self) -> dict:
        return asdict(self.model_cfg)

    def checkpoint_extra(self) -> dict:
        return {"codec_fingerprint": self.codec_fingerprint} if self.codec_fingerprint else {}

    def build_model(self) -> torch.nn.Module:
        if self.model_cfg.style_features and self.style_codebooks is None:
            raise ValueError("this LM config feeds style codebook vectors: pass the style model's codebooks")
        model = DepthformerLM(self.model_cfg)
        if self.style_codebooks is not None:
            model.set_style_codebooks(self.style_codebooks)
        return model

    def seen_style_codes(self) -> torch.Tensor:
        """[style_tokens * codebook] bool: the (level, code) pairs some training crop is conditioned on."""
        c = self.model_cfg
        seen = torch.zeros(c.style_tokens * c.style_codebook, dtype=torch.bool)
        offsets = torch.arange(c.style_tokens) * c.style_codebook
        for clip in self.clips:
            rows = [style_prefix(clip.style, c).view(1, -1)]
            if clip.text_style is not None and len(clip.text_style):
                rows.append(style_prefix(clip.text_style, c))
            seen[(torch.cat(rows).long() + offsets).reshape(-1)] = True
        return seen

    def after_init(self, model: torch.nn.Module) -> None:
        """Starting from other weights: codes no training crop shows keep whatever the
        table held (random init, never trained) - zero them, so at inference an unseen
        code speaks only through its codebook vector."""
        if not self.model_cfg.style_features:
            return
        with torch.no_grad():
            model.style_embed.weight[~self.seen_style_codes()] = 0.0

    def batch(self, step: int, rank: int, world: int, generator: torch.Generator, device: torch.device):
        cfg = self.cfg
        length = int(torch.randint(cfg.min_frames, cfg.max_frames + 1, (1,), generator=generator))
        size = max(1, cfg.frames_per_batch // length)
        picks = torch.multinomial(self.lengths, size, replacement=True, generator=generator)
        tokens, timing, style = [], [], []
        for i in picks.tolist():
            clip = self.clips[i]
            n = min(length, clip.tokens.shape[0])
            start = int(torch.randint(0, clip.tokens.shape[0] - n + 1, (1,), generator=generator))
            tokens.append(clip.tokens[start : start + length].long())
            timing.append(clip.timing[start : start + length])
            text = clip.text_style
            if text is not None and len(text) and float(torch.rand(1, generator=generator)) < cfg.text_style:
                pick = int(torch.randint(0, text.shape[0], (1,), generator=generator))
                style.append(style_prefix(text[pick], self.model_cfg))
            else:
                style.append(style_prefix(clip.style, self.model_cfg))
        n = min(t.shape[0] for t in tokens)  # clips shorter than `length` shorten the batch
        tokens = torch.stack([t[:n, : self.model_cfg.levels] for t in tokens])
        timing = torch.stack([t[:n] for t in timing])
        use_style = torch.rand(size, generator=generator) >= cfg.style_dropout
        return tokens.to(device), timing.to(device), torch.stack(style).to(device), use_style.to(device)

    def loss(self, model: torch.nn.Module, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        tokens, timing, style, use_style = batch
        loss = model(tokens, timing, style, use_style, return_loss=True)
        return loss, {"nll": loss.item()}
