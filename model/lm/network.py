"""The token transformer: a Magenta RT "depthformer" with tempo and beat conditioning.

Two stacks, as in Magenta RT v1's decoder:
- temporal: causal self-attention over 25 Hz frames, one position per frame. A frame's
  input is the mean of the previous frame's level embeddings (Magenta RT's choice: one
  vector per frame keeps the sequence 16x shorter than flattening the levels) plus the
  frame's timing (bpm, beat phase, bar phase). Attention is limited to a sliding window
  of `window` frames (10 s) with ALiBi distance biases instead of position embeddings,
  so a frame's cost is O(window), the KV cache is a fixed ring buffer, and the model is
  translation-invariant: an endless stream never runs out of positions.
- depth: a small causal stack that emits the frame's levels one by one, starting from
  the temporal output; its cache lives for one frame only.

Style conditioning is cross-attention from every temporal layer to the 6 style-token
embeddings, as SEED.md describes. We chose cross-attention over a prefix because the
style can then change at any chunk boundary without recomputing the cached context: a
prefix would sit inside the self-attention cache and go stale. Classifier-free guidance
replaces the style memory with a learned null memory (style dropped 10% in training);
both branches run as one batch.

A style token's memory vector is a learned per-code embedding plus a learned projection
of that code's frozen codebook vector from the style quantizer (`style_features` > 0).
Why: our corpus is small, so codes a text prompt quantizes to are rare or absent in
training (of the 15 preset prompts, 2 first-level codes and 18 of 75 deeper ones never
occur; the rest are seen in a handful of crops); a table-only embedding meets the absent
ones as untrained noise, while codebook vectors of unseen codes still sit where the
style space puts them. The input stays tokens, as in Magenta RT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.errors import JamstreamError
from model.io.checkpoint import load_model, save_model
from model.lm.blocks import DepthBlock, GrowingKV, RingSlot, StreamSlots, TemporalBlock

TIMING_FEATURES = 9


@dataclass(frozen=True)
class LMConfig:
    levels: int = 16
    codebook_size: int = 1024
    width: int = 256
    heads: int = 4
    temporal_layers: int = 6
    depth_layers: int = 2
    mlp_ratio: int = 4
    window: int = 250  # frames of attention context: 10 s at 25 Hz
    style_tokens: int = 6
    style_codebook: int = 1024
    style_dropout: float = 0.1
    style_features: int = 0  # leading PCA dims of each style code's codebook vector fed to the memory (0: table only)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


CONFIGS: dict[str, LMConfig] = {
    "tiny": LMConfig(style_features=128),
    # The walkthrough's shape: width 1024, 24 layers (20 temporal + 4 depth, as Magenta RT
    # splits its decoder), 16 heads. Trained only on a GPU.
    "large": LMConfig(width=1024, heads=16, temporal_layers=20, depth_layers=4, style_features=128),
}


def timing_features(timing: torch.Tensor) -> torch.Tensor:
    """[..., 3] (bpm, beat phase, bar phase; phases in [0, 1)) -> [..., 9] features.

    log-tempo, and sines/cosines of the bar, beat, eighth and sixteenth phase, so the
    model can tell a downbeat from an off-beat at any tempo.
    """
    bpm, beat, bar = timing.unbind(-1)
    two_pi = 2 * math.pi
    feats = [torch.log(bpm.clamp_min(1.0) / 120.0)]
    for phase in (bar, beat, beat * 2, beat * 4):
        feats += [torch.sin(two_pi * phase), torch.cos(two_pi * phase)]
    return torch.stack(feats, dim=-1)


def alibi_slopes(heads: int) -> torch.Tensor:
    """Geometric slopes from ALiBi: each head sees a different effective horizon."""
    start = 2 ** (-8.0 / heads)
    return torch.tensor([start ** (i + 1) for i in range(heads)])


@dataclass
class TemporalCache:
    """Ring-buffer KV cache: memory is fixed however long the stream runs."""

    k: torch.Tensor  # [layers, B, H, window, dh]
    v: torch.Tensor
    pos: torch.Tensor  # [window] absolute frame index held in each slot, -1 if empty
    frame: int = 0  # index of the next frame

    def clone(self) -> "TemporalCache":
        return TemporalCache(self.k.clone(), self.v.clone(), self.pos.clone(), self.frame)

    @property
    def rows(self) -> int:
        return self.k.shape[1]

    def layer(self, index: int, bias: torch.Tensor) -> RingSlot:
        """Layer `index`'s buffers, the slot the current frame writes and its bias."""
        return RingSlot(self.k[index], self.v[index], self.frame % self.k.shape[3], bias)


