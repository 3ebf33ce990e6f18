"""Reading a preset: the parsed TOML walked key by key into a `Preset`, every problem
one line naming the file, the key and the fix (see bridge/jam/presets.py for the format's
types and limits)."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from bridge.jam.effects import EFFECTS, EffectSpec, LimiterSpec
from bridge.jam.presets import (
    AUTO,
    CC_KEYS,
    CONTROL_KEYS,
    CURVES,
    LIMITER_KEYS,
    MAX_PIECE_FRAMES,
    PARAMS,
    SAMPLING_KEYS,
    SAMPLING_RANGES,
    SLOT_KEYS,
    TOP_KEYS,
    CCBinding,
    ParamControl,
    Preset,
    StyleSlot,
)
from bridge.jam.time.clock import MAX_BPM, METER_RULE, ChunkLength, MeterError, parse_meter
from model.adapters.names import check_name
from model.errors import JamstreamError
from model.io.audio import READABLE_SUFFIXES
from model.lm.sampling import SamplingConfig


class PresetReader:
    """Walks the parsed TOML, turning each problem into 'FILE: KEY: problem; fix'."""

    def __init__(self, path: Path):
        self.path = path
        self.bound: dict[tuple[int, int], str] = {}  # (channel, number) -> who holds it

    def fail(self, key: str, problem: str, fix: str) -> JamstreamError:
        return JamstreamError(f"{self.path}: {key}: {problem}; {fix}")

    def keys(self, table: dict, known: tuple[str, ...], where: str) -> None:
        for k in table:
            if k not in known:
                key = f"{where}.{k}" if where else k
                close = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
                fix = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
                raise JamstreamError(f"{self.path}: {key}: unknown key; {fix}")

    def table(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {_show(value)}", f"write it as [{key}] with keys below it")
        return value

    def number(
        self, table: dict, k: str, key: str, lo: float, hi: float, default: float | None = None, integer: bool = False
    ) -> float:
        if k not in table:
            if default is None:
                raise self.fail(key, "missing", f"add {k} = <a number from {lo:g} to {hi:g}>")
            return default
        v = table[k]
        kind = "a whole number" if integer else "a number"
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or (integer and not isinstance(v, int))
            or not math.isfinite(v)
        ):
            raise self.fail(key, f"must be {kind}, got {_show(v)}", f"write {k} = <{kind} from {lo:g} to {hi:g}>")
        if not lo <= v <= hi:
            raise self.fail(key, f"{v:g} is out of range {lo:g}..{hi:g}", f"use a value from {lo:g} to {hi:g}")
        return v

    def number_or_auto(self, table: dict, k: str, lo: float, hi: float, integer: bool = False) -> float | None:
        """A number, or "auto" (also the default): None, for the engine to choose."""
        if table.get(k, AUTO) == AUTO:
            return None
        if isinstance(table[k], str):
            got = _show(table[k])
            raise self.fail(k, f'must be a number or "auto", got {got}', f'write {k} = "auto" or a number')
        return self.number(table, k, k, lo, hi, integer=integer)

    def text(self, table: dict, k: str, key: str, default: str | None = None) -> str:
        if k not in table:
            if default is None:
                raise self.fail(key, "missing", f'add {k} = "..."')
            return default
        v = table[k]
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {_show(v)}", f'quote it: {k} = "..."')
        return v

    # ------------------------------------------------------------------ preset
    def preset(self, data: dict) -> Preset:
        self.keys(data, TOP_KEYS, "")
        name = self.text(data, "name", "name", self.path.stem)
        description = self.text(data, "description", "description", "")
        bpm = self.number(data, "bpm", "bpm", 1.0, MAX_BPM, 120.0)
        meter = self.meter(data.get("meter", "4/4"))
        chunk_text = self.text(data, "chunk", "chunk", "1 bar")
        try:
            chunk = ChunkLength.parse(chunk_text)
        except ValueError as exc:
            raise self.fail("chunk", str(exc).split(";")[0], str(exc).split("; ", 1)[1]) from None
        if chunk.count > 64:
            raise self.fail("chunk", f"{chunk} is too long", "use at most 64 beats or bars (the LM's context is 10 s)")
        piece = self.number_or_auto(data, "piece_frames", 1, MAX_PIECE_FRAMES, integer=True)
        lookahead = self.number_or_auto(data, "lookahead_ms", 0.0, 10_000.0)
        smoothing = self.number(data, "smoothing_ms", "smoothing_ms", 0.0, 10_000.0, 100.0)
        gain_smoothing = self.number(data, "gain_smoothing_ms", "gain_smoothing_ms", 0.0, 10_000.0, 20.0)
        channel = int(self.number(data, "channel", "channel", 1, 16, 1, integer=True))
        gain_db = self.number(data, "gain_db", "gain_db", *PARAMS["gain"][:2], 0.0)
        sampling = self.sampling(data.get("sampling", {}))

        slots_table = self.table(data.get("slots"), "slots") if "slots" in data else None
        if not slots_table:
            raise self.fail(
                "slots", "no style slots", 'add at least one, e.g. [slots.A] prompt = "swing jazz" cc = 20 weight = 1.0'
            )
        slots = tuple(self.slot(n, self.table(t, f"slots.{n}"), channel) for n, t in slots_table.items())
        if not any(s.weight > 0 for s in slots):
            raise self.fail(
                "slots",
                "every slot's initial weight is 0",
                "give at least one slot weight > 0 (e.g. weight = 1.0) so the music starts somewhere",
            )

        controls = {}
        for pname, t in self.table(data.get("controls", {}), "controls").items():
            if pname not in PARAMS:
                close = difflib.get_close_matches(pname, list(PARAMS), n=1, cutoff=0.6)
                fix = f"did you mean {close[0]!r}?" if close else f"controls are: {', '.join(PARAMS)}"
                raise JamstreamError(f"{self.path}: controls.{pname}: unknown key; {fix}")
            default = gain_db if pname == "gain" else float(getattr(sampling, pname))
            controls[pname] = self.control(pname, self.table(t, f"controls.{pname}"), channel, default)

        effects = self.effects(data.get("effects", []))
        limiter = self.limiter(data.get("limiter", True))
        return Preset(
            self.path,
            name,
            description,
            slots,
            controls,
            sampling,
            float(bpm),
            meter,
            chunk,
            None if piece is None else int(piece),
            None if lookahead is None else float(lookahead),
            float(smoothing),
            float(gain_smoothing),
            float(gain_db),
            effects,
            limiter,
        )

    def meter(self, v: Any) -> tuple[int, int]:
        try:
            return parse_meter(v)
        except MeterError as exc:
            problem = f"{_show(v)} is not a meter" if exc.malformed else f"{v!r} is out of range"
            raise self.fail("meter", problem, f'write it like meter = "4/4", "3/4" or "6/8" ({METER_RULE})') from None

    def sampling(self, v: Any) -> SamplingConfig:
        t = self.table(v, "sampling")
        self.keys(t, SAMPLING_KEYS, "sampling")
        base = SamplingConfig()
        knobs = {
            k: self.number(t, k, f"sampling.{k}", lo, hi, getattr(base, k), integer=k == "top_k")
            for k, (lo, hi) in SAMPLING_RANGES.items()
        }
        return SamplingConfig(**{**knobs, "top_k": int(knobs["top_k"])})

    def slot(self, name: str, t: dict, channel: int) -> StyleSlot:
        where = f"slots.{name}"
        self.keys(t, SLOT_KEYS, where)
        given = [k for k in ("prompt", "audio", "adapter") if k in t]
        if len(given) != 1:
            problem = "has no style" if not given else f"has {' and '.join(given)}"
            raise self.fail(
                where,
                problem,
                'give exactly one of prompt = "...", audio = "file.wav" (relative to the preset) or adapter = "NAME"',
            )
        kind = given[0]
        value = self.text(t, kind, f"{where}.{kind}")
        if not value.strip():
            raise self.fail(
                f"{where}.{kind}",
                "is empty",
                f"give the {kind}" + (', e.g. prompt = "bossa nova guitar trio"' if kind == "prompt" else ""),
            )
        if kind == "audio":
            file = (self.path.parent / value).resolve()
            if not file.is_file():
                raise self.fail(
                    f"{where}.audio",
                    f"audio file {value!r} not found (looked for {file})",
                    "audio paths are relative to the preset file; fix the path or copy the file there",
                )
            if file.suffix.lower() not in READABLE_SUFFIXES:
                raise self.fail(
                    f"{where}.audio",
                    f"{value!r} is not a readable audio type",
                    f"use one of {', '.join(READABLE_SUFFIXES)}",
                )
            value = str(file)
        elif kind == "adapter":
            try:
                check_name(value)  # the adapter store's own rule, so a preset never names one it cannot hold
            except JamstreamError:
                raise self.fail(
                    f"{where}.adapter",
                    f"{value!r} is not an adapter name",
                    "use the name you gave the fine-tuned style: up to 64 letters, digits, '_', '.', '-', "
                    "starting with a letter or digit",
                ) from None
        if "cc" not in t:
            raise self.fail(
                f"{where}.cc",
                "missing",
                "bind the slot's weight to a CC: cc = 20, or cc = { channel = 2, number = 20 }",
            )
        cc = self.binding(t["cc"], f"{where}.cc", channel)
        weight = self.number(t, "weight", f"{where}.weight", 0.0, 1.0, 0.0)
        return StyleSlot(name, kind, value, cc, float(weight))  # type: ignore[arg-type]

    def control(self, pname: str, t: dict, channel: int, default: float) -> ParamControl:
        where = f"controls.{pname}"
        self.keys(t, CONTROL_KEYS, where)
        lo, hi, _ = PARAMS[pname]
        if "cc" not in t:
            raise self.fail(f"{where}.cc", "missing", "bind it to a CC: cc = 71, or cc = { channel = 2, number = 71 }")
        cc = self.binding(t["cc"], f"{where}.cc", channel)
        vmin = self.number(t, "min", f"{where}.min", lo, hi, integer=False)
        vmax = self.number(t, "max", f"{where}.max", lo, hi, integer=False)
        if vmin == vmax:
            raise self.fail(
                where, f"min and max are both {vmin:g}", "make them differ (max < min turns the knob around)"
            )
        curve_name = self.text(t, "curve", f"{where}.curve", "linear")
        if curve_name not in CURVES:
            raise self.fail(
                f"{where}.curve", f"unknown curve {curve_name!r}", 'use "linear" or "exponential" (also spelled "log")'
            )
        curve = CURVES[curve_name]
        if curve == "exponential" and (vmin <= 0 or vmax <= 0):
            raise self.fail(
                f"{where}.curve",
                f"an exponential curve needs min and max > 0 (got {vmin:g}..{vmax:g})",
                'raise min above 0 or use curve = "linear"' + (" (gain is already in dB)" if pname == "gain" else ""),
            )
        low, high = min(vmin, vmax), max(vmin, vmax)
        initial = self.number(t, "initial", f"{where}.initial", lo, hi, min(high, max(low, default)))
        if not low <= initial <= high:  # the knob's own range, which min and max set
            raise self.fail(
                f"{where}.initial",
                f"{initial:g} is outside this knob's min..max ({vmin:g}..{vmax:g})",
                "move initial inside, or widen min/max",
            )
        return ParamControl(pname, cc, float(vmin), float(vmax), curve, float(initial))  # type: ignore[arg-type]

    def binding(self, v: Any, key: str, default_channel: int) -> CCBinding:
        if isinstance(v, int) and not isinstance(v, bool):
            v = {"number": v}
        if not isinstance(v, dict):
            raise self.fail(
                key,
                f"must be a CC number or a table, got {_show(v)}",
                "write cc = 20, or cc = { channel = 1, number = 20, bits = 14 }",
            )
        self.keys(v, CC_KEYS, key)
        number = int(self.number(v, "number", f"{key}.number", 0, 127, integer=True))
        ch = int(self.number(v, "channel", f"{key}.channel", 1, 16, default_channel, integer=True))
        bits = int(self.number(v, "bits", f"{key}.bits", 7, 14, 14 if "lsb" in v else 7, integer=True))
        if bits not in (7, 14):
            raise self.fail(
                f"{key}.bits",
                f"{bits} bits is not a CC resolution",
                "use bits = 7 (one CC) or bits = 14 (an MSB/LSB pair)",
            )
        lsb = None
        if bits == 14:
            if "lsb" in v:
                lsb = int(self.number(v, "lsb", f"{key}.lsb", 0, 127, integer=True))
                if lsb == number:
                    raise self.fail(
                        f"{key}.lsb",
                        f"the LSB is the MSB's own number {number}",
                        "give a different CC number for the LSB (by convention number + 32)",
                    )
            elif number > 31:
                raise self.fail(
                    f"{key}.number",
                    f"14-bit CC {number} has no conventional LSB (number + 32 > 63)",
                    "use an MSB from 0 to 31, or give lsb = N explicitly",
                )
            else:
                lsb = number + 32
        elif "lsb" in v:
            raise self.fail(f"{key}.lsb", "an LSB on a 7-bit binding", "drop lsb, or set bits = 14")
        binding = CCBinding(ch, number, lsb)
        for i, pair in enumerate(binding.keys()):
            role = f"{key} (LSB)" if i else key
            if pair in self.bound:
                raise self.fail(
                    role,
                    f"channel {pair[0]} CC {pair[1]} is already bound to {self.bound[pair]}",
                    "each CC drives one thing; pick a free CC number (a 14-bit pair also takes number + 32)",
                )
            self.bound[pair] = role
        return binding

    def effects(self, v: Any) -> tuple[EffectSpec, ...]:
        if not isinstance(v, list):
            raise self.fail(
                "effects",
                f"must be a list of tables, got {_show(v)}",
                'write each effect as [[effects]] with type = "reverb" and its parameters',
            )
        out = []
        for i, t in enumerate(v):
            where = f"effects[{i}]"
            t = self.table(t, where)
            kind = self.text(t, "type", f"{where}.type")
            if kind not in EFFECTS:
                close = difflib.get_close_matches(kind, list(EFFECTS), n=1, cutoff=0.6)
                fix = f"did you mean {close[0]!r}?" if close else f"effects are: {', '.join(EFFECTS)}"
                raise self.fail(f"{where}.type", f"unknown effect {kind!r}", fix)
            ranges = EFFECTS[kind][1]
            self.keys(t, ("type", *ranges), where)
            params = {p: float(self.number(t, p, f"{where}.{p}", lo, hi)) for p, (lo, hi) in ranges.items() if p in t}
            out.append(EffectSpec(kind, params))
        return tuple(out)

    def limiter(self, v: Any) -> LimiterSpec | None:
        if v is False:
            return None
        if v is True:
            return LimiterSpec()
        if not isinstance(v, dict):
            raise self.fail(
                "limiter",
                f"must be a table or false, got {_show(v)}",
                "write [limiter] ceiling_db = -1.0, or limiter = false to switch it off",
            )
        t = v
        self.keys(t, LIMITER_KEYS, "limiter")
        return LimiterSpec(
            ceiling_db=float(self.number(t, "ceiling_db", "limiter.ceiling_db", -20.0, 0.0, -1.0)),
            release_ms=float(self.number(t, "release_ms", "limiter.release_ms", 1.0, 1000.0, 100.0)),
        )


def _show(v: Any) -> str:
    return f"{v!r}" if isinstance(v, (str, int, float, bool)) else type(v).__name__
