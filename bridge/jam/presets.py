"""Presets: one TOML file that says what a performance steers and with which knobs.

A preset names its style slots (a text prompt, an audio file beside the preset, or a
fine-tuned style "adapter:NAME"), binds each slot's weight and the sampling knobs to MIDI
CCs, and sets the musical defaults (bpm, meter, chunk length, lookahead, smoothing) and
an output effect chain that always ends in a brickwall limiter unless switched off by name.

Everything is checked when the file loads, not when a knob is first turned on stage: a
bad preset is one JamstreamError line naming the file, the key and the fix. The format
is documented in README.md ("## Presets"); `presets/*.toml` are the shipped examples.
This module holds the types and limits; bridge/jam/preset_reader.py walks a file into them.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bridge.jam.effects import EffectSpec, LimiterSpec, effect_chain
from bridge.jam.time.clock import ChunkLength
from model.errors import JamstreamError
from model.lm.sampling import SamplingConfig

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
DEFAULT_PRESET = "techno-dub"  # what jam and bench use when no preset is named: strong beats show the lock
Curve = Literal["linear", "exponential"]
CURVES = {"linear": "linear", "exponential": "exponential", "exp": "exponential", "log": "exponential"}

# What a preset may set each sampling knob to: (lowest, highest), for [sampling] and [controls] alike.
SAMPLING_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 10.0),
    "top_k": (0.0, 1024.0),
    "top_p": (1e-6, 1.0),
    "guidance": (0.0, 30.0),
}

# The four knobs a CC can turn besides slot weights: (lowest, highest) allowed, default.
PARAMS: dict[str, tuple[float, float, float]] = {
    **{k: (*SAMPLING_RANGES[k], float(getattr(SamplingConfig, k))) for k in ("temperature", "top_k", "guidance")},
    "gain": (-120.0, 24.0, 0.0),  # output gain in dB
}

SETTING_KEYS = (
    "name",
    "description",
    "bpm",
    "meter",
    "chunk",
    "piece_frames",
    "lookahead_ms",
    "smoothing_ms",
    "gain_smoothing_ms",
    "channel",
    "gain_db",
)
AUTO = "auto"  # piece_frames / lookahead_ms: from the measured generation speed (bridge/jam/pacing.py)
MAX_PIECE_FRAMES = 50  # 2 s: a piece is what the engine decides at once
TABLE_KEYS = ("sampling", "slots", "controls", "effects", "limiter")
TOP_KEYS = SETTING_KEYS + TABLE_KEYS
SLOT_KEYS = ("prompt", "audio", "adapter", "cc", "weight")
CC_KEYS = ("number", "channel", "bits", "lsb")
CONTROL_KEYS = ("cc", "min", "max", "curve", "initial")
SAMPLING_KEYS = tuple(SAMPLING_RANGES)
LIMITER_KEYS = ("ceiling_db", "release_ms")


@dataclass(frozen=True)
class CCBinding:
    """A MIDI CC: channel 1-16, number 0-127, and for 14-bit control the LSB's number."""

    channel: int
    number: int
    lsb: int | None = None  # None: 7-bit

    @property
    def bits(self) -> int:
        return 7 if self.lsb is None else 14

    def keys(self) -> list[tuple[int, int]]:
        """The (channel, number) pairs this binding listens to: MSB first."""
        return [(self.channel, self.number)] + ([] if self.lsb is None else [(self.channel, self.lsb)])

    def __str__(self) -> str:
        return f"ch{self.channel} CC{self.number}" + ("" if self.lsb is None else f"/{self.lsb} (14-bit)")


@dataclass(frozen=True)
class StyleSlot:
    name: str
    kind: Literal["prompt", "audio", "adapter"]
    value: str  # the prompt text, the audio file's absolute path, or the adapter's name
    cc: CCBinding
    weight: float  # initial weight, 0..1

    @property
    def ref(self) -> str:
        """How the slot names its style: the prompt, the audio path, or "adapter:NAME"."""
        return f"adapter:{self.value}" if self.kind == "adapter" else self.value


@dataclass(frozen=True)
class ParamControl:
    """A CC-driven parameter: knob position x in [0, 1] -> value through a curve."""

    name: str
    cc: CCBinding
    min: float
    max: float
    curve: Curve
    initial: float

    def value(self, x: float) -> float:
        x = min(1.0, max(0.0, x))
        if self.curve == "exponential":  # equal knob travel = equal ratio (a log-taper pot)
            return self.min * (self.max / self.min) ** x
        return self.min + (self.max - self.min) * x

    def position(self, value: float) -> float:
        """Inverse of `value`: where the knob sits for a value (clamped to [0, 1])."""
        if self.max == self.min:
            return 0.0
        if self.curve == "exponential":
            x = math.log(value / self.min) / math.log(self.max / self.min)
        else:
            x = (value - self.min) / (self.max - self.min)
        return min(1.0, max(0.0, x))


@dataclass(frozen=True)
class Preset:
    path: Path
    name: str
    description: str
    slots: tuple[StyleSlot, ...]
    controls: dict[str, ParamControl]
    sampling: SamplingConfig
    bpm: float
    meter: tuple[int, int]
    chunk: ChunkLength
    piece_frames: int | None  # None: auto
    lookahead_ms: float | None  # None: auto
    smoothing_ms: float  # the style mix's glide (one-pole time constant)
    gain_smoothing_ms: float  # the gain knob's de-zipper
    gain_db: float
    effects: tuple[EffectSpec, ...]
    limiter: LimiterSpec | None

    def slot(self, name: str) -> StyleSlot:
        for s in self.slots:
            if s.name == name:
                return s
        raise JamstreamError(f"{self.path}: no slot named {name!r} (slots: {', '.join(s.name for s in self.slots)})")

    def initial(self, param: str) -> float:
        """A knob's starting value: its control's `initial`, else the preset's default."""
        if param in self.controls:
            return self.controls[param].initial
        if param == "gain":
            return self.gain_db
        return float(getattr(self.sampling, param))

    def effect_chain(self):
        """The output chain as a pedalboard.Pedalboard; a limiter stage closes it unless off."""
        return effect_chain(self.effects, self.limiter)


# ---------------------------------------------------------------------- loading
def load_preset(path) -> Preset:
    """Read and validate one preset file; any problem is one JamstreamError line."""
    path = Path(path)
    if not path.is_file():
        raise JamstreamError(f"{path}: no such preset file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise JamstreamError(f"{path}: not valid TOML (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise JamstreamError(f"{path}: not valid TOML: {exc}") from None
    from bridge.jam.preset_reader import PresetReader  # here: the reader builds this module's types

    return PresetReader(path).preset(data)


def preset_from_table(data: dict, where: Path) -> Preset:
    """A preset written by code (`generate`'s prompt mix), validated as a file is."""
    from bridge.jam.preset_reader import PresetReader

    return PresetReader(Path(where)).preset(data)


def find_preset(name_or_path: str) -> Preset:
    """A path, or the name of a shipped preset ("techno-dub" -> presets/techno-dub.toml)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return load_preset(p)
    candidate = PRESETS_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return load_preset(candidate)
    names = shipped_preset_names()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"shipped presets: {', '.join(names)}"
    raise JamstreamError(f"no preset file or shipped preset named {name_or_path!r}; {hint}")


def shipped_preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
