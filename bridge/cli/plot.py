"""`jamstream plot`: a log-frequency spectrogram PNG of any audio, to see the notes."""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge.cli.common import NON_NEGATIVE, POSITIVE, Formatter, output_file

EPILOG = """\
examples:
  jamstream plot demo/generate.wav                       # -> demo/generate.png
  jamstream plot demo/jam/jam-demo.wav --start 5 --seconds 10 -o jam.png
  jamstream plot original.flac decoded.wav -o compare.png   # rows on one time axis
"""


def cmd_plot(args: argparse.Namespace) -> int:
    from model.io.audio import SAMPLE_RATE, check_writable, load_audio
    from model.io.spectrogram_plot import PlotConfig, plot_spectrograms

    out = Path(args.output) if args.output else Path(args.audio[0]).with_suffix(".png")
    cfg = PlotConfig(start_s=args.start, seconds=args.seconds)  # ranges: checked while parsing
    if not args.output:  # the default name: -o was checked while parsing
        check_writable(out)
    clips = [(str(path), load_audio(path), SAMPLE_RATE) for path in args.audio]  # every file read before drawing
    plot_spectrograms(clips, out, cfg)
    print(out)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="log-frequency spectrogram PNG of audio files (see the notes)",
        description="Draw a constant-Q spectrogram (C1-C8, 3 bins per semitone, dB under each file's loudest "
        "bin) of each audio file, one row per file on one time axis: a chord shows as parallel lines, a "
        "melody as a moving line, drums as vertical strokes. Any wav/flac/mp3/ogg/aiff at any rate.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    p.add_argument("audio", nargs="+", help="audio files, drawn top to bottom")
    p.add_argument(
        "-o", "--output", type=output_file, default=None, help="PNG to write (default: the first file's name with .png)"
    )
    p.add_argument("--start", type=NON_NEGATIVE, default=0.0, help="seconds into each file to begin")
    p.add_argument("--seconds", type=POSITIVE, default=None, help="how many seconds to draw (default: all)")
    p.set_defaults(func=cmd_plot)
