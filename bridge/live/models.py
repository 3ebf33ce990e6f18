"""What the generator process plays with: the model stack (or the metronome) and Engines on it.

Loaded once per worker; a preset reload builds a new Engine on the same models. torch is
imported here, in the generator process only (the JACK side never loads a model).
"""

from __future__ import annotations

from bridge.live.live_input import add_placeholder_row, without_live_slot


class LiveModels:
    """The generator, style model and adapters of `cfg` (a WorkerConfig) for `preset`."""

    def __init__(self, cfg, preset):
        self.cfg = cfg
        if cfg.metronome:
            from bridge.live.metronome import MetronomeGenerator, MetronomeStyle

            self.generator, self.style_model, self.adapters = MetronomeGenerator(), MetronomeStyle(), None
            return
        import torch

        torch.set_num_threads(max(1, cfg.threads))
        from bridge.jam.stack import load_stack

        base = without_live_slot(preset) if cfg.live_input else preset
        stack = load_stack(
            base,
            lm=cfg.lm,
            codec=cfg.codec,
            style=cfg.style,
            adapter=cfg.adapter,
            speculative=cfg.speculative,
            draft=cfg.draft,
        )
        self.generator, self.style_model, self.adapters = stack.generator, stack.style_model, stack.adapters

    def warm_up(self, preset) -> float:
        """One throwaway second of music before reporting ready (the first torch calls are
        slow), then one more second timed: the seconds a frame takes, piece by piece, which
        the auto pacing plans with."""
        from bridge.jam.pacing import DEFAULT_PIECE_FRAMES, Pacing
        from bridge.jam.time.clock import FixedClock

        warm = self.engine(preset, FixedClock(preset.bpm, preset.meter))
        warm.set_pacing(Pacing(preset.piece_frames or DEFAULT_PIECE_FRAMES, 0.0))
        warm.start(0.0, 2.0)
        while warm.piece_start_sample() is not None and warm.piece_start_sample() < 48_000:
            warm.next_piece()
        timed_from = (warm.stats.frames, warm.stats.gen_seconds)
        while warm.peek() is not None:
            warm.next_piece()
        frames = warm.stats.frames - timed_from[0]
        return (warm.stats.gen_seconds - timed_from[1]) / frames if frames else 0.0

    def slot_styles(self, preset):
        """Each slot's embedding (the live slot's a placeholder until its input has sound)."""
        if self.cfg.metronome:
            from bridge.live.metronome import MetronomeSlots

            return MetronomeSlots(len(preset.slots))
        from bridge.jam.engine import SlotStyles

        adapter_styles = self.adapters.styles() if self.adapters is not None else None
        styles = SlotStyles(self.style_model, without_live_slot(preset), adapter_styles)
        if self.cfg.live_input:
            add_placeholder_row(styles)
        return styles

    def engine(self, preset, clock):
        """A new Engine playing `preset` on `clock` with these models."""
        from bridge.jam.engine import Engine

        return Engine(
            self.generator,
            self.style_model,
            preset,
            clock,
            seed=self.cfg.seed,
            slot_styles=self.slot_styles(preset),
            adapters=self.adapters,
        )
