"""`jamstream jam`: the live JACK bridge - play a preset in time with the host."""

from __future__ import annotations

import argparse

from bridge.cli.common import (
    MIDI_DATA,
    NON_NEGATIVE_INT,
    POSITIVE,
    Formatter,
    add_speculative_args,
    output_file,
    positive_int,
    weights_file,
)

EPILOG = """\
examples:
  jamstream jam --preset techno-dub --connect system --midi-from "a2j|REAPER|ardour"
  jamstream jam --preset jazz-trio-bossa --clock free --bpm 110 --connect system
  jamstream jam --preset lofi-funk --input --input-from "system:capture" --json-status /tmp/jam.json
  jamstream jam --preset techno-dub --metronome --connect system     # check routing and sync, no model
  jamstream jam --preset techno-dub --clock link --connect system    # on an Ableton Link session's beats

The client "jamstream" has out_L/out_R and midi_in (and in_L/in_R with --input). Time
comes from the JACK transport (bar/beat/bpm when the host is timebase master; start,
stop and locate always), else MIDI clock on midi_in, else --bpm. A transport start waits
(JACK slow-sync) until the first chunk is ready.

Ableton Link (needs the optional aalink: pip install 'jamstream[link]'): --clock link
joins the session on the local network and plays on its beats and bars (quantum = the
meter's beats per bar), following its tempo; it plays free on Link's grid until a peer
with Start Stop Sync starts the session, then starts and stops with it. --link joins the
session in auto mode too: Link drives whenever the JACK transport is stopped and no MIDI
clock runs (a rolling transport or a running MIDI clock wins). CCs on midi_in move the preset's slots
and knobs; a program change or SIGHUP reloads the preset file without stopping the audio.
Ctrl-C / SIGTERM stop cleanly (exit 0).
"""


def cmd_jam(args: argparse.Namespace) -> int:
    from bridge.live.supervisor import run_jam

    return run_jam(args)


def add(sub: argparse._SubParsersAction) -> None:
    j = sub.add_parser(
        "jam",
        help="play a preset live as a JACK client, locked to the host's transport and tempo",
        description="Run jamstream inside your DAW: a JACK client with stereo audio out and a MIDI in, generating the "
        "preset's music ahead of the playhead in a separate process, on the host's beats and bars, with MIDI CC "
        "blending "
        "the style slots.",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    j.add_argument("--preset", required=True, help="shipped preset name (see presets/) or a .toml path")
    j.add_argument(
        "--clock",
        choices=("auto", "jack", "midi", "link", "free"),
        default="auto",
        help="time source: auto = JACK transport when it moves, else MIDI clock on midi_in, else Link with --link; "
        "link = an Ableton Link session; free = play now at --bpm",
    )
    j.add_argument(
        "--link",
        action="store_true",
        help=(
            "join the Ableton Link session: in auto, Link drives while the JACK transport is stopped and no MIDI "
            "clock runs"
        ),
    )
    j.add_argument(
        "--bpm", type=POSITIVE, default=None, help="tempo when the source gives none (default: the preset's)"
    )
    j.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="REGEX",
        help="connect out_L/out_R to the first two audio inputs matching REGEX ('system' = the physical outputs)",
    )
    j.add_argument(
        "--midi-from",
        action="append",
        default=[],
        metavar="REGEX",
        help="connect MIDI outputs matching REGEX to midi_in",
    )
    j.add_argument(
        "--input", action="store_true", help="add in_L/in_R: their sound is a 'live' style slot (CC --input-cc)"
    )
    j.add_argument(
        "--input-cc", type=MIDI_DATA, default=22, help="CC number (preset's channel) for the live input slot's weight"
    )
    j.add_argument(
        "--input-from",
        action="append",
        default=[],
        metavar="REGEX",
        help="connect audio outputs matching REGEX to in_L/in_R",
    )
    j.add_argument("--name", default="jamstream", help="JACK client name")
    j.add_argument("--server", default=None, help="JACK server name (default: $JACK_DEFAULT_SERVER or 'default')")
    j.add_argument("--reconnect", action="store_true", help="when the server is gone or shuts down, wait and rejoin it")
    j.add_argument(
        "--sync-timeout",
        type=POSITIVE,
        default=None,
        metavar="S",
        help="set the server's slow-sync timeout (how long a transport start may wait for the first chunk)",
    )
    j.add_argument(
        "--json-status",
        type=output_file,
        default=None,
        metavar="FILE",
        help="write the status as JSON to FILE every second",
    )
    j.add_argument("--seconds", type=POSITIVE, default=None, help="stop after this many seconds (demos, soaks)")
    j.add_argument(
        "--metronome", action="store_true", help="play clicks on the beats instead of the model (check a rig)"
    )
    j.add_argument("--quiet", action="store_true", help="no status line")
    j.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="generation seed")
    j.add_argument("--adapter", default=None, help="fine-tuned adapter (name under adapters/ or a directory)")
    j.add_argument("--lm", type=weights_file, default=None, help="LM weights (default: shipped)")
    add_speculative_args(j)
    j.add_argument("--codec", type=weights_file, default=None, help="codec weights (default: shipped)")
    j.add_argument("--style", type=weights_file, default=None, help="style-model weights (default: shipped)")
    j.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads in the generator process")
    j.set_defaults(func=cmd_jam)
