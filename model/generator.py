"""The Generator: style + timing in, audio out, one chunk at a time, forever.

`generate_chunk(state, style, timing, n_frames, sampling)` is the only call the engine
makes. Everything that must survive between chunks lives in `GeneratorState` - the LM's
ring KV cache, the last frame of tokens, the streaming decoder's history and held-back
frame, and the RNG - so a state can be saved, restored, reset and primed with audio,
and a chunk boundary is invisible: the style can change there and the LM keeps its
context, while the decoder cross-fades over one 40 ms frame.

Latency: the decoder holds back one frame for its cross-fade, so the first chunk opens
with one frame (40 ms) of silence and every chunk's audio is exactly n_frames * 1920
samples, one frame behind the tokens - a constant the engine schedules for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.codec.network import FRAME_SAMPLES, Codec, StreamingDecoder
from model.errors import JamstreamError
from model.lm.network import DepthformerLM, TemporalCache
from model.lm.sampling import SamplingConfig

MAX_BPM = 400.0


@dataclass
class GeneratorState:
    cache: TemporalCache
    prev: torch.Tensor | None  # last generated frame [L], None at a stream's start
    decoder: dict  # StreamingDecoder.state()
    rng: torch.Tensor  # torch.Generator state
    guided: bool
    frames: int = 0  # frames generated since the last reset
    started: bool = False  # whether the leading silent frame has been emitted

    def copy(self) -> "GeneratorState":
        return GeneratorState(
            cache=self.cache.clone(),
            prev=None if self.prev is None else self.prev.clone(),
            decoder={k: (None if v is None else v.clone()) for k, v in self.decoder.items()},
            rng=self.rng.clone(),
            guided=self.guided,
            frames=self.frames,
            started=self.started,
        )


def check_timing(timing: torch.Tensor, n_frames: int) -> torch.Tensor:
    timing = torch.as_tensor(timing, dtype=torch.float32)
    if timing.shape != (n_frames, 3):
        raise JamstreamError(
            f"timing must be [n_frames, 3] = [{n_frames}, 3] (bpm, beat phase, bar phase), got {tuple(timing.shape)}"
        )
    bpm = timing[:, 0]
    if bool((bpm <= 0).any()) or bool((bpm > MAX_BPM).any()):
        raise JamstreamError(f"bpm must be in (0, {MAX_BPM:g}], got {float(bpm.min()):g}..{float(bpm.max()):g}")
    return timing


def check_pair(lm: DepthformerLM, codec: Codec) -> None:
    """An LM only makes music with the codec whose tokens it learned: another codec's
    decoder turns its tokens into noise, so a mismatched pair is refused in one line."""
    from model.codec.network import codec_fingerprint

    wanted = getattr(lm, "codec_fingerprint", None)
    if wanted is None:  # an LM built in memory (tests, benchmarks) names no codec
        return
    have = codec_fingerprint(codec)
    if have != wanted:
        raise JamstreamError(
            f"the LM ({getattr(lm, 'source', 'given')}) learned the tokens of codec {wanted}, but this codec is "
            f"{have}: "
            "pass the codec it was trained with (--codec), or retrain the LM on this codec's tokens"
        )


class Generator:
    def __init__(self, lm: DepthformerLM, codec: Codec, decoder_context: int = 8, speculation=None):
        """`speculation` (model.lm.speculative.Speculation): sample each frame's levels
        speculatively with its draft - the same music, fewer depth passes."""
        if lm.config.levels > codec.levels:
            raise JamstreamError(f"the LM speaks {lm.config.levels} codec levels but the codec has {codec.levels}")
        check_pair(lm, codec)
        self.lm = lm.eval()
        self.codec = codec.eval()
        self.decoder_context = decoder_context
        if speculation is not None:
            d, c = speculation.draft.config, lm.config
            if (d.levels, d.codebook_size, d.target_width) != (c.levels, c.codebook_size, c.width):
                raise JamstreamError(
                    f"the draft ({getattr(speculation.draft, 'source', 'given')}) drafts for an LM of "
                    f"{d.levels} levels x {d.codebook_size} codes, width {d.target_width}; this LM has "
                    f"{c.levels} x {c.codebook_size}, "
                    f"width {c.width}: train a draft for it (`jamstream train draft`)"
                )
        self.speculation = speculation

    @property
    def levels(self) -> int:
        return self.lm.config.levels

    @property
    def style_token_count(self) -> int:
        return self.lm.config.style_tokens  # the style levels the LM reads (lm.network.style_prefix)

    def new_state(self, seed: int = 0, guided: bool = True) -> GeneratorState:
        rows = 2 if guided else 1
        gen = torch.Generator().manual_seed(seed)
        return GeneratorState(
            cache=self.lm.new_cache(rows),
            prev=None,
            decoder={"history": None, "tail": None, "phase": None},
            rng=gen.get_state(),
            guided=guided,
        )

    def reset(self, state: GeneratorState, seed: int | None = None) -> GeneratorState:
        """A fresh stream (e.g. after a locate), keeping the RNG unless a seed is given."""
        fresh = self.new_state(0, state.guided)
        fresh.rng = torch.Generator().manual_seed(seed).get_state() if seed is not None else state.rng.clone()
        return fresh

    def memory(self, style_tokens: torch.Tensor | None, guided: bool) -> torch.Tensor:
        lm = self.lm
        cond = lm.style_memory(None if style_tokens is None else style_tokens.view(1, -1).long(), 1)
        if not guided:
            return cond
        return torch.cat([cond, lm.style_memory(None, 1)], dim=0)

    @torch.inference_mode()
    def prime(
        self, state: GeneratorState, audio: torch.Tensor, timing: torch.Tensor, style_tokens: torch.Tensor | None = None
    ) -> GeneratorState:
        """Feed existing audio (48 kHz stereo) into the context, as Magenta RT's audio prompt."""
        state = state.copy()
        tokens = self.codec.encode(audio, levels=self.levels)[0]
        timing = check_timing(timing, tokens.shape[0])
        memory = self.memory(style_tokens, state.guided)
        self.lm.feed(tokens, timing, memory, state.cache, state.prev)
        state.prev = tokens[-1]
        state.decoder = {"history": tokens[-self.decoder_context :].clone(), "tail": None, "phase": None}
        # The first chunk then opens with the primed audio's last frame, re-decoded with
        # what follows it: no leading silence is needed.
        state.started = True
        return state

    @torch.inference_mode()
    def begin_chunk(
        self, state: GeneratorState, style_tokens, timing: torch.Tensor, n_frames: int, sampling: SamplingConfig
    ) -> tuple[SamplingConfig, torch.Tensor, GeneratorState, torch.Generator, torch.Tensor]:
        """What a chunk starts from, wherever its frames are made (here, or batched with other
        streams': model.streams): checked settings and timing, a copy of the state - the
        caller's is never touched - its RNG, and the style memory rows."""
        timing = check_timing(timing, n_frames)
        state = state.copy()
        gen = torch.Generator()
        gen.set_state(state.rng)
        return sampling.validate(), timing, state, gen, self.memory(style_tokens, state.guided)

    @staticmethod
    def end_chunk(state: GeneratorState, gen: torch.Generator, n_frames: int) -> None:
        state.rng = gen.get_state()
        state.frames += n_frames

    @torch.inference_mode()
    def generate_tokens(
        self, state: GeneratorState, style_tokens, timing: torch.Tensor, n_frames: int, sampling: SamplingConfig
    ) -> tuple[torch.Tensor, GeneratorState]:
        sampling, timing, state, gen, memory = self.begin_chunk(state, style_tokens, timing, n_frames, sampling)
        out = torch.empty(n_frames, self.levels, dtype=torch.long)
        for f in range(n_frames):
            prev = None if state.prev is None else state.prev.view(1, -1)
            frame = self.lm.next_frame(prev, timing[f : f + 1], memory, state.cache, sampling, gen, self.speculation)[0]
            out[f] = frame
            state.prev = frame
        self.end_chunk(state, gen, n_frames)
        return out, state

    @torch.inference_mode()
    def decode_tokens(self, state: GeneratorState, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> audio through the streaming decoder; updates `state` in place."""
        decoder = StreamingDecoder(self.codec, self.decoder_context)
        decoder.load_state(state.decoder)
        audio = decoder.push(tokens)
        if not state.started:
            audio = torch.cat([torch.zeros(2, FRAME_SAMPLES), audio], dim=1)
            state.started = True
        state.decoder = decoder.state()
        return audio

    def generate_chunk(
        self, state: GeneratorState, style_tokens, timing, n_frames: int, sampling: SamplingConfig = SamplingConfig()
    ) -> tuple[torch.Tensor, GeneratorState]:
        """(audio [2, n_frames * 1920], new state). The old state is left untouched."""
        if n_frames < 1:
            raise JamstreamError(f"n_frames must be >= 1 (got {n_frames})")
        tokens, state = self.generate_tokens(state, style_tokens, timing, n_frames, sampling)
        audio = self.decode_tokens(state, tokens)
        return audio, state


def fixed_tempo_timing(
    start_frame: int, n_frames: int, bpm: float, beats_per_bar: int, frame_rate: int = 25
) -> torch.Tensor:
    """[n_frames, 3] timing for a steady tempo, beat 1 of bar 1 at frame 0."""
    t = (torch.arange(n_frames, dtype=torch.float64) + start_frame) / frame_rate
    beats = t * bpm / 60.0
    return torch.stack([torch.full_like(t, bpm), beats % 1.0, (beats / beats_per_bar) % 1.0], dim=-1).float()


def flush(generator: Generator, state: GeneratorState) -> torch.Tensor:
    """The held-back last frame, faded out: the end of a finite render."""
    decoder = StreamingDecoder(generator.codec, generator.decoder_context)
    decoder.load_state(state.decoder)
    return decoder.flush()
