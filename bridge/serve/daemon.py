"""`jamstream serve`: one generator process for every plugin instance on the machine.

A DAW may hold several jamstream plugins (tracks, presets), and each must not load its
own copy of the models (hundreds of MB, seconds of warm-up) nor run torch in the host's
process. So the plugin is only a ring reader (bridge/lv2/jamstream.c) and this daemon
does the rest: per attached instance it makes one shared block - the very layout the
JACK bridge uses (bridge/live/ring.py) - and runs the same scheduling loop on it
(bridge/live/worker.Worker) in a thread, on models loaded once per distinct stack
(`ModelCache`). Instances on the same models share each LM pass: their streams are batched
(model.streams.StreamBatcher), which on a CPU costs about what one stream costs.

- A plugin's connection is its lifetime: when it closes (the instance was removed, the
  host quit or crashed) the worker stops and the block is freed.
- A worker that fails (a bug, a model that cannot load) is logged to the plugin - which
  puts it in the host's log - and started again after a pause; the other instances play
  on. A bad attach request (unknown preset, bad numbers) gets a one-line error back.
- SIGTERM / SIGINT stop every worker, free every block and remove the socket (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bridge.live import ring as R
from bridge.serve.protocol import ATTACH_KEYS, MODES, LineReader, encode, request
from model.errors import JamstreamError

CAPACITY = 1 << 21  # ring frames per instance: 43 s at 48 kHz, far above any lookahead
RETRY_S = (1.0, 2.0, 5.0, 10.0)  # pauses before restarting a failed worker, then every 10 s


def log(text: str) -> None:
    print(f"jamstream serve: {text}", file=sys.stderr, flush=True)


@dataclass
class ServeConfig:
    socket: Path
    lm: str | None = None
    codec: str | None = None
    style: str | None = None
    threads: int = 1  # torch threads per generator (all instances share the cores)
    batch: bool = True  # instances on the same models share each LM pass (model.streams)
    speculative: bool = False  # a pass that holds one instance alone runs speculatively
    draft: str | None = None
    idle_exit_s: float | None = None  # exit after this long without instances (a plugin-started daemon)


class ModelCache:
    """Each distinct model stack, loaded at its first attach and kept for the next ones.
    Stacks differ by the metronome, an always-on adapter, or a preset's adapter slots
    (their strengths follow that instance's CCs, so such a stack is not shared)."""

    def __init__(self, batch: bool = True):
        self._stacks: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.batch = batch

    @staticmethod
    def key(cfg, preset) -> tuple:
        adapter_slots = tuple(s.value for s in preset.slots if s.kind == "adapter")
        return (cfg.metronome, cfg.adapter, str(preset.path) if adapter_slots else None)

    def get(self, cfg, preset):
        from bridge.live.models import LiveModels

        key = self.key(cfg, preset)
        with self._lock:  # one load at a time: a second instance of the same stack waits for it
            if key not in self._stacks:
                models = LiveModels(cfg, preset)
                if self.batch and not cfg.metronome and key[2] is None:
                    # Adapter slots set strengths on the weights per instance: such a stack
                    # plays unbatched; every other stack's instances share each pass.
                    from model.streams import BatchedGenerator

                    models.generator = BatchedGenerator(models.generator)
                self._stacks[key] = models
            return self._stacks[key]

    def batching(self) -> dict:
        """Frame passes made and stream frames made in them, summed over batched stacks."""
        batchers = [m.generator.batcher for m in self._stacks.values() if hasattr(m.generator, "batcher")]
        return {
            "passes": sum(b.frames for b in batchers),
            "stream_frames": sum(b.stream_frames for b in batchers),
        }

    def describe(self) -> list[str]:
        return ["metronome" if k[0] else f"model{' + adapter ' + k[1] if k[1] else ''}" for k in self._stacks]


class Instance:
    """One attached plugin: its block, its worker thread, its connection for log lines.
    Also the worker's status queue (`put` / `put_nowait`)."""

    def __init__(self, daemon: Daemon, iid: int, conn: socket.socket, attach: dict, preset):
        from bridge.live.worker import WorkerConfig

        self.daemon, self.id, self.conn, self.attach, self.preset = daemon, iid, conn, attach, preset
        cfg = daemon.cfg
        self.worker_cfg = WorkerConfig(
            preset=str(preset.path),
            lm=cfg.lm,
            codec=cfg.codec,
            speculative=cfg.speculative,
            draft=cfg.draft,
            style=cfg.style,
            adapter=attach["adapter"] or None,
            seed=attach["seed"],
            clock="auto",
            metronome=attach["mode"] == "metronome",
            threads=cfg.threads,
        )
        self.shared = R.Shared(capacity=CAPACITY, live_capacity=1024)
        self.shared.ctl[R.RATE_SLOT] = attach["rate"]
        self.shared.ctl[R.PERIOD] = attach["block"]
        self.status: dict = {}
        self.state = "loading"
        self.failures = 0
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"jamstream-instance-{iid}", daemon=True)

    def reply(self) -> dict:
        sh = self.shared
        return {
            "ok": True,
            "id": self.id,
            "shm": sh.name.lstrip("/"),
            "size": sh.shm.size,
            "capacity": sh.capacity,
            "midi_slots": sh.midi_slots,
            "live_capacity": sh.live_capacity,
            "layout": R.LAYOUT_VERSION,
        }

    # ---------------------------------------------------------------- to the plugin
    def log(self, text: str, level: str = "note") -> None:
        log(f"#{self.id} {text}")
        with self._send_lock:
            try:
                self.conn.sendall(encode({"log": text.replace('"', "'"), "level": level}))
            except OSError:
                pass  # the plugin is gone; its reader thread detaches us

    def put(self, message: dict) -> None:
        if message.get("ready"):
            self.state = "playing"
            self.failures = 0
            self.log(f"ready: {self.preset.name} ({self.attach['mode']}), {message.get('pacing', '')}")
        else:
            self.status = message

    put_nowait = put

    # ---------------------------------------------------------------- the worker
    def _run(self) -> None:
        from bridge.live.worker import Worker

        while not self._stop.is_set():
            try:
                models = self.daemon.models.get(self.worker_cfg, self.preset)
                if self._stop.is_set():
                    break
                Worker(self.worker_cfg, self.shared, self, models=models).run()
                break  # ctl[QUIT]: detached
            except JamstreamError as exc:
                self.state = "failed"
                self.log(f"cannot play: {exc}", "error")
            except Exception as exc:  # a bug: say it, keep the other instances, try again
                self.state = "failed"
                log(f"#{self.id} worker failed:\n{traceback.format_exc()}")
                self.log(f"generator failed ({type(exc).__name__}: {exc}); restarting it", "error")
            self.shared.ctl[R.WORKER_READY] = 0
            self.shared.ctl[R.VALID_END] = self.shared.ctl[R.VALID_START]  # nothing stale plays on
            self.failures += 1
            self._stop.wait(RETRY_S[min(self.failures, len(RETRY_S)) - 1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Quit the worker; once (a SIGTERM's shutdown and the detach it causes both stop the
        instance). The block stays open: a status read may still describe it (`free`)."""
        with self._stop_lock:
            if self._stop.is_set():
                return
            self._stop.set()
            self.shared.ctl[R.QUIT] = 1
            if self.thread.ident is not None:  # started (one whose plugin left before its reply was not)
                self.thread.join(timeout=30)

    def free(self) -> None:
        """Close and unlink the block, once its worker has quit (under the daemon's lock)."""
        if not self.thread.is_alive() and self.shared.ctl is not None:
            self.shared.close()

    def describe(self) -> dict:
        ctl = self.shared.ctl
        counters = {
            k.lower(): int(ctl[getattr(R, k)])
            for k in (
                "PERIODS",
                "UNDERRUNS",
                "STARVED_PERIODS",
                "LOCATES",
                "STARTS",
                "FREEWHEEL",
                "FREEWHEEL_TIMEOUTS",
                "CB_MAX_US",
                "CB_SLOW",
                "MIDI_OVERFLOW",
            )
        }
        keep = ("pieces", "piece_frames", "lookahead_ms", "margin_ms", "late_pieces", "bar", "beat", "bpm", "clock")
        return {
            "id": self.id,
            "name": self.attach["name"],
            "preset": self.preset.name,
            "mode": self.attach["mode"],
            "seed": self.attach["seed"],
            "rate": self.attach["rate"],
            "state": self.state,
            "failures": self.failures,
            "playhead": int(ctl[R.PLAY_FRAME]),
            "rolling": bool(ctl[R.ROLLING]),
            "host_latency": int(ctl[R.HOST_LATENCY]),
            "valid": [int(ctl[R.VALID_START]), int(ctl[R.VALID_END])],
            "dbg": [int(ctl[37]), int(ctl[38]), int(ctl[39])],
            **counters,
            **{k: self.status[k] for k in keep if k in self.status},
        }


def parse_attach(message: dict) -> dict:
    """The attach request's fields, checked (JamstreamError names the bad one)."""
    out = {}
    for key in ATTACH_KEYS:
        if key not in message:
            raise JamstreamError(f"attach: missing {key!r}")
        out[key] = message[key]
    if not isinstance(out["preset"], str) or not out["preset"]:
        raise JamstreamError("attach: give a preset name or .toml path")
    if out["mode"] not in MODES:
        raise JamstreamError(f"attach: mode {out['mode']!r}: give one of {', '.join(MODES)}")
    for key, low, high in (("seed", 0, 2**31 - 1), ("rate", 8000, 384_000), ("block", 1, 8192)):
        if not isinstance(out[key], int) or not low <= out[key] <= high:
            raise JamstreamError(f"attach: {key} {out[key]!r}: give an integer in {low}..{high}")
    if not isinstance(out["adapter"], str) or not isinstance(out["name"], str):
        raise JamstreamError("attach: adapter and name are strings")
    return out


class Daemon:
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.models = ModelCache(cfg.batch)
        self.instances: dict[int, Instance] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self._stopping = threading.Event()
        self.started = time.monotonic()
        self.idle_since = time.monotonic()
        self.server: socket.socket | None = None

    # ---------------------------------------------------------------- socket
    def bind(self) -> None:
        """Listen on the socket, unless another daemon already does (JamstreamError)."""
        path = self.cfg.socket
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise JamstreamError(f"--socket {path}: cannot create {path.parent}: {exc.strerror}") from None
        if path.exists() or path.is_symlink():
            try:
                pid = request(path, {"op": "status"}, timeout=2.0).get("pid")
                raise JamstreamError(f"a jamstream daemon (pid {pid}) already serves {path}")
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a dead daemon's socket
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(path))
        except OSError as exc:
            server.close()
            raise JamstreamError(f"--socket {path}: cannot listen there: {exc.strerror}") from None
        os.chmod(path, 0o600)
        server.listen(16)
        server.settimeout(0.25)
        self.server = server

    def serve(self) -> int:
        """Accept until SIGTERM/SIGINT (or idle exit); returns the exit code."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        log(f"listening on {self.cfg.socket} (pid {os.getpid()})")
        try:
            while not self._stopping.is_set():
                try:
                    conn, _ = self.server.accept()
                except TimeoutError:
                    self._maybe_idle_exit()
                    continue
                except OSError:
                    continue
                threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        finally:
            self.shutdown()
        return 0

    def _maybe_idle_exit(self) -> None:
        limit = self.cfg.idle_exit_s
        if limit is None or self.instances:
            return
        if time.monotonic() - self.idle_since > limit:
            log(f"no plugin attached for {limit:g} s - exiting")
            self._stopping.set()

    def shutdown(self) -> None:
        with self._lock:
            instances = list(self.instances.values())
        for inst in instances:
            self._forget(inst.id, inst)
            try:
                inst.conn.close()
            except OSError:
                pass
        if self.server is not None:
            self.server.close()
            try:
                if self.cfg.socket.exists():
                    self.cfg.socket.unlink()
            except OSError:
                pass
        log("stopped")

    # ---------------------------------------------------------------- a client
    def _client(self, conn: socket.socket) -> None:
        reader = LineReader(conn)
        try:
            conn.settimeout(10.0)
            line = reader.line()
            if line is None:
                return conn.close()
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError
            except ValueError:
                conn.sendall(encode({"ok": False, "error": "not a JSON object line"}))
                return conn.close()
            op = message.get("op")
            if op == "status":
                conn.sendall(encode(self.status()))
                return conn.close()
            if op != "attach":
                conn.sendall(encode({"ok": False, "error": f"unknown op {op!r}: give attach or status"}))
                return conn.close()
            self._attach(conn, reader, message)
        except OSError:
            conn.close()
        except Exception:  # a bug: say it, answer, serve on (the client must not wait for nothing)
            log(f"a request failed:\n{traceback.format_exc()}")
            try:
                conn.sendall(encode({"ok": False, "error": "the daemon failed on this request (see its log)"}))
            except OSError:
                pass
            conn.close()

    def _attach(self, conn: socket.socket, reader: LineReader, message: dict) -> None:
        from bridge.jam.presets import find_preset

        try:
            attach = parse_attach(message)
            preset = find_preset(attach["preset"])
        except JamstreamError as exc:
            log(f"refused an attach: {exc}")
            conn.sendall(encode({"ok": False, "error": str(exc).replace('"', "'")}))
            return conn.close()
        with self._lock:
            iid = self._next_id
            self._next_id += 1
            inst = Instance(self, iid, conn, attach, preset)
            self.instances[iid] = inst
        log(
            f"#{iid} attached: {attach['name']!r}, preset {preset.name!r} ({attach['mode']}), "
            f"seed {attach['seed']}, {attach['rate']} Hz"
        )
        try:
            conn.sendall(encode(inst.reply()))
        except OSError:
            # The plugin hung up before its reply (a host restoring the session's state changes
            # the config it attached with: measured in every Ardour export). Kept, the instance
            # was a block and a status row nobody plays, and it held off --idle-exit for good.
            self._forget(iid, inst)
            log(f"#{iid} left before its reply")
            return conn.close()
        inst.start()
        conn.settimeout(None)
        try:
            while reader.line() is not None:
                pass  # a plugin says nothing more; EOF is its detach
        except (OSError, ValueError):
            pass
        self._forget(iid, inst)
        conn.close()
        log(f"#{iid} detached")

    def _forget(self, iid: int, inst: Instance) -> None:
        """Stopped, then out of the table and freed under the lock: `status` describes instances
        under it, so none reads a closed block (a detach that closed it first broke the status
        reads in between - a TypeError in that client's thread, a client waiting for an answer:
        CI, stop 26), and once status shows an instance gone its block is gone too."""
        inst.stop()
        with self._lock:
            self.instances.pop(iid, None)
            inst.free()
            if not self.instances:
                self.idle_since = time.monotonic()

    def status(self) -> dict:
        with self._lock:
            instances = [inst.describe() for inst in self.instances.values()]
        return {
            "ok": True,
            "pid": os.getpid(),
            "socket": str(self.cfg.socket),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "models": self.models.describe(),
            "batching": self.models.batching(),
            "instances": instances,
        }


def run_serve(cfg: ServeConfig) -> int:
    daemon = Daemon(cfg)
    daemon.bind()
    return daemon.serve()
