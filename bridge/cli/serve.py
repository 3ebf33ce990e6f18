"""`jamstream serve`: the generator daemon the LV2 plugin instances attach to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bridge.cli.common import POSITIVE, Formatter, add_speculative_args, positive_int, speculative_from, weights_file
from model.errors import JamstreamError

EPILOG = """\
examples:
  jamstream serve                                   # listen on the default socket, models load at first attach
  jamstream serve --status                          # what the running daemon plays, per plugin instance
  jamstream serve --status --json | jq .instances   # the same, for scripts
  JAMSTREAM_SOCKET=/tmp/js.sock jamstream serve     # another socket (the plugin reads the same variable)

You rarely start it yourself: the first jamstream plugin a host loads starts it when none runs
(install the plugin with `jamstream plugin install`). Each instance gets its own shared-memory
ring, preset and seed; the models load once and are shared, and instances on the same models
are generated together in one batched pass per frame. SIGTERM stops it cleanly.
"""


def cmd_serve(args: argparse.Namespace) -> int:
    from bridge.serve.protocol import default_socket, request

    path = Path(args.socket) if args.socket else default_socket()
    if args.status:
        try:
            status = request(path, {"op": "status"})
        except (OSError, ValueError):
            raise JamstreamError(f"no jamstream daemon answers at {path}: start one with `jamstream serve`") from None
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print(describe_status(status))
        return 0
    from bridge.serve.daemon import ServeConfig, run_serve

    cfg = ServeConfig(
        socket=path,
        lm=args.lm,
        codec=args.codec,
        style=args.style,
        threads=args.threads,
        idle_exit_s=args.idle_exit,
        batch=not args.no_batch,
        speculative=speculative_from(args),
        draft=args.draft,
    )
    return run_serve(cfg)


def describe_status(status: dict) -> str:
    lines = [
        f"jamstream serve pid {status['pid']} on {status['socket']}, up {status['uptime_s']:g} s, "
        f"models: {', '.join(status['models']) or 'none loaded yet'}"
    ]
    for inst in status["instances"]:
        lines.append(
            f"  #{inst['id']} {inst['name']}: {inst['preset']} ({inst['mode']}, seed {inst['seed']}) {inst['state']}, "
            f"{'rolling' if inst['rolling'] else 'stopped'} at frame {inst['playhead']}, latency {inst['host_latency']}"
            f" frames, {inst['underruns']} underruns"
        )
    if not status["instances"]:
        lines.append("  no plugin instance attached")
    return "\n".join(lines)


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "serve",
        help="run the generator daemon that jamstream LV2 plugin instances attach to",
        description="The generator process for plugins: each attached plugin instance gets its own shared-memory "
        "ring, preset and seed, on models loaded once. Listens on a Unix socket only (nothing leaves the machine).",
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    s.add_argument(
        "--socket",
        help="Unix socket path (default: $JAMSTREAM_SOCKET, else "
        "$XDG_RUNTIME_DIR/jamstream/serve.sock, else /tmp/jamstream-UID/serve.sock)",
    )
    s.add_argument("--status", action="store_true", help="print the running daemon's status and exit")
    s.add_argument("--json", action="store_true", help="with --status: the status as JSON on stdout")
    s.add_argument("--lm", type=weights_file, help="LM weights (default: the shipped ones)")
    add_speculative_args(s)
    s.add_argument("--codec", type=weights_file, help="codec weights (default: the shipped ones)")
    s.add_argument("--style", type=weights_file, help="style model weights (default: the shipped ones)")
    s.add_argument("--threads", type=positive_int, default=1, help="torch threads per generator")
    s.add_argument(
        "--no-batch",
        action="store_true",
        help="run each instance's LM passes on its own (default: instances on the same models share each pass)",
    )
    s.add_argument(
        "--idle-exit",
        type=POSITIVE,
        default=None,
        metavar="SECONDS",
        help="exit after this long with no plugin attached (default: run until stopped)",
    )
    s.set_defaults(func=cmd_serve)