@dataclass(frozen=True)
class StreamRows:
    """How a batch's rows belong to its streams. A stream's rows sit together, as its cache
    holds them: its conditional row, then - with guidance - its null-style row."""

    rows: tuple[int, ...]  # per stream: 1, or 2 with guidance
    cond: torch.Tensor  # [S] each stream's conditional row
    uncond: torch.Tensor  # [S] each stream's null-style row (its conditional row when unguided)
    stream_of_row: torch.Tensor  # [R]

    @classmethod
    def of(cls, rows: Sequence[int], device=None) -> "StreamRows":
        rows = tuple(int(r) for r in rows)
        if any(r not in (1, 2) for r in rows):
            raise JamstreamError(f"a stream has 1 row, or 2 with guidance (got {rows})")
        starts = torch.tensor([0, *rows], device=device).cumsum(0)[:-1]
        counts = torch.tensor(rows, device=device)
        owner = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
        return cls(rows, starts, starts + counts - 1, owner)

    @property
    def guided(self) -> bool:
        return any(r == 2 for r in self.rows)


class DepthformerLM(nn.Module):
    def __init__(self, config: LMConfig = LMConfig()):
        super().__init__()
        self.config = c = config
        # One table per level, shared by the temporal input and the depth input: the two
        # untied tables would cost 4M parameters and take tiny past its 40 MB file.
        self.token_embed = nn.Embedding(c.levels * c.codebook_size, c.width)
        self.bos = nn.Parameter(torch.zeros(c.width))
        self.timing = nn.Linear(TIMING_FEATURES, c.width)
        self.style_embed = nn.Embedding(c.style_tokens * c.style_codebook, c.width)
        self.style_pos = nn.Parameter(torch.zeros(c.style_tokens, c.width))
        if c.style_features:
            # Frozen, filled by set_style_codebooks and saved with the weights; the table
            # starts at zero so a code no batch ever shows adds nothing but its codebook vector.
            self.register_buffer(
                "style_code_features", torch.zeros(c.style_tokens * c.style_codebook, c.style_features)
            )
            self.style_feature_proj = nn.Linear(c.style_features, c.width)
            nn.init.zeros_(self.style_embed.weight)
            nn.init.zeros_(self.style_feature_proj.weight)  # so a fine-tune from a table-only LM starts where it was
            nn.init.zeros_(self.style_feature_proj.bias)
        self.null_style = nn.Parameter(torch.zeros(c.style_tokens, c.width))
        self.temporal = nn.ModuleList([TemporalBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.temporal_layers)])
        self.temporal_norm = nn.LayerNorm(c.width)
        self.depth_in = nn.Linear(c.width, c.width)
        self.level_pos = nn.Parameter(torch.zeros(c.levels, c.width))
        self.depth = nn.ModuleList([DepthBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth_layers)])
        self.depth_norm = nn.LayerNorm(c.width)
        self.heads_out = nn.Parameter(torch.empty(c.levels, c.width, c.codebook_size))
        nn.init.normal_(self.heads_out, std=c.width**-0.5)
        for p in (self.style_pos, self.null_style, self.level_pos):
            nn.init.normal_(p, std=0.02)
        self.register_buffer("slopes", alibi_slopes(c.heads), persistent=False)
        self.register_buffer("level_offsets", torch.arange(c.levels) * c.codebook_size, persistent=False)

    # ------------------------------------------------------------ conditioning
    def style_memory(
        self, style_tokens: torch.Tensor | None, batch: int, use_style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, 6] style tokens -> [B, 6, d]; rows with use_style False (or no tokens) get the null memory."""
        c = self.config
        null = self.null_style.unsqueeze(0).expand(batch, -1, -1)
        if style_tokens is None:
            return null
        offsets = torch.arange(c.style_tokens, device=style_tokens.device) * c.style_codebook
        index = style_tokens[:, : c.style_tokens] + offsets
        mem = self.style_embed(index) + self.style_pos
        if c.style_features:
            mem = mem + self.style_feature_proj(self.style_code_features[index])
        if use_style is None:
            return mem
        return torch.where(use_style.view(-1, 1, 1), mem, null)

    def set_style_codebooks(self, codebooks: torch.Tensor) -> None:
        """Copy the style quantizer's codebooks [levels >= style_tokens, codes, dims] in:
        the leading `style_features` dims of each level, scaled to unit RMS per level (the
        first level's vectors are far longer than the residual levels')."""
        c = self.config
        if not c.style_features:
            return
        books = codebooks[: c.style_tokens, :, : c.style_features].float()
        if books.shape != (c.style_tokens, c.style_codebook, c.style_features):
            raise JamstreamError(
                f"style codebooks {tuple(codebooks.shape)} do not fit this LM's style tokens "
                f"({c.style_tokens} levels x {c.style_codebook} codes x >= {c.style_features} dims)"
            )
        rms = books.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-8)
        self.style_code_features.copy_((books / rms).reshape(-1, c.style_features))

    def frame_inputs(
        self, tokens: torch.Tensor, timing: torch.Tensor, prev: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Temporal inputs for frames whose *previous* frames are `prev` + tokens[:, :-1].

        tokens [B, T, L] are the frames being predicted; `prev` [B, L] is the frame before
        the first (None at the start of a stream: BOS).
        """
        shifted = tokens[:, :-1]
        if prev is not None:
            shifted = torch.cat([prev.unsqueeze(1), shifted], dim=1)
        return self.inputs_after(shifted, timing, bos=prev is None)

    def inputs_after(self, before: torch.Tensor, timing: torch.Tensor, bos: bool) -> torch.Tensor:
        """The frame-input embedding: [B, T, d] for T frames at timing [B, T, 3], each the mean
        of its previous frame's level embeddings plus its timing features.

        `before` [B, T', L] are those previous frames; with `bos` the first frame opens a
        stream, has none and gets the learned BOS vector (T' = T - 1).
        """
        x = self.token_embed(before + self.level_offsets).mean(dim=2)
        if bos:
            x = torch.cat([self.bos.expand(x.shape[0], 1, -1), x], dim=1)
        return x + self.timing(timing_features(timing).to(x.dtype))

    # ------------------------------------------------------------ temporal stack
    def _window_bias(self, t_q: torch.Tensor, t_k: torch.Tensor) -> torch.Tensor:
        """ALiBi bias [H, Tq, Tk] for absolute frame indices, -inf outside the causal window."""
        dist = (t_q.view(-1, 1) - t_k.view(1, -1)).float()
        allowed = (dist >= 0) & (dist < self.config.window)
        bias = -self.slopes.view(-1, 1, 1) * dist
        return bias.masked_fill(~allowed, float("-inf"))

    def temporal_forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Whole-sequence pass (training, and the reference the cache must equal)."""
        t = torch.arange(x.shape[1], device=x.device)
        bias = self._window_bias(t, t).to(x.dtype)
        for blk in self.temporal:
            x = blk(x, memory, bias)
        return self.temporal_norm(x)

    def new_cache(self, batch: int, device=None, dtype: torch.dtype | None = None) -> TemporalCache:
        """An empty ring cache in the model's own dtype (fp32, or half when run in half)."""
        c = self.config
        dtype = dtype or self.bos.dtype
        shape = (c.temporal_layers, batch, c.heads, c.window, c.head_dim)
        return TemporalCache(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            pos=torch.full((c.window,), -1, dtype=torch.long, device=device),
        )

    def temporal_step(
        self, x: torch.Tensor, memory: torch.Tensor, caches: TemporalCache | Sequence[TemporalCache]
    ) -> torch.Tensor:
        """One frame [R, d] through the stack with the ring caches; returns [R, d]. O(window).

        With several caches (independent streams, each at its own frame) the rows are theirs
        in order: every linear layer runs once for all of them, attention per stream.
        """
        caches = [caches] if isinstance(caches, TemporalCache) else list(caches)
        biases = []
        for cache in caches:
            frame = cache.frame
            cache.pos[frame % self.config.window] = frame
            bias = self._window_bias(torch.tensor([frame], device=x.device), cache.pos)
            biases.append(bias.masked_fill(~(cache.pos >= 0).view(1, 1, -1), float("-inf")).to(x.dtype))
        rows = tuple(cache.rows for cache in caches)
        h = x.unsqueeze(1)
        for i, blk in enumerate(self.temporal):
            slots = StreamSlots([cache.layer(i, bias) for cache, bias in zip(caches, biases)], rows)
            h = blk(h, memory, None, kv=slots)
        for cache in caches:
            cache.frame += 1
        return self.temporal_norm(h)[:, 0]

    # ------------------------------------------------------------ depth stack
    def depth_inputs(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[N, d] temporal outputs + [N, L] tokens -> [N, L, d] (teacher forcing)."""
        start = self.depth_in(h).unsqueeze(1)
        prev = self.token_embed(tokens[:, :-1] + self.level_offsets[:-1])
        return torch.cat([start, prev], dim=1) + self.level_pos

    def depth_forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, L', d] -> logits [N, L', V] for levels 0..L'-1."""
        n = x.shape[1]
        for blk in self.depth:
            x = blk(x)
        x = self.depth_norm(x)
        return torch.einsum("nld,ldv->nlv", x, self.heads_out[:n])

    @torch.inference_mode()
    def feed(
        self,
        tokens: torch.Tensor,
        timing: torch.Tensor,
        memory: torch.Tensor,
        cache: TemporalCache,
        prev: torch.Tensor | None = None,
    ) -> None:
        """Push known frames [T, L] (an audio prompt, a context) into the temporal cache.

        `prev` [L] is the frame before them (None at a stream's start: BOS). With guidance
        the same inputs go to every row of `memory`/`cache`.
        """
        rows = memory.shape[0]
        for f in range(tokens.shape[0]):
            before = prev if f == 0 else tokens[f - 1]
            x = self.stream_inputs([None if before is None else before.reshape(-1)], timing[f : f + 1])
            self.temporal_step(x.expand(rows, -1), memory, cache)

    @torch.inference_mode()
    def next_frame(
        self,
        prev: torch.Tensor | None,
        timing: torch.Tensor,
        memory: torch.Tensor,
        cache: TemporalCache,
        sampling,
        generator: torch.Generator | None,
        speculation=None,
    ) -> torch.Tensor:
        """Sample one stream's next frame [1, L] after `prev` [1, L] (None: stream start).

        With guidance, `memory` and `cache` hold 2 rows (conditional first, then the
        null-style row) and both run as one batch; the sampled tokens feed both.
        """
        prev = None if prev is None else prev.reshape(-1)
        return self.next_frames([prev], timing.view(1, 3), memory, [cache], [sampling], [generator], speculation)

    @torch.inference_mode()
    def next_frames(
        self,
        prevs: Sequence[torch.Tensor | None],
        timing: torch.Tensor,
        memory: torch.Tensor,
        caches: Sequence[TemporalCache],
        samplings: Sequence,
        generators: Sequence[torch.Generator | None],
        speculation=None,
    ) -> torch.Tensor:
        """The next frame [S, L] of S independent streams in one batched pass.

        Stream s continues after prevs[s] [L] (None: its start) at timing[s] (bpm, beat,
        bar), with its own cache (rows: 1, or 2 with guidance), sampling and generator;
        memory [R, 6, d] holds the streams' rows in order. A stream draws the same tokens
        here as alone: nothing of one stream's reaches another's rows.

        `speculation` (a model.lm.speculative.Speculation) samples a single stream's levels
        speculatively: the same distribution, fewer depth passes.
        """
        streams = StreamRows.of([cache.rows for cache in caches], memory.device)
        x = self.stream_inputs(prevs, timing).index_select(0, streams.stream_of_row)
        h = self.temporal_step(x, memory, caches)
        if speculation is not None and len(caches) == 1:
            return speculation.levels(self, h, streams, samplings[0], generators[0])
        return self.sample_levels(h, streams, samplings, generators)

    def stream_inputs(self, prevs: Sequence[torch.Tensor | None], timing: torch.Tensor) -> torch.Tensor:
        """Each stream's temporal input [S, d]: the mean of its previous frame's level
        embeddings (BOS where it starts) plus its timing features."""
        c = self.config
        bos = [p is None for p in prevs]
        before = torch.stack([self.level_offsets.new_zeros(c.levels) if p is None else p for p in prevs])
        x = self.token_embed(before + self.level_offsets).mean(dim=1)
        if any(bos):
            x = torch.where(torch.tensor(bos, device=x.device).view(-1, 1), self.bos.expand_as(x), x)
        return x + self.timing(timing_features(timing).to(x.dtype))

    def level_logits(self, y: torch.Tensor, level: int, streams: StreamRows, samplings: Sequence) -> torch.Tensor:
        """Depth outputs [R, d] at `level` -> each stream's guided logits [S, V]."""
        logits = self.depth_norm(y) @ self.heads_out[level]
        cond = logits.index_select(0, streams.cond)
        if not streams.guided:
            return cond
        weight = torch.tensor(
            [s.guidance if r == 2 else 0.0 for s, r in zip(samplings, streams.rows)], device=logits.device
        ).view(-1, 1)
        return (1 + weight) * cond - weight * logits.index_select(0, streams.uncond)

    def level_input(self, tokens: torch.Tensor, level: int, streams: StreamRows) -> torch.Tensor:
        """The depth stack's input [R, d] after `level`'s tokens [S] (level + 1's position)."""
        emb = self.token_embed(tokens + self.level_offsets[level]) + self.level_pos[level + 1]
        return emb.index_select(0, streams.stream_of_row)

    def sample_levels(
        self,
        h: torch.Tensor,
        streams: StreamRows,
        samplings: Sequence,
        generators: Sequence[torch.Generator | None],
    ) -> torch.Tensor:
        """The depth stack: each stream's L tokens [S, L] from its temporal outputs h [R, d]."""
        from model.lm.sampling import sample_streams

        c = self.config
        step_in = (self.depth_in(h) + self.level_pos[0]).unsqueeze(1)  # [R, 1, d]
        caches = [GrowingKV() for _ in self.depth]
        out = torch.empty(len(streams.rows), c.levels, dtype=torch.long, device=h.device)
        for level in range(c.levels):
            y = step_in
            for blk, kv in zip(self.depth, caches):
                y = blk(y, kv=kv)
            token = sample_streams(self.level_logits(y[:, 0], level, streams, samplings), samplings, generators)
            out[:, level] = token
            if level + 1 < c.levels:
                step_in = self.level_input(token, level, streams).unsqueeze(1)
        return out

    # ------------------------------------------------------------ training
    def forward(
        self,
        tokens: torch.Tensor,
        timing: torch.Tensor,
        style_tokens: torch.Tensor | None,
        use_style: torch.Tensor | None = None,
        return_loss: bool = False,
    ) -> torch.Tensor:
        """Teacher-forced logits [B, T, L, V] for tokens [B, T, L] given timing [B, T, 3];
        or, with return_loss, the mean next-token cross-entropy (nats)."""
        b, t, lv = tokens.shape
        memory = self.style_memory(style_tokens, b, use_style)
        h = self.temporal_forward(self.frame_inputs(tokens, timing), memory)
        x = self.depth_inputs(h.reshape(b * t, -1), tokens.reshape(b * t, lv))
        logits = self.depth_forward(x).view(b, t, lv, -1)
        if not return_loss:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens.reshape(-1))


