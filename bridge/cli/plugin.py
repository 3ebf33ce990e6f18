"""`jamstream plugin`: build the LV2 plugin (bridge/lv2) and install its bundle."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bridge.cli.common import Formatter
from model.errors import JamstreamError

SOURCE = Path(__file__).resolve().parents[1] / "lv2"
BUNDLE = "jamstream.lv2"
URI = "urn:jamstream:lv2:instrument"

EPILOG = f"""\
examples:
  jamstream plugin install                  # build, then put {BUNDLE} in ~/.lv2 (where hosts look)
  jamstream plugin install --dir /usr/lib/lv2
  jamstream plugin build                    # only build it (bridge/lv2/build/{BUNDLE})

Then insert "jamstream" ({URI}) on an instrument/MIDI track in Ardour, REAPER, Carla,
Qtractor or Zrythm. The plugin starts the generator daemon (`jamstream serve`) itself when
none runs, with this installation's `jamstream`.
"""


def build() -> Path:
    """Run make in bridge/lv2; the built bundle's path."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        raise JamstreamError("building the plugin needs make and a C compiler: apt-get install build-essential")
    if not Path("/usr/include/lv2/core/lv2.h").exists() and not Path("/usr/include/lv2.h").exists():
        raise JamstreamError("building the plugin needs the LV2 headers: apt-get install lv2-dev")
    done = subprocess.run(["make", "-s", "-C", str(SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["make failed"]
        raise JamstreamError(f"building the plugin failed: {last[0]}")
    return SOURCE / "build" / BUNDLE


def jamstream_program() -> str:
    """This installation's `jamstream` (what the plugin runs as `jamstream serve`)."""
    beside = Path(sys.executable).parent / "jamstream"
    if beside.exists():
        return str(beside)
    found = shutil.which("jamstream")
    if found:
        return found
    raise JamstreamError("cannot find the `jamstream` program of this installation (pip install -e . makes it)")


def install(target_dir: Path) -> Path:
    built = build()
    dest = target_dir / BUNDLE
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        staging = target_dir / f".{BUNDLE}.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(built, staging)
        (staging / "jamstream.conf").write_text(f"bin={jamstream_program()}\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
    except OSError as exc:
        raise JamstreamError(f"--dir {target_dir}: cannot install there: {exc.strerror}") from None
    return dest


def cmd_plugin(args: argparse.Namespace) -> int:
    if args.action == "build":
        print(build())
        return 0
    dest = install(Path(args.dir).expanduser())
    print(f"installed {dest} ({URI}); it starts `{jamstream_program()} serve` when no daemon runs")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugin",
        help="build and install the LV2 instrument plugin for Ardour, REAPER and other LV2 hosts",
        description="The LV2 plugin reads the generator daemon's ring on the host's song frames: tempo, bars, play "
        "state, automation (8 macro knobs), session recall and export all come from the host.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    p.add_argument("action", choices=("install", "build"), help="install: build + copy the bundle; build: only build")
    p.add_argument("--dir", default="~/.lv2", help="where to install the bundle (default: ~/.lv2)")
    p.set_defaults(func=cmd_plugin)
