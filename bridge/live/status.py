"""Status reporting: what the generator process reports and what `jamstream jam` shows.

The worker puts `worker_status(...)` on its queue four times a second; the parent merges
it with the shared block's counters (`snapshot`) and `StatusBoard` writes that as the
`--json-status` file (what the tests and scripts read) and as a one-line status on the
terminal.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bridge.live import ring as R

# worker_status keys the parent's snapshot passes through as they are
WORKER_KEYS = (
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
    "clock_last_reanchor",
    "seconds",
    "recent_chunks",
    "pieces",
    "rewinds",
    "piece_frames",
    "lookahead_ms",
    "lookahead_auto",
    "margin_ms",
    "late_pieces",
    "last_rewind",
    "piece_ms",
    "heap_trims",
    "link_peers",
    "link_placements",
    "link_offset",
    "link_last",
)


def worker_status(worker, playhead_frame: int, rolling: bool) -> dict:
    """The generator process's view: position, clock, mix, buffer, speed, reloads, Link."""
    sources = worker.sources
    seconds = playhead_frame / worker.rate
    pos = sources.clock.position(seconds)
    ve = int(worker.ctl[R.VALID_END])
    engine = worker.engine
    stats = engine.stats
    follower = sources.link_follower
    return {
        "bar": pos.bar,
        "beat": pos.beat,
        "bpm": round(pos.bpm, 3),
        "meter": f"{pos.meter[0]}/{pos.meter[1]}",
        "clock": sources.name if rolling or sources.name != "jack" else "stopped",
        "rolling": bool(rolling),
        "seconds": round(seconds, 3),
        "weights": {k: round(v, 3) for k, v in worker.last_weights.items()},
        "target_weights": {k: round(v, 3) for k, v in engine.controls.target_weights().items()},
        "buffer_seconds": round(max(0, ve - playhead_frame) / worker.rate, 3),
        "rtf": round(stats.rtf(), 3),
        "chunks": stats.chunks,
        "rejoins": stats.rejoins,
        "streams": int(worker.ctl[R.STREAM]),
        "max_chunk_seconds": round(worker.max_gen, 3),  # the slowest piece (the key predates pieces)
        "cc": dict(engine.controls.stats),
        "preset": worker.preset.name,
        "reloads": worker.reload.reloads,
        "error": worker.reload.error,
        "clock_reanchors": sources.clock.reanchors,
        "clock_last_reanchor": getattr(sources.clock, "last_reanchor", None),
        "sample_rate": worker.rate,
        "link_peers": follower.peers if sources.link is not None else None,
        "link_placements": follower.placements,
        "link_offset": follower.offset,
        "link_last": follower.last,
        "recent_chunks": [list(c) for c in worker.chunk_log],
        "pieces": stats.pieces,
        "rewinds": stats.rewinds,
        "piece_frames": engine.piece_frames,
        "lookahead_ms": round(engine.lookahead_s * 1000, 1),
        "lookahead_auto": worker.preset.lookahead_ms is None,
        "margin_ms": round(min(worker.margins) * 1000, 1) if worker.margins else None,
        "late_pieces": worker.late_pieces,
        "last_rewind": worker.last_rewind,
        "piece_ms": _spread(worker.piece_gen),
        "heap_trims": worker.heap.status(),
    }


def _spread(seconds) -> dict | None:
    """Median, 95th percentile and max of recent per-piece generation times, in ms."""
    if not seconds:
        return None
    import numpy as np

    x = np.asarray(seconds) * 1000
    p50, p95 = np.percentile(x, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(x.max()), 1)}


def snapshot(shared, bridge, worker_status: dict) -> dict:
    """The status file's content: the shared block's counters (callback, JACK) with the
    latest `worker_status` laid over them."""
    ctl = shared.ctl
    rate = int(ctl[R.RATE_SLOT]) or 48000
    lookahead_frames = int(ctl[R.LOOKAHEAD_FRAMES]) or int(round(bridge.lookahead_s * rate))
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
        "repeated_cycles": int(ctl[R.REPEATED_CYCLES]),
        "midi_repeats": int(ctl[R.MIDI_REPEATS]),
        "periods": int(ctl[R.PERIODS]),
        "callback_max_us": int(ctl[R.CB_MAX_US]),
        "callbacks_over_half_period": int(ctl[R.CB_SLOW]),
        "callback_entry_max_frames": int(ctl[R.CB_ENTRY_MAX]),
        "ready": bool(ctl[R.WORKER_READY]),
        "connected": bridge.client is not None,
        "pid": os.getpid(),
    }
    for key in WORKER_KEYS:
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
        pacing = ""
        if s.get("lookahead_ms") is not None:
            auto = " auto" if s.get("lookahead_auto") else ""
            margin = f" margin {s['margin_ms']:.0f} ms" if s.get("margin_ms") is not None else ""
            pacing = f" | ahead {s['lookahead_ms']:.0f} ms{auto}, {s.get('piece_frames')}-frame pieces{margin}"
        return (
            f"{where:>7} {bpm} bpm [{clock}] {weights} | buf {s['buffer_fill']:.2f}s rtf {s['rtf']:.2f} "
            f"| underruns {s['underruns']} xruns {s['xruns']} | latency {s['latency_frames']} fr ({ms:.0f} ms)"
            f"{pacing}"
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
