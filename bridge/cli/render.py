"""`jamstream render`: bounce a song offline from a MIDI file's tempo map and CC automation."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bridge.cli.common import Formatter, emit, number

EPILOG = """\
examples:
  jamstream render song.mid --preset jazz-bossa -o song.flac
  jamstream render song.mid --preset presets/my-set.toml -o song.wav --seed 3 --json | jq .rtf

The file's tempo changes and time signatures set the grid the music is locked to; its
CC events (on any channel the preset binds) move the style slots and knobs exactly as a
controller would live. Notes in the file are ignored: it is the conductor, not the band.
"""

OUTPUT_SUFFIXES = (".wav", ".flac")


def cmd_render(args: argparse.Namespace) -> int:
    import torch

    from bridge.jam.engine import SAMPLE_RATE, Engine
    from bridge.jam.presets import find_preset
    from bridge.jam.render import bounce
    from bridge.jam.stack import load_stack
    from bridge.jam.time.clock import MidiFileClock
    from model.errors import JamstreamError
    from model.io.audio import write_audio
    from model.progress import progress

    out = Path(args.output)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise JamstreamError(f"-o {out}: write .wav or .flac")
    from model.io.audio import check_writable

    check_writable(out)
    preset = find_preset(args.preset)
    clock = MidiFileClock.from_file(args.song, default_bpm=preset.bpm, default_meter=preset.meter)
    seconds = args.seconds if args.seconds is not None else clock.length_seconds
    if not 0 < seconds <= 3 * 3600:
        raise JamstreamError(
            f"{args.song}: the song is {seconds:g} s long; give --seconds (0 < s <= 10800) to render a length"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    stack = load_stack(preset, lm=args.lm, codec=args.codec, style=args.style, adapter=args.adapter)
    engine = Engine(
        stack.generator,
        stack.style_model,
        preset,
        clock,
        seed=args.seed,
        slot_styles=stack.slot_styles,
        adapters=stack.adapters,
    )
    frames = int(round(seconds * 25))
    bar = progress(total=frames, desc="render", unit="frame")
    start = time.perf_counter()
    result = bounce(engine, clock, seconds, on_block=lambda b: bar.update(b.chunk.n_frames))
    wall = time.perf_counter() - start
    bar.close()
    write_audio(out, result.audio, SAMPLE_RATE)
    report = {
        "output": str(out),
        "seconds": round(result.audio.shape[1] / SAMPLE_RATE, 3),
        "rtf": round(seconds / wall, 3),
        "wall_seconds": round(wall, 2),
        "chunks": result.blocks,
        "preset": preset.name,
        "seed": args.seed,
        "cc": engine.stats.cc,
        "bars": result.bars,
    }
    emit(
        report,
        args.json,
        f"wrote {out}: {report['seconds']:.1f} s in {wall:.1f} s (real-time factor {report['rtf']:.2f}, "
        f"{result.blocks} chunks)",
    )
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "render",
        help="bounce a song offline, following a MIDI file's tempo map and CC automation",
        description="Render a song with the same engine the live bridge runs: chunks on the file's beats or bars "
        "(the preset's chunk length), every frame conditioned on its tempo and beat/bar phase, style slots and "
        "knobs moved by the file's CC events, then the preset's effect chain and limiter. Runs as fast as the CPU "
        "allows; the same seed gives the same file.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    r.add_argument("song", help="MIDI file (type 0 or 1): tempo map, time signatures and CC automation")
    r.add_argument("--preset", required=True, help="shipped preset name (see presets/) or a .toml path")
    r.add_argument("-o", "--output", required=True, help="output audio file (.wav or .flac, 48 kHz, 24-bit)")
    r.add_argument("--seed", type=int, default=0, help="same seed, same file")
    r.add_argument("--seconds", type=number, default=None, help="render this long (default: to the file's last event)")
    r.add_argument("--adapter", default=None, help="fine-tuned adapter (name under adapters/ or a directory)")
    r.add_argument("--lm", default=None, help="LM weights (default: shipped)")
    r.add_argument("--codec", default=None, help="codec weights (default: shipped)")
    r.add_argument("--style", default=None, help="style-model weights (default: shipped)")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    r.add_argument("--json", action="store_true", help="print a JSON report (rtf, seconds, per-bar style weights)")
    r.set_defaults(func=cmd_render)
