"""MIDI CC -> slot weights and sampling knobs, smoothed, and the style mix they make.

`Controls` is built from a preset and fed raw MIDI (bytes as JACK delivers them, or
mido messages). A CC on a bound channel/number moves its target: a slot weight (7-bit
value/127, 14-bit (msb << 7 | lsb)/16383, updated on either byte - the other byte keeps
its last value, so a controller that sends MSB then LSB never dips) or a parameter through
its curve. Weights and gain follow their targets through a one-pole filter whose time
constant is the preset's smoothing time, advanced by the caller's clock (`advance`), so
smoothing is deterministic and the same offline as live. Sampling knobs are not smoothed:
the engine reads them once per chunk.

Anything else is ignored and counted in `stats` - other channels, unbound CCs, other
message types, and malformed bytes (truncated messages, data bytes where a status byte
belongs) - because a stage controller must never crash a performance. Program change
bumps `reload_requested` for the live bridge to act on. `changes` counts every applied
message (Magenta RT's parameter change counter), so a reader can skip work when idle.

It runs in the worker, off the audio thread, but keeps to lists of floats and a dict
lookup per message.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from bridge.jam.presets import ParamControl, Preset
from model.lm.sampling import SamplingConfig

# Data bytes after a status byte: channel messages by high nibble, system common by byte.
_CHANNEL_DATA = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
ALL_DOWN = 1e-6  # slot weights summing to no more than this are all knobs down
STAT_KEYS = (
    "applied",
    "program_change",
    "ignored_unknown_cc",
    "ignored_other_channel",
    "ignored_other_type",
    "malformed",
)


class _Input:
    """One bound CC (7-bit, or a 14-bit MSB/LSB pair) and the position it last reported."""

    __slots__ = ("bits", "msb", "lsb")

    def __init__(self, bits: int, x: float):
        self.bits = bits
        if bits == 14:
            v = round(x * 16383)
            self.msb, self.lsb = v >> 7, v & 0x7F
        else:
            self.msb, self.lsb = round(x * 127), 0

    def position(self) -> float:
        if self.bits == 14:
            return ((self.msb << 7) | self.lsb) / 16383.0
        return self.msb / 127.0


class Controls:
    """Live control state for one preset: feed MIDI, advance time, read weights and knobs."""

    def __init__(self, preset: Preset):
        self.preset = preset
        self.slot_names: tuple[str, ...] = tuple(s.name for s in preset.slots)
        self._initial = [s.weight for s in preset.slots]
        self._target = list(self._initial)
        self._weights = list(self._initial)
        self._tau = preset.smoothing_ms / 1000.0
        self._params: dict[str, float] = {p: preset.initial(p) for p in ("temperature", "top_k", "guidance", "gain")}
        self._gain_db = self._params["gain"]  # smoothed; _params["gain"] is its target
        self._inputs: list[_Input] = []
        self._owners: list[int | ParamControl] = []  # slot index or the parameter's control
        self._routes: dict[tuple[int, int], tuple[int, bool]] = {}  # (ch, cc) -> (input, is_lsb)
        for i, slot in enumerate(preset.slots):
            self._bind(slot.cc, slot.weight, i)
        for control in preset.controls.values():
            self._bind(control.cc, control.position(control.initial), control)
        self._channels = frozenset(ch for ch, _ in self._routes)
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.reload_requested = 0
        self.changes = 0
        self._last_mix = None  # last non-degenerate style mix

    def _bind(self, cc, x: float, owner) -> None:
        self._routes[(cc.channel, cc.number)] = (len(self._inputs), False)
        if cc.lsb is not None:
            self._routes[(cc.channel, cc.lsb)] = (len(self._inputs), True)
        self._inputs.append(_Input(cc.bits, x))
        self._owners.append(owner)

    # ------------------------------------------------------------------ input
    def feed(self, message) -> int:
        """Raw MIDI (bytes/bytearray/list of ints, one or more whole messages) or a mido
        message. Returns how many messages it applied; everything else lands in `stats`."""
        to_bytes = getattr(message, "bytes", None)
        if callable(to_bytes):  # a mido message; meta messages are not MIDI wire data
            if getattr(message, "is_meta", False):
                self.stats["ignored_other_type"] += 1
                return 0
            message = to_bytes()
        if isinstance(message, int):  # bytes(n) would make n zero bytes
            self.stats["malformed"] += 1
            return 0
        try:
            data = message if isinstance(message, (bytes, bytearray)) else bytes(message)
        except (TypeError, ValueError):  # not bytes, or an int outside 0..255
            self.stats["malformed"] += 1
            return 0
        return self._parse(data)

    def _parse(self, data: bytes) -> int:
        applied, i, n = 0, 0, len(data)
        while i < n:
            status = data[i]
            if status < 0x80:  # a stray data byte (no running status on JACK): skip the run
                self.stats["malformed"] += 1
                while i < n and data[i] < 0x80:
                    i += 1
                continue
            if status >= 0xF8:  # real-time (clock, start, stop...): may sit anywhere
                self.stats["ignored_other_type"] += 1
                i += 1
                continue
            if status == 0xF0:  # sysex: skip to its end
                end = data.find(0xF7, i + 1)
                self.stats["ignored_other_type" if end >= 0 else "malformed"] += 1
                i = n if end < 0 else end + 1
                continue
            need = _CHANNEL_DATA[status & 0xF0] if status < 0xF0 else _SYSTEM_DATA.get(status, -1)
            body = data[i + 1 : i + 1 + need] if need >= 0 else b""
            if need < 0 or len(body) < need or any(b >= 0x80 for b in body):
                self.stats["malformed"] += 1  # truncated, or an undefined / stray EOX status
                i += 1
                while i < n and data[i] < 0x80:
                    i += 1
                continue
            i += 1 + need
            applied += self._message(status, body)
        return applied

    def _message(self, status: int, body: bytes) -> int:
        kind, channel = status & 0xF0, (status & 0x0F) + 1
        if status >= 0xF0 or kind not in (0xB0, 0xC0):
            self.stats["ignored_other_type"] += 1
            return 0
        if channel not in self._channels:
            self.stats["ignored_other_channel"] += 1
            return 0
        if kind == 0xC0:
            self.stats["program_change"] += 1
            self.reload_requested += 1
            return 1
        return self.feed_cc(channel, body[0], body[1])

    def feed_cc(self, channel: int, number: int, value: int) -> int:
        """One CC (channel 1-16): the path the offline render takes for a MIDI file's CCs."""
        route = self._routes.get((channel, number))
        if route is None:
            self.stats["ignored_unknown_cc" if channel in self._channels else "ignored_other_channel"] += 1
            return 0
        index, is_lsb = route
        inp = self._inputs[index]
        if is_lsb:
            inp.lsb = value
        else:
            inp.msb = value
        self._set(self._owners[index], inp.position())
        self.stats["applied"] += 1
        return 1

    def _set(self, owner, x: float) -> None:
        if isinstance(owner, int):
            self._target[owner] = x
        else:
            self._params[owner.name] = owner.value(x)
        self.changes += 1

    def set_weight(self, slot: str, weight: float) -> None:
        """Set a slot's target weight directly (OSC, a UI); clamped to [0, 1]."""
        self._target[self.slot_names.index(slot)] = min(1.0, max(0.0, float(weight)))
        self.changes += 1

    # ------------------------------------------------------------------ time
    def advance(self, seconds: float) -> None:
        """Move the smoothed values `seconds` towards their targets (one-pole, tau = smoothing)."""
        if self._tau <= 0:  # no smoothing: a CC counts at its own instant
            alpha = 1.0
        elif seconds <= 0:
            return
        else:
            alpha = -math.expm1(-seconds / self._tau)
        w, t = self._weights, self._target
        for i in range(len(w)):
            w[i] += alpha * (t[i] - w[i])
        self._gain_db += alpha * (self._params["gain"] - self._gain_db)

    # ------------------------------------------------------------------ output
    def style_weights(self) -> dict[str, float]:
        """The smoothed slot weights, in slot order."""
        return dict(zip(self.slot_names, self._weights))

    def target_weights(self) -> dict[str, float]:
        return dict(zip(self.slot_names, self._target))

    def sampling(self) -> SamplingConfig:
        """The sampling knobs as they stand now (read once per chunk)."""
        base = self.preset.sampling
        return SamplingConfig(
            self._params["temperature"], int(round(self._params["top_k"])), base.top_p, self._params["guidance"]
        )

    def target_gain_db(self) -> float:
        """Where the gain knob points, in dB: the engine's per-sample follower chases it."""
        return self._params["gain"]

    def gain_db(self) -> float:
        """The smoothed output gain in dB."""
        return self._gain_db

    def gain(self) -> float:
        return 10.0 ** (self._gain_db / 20.0)

    def mix_embedding(self, slot_embeddings):
        """Weighted mean of the slots' style embeddings, renormalized: the style to play.

        `slot_embeddings`: [n_slots, dim] in slot order, a sequence of [dim], or a mapping
        slot name -> [dim]. When the weights are all zero (or the embeddings cancel) the
        mix has no direction, so it holds the last good mix - before any, the preset's
        initial mix - rather than returning NaN.
        """
        import torch

        emb = _stack(slot_embeddings, self.slot_names)
        mixed = _mix(emb, self._weights)
        if mixed is None:
            if self._last_mix is not None:
                return self._last_mix.clone()
            mixed = _mix(emb, self._initial)
            if mixed is None:  # the initial slots cancel exactly: fall back to the first one
                first = next(i for i, w in enumerate(self._initial) if w > 0)
                mixed = torch.nn.functional.normalize(emb[first], dim=0)
        self._last_mix = mixed
        return mixed.clone()


def _stack(slot_embeddings, names: Sequence[str]):
    import torch

    if isinstance(slot_embeddings, Mapping):
        slot_embeddings = [slot_embeddings[n] for n in names]
    if isinstance(slot_embeddings, (list, tuple)):
        slot_embeddings = torch.stack([torch.as_tensor(e, dtype=torch.float32).reshape(-1) for e in slot_embeddings])
    emb = torch.as_tensor(slot_embeddings, dtype=torch.float32)
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise ValueError(f"need one embedding per slot ({len(names)}), got shape {tuple(emb.shape)}")
    return emb


def _mix(emb, weights: Sequence[float]):
    """The style mix of these weights; None when every knob is down (smoothing only nears 0,
    so "down" is a sum of at most ALL_DOWN) or the styles cancel."""
    from model.style.network import weighted_unit_mean

    return weighted_unit_mean(emb, weights) if sum(weights) > ALL_DOWN else None
