"""The parent process of `jamstream jam`: JACK client, generator process, status, signals.

It checks the arguments before touching JACK or a model, sets the process up for the
audio thread (switch interval, SCHED_FIFO for its ordinary threads, no full garbage
collections), opens the JACK client (bridge/live/callback.py), spawns the generator
process (bridge/live/worker.py) over one shared block, and then supervises, ten times a
second: the worker's messages and liveness, SIGHUP -> reload, a server that stopped
calling back or shut down (exit, or wait and rejoin with --reconnect), the JACK time
reference for the Link follower, and the status (bridge/live/status.py) once a second.
Ctrl-C / SIGTERM stop cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import time
from pathlib import Path

from bridge.live import ring as R
from bridge.live.status import StatusBoard, snapshot


class _Stop(Exception):
    pass


def run_jam(args: argparse.Namespace) -> int:
    """`jamstream jam`: returns the exit code."""
    from bridge.live.callback import JackBridge

    preset = check_args(args)  # bad presets fail here, before JACK or the model
    import jack

    # libjack prints every failed connection attempt ("Cannot connect to server socket...");
    # keep its last words for our own one-line messages instead.
    jack_said: list[str] = []
    jack.set_error_function(lambda msg: jack_said.append(msg) if len(jack_said) < 100 else None)
    jack.set_info_function(lambda msg: None)
    rt_main = prepare_process()
    shared = R.Shared(capacity=1 << 21)  # 43 s at 48 kHz, 21 s at 96 kHz: far above any lookahead
    bridge = JackBridge(
        shared,
        name=args.name,
        server=args.server,
        live_input=args.input,
        lookahead_s=(preset.lookahead_ms if preset.lookahead_ms is not None else 200.0) / 1000.0,  # until measured
        connect=args.connect,
        midi_from=args.midi_from,
        input_from=args.input_from,
        sync_timeout_s=args.sync_timeout,
    )
    return Supervisor(args, preset, shared, bridge).run(rt_main)


def check_args(args: argparse.Namespace):
    """The preset, once the arguments are known to be usable (else JamstreamError)."""
    from bridge.jam.presets import find_preset
    from bridge.live.link import AALINK_HINT, aalink_available
    from model.errors import JamstreamError

    preset = find_preset(args.preset)
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
    return preset


def prepare_process() -> bool:
    """Set this process up for the audio thread that will run in it; True when the main
    thread now runs SCHED_FIFO."""
    # The process callback is a Python thread of this process: when it wakes, whoever holds
    # the GIL here (the status loop, a JACK notification) must hand it over within a small
    # part of a period, not after Python's default 5 ms switch interval.
    sys.setswitchinterval(0.0002)
    # And that holder must not itself be preempted by ordinary processes (priority inversion:
    # a descheduled main thread holding the GIL stalls the RT callback for whole periods).
    # Run this process's non-audio threads SCHED_FIFO at priority 1 - below JACK's audio
    # thread - where allowed; RESET_ON_FORK keeps the generator process ordinary.
    rt_main = lift_priority()
    # A full garbage collection walks every object - torch's included (imported by
    # bridge.presets) - in whichever thread allocates at the time, the audio thread too:
    # tens of ms. Freeze what exists now and collect only the young generation, here.
    gc.freeze()
    gc.disable()
    return rt_main


def lift_priority() -> bool:
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


class Supervisor:
    """One run of the parent's loop over an opened (or awaited) JACK client and a worker."""

    def __init__(self, args: argparse.Namespace, preset, shared: R.Shared, bridge):
        self.args = args
        self.preset = preset
        self.shared = shared
        self.bridge = bridge
        self.stop_signal: int | None = None
        self.reload_requests = 0
        self.worker_status: dict = {}
        self.exit_code = 0
        self.jack_clock = None
        self.rt_main = False
        self.deaths: list[float] = []  # monotonic times the generator process died
        self.worker_restarts = 0
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_signal(self, signum, _frame) -> None:
        self.stop_signal = signum

    def _on_hup(self, _signum, _frame) -> None:
        self.reload_requests += 1

    def connect(self) -> bool:
        import jack

        try:
            self.bridge.open()
            return True
        except jack.JackOpenError:
            self.bridge.close()
            return False

    def run(self, rt_main: bool) -> int:
        if not self.connect() and not self._wait_for_server():
            self.shared.close()
            return 0
        self.rt_main = lift_priority() and rt_main  # again, now that libjack's threads exist
        self._start_worker(self.rt_main)
        self.status = StatusBoard(self.args.json_status, quiet=self.args.quiet)
        try:
            self._loop()
        except _Stop:
            pass
        finally:
            self._shut_down()
        return self.exit_code

    def _wait_for_server(self) -> bool:
        """With --reconnect, wait until the server runs (False: stopped by a signal first)."""
        from model.errors import JamstreamError

        args = self.args
        if not args.reconnect:
            self.shared.close()
            raise JamstreamError(
                f"no JACK server{' named ' + repr(args.server) if args.server else ''} is running: start one "
                "(e.g. `jackd -d dummy -r 48000 -p 256`, or your audio interface in qjackctl/PipeWire), "
                "or pass --reconnect to wait for it"
            )
        log("waiting for the JACK server...")
        while self.stop_signal is None and not self.connect():
            time.sleep(1.0)
        return self.stop_signal is None

    def _start_worker(self, rt_main: bool) -> None:
        import multiprocessing as mp

        from bridge.live.worker import WorkerConfig, worker_main

        args, bridge = self.args, self.bridge
        cfg = WorkerConfig(
            preset=str(self.preset.path),
            lm=args.lm,
            codec=args.codec,
            style=args.style,
            adapter=args.adapter,
            speculative=bool(args.speculative or args.draft),
            draft=args.draft,
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
        self.queue = ctx.Queue()
        self.worker = ctx.Process(
            target=worker_main, args=(cfg, self.shared.spec(), self.queue), name="jamstream-worker", daemon=True
        )
        self.worker.start()
        log(
            f"jamstream: client {bridge.client.name!r} on {bridge.rate} Hz, period {bridge.period}"
            f"{'' if rt_main else ' (could not raise the main thread to SCHED_FIFO: expect more xruns under load)'}; "
            "loading "
            f"{'the metronome' if args.metronome else 'the models'} for preset {self.preset.name!r}..."
        )

    def _loop(self) -> None:
        args, shared, bridge = self.args, self.shared, self.bridge
        started = time.monotonic()
        last_write = 0.0
        self._last_periods, self._last_tick = -1, time.monotonic()
        uses_link = args.clock == "link" or args.link
        while True:
            if self.stop_signal is not None:
                log(f"jamstream: {signal.Signals(self.stop_signal).name} - stopping")
                break
            self._read_worker()
            if not self.worker.is_alive() and not self._restart_worker():
                self.exit_code = 1
                break
            if self.reload_requests != shared.ctl[R.RELOAD_SEQ]:
                shared.ctl[R.RELOAD_SEQ] = self.reload_requests
                log("jamstream: reloading the preset (SIGHUP)")
            self._watch_callbacks()
            if bridge.shutdown_event.is_set():
                if not self._rejoin_server():
                    break
                continue
            if uses_link and bridge.client is not None and not bridge.shutdown_event.is_set():
                self._post_time_reference()
            now = time.monotonic()
            if now - last_write >= 1.0:
                last_write = now
                gc.collect(0)
                self.status.update(self._snapshot())
            if args.seconds is not None and now - started >= args.seconds:
                break
            time.sleep(0.1)

    def _restart_worker(self) -> bool:
        """The generator process died (a crash, the OOM killer, a stray SIGKILL): start
        another on the same shared block while the DAW keeps rolling. The callback has
        already faded to silence when the ring ran dry; the new worker starts a stream a
        margin ahead of the playhead, so the music comes back on the grid at the next
        boundary. False (the jam ends) when it keeps dying: 3 deaths within a minute."""
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < 60.0] + [now]
        code = self.worker.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        if len(self.deaths) >= 3:
            log(f"jamstream: error: the generator process died ({how}), 3 times within a minute: stopping")
            return False
        log(f"jamstream: the generator process died ({how}): restarting it; the track is silent until it plays")
        self.worker_restarts += 1
        self.worker_status = {}  # the status reads "loading", not the dead process's last report
        self.shared.ctl[R.WORKER_READY] = 0  # its flag: the new worker sets it when it is ready
        self._start_worker(self.rt_main)
        return True

    def _snapshot(self) -> dict:
        out = snapshot(self.shared, self.bridge, self.worker_status)
        out["worker_pid"] = self.worker.pid
        out["worker_restarts"] = self.worker_restarts
        return out

    def _read_worker(self) -> None:
        """The worker's messages: ready, status, or a fatal error (raises _Stop)."""
        while True:
            try:
                msg = self.queue.get_nowait()
            except Exception:
                break
            if "fatal" in msg:
                log(f"jamstream: error: {msg['fatal'].rstrip()}")
                self.exit_code = 2 if msg.get("bad_input") else 1
                raise _Stop()
            if msg.get("ready"):
                log(f"jamstream: ready ({msg['pacing']})" if msg.get("pacing") else "jamstream: ready")
                continue
            self.worker_status = msg
            self._follow_lookahead(msg.get("lookahead_ms"))

    def _follow_lookahead(self, lookahead_ms) -> None:
        """The worker measured (or grew) its lookahead: the ports' reported latency follows."""
        if lookahead_ms is None or abs(lookahead_ms / 1000.0 - self.bridge.lookahead_s) < 5e-4:
            return
        self.bridge.lookahead_s = lookahead_ms / 1000.0
        if self.bridge.client is not None:
            try:
                self.bridge.recompute_latency()
            except Exception:  # a server going away: the next connect recomputes
                pass

    def _watch_callbacks(self) -> None:
        """A server that stopped calling back for 3 s is gone, shutdown callback or not."""
        bridge = self.bridge
        periods = int(self.shared.ctl[R.PERIODS])
        if periods != self._last_periods:
            self._last_periods, self._last_tick = periods, time.monotonic()
        elif time.monotonic() - self._last_tick > 3.0 and bridge.shutdown_reason is None:
            bridge.shutdown_reason = "no process callback for 3 s: the server is gone"
            bridge.shutdown_event.set()

    def _rejoin_server(self) -> bool:
        """The server shut down: close, and with --reconnect wait for it and rejoin; False
        when the loop should end."""
        args, bridge, status = self.args, self.bridge, self.status
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
            self.exit_code = 1
            return False
        while self.stop_signal is None:
            status.update(self._snapshot())
            if self.connect():
                break
            time.sleep(0.5)
        self._last_periods, self._last_tick = -1, time.monotonic()
        if bridge.client is not None:
            lift_priority()
            status.connected = True
            status.reconnects += 1
            log(f"jamstream: reconnected to JACK ({bridge.rate} Hz, period {bridge.period})")
        return True

    def _post_time_reference(self) -> None:
        """JACK frame <-> CLOCK_MONOTONIC for the Link follower, 10 Hz."""
        from bridge.live.jack_time import JackClock, post_reference

        if self.jack_clock is None or self.jack_clock.client is not self.bridge.client:
            self.jack_clock = JackClock(self.bridge.client)  # (re)connected: a new client
        post_reference(self.shared, self.jack_clock)

    def _shut_down(self) -> None:
        shared, bridge, worker = self.shared, self.bridge, self.worker
        shared.ctl[R.QUIT] = 1
        final = self._snapshot()
        bridge.close()
        worker.join(timeout=10)
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=5)
        self.status.update(final)
        self.status.close()
        shared.close()
