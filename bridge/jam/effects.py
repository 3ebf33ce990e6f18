"""A preset's output chain: the effect types it may name and the brickwall limiter that closes it.

Effect types map to pedalboard classes with pedalboard's own parameter names, so
pedalboard's documentation is this format's documentation; the ranges here are what a
preset may set (bridge/jam/presets.py checks them when the file loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Effect type -> (pedalboard class, {parameter: (lowest, highest)}).
EFFECTS: dict[str, tuple[str, dict[str, tuple[float, float]]]] = {
    "highpass": ("HighpassFilter", {"cutoff_frequency_hz": (1.0, 20_000.0)}),
    "lowpass": ("LowpassFilter", {"cutoff_frequency_hz": (1.0, 24_000.0)}),
    "compressor": (
        "Compressor",
        {"threshold_db": (-60.0, 0.0), "ratio": (1.0, 100.0), "attack_ms": (0.01, 1000.0), "release_ms": (1.0, 5000.0)},
    ),
    "reverb": (
        "Reverb",
        {k: (0.0, 1.0) for k in ("room_size", "damping", "wet_level", "dry_level", "width", "freeze_mode")},
    ),
    "chorus": (
        "Chorus",
        {
            "rate_hz": (0.01, 100.0),
            "depth": (0.0, 1.0),
            "centre_delay_ms": (0.1, 100.0),
            "feedback": (-0.95, 0.95),
            "mix": (0.0, 1.0),
        },
    ),
    "delay": ("Delay", {"delay_seconds": (0.0, 10.0), "feedback": (0.0, 0.99), "mix": (0.0, 1.0)}),
    "gain": ("Gain", {"gain_db": (-60.0, 24.0)}),
}

# pedalboard's Limiter (JUCE's: two compressors, make-up gain, then a hard clip at 0 dBFS)
# adds 3.75 dB - threshold of make-up gain (measured, pedalboard 0.9). Setting its threshold
# to ceiling + 3.75 makes that make-up exactly -ceiling, so the trim Gain(ceiling) after it
# gives unity gain below the threshold and moves the 0 dBFS clip down to the ceiling.
LIMITER_MAKEUP_DB = 3.75


@dataclass(frozen=True)
class EffectSpec:
    type: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LimiterSpec:
    ceiling_db: float = -1.0
    release_ms: float = 100.0


def effect_chain(effects: tuple[EffectSpec, ...], limiter: LimiterSpec | None):
    """The chain as a pedalboard.Pedalboard: the effects in order, then the limiter stage unless off."""
    import pedalboard

    plugins = [getattr(pedalboard, EFFECTS[e.type][0])(**e.params) for e in effects]
    if limiter is not None:
        plugins += limiter_stage(limiter)
    return pedalboard.Pedalboard(plugins)


def limiter_stage(spec: LimiterSpec) -> list:
    """[Limiter, Gain]: a brickwall at `spec.ceiling_db` dBFS, unity gain below it (see LIMITER_MAKEUP_DB)."""
    import pedalboard

    return [
        pedalboard.Limiter(threshold_db=spec.ceiling_db + LIMITER_MAKEUP_DB, release_ms=spec.release_ms),
        pedalboard.Gain(gain_db=spec.ceiling_db),
    ]
