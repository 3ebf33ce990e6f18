"""The LV2 plugin's 8 automatable knobs, as the preset's CCs.

A host automates plugin controls, not MIDI CCs, so the plugin (bridge/lv2/jamstream.c)
posts each macro move into the MIDI ring as a 4-byte event `F4 k msb lsb` (0xF4 is an
undefined system-common status, which no device sends) stamped at its song frame. The
worker turns it into the CC message(s) of the preset's k-th binding - its slots in file
order, then its controls - so an automation lane moves a slot weight or a knob exactly as
the preset's hardware CC would, 14-bit bindings at full resolution.
"""

from __future__ import annotations

MACRO_STATUS = 0xF4
MACRO_COUNT = 8


def macro_bindings(preset) -> list:
    """The CC bindings macros 1..8 move, in order (fewer when the preset has fewer)."""
    bindings = [slot.cc for slot in preset.slots] + [control.cc for control in preset.controls.values()]
    return bindings[:MACRO_COUNT]


def macro_messages(preset, event: bytes) -> bytes:
    """The CC bytes for one macro event (b"" for a malformed one or a macro the preset
    does not bind)."""
    if len(event) < 4 or any(b > 0x7F for b in event[1:4]):
        return b""
    bindings = macro_bindings(preset)
    index = event[1]
    if index >= len(bindings):
        return b""
    cc = bindings[index]
    value = (event[2] << 7) | event[3]
    status = 0xB0 | (cc.channel - 1)
    if cc.lsb is None:
        return bytes([status, cc.number, value >> 7])
    return bytes([status, cc.number, value >> 7, status, cc.lsb, value & 0x7F])
