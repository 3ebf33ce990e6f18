"""`jamstream jam`: the live JACK bridge - play a preset in time with the host."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from bridge.cli.common import Formatter, number

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

STATUS_KEYS = ("bar", "beat", "bpm", "clock", "weights", "buffer_fill", "rtf", "underruns", "xruns", "latency_frames")


def cmd_jam(args: argparse.Namespace) -> int:
    import multiprocessing as mp

    from bridge.jam.presets import find_preset
    from bridge.live import ring as R
    from bridge.live.callback import JackBridge
    from bridge.live.jack_time import JackClock, post_reference
    from bridge.live.link import AALINK_HINT, aalink_available
    from bridge.live.worker import WorkerConfig, worker_main
    from model.errors import JamstreamError

    preset = find_preset(args.preset)  # bad presets fail here, before JACK or the model
    if (args.clock == "link" or args.link) and not aalink_available():
        raise JamstreamError(
            f"{'--clock link' if args.clock == 'link' else '--link'} needs Ableton Link support: {AALINK_HINT}"
        )
    if args.bpm is not None and not 1 <= args.bpm <= 400:
        raise JamstreamError(f"--bpm {args.bpm:g}: give a tempo in 1..400")
    if args.seconds is not None and args.seconds <= 0:
        raise JamstreamError(f"--seconds {args.seconds:g}: give a positive number")
    if args.json_status:
        parent = Path(args.json_status).resolve().parent
        if not parent.is_dir():
            raise JamstreamError(f"--json-status {args.json_status}: directory {parent} does not exist")

    import jack

    # libjack prints every failed connection attempt ("Cannot connect to server socket...");
    # keep its last words for our own one-line messages instead.
    jack_said: list[str] = []
    jack.set_error_function(lambda msg: jack_said.append(msg) if len(jack_said) < 100 else None)
    jack.set_info_function(lambda msg: None)

    # The process callback is a Python thread of this process: when it wakes, whoever holds
    # the GIL here (the status loop, a JACK notification) must hand it over within a small
    # part of a period, not after Python's default 5 ms switch interval.
    sys.setswitchinterval(0.0002)
    # And that holder must not itself be preempted by ordinary processes (priority inversion:
    # a descheduled main thread holding the GIL stalls the RT callback for whole periods).
    # Run this process's non-audio threads SCHED_FIFO at priority 1 - below JACK's audio
    # thread - where allowed; RESET_ON_FORK keeps the generator process ordinary.
    rt_main = _lift_priority()
    # A full garbage collection walks every object - torch's included (imported by
    # bridge.presets) - in whichever thread allocates at the time, the audio thread too:
    # tens of ms. Freeze what exists now and collect only the young generation, here.
    gc.freeze()
    gc.disable()
    shared = R.Shared(capacity=1 << 21)  # 43 s at 48 kHz, 21 s at 96 kHz: far above any lookahead
    bridge = JackBridge(
        shared,
        name=args.name,
        server=args.server,
        live_input=args.input,
        lookahead_s=preset.lookahead_ms / 1000.0,
        connect=args.connect,
        midi_from=args.midi_from,
        input_from=args.input_from,
        sync_timeout_s=args.sync_timeout,
    )
    stop = {"signal": None}
    reload_requests = [0]

    def on_signal(signum, _frame):
        stop["signal"] = signum

    def on_hup(_signum, _frame):
        reload_requests[0] += 1

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hup)

    def connect() -> bool:
        try:
            bridge.open()
            return True
        except jack.JackOpenError:
            bridge.close()
            return False

    if not connect():
        if not args.reconnect:
            shared.close()
            raise JamstreamError(
                f"no JACK server{' named ' + repr(args.server) if args.server else ''} is running: start one "
                "(e.g. `jackd -d dummy -r 48000 -p 256`, or your audio interface in qjackctl/PipeWire), "
                "or pass --reconnect to wait for it"
            )
        log("waiting for the JACK server...")
        while stop["signal"] is None and not connect():
            time.sleep(1.0)
        if stop["signal"] is not None:
            shared.close()
            return 0

    rt_main = _lift_priority() and rt_main  # again, now that libjack's threads exist
    cfg = WorkerConfig(
        preset=str(preset.path),
        lm=args.lm,
        codec=args.codec,
        style=args.style,
        adapter=args.adapter,
        seed=args.seed,
        bpm=args.bpm,
        clock=args.clock,
        link=args.link,
        metronome=args.metronome,
        threads=args.threads,
        live_input=args.input,
        live_cc=args.input_cc,
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    worker = ctx.Process(target=worker_main, args=(cfg, shared.spec(), queue), name="jamstream-worker", daemon=True)
    worker.start()
    log(
        f"jamstream: client {bridge.client.name!r} on {bridge.rate} Hz, period {bridge.period}"
        f"{'' if rt_main else ' (could not raise the main thread to SCHED_FIFO: expect more xruns under load)'}; "
        "loading "
        f"{'the metronome' if args.metronome else 'the models'} for preset {preset.name!r}..."
    )

    status = StatusBoard(args.json_status, quiet=args.quiet)
    worker_status: dict = {}
    exit_code = 0
    started = time.monotonic()
    last_write = 0.0
    last_periods, last_tick = -1, time.monotonic()
    jack_clock = None
    uses_link = args.clock == "link" or args.link
    try:
        while True:
            if stop["signal"] is not None:
                log(f"jamstream: {signal.Signals(stop['signal']).name} - stopping")
                break
            while True:
                try:
                    msg = queue.get_nowait()
                except Exception:
                    break
                if "fatal" in msg:
                    log(f"jamstream: error: {msg['fatal'].rstrip()}")
                    exit_code = 2 if msg.get("bad_input") else 1
                    raise _Stop()
                if msg.get("ready"):
                    log("jamstream: ready")
                    continue
                worker_status = msg
            if not worker.is_alive():
                log(f"jamstream: error: the generator process died (exit code {worker.exitcode})")
                exit_code = 1
                break
            if reload_requests[0] != shared.ctl[R.RELOAD_SEQ]:
                shared.ctl[R.RELOAD_SEQ] = reload_requests[0]
                log("jamstream: reloading the preset (SIGHUP)")
            periods = int(shared.ctl[R.PERIODS])
            if periods != last_periods:
                last_periods, last_tick = periods, time.monotonic()
            elif time.monotonic() - last_tick > 3.0 and bridge.shutdown_reason is None:
                bridge.shutdown_reason = "no process callback for 3 s: the server is gone"
                bridge.shutdown_event.set()
            if bridge.shutdown_event.is_set():
                reason = bridge.shutdown_reason
                bridge.close()
                status.connected = False
                log(
                    f"jamstream: the JACK server shut down ({reason}); "
                    + (
                        "waiting for it to come back (--reconnect)"
                        if args.reconnect
                        else "exiting (use --reconnect to wait for it)"
                    )
                )
                if not args.reconnect:
                    exit_code = 1
                    break
                while stop["signal"] is None:
                    status.update(snapshot(shared, bridge, worker_status))
                    if connect():
                        break
                    time.sleep(0.5)
                last_periods, last_tick = -1, time.monotonic()
                if bridge.client is not None:
                    _lift_priority()
                    status.connected = True
                    status.reconnects += 1
                    log(f"jamstream: reconnected to JACK ({bridge.rate} Hz, period {bridge.period})")
                continue
            if uses_link and bridge.client is not None and not bridge.shutdown_event.is_set():
                if jack_clock is None or jack_clock.client is not bridge.client:
                    jack_clock = JackClock(bridge.client)  # (re)connected: a new client
                post_reference(shared, jack_clock)  # JACK frame <-> CLOCK_MONOTONIC for the Link follower, 10 Hz
            now = time.monotonic()
            if now - last_write >= 1.0:
                last_write = now
                gc.collect(0)
                status.update(snapshot(shared, bridge, worker_status))
            if args.seconds is not None and now - started >= args.seconds:
                break
            time.sleep(0.1)
    except _Stop:
        pass
    finally:
        shared.ctl[R.QUIT] = 1
        final = snapshot(shared, bridge, worker_status)
        bridge.close()
        worker.join(timeout=10)
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=5)
        status.update(final)
        status.close()
        shared.close()
    return exit_code


class _Stop(Exception):
    pass


def _lift_priority() -> bool:
    """SCHED_FIFO 1 for every ordinary thread of this process: the main thread and the
    ones libjack starts for notifications (the xrun/latency callbacks run Python there, so
    they hold the GIL too). JACK's own audio thread is already FIFO, higher."""
    try:
        policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
        param = os.sched_param(1)
    except AttributeError:
        return False
    lifted = False
    for tid in [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]:
        try:
            if os.sched_getscheduler(tid) == os.SCHED_OTHER:
                os.sched_setscheduler(tid, policy, param)
            lifted = True
        except OSError:
            pass
    return lifted


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def snapshot(shared, bridge, worker_status: dict) -> dict:
    from bridge.live import ring as R

    ctl = shared.ctl
    rate = int(ctl[R.RATE_SLOT]) or 48000
    lookahead_frames = int(round(bridge.lookahead_s * rate))
    buffer_frames = max(0, int(ctl[R.VALID_END] - ctl[R.PLAY_FRAME]))
    out = {
        "bar": worker_status.get("bar"),
        "beat": worker_status.get("beat"),
        "bpm": worker_status.get("bpm"),
        "clock": worker_status.get("clock", "loading"),
        "weights": worker_status.get("weights", {}),
        "buffer_fill": round(buffer_frames / rate, 3),
        "rtf": worker_status.get("rtf", 0.0),
        "underruns": int(ctl[R.UNDERRUNS]),
        "xruns": int(ctl[R.XRUNS]),
        "latency_frames": lookahead_frames + int(ctl[R.PERIOD]),
        "sample_rate": rate,
        "period": int(ctl[R.PERIOD]),
        "rolling": bool(ctl[R.ROLLING]),
        "song_frame": int(ctl[R.PLAY_FRAME]),
        "starved_periods": int(ctl[R.STARVED_PERIODS]),
        "locates": int(ctl[R.LOCATES]),
        "starts": int(ctl[R.STARTS]),
        "sync_waits": int(ctl[R.SYNC_WAITS]),
        "midi_overflow": int(ctl[R.MIDI_OVERFLOW]),
        "periods": int(ctl[R.PERIODS]),
        "callback_max_us": int(ctl[R.CB_MAX_US]),
        "callbacks_over_half_period": int(ctl[R.CB_SLOW]),
        "callback_entry_max_frames": int(ctl[R.CB_ENTRY_MAX]),
        "ready": bool(ctl[R.WORKER_READY]),
        "connected": bridge.client is not None,
        "pid": os.getpid(),
    }
    for key in (
        "chunks",
        "rejoins",
        "streams",
        "cc",
        "preset",
        "reloads",
        "error",
        "target_weights",
        "meter",
        "max_chunk_seconds",
        "clock_reanchors",
        "seconds",
        "recent_chunks",
        "link_peers",
        "link_placements",
        "link_offset",
        "link_last",
    ):
        if key in worker_status:
            out[key] = worker_status[key]
    return out


