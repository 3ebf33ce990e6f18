"""`jamstream render`: bounce a song offline from a MIDI file's tempo map and CC automation."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bridge.cli.common import (
    NON_NEGATIVE_INT,
    POSITIVE,
    Formatter,
    add_speculative_args,
    emit,
    number,
    output_file,
    positive_int,
    speculative_from,
    weights_file,
)

EPILOG = """\
examples:
  jamstream render song.mid --preset jazz-bossa -o song.flac
  jamstream render song.mid --preset presets/my-set.toml -o song.wav --seed 3 --json | jq .rtf

The file's tempo changes and time signatures set the grid the music is locked to; its
CC events (on any channel the preset binds) move the style slots and knobs exactly as a
controller would live. Notes in the file are ignored: it is the conductor, not the band.

A CC counts from the first piece decided at or after it (a piece's decision time is its
first sample minus the lookahead). With the preset's "auto", a render decides in pieces
of 3 frames (120 ms) with no lookahead - a CC lands at its own time, as live from a host
that compensates the latency jamstream reports. To reproduce a live take sample for
sample, give the pieces and lookahead its status showed (`piece_frames`, `lookahead_ms`):
  jamstream render song.mid --preset techno-dub -o take.flac --piece-frames 3 --lookahead-ms 149.3
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
    from bridge.jam.pacing import Pacing, offline_pacing

    pacing = offline_pacing(preset)
    pacing = Pacing(
        args.piece_frames or pacing.piece_frames,
        pacing.lookahead_s if args.lookahead_ms is None else args.lookahead_ms / 1000.0,
    )
    clock = MidiFileClock.from_file(args.song, default_bpm=preset.bpm, default_meter=preset.meter)
    seconds = args.seconds if args.seconds is not None else clock.length_seconds
    if not 0 < seconds <= 3 * 3600:
        raise JamstreamError(
            f"{args.song}: the song is {seconds:g} s long; give --seconds (0 < s <= 10800) to render a length"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    stack = load_stack(
        preset,
        lm=args.lm,
        codec=args.codec,
        style=args.style,
        adapter=args.adapter,
        speculative=speculative_from(args),
        draft=args.draft,
    )
    engine = Engine(
        stack.generator,
        stack.style_model,
        preset,
        clock,
        seed=args.seed,
        slot_styles=stack.slot_styles,
        adapters=stack.adapters,
        pacing=pacing,
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
        "piece_frames": pacing.piece_frames,
        "lookahead_ms": round(pacing.lookahead_s * 1000, 3),
        "preset": preset.name,
        "seed": args.seed,
        "cc": engine.stats.cc,
        "bars": result.bars,
    }
    speculation = stack.generator.speculation
    if speculation is not None:
        report["speculative"] = {
            "lookahead": speculation.lookahead,
            "levels_per_target_pass": round(speculation.stats.tokens_per_pass, 3),
            "acceptance": round(speculation.stats.acceptance, 3),
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
    r.add_argument(
        "-o", "--output", type=output_file, required=True, help="output audio file (.wav or .flac, 48 kHz, 24-bit)"
    )
    r.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="same seed, same file")
    r.add_argument(
        "--seconds", type=POSITIVE, default=None, help="render this long (default: to the file's last event)"
    )
    r.add_argument(
        "--piece-frames",
        type=_piece_frames,
        default=None,
        help="frames decided at once (1-50; default: the preset's, else 3)",
    )
    r.add_argument(
        "--lookahead-ms",
        type=_lookahead_ms,
        default=None,
        help="decide each piece this long before it (default: the preset's, else 0: a CC lands at its time)",
    )
    r.add_argument("--adapter", default=None, help="fine-tuned adapter (name under adapters/ or a directory)")
    r.add_argument("--lm", type=weights_file, default=None, help="LM weights (default: shipped)")
    add_speculative_args(r)
    r.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    r.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    r.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    r.add_argument("--json", action="store_true", help="print a JSON report (rtf, seconds, per-bar style weights)")
    r.set_defaults(func=cmd_render)


def _piece_frames(text: str) -> int:
    from bridge.jam.presets import MAX_PIECE_FRAMES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_PIECE_FRAMES:
        raise argparse.ArgumentTypeError(f"{value} is out of range 1..{MAX_PIECE_FRAMES}")
    return value


def _lookahead_ms(text: str) -> float:
    value = number(text)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range 0..10000 ms")
    return value
