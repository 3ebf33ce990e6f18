"""Preset reload in the generator process: SIGHUP or a program change, without a gap.

The parent relays SIGHUP by bumping `ctl[RELOAD_SEQ]`; a MIDI program change bumps the
engine's `controls.reload_requested`. Either re-reads the preset file and builds a new
Engine on the same models, which takes over at the next chunk boundary carrying the LM
context (`Engine.take_over`), so the audio does not stop. A preset that no longer loads
keeps the old one playing and says why in the status.
"""

from __future__ import annotations

from bridge.live.live_input import with_live_slot


class PresetReload:
    """Watches for reload requests and builds the replacement engine."""

    def __init__(self, models, preset_path: str, reload_seq: int):
        self.models = models
        self.preset_path = preset_path
        self._seq = reload_seq
        self._program = 0
        self.reloads = 0
        self.error: str | None = None

    def program_changed(self, engine) -> bool:
        """Whether a MIDI program change asked for a reload since the last one."""
        return engine.controls.reload_requested != self._program

    def due(self, seq: int, engine) -> bool:
        """Whether a SIGHUP (`seq`, ctl[RELOAD_SEQ]) or a program change asked since the last reload."""
        return seq != self._seq or self.program_changed(engine)

    def reload(self, seq: int, old, clock, keep_stream: bool):
        """(new engine, its preset, the song time its next chunk starts or None) - or None
        when the preset file does not load (then `error` says why and `old` plays on)."""
        self._seq, self._program = seq, old.controls.reload_requested
        from bridge.jam.presets import find_preset
        from model.errors import JamstreamError

        cfg = self.models.cfg
        try:
            preset = with_live_slot(find_preset(self.preset_path), cfg.live_input, cfg.live_cc)
            engine = self.models.engine(preset, clock)
        except JamstreamError as exc:
            self.error = f"reload failed, keeping the old preset: {exc}"
            return None
        start = engine.take_over(old, keep_stream)
        self._program = engine.controls.reload_requested
        self.reloads += 1
        self.error = None
        return engine, preset, start