def style_prefix(tokens: torch.Tensor, config: LMConfig) -> torch.Tensor:
    """The style tokens an LM reads: the first `config.style_tokens` of the style model's
    RVQ levels (last axis). The levels are coarse to fine, so a shorter prefix is a coarser
    style; every caller slices here so the LM and its data agree on which levels count."""
    return tokens[..., : config.style_tokens]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_lm(model: DepthformerLM, path, half: bool = False, extra: dict | None = None) -> None:
    save_model(model, path, "lm", asdict(model.config), half, extra)


def load_lm(path=None, device: str = "cpu") -> DepthformerLM:
    """A trained LM: `path`, or the shipped default weights when path is None. It carries
    `codec_fingerprint`, the codec whose tokens it learned (model.codec.codec_fingerprint):
    LMs saved before fingerprints were recorded all learned the first shipped codec's."""
    from model.io.checkpoint import read_metadata
    from model.weights import LEGACY_CODEC_FINGERPRINT, default_weight_path

    path = path or default_weight_path("lm")
    model = load_model(path, "lm", LMConfig, DepthformerLM).to(device).eval()
    model.codec_fingerprint = read_metadata(path, "lm")[1].get("codec_fingerprint", LEGACY_CODEC_FINGERPRINT)
    model.source = str(path)
    return model