class StatusBoard:
    """A one-line rich status on a terminal (a line every 10 s otherwise) + the JSON file."""

    def __init__(self, json_path: str | None, quiet: bool = False):
        from rich.console import Console

        self.json_path = Path(json_path) if json_path else None
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.connected = True
        self.reconnects = 0
        self._live = None
        self._lines = 0
        if not quiet and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()

    def line(self, s: dict) -> str:
        weights = " ".join(f"{k}:{v:.2f}" for k, v in (s.get("weights") or {}).items())
        where = f"{s['bar']}:{s['beat']}" if s.get("bar") is not None else "-:-"
        bpm = f"{s['bpm']:.1f}" if s.get("bpm") else "-"
        clock = s["clock"]
        if clock == "link" and s.get("link_peers") is not None:
            clock = f"link, {s['link_peers']} peer{'' if s['link_peers'] == 1 else 's'}"
        ms = s["latency_frames"] / s["sample_rate"] * 1000
        return (
            f"{where:>7} {bpm} bpm [{clock}] {weights} | buf {s['buffer_fill']:.2f}s rtf {s['rtf']:.2f} "
            f"| underruns {s['underruns']} xruns {s['xruns']} | latency {s['latency_frames']} fr ({ms:.0f} ms)"
        )

    def update(self, s: dict) -> None:
        s = dict(s, reconnects=self.reconnects)
        if self.json_path is not None:
            tmp = self.json_path.with_name(self.json_path.name + ".tmp")
            tmp.write_text(json.dumps(s))
            os.replace(tmp, self.json_path)
        if self.quiet:
            return
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(self.line(s)))
        elif self._lines % 10 == 0:
            print(self.line(s), file=sys.stderr, flush=True)
        self._lines += 1

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


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
    j.add_argument("--bpm", type=number, default=None, help="tempo when the source gives none (default: the preset's)")
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
        "--input-cc", type=int, default=22, help="CC number (preset's channel) for the live input slot's weight"
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
        type=number,
        default=None,
        metavar="S",
        help="set the server's slow-sync timeout (how long a transport start may wait for the first chunk)",
    )
    j.add_argument("--json-status", default=None, metavar="FILE", help="write the status as JSON to FILE every second")
    j.add_argument("--seconds", type=number, default=None, help="stop after this many seconds (demos, soaks)")
    j.add_argument(
        "--metronome", action="store_true", help="play clicks on the beats instead of the model (check a rig)"
    )
    j.add_argument("--quiet", action="store_true", help="no status line")
    j.add_argument("--seed", type=int, default=0, help="generation seed")
    j.add_argument("--adapter", default=None, help="fine-tuned adapter (name under adapters/ or a directory)")
    j.add_argument("--lm", default=None, help="LM weights (default: shipped)")
    j.add_argument("--codec", default=None, help="codec weights (default: shipped)")
    j.add_argument("--style", default=None, help="style-model weights (default: shipped)")
    j.add_argument("--threads", type=int, default=1, help="torch CPU threads in the generator process")
    j.set_defaults(func=cmd_jam)
