"""Soak `jamstream jam`: the issue's targets, measured on a private dummy JACK server.

    .venv/bin/python scripts/soak_jam.py --minutes 10 --preset techno-dub [--lm PATH | --metronome]

A scripted DAW (bridge.host_sim.HostSim) is timebase master at the preset's tempo, rolls
the transport, sends `--cc-rate` CC messages a second (sweeps on both slots) and jumps
the transport to a random bar every `--jump-every` seconds. Reported (JSON on stdout):
- xruns: all the server saw, and those jackd blames on our client ("client = jamstream
  was not finished" in its log);
- underruns after pre-roll (the bridge's own counter; pre-roll after each jump is counted
  apart as starved periods);
- memory: RSS of the bridge process and of its generator process, sampled every 10 s
  (first sample after warm-up vs last, and the slope in MB/min);
- CPU of the JACK-side process (the one whose callback runs on the audio thread) and of
  the generator, as a percentage of one core;
- CC-to-audible latency: after each jump a CC step (slot A -> B, then back) is sent and
  the time until the output changes is measured - exactly with `--metronome` (its click
  pitch is the mix); with the model, to the first chunk heard whose weights crossed over
  (the bridge status's `recent_chunks`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from support.jam import Jam

    from bridge.jam.presets import CCBinding, Preset
    from bridge.live.host_sim import HostSim

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from soak_plugin import rss_windows, slope  # noqa: E402  (scripts/ is this script's own directory)

# tests/support's click detector (a sample array -> the indices where clicks start), handed
# down from main so the rig's modules all load before the collector is frozen
Onsets = Callable[[np.ndarray], np.ndarray]


def proc_stat(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / ticks
    rss = int(parts[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def worker_of(pid: int) -> int | None:
    """The generator process: the child started by multiprocessing's spawn (not its resource tracker)."""
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return None
    for k in kids:
        if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
            return k
    return None


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@dataclass
class Knobs:
    """The CCs the soak turns. The slots' mix CCs are stepped (A -> B, then back) and the
    time until the output follows is what is measured; `traffic` is a bound knob (the
    preset's first sampling control, else CC 7) swept all along so the step has to get
    through a busy MIDI port."""

    a_cc: CCBinding
    b_cc: CCBinding
    a_slot: str
    b_slot: str
    traffic: CCBinding


@dataclass
class SoakRun:
    """What the one-second ticks of the soak carry from one to the next: the rig, the
    schedule (next jump, next sample), the CC step awaiting its measurement, and what has
    been collected for the report."""

    args: argparse.Namespace
    knobs: Knobs
    jam: Jam
    rng: random.Random
    host: HostSim | None = None
    worker_pid: int | None = None
    rate: int = 0
    start: float = 0.0
    next_jump: float = 0.0
    next_sample: float = 0.0
    step_state: int = 0  # 0: the next step goes A -> B, 1: B -> A
    step_at: tuple[int, int] | None = None  # (JACK frame time, hi) of the step since the last jump
    # the bridge's recent_chunks seen since that step, by first frame: its status keeps only the
    # latest 48 pieces (7.7 s of 4-frame pieces), less than the 17 s from a step to the next jump
    heard: dict[int, list] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    latencies: list[float | None] = field(default_factory=list)
    jumps: int = 0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--preset", default="techno-dub")
    ap.add_argument("--lm", default=None)
    ap.add_argument("--metronome", action="store_true")
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--cc-rate", type=float, default=100.0, help="CC messages per second")
    ap.add_argument("--jump-every", type=float, default=20.0, help="seconds between transport jumps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def main() -> int:
    """Soak the jam and print the report. The rig's modules load before the collector is
    frozen; the DAW, the jam and jackd are stopped whatever happened, before the report."""
    args = parse_args()

    import gc

    from support.clicks import click_onsets
    from support.jackd import Jackd
    from support.jam import Jam

    from bridge.jam.presets import find_preset
    from bridge.live.host_sim import HostSim

    gc.freeze()  # the scripted DAW's callback is Python too: keep full collections off its thread
    gc.disable()
    preset = find_preset(args.preset)
    knobs = knobs_of(preset)
    tmp = Path(tempfile.mkdtemp(prefix="jam-soak-"))
    os.environ["JAMTEST_JACKD_LOG"] = str(tmp / "jackd.log")
    jackd = Jackd(period=args.period)
    jam = Jam(jackd.name, jam_args_for(args), tmp)
    run = SoakRun(args, knobs, jam, random.Random(args.seed))
    try:
        final = soak(run, preset, jackd.name, HostSim, click_onsets)
    finally:
        if run.host is not None:
            run.host.close()
        code = jam.stop()
        jackd.stop()
    report = build_report(run, preset, final, jackd_log(tmp), code, tmp)
    print(json.dumps(report, indent=1))
    return 0


def knobs_of(preset: Preset) -> Knobs:
    a_cc, b_cc = preset.slots[0].cc, preset.slots[1].cc
    traffic = next(iter(preset.controls.values())).cc if preset.controls else type(a_cc)(a_cc.channel, 7)
    return Knobs(a_cc, b_cc, preset.slots[0].name, preset.slots[1].name, traffic)


def jam_args_for(args: argparse.Namespace) -> list[str]:
    """`jamstream jam`'s arguments: the preset, and the metronome or an LM if one was asked for."""
    jam_args = ["--preset", args.preset, "--sync-timeout", "30", "--threads", str(args.threads)]
    jam_args += ["--metronome"] if args.metronome else (["--lm", args.lm] if args.lm else [])
    return jam_args


def soak(run: SoakRun, preset: Preset, server: str, host_cls: type[HostSim], click_onsets: Onsets) -> dict:
    """Start the DAW once the worker is ready, roll, tick once a second until the time is up;
    the jam's final status. `run.host` is set as soon as the DAW exists, so the caller can
    close it whatever happens after."""
    args, jam = run.args, run.jam
    jam.wait_for(lambda s: s.get("ready"), 300, "the worker")
    run.worker_pid = worker_of(jam.proc.pid)
    run.host = host_cls(
        "soak-daw", server=server, bpm=preset.bpm, meter=preset.meter, record_seconds=args.jump_every + 5
    )
    host = run.host
    host.connect_from()
    run.rate = host.rate
    host.client.transport_frame = 0
    time.sleep(0.3)
    host.client.transport_start()
    run.start = time.monotonic()
    end = run.start + args.minutes * 60
    run.next_jump = run.start + args.jump_every
    run.next_sample = run.start
    jam.wait_for(lambda s: s["rolling"] and s.get("chunks", 0) > 0, 60, "rolling")
    host.start_recording()
    while time.monotonic() < end:
        tick(run, click_onsets)
    return jam.status()


def tick(run: SoakRun, click_onsets: Onsets) -> None:
    """One second of the soak: queue the next second of CC traffic, step the slots 3 s after
    a jump, sample the processes every 10 s, jump every `--jump-every` s."""
    now = time.monotonic()
    queue_cc_traffic(run)
    if run.step_at is None and now - (run.next_jump - run.args.jump_every) > 3.0:
        send_cc_step(run)
    elif run.step_at is not None and not run.args.metronome:
        run.heard.update((c[0], c) for c in run.jam.status().get("recent_chunks", []))
    if now >= run.next_sample:
        run.next_sample = now + 10
        take_sample(run, now)
    if now >= run.next_jump:
        jump_transport(run, now, click_onsets)
    time.sleep(1.0 - (time.monotonic() - now) % 1.0)


def queue_cc_traffic(run: SoakRun) -> None:
    """CC traffic on the bound knob: a random sweep over the next second, queued ahead."""
    traffic = run.knobs.traffic
    run.host.schedule_cc_sweep(
        traffic.channel,
        traffic.number,
        0.0,
        1.0,
        run.rng.randrange(64),
        64 + run.rng.randrange(64),
        rate_hz=run.args.cc_rate,
    )


def send_cc_step(run: SoakRun) -> None:
    """A CC step on the slots (A -> B, or back), timed by JACK frame time so the jump can
    measure how long the output took to follow. The traffic goes to another CC: bound or
    not, the bridge parses it."""
    knobs, host = run.knobs, run.host
    hi, lo = (127, 0) if run.step_state == 0 else (0, 127)
    host.send(bytes([0xB0 | (knobs.a_cc.channel - 1), knobs.a_cc.number, lo]))
    host.send(bytes([0xB0 | (knobs.b_cc.channel - 1), knobs.b_cc.number, hi]))
    run.step_at = (host.client.frame_time, hi)
    run.step_state ^= 1


def take_sample(run: SoakRun, now: float) -> None:
    """CPU and RSS of the bridge and its generator, with the bridge's counters; echoed to
    stderr so a long soak shows its progress."""
    s = run.jam.status()
    jcpu, jrss = proc_stat(run.jam.proc.pid)
    wcpu, wrss = proc_stat(run.worker_pid) if run.worker_pid else (0.0, 0.0)
    run.samples.append(
        {
            "t": round(now - run.start, 1),
            "jam_cpu_s": jcpu,
            "jam_rss_mb": round(jrss, 1),
            "worker_cpu_s": wcpu,
            "worker_rss_mb": round(wrss, 1),
            "underruns": s.get("underruns"),
            "xruns": s.get("xruns"),
            "rtf": s.get("rtf"),
            "buffer": s.get("buffer_fill"),
        }
    )
    print(json.dumps(run.samples[-1]), file=sys.stderr, flush=True)


def jump_transport(run: SoakRun, now: float, click_onsets: Onsets) -> None:
    """Measure the step in what was recorded since the last jump, then locate the transport
    to a random bar and record afresh."""
    host = run.host
    audio, frames, rolling = host.stop_recording()
    if run.step_at is not None:
        run.latencies.append(step_latency(run, audio, frames, rolling, click_onsets))
    run.step_at = None
    run.heard.clear()
    bar = run.rng.randrange(1, 200)
    host.client.transport_frame = host.frame_at_bar(bar)
    run.jumps += 1
    run.next_jump = now + run.args.jump_every
    host.start_recording()


def step_latency(
    run: SoakRun, audio: np.ndarray, frames: np.ndarray, rolling: np.ndarray, click_onsets: Onsets
) -> float | None:
    """The CC step's latency: from the clicks' pitch with the metronome, from the bridge's
    recent chunks' weights with a model."""
    host = run.host
    times = host.rec_time[: len(frames)]
    if run.args.metronome:
        return measure_latency(audio, times, host.client.blocksize, run.step_at, run.rate, click_onsets, dominant_hz)
    run.heard.update((c[0], c) for c in run.jam.status().get("recent_chunks", []))
    chunks = list(run.heard.values())
    knobs = run.knobs
    return mix_latency(
        chunks, times, frames, rolling, host.client.blocksize, run.step_at, run.rate, knobs.a_slot, knobs.b_slot
    )


def jackd_log(tmp: Path) -> str:
    """jackd's log (the xruns it blames on a client are only there), '' if it wrote none."""
    return (tmp / "jackd.log").read_text(errors="replace") if (tmp / "jackd.log").exists() else ""


def build_report(run: SoakRun, preset: Preset, final: dict, log: str, code: int, tmp: Path) -> dict:
    """The report on stdout, its keys in the order they have always been printed."""
    args = run.args
    return {
        "minutes": args.minutes,
        "preset": args.preset,
        "model": "metronome" if args.metronome else (args.lm or "shipped"),
        "period": args.period,
        "cc_per_second": args.cc_rate,
        "jumps": run.jumps,
        **xrun_fields(final, log),
        **resource_fields(run.samples),
        **bridge_fields(final),
        **latency_fields(run.latencies, preset, final),
        "exit_code": code,
        "logs": str(tmp),
    }


def xrun_fields(final: dict, log: str) -> dict:
    """Underruns and xruns: the bridge's counters, and whom jackd's log blames for each late cycle."""
    cycles = late_cycles(log)
    return {
        "underruns_after_preroll": final.get("underruns"),
        "starved_periods_incl_preroll": final.get("starved_periods"),
        "xruns_server": final.get("xruns"),
        "xruns_blaming_jamstream": len(re.findall(r"client = jamstream was not finished", log)),
        "xruns_blaming_other_clients": len(re.findall(r"client = (?!jamstream)\S+ was not finished", log)),
        "late_cycles": len(cycles),
        "late_cycles_only_jamstream": sum(c["clients"] == ["jamstream"] for c in cycles),
        "late_cycles_every_client": sum(len(c["clients"]) > 1 for c in cycles),
        "late_cycles_driver_late": sum(c["driver_late_us"] is not None for c in cycles),
        "late_cycles_detail": cycles,
    }


def rss_slope(samples: list[dict], key: str) -> float:
    """MB/min of `key` fitted (least squares, soak_plugin's `slope`) through every sample: the
    issue's figure, which two end samples would make hostage to one garbage collection."""
    return slope([(x["t"], x[key]) for x in samples])


def resource_fields(samples: list[dict]) -> dict:
    """Memory and CPU from the first sample after a minute of warm-up (else the first) to the last."""
    first = next((x for x in samples if x["t"] >= 60), samples[0])
    settled = samples[samples.index(first) :]
    last = samples[-1]
    seconds = last["t"] - first["t"] or 1.0
    return {
        "jam_rss_mb": [first["jam_rss_mb"], last["jam_rss_mb"]],
        "worker_rss_mb": [first["worker_rss_mb"], last["worker_rss_mb"]],
        "jam_rss_slope_mb_per_min": round(rss_slope(settled, "jam_rss_mb"), 3),
        "worker_rss_slope_mb_per_min": round(rss_slope(settled, "worker_rss_mb"), 3),
        "worker_rss_5min_windows": rss_windows([(x["t"], x["worker_rss_mb"]) for x in samples]),
        "jam_rss_5min_windows": rss_windows([(x["t"], x["jam_rss_mb"]) for x in samples]),
        "jack_process_cpu_percent": round(100 * (last["jam_cpu_s"] - first["jam_cpu_s"]) / seconds, 2),
        "worker_cpu_percent": round(100 * (last["worker_cpu_s"] - first["worker_cpu_s"]) / seconds, 2),
    }


def bridge_fields(final: dict) -> dict:
    """The bridge's own counters from its final status, as it reported them."""
    return {
        "callback_max_us": final.get("callback_max_us"),
        "callbacks_over_half_period": final.get("callbacks_over_half_period"),
        "callback_entry_max_frames": final.get("callback_entry_max_frames"),
        "rtf": final.get("rtf"),
        "chunks": final.get("chunks"),
        "rejoins": final.get("rejoins"),
        "cc_counts": final.get("cc"),
        "midi_overflow": final.get("midi_overflow"),
        "heap_trims": final.get("heap_trims"),
    }


def latency_fields(latencies: list[float | None], preset: Preset, final: dict) -> dict:
    """The CC steps' measured latencies (those found) against the bound the design promises."""
    lat = [x for x in latencies if x is not None]
    return {
        "cc_to_audible_s": {
            "n": len(lat),
            "median": round(float(np.median(lat)), 3) if lat else None,
            "max": round(float(np.max(lat)), 3) if lat else None,
        },
        # one piece + the lookahead in use, + the smoothing's time to half-way (the step's
        # midpoint is what is detected) + one beat (clicks only sound on beats)
        "bound_s": round(
            final.get("piece_frames", 12) / 25
            + final.get("lookahead_ms", 400.0) / 1000
            + preset.smoothing_ms / 1000 * 0.693
            + 60 / preset.bpm,
            3,
        ),
    }


def late_cycles(log: str) -> list[dict]:
    """jackd's log grouped per late cycle: the clients it found unfinished (with their
    state: Triggered = woken but not yet running, Running = inside its callback) and the
    driver's own lateness when it reported one. A cycle where every client is late, or the
    driver woke late, is the machine stalling; one where only jamstream is, is ours."""
    cycles, clients, driver = [], [], None
    for line in log.splitlines():
        m = re.search(r"client = (\S+) was not finished, state = (\w+)", line)
        if m:
            clients.append((m.group(1), m.group(2)))
            continue
        m = re.search(r"JackTimedDriver::Process XRun = (\d+) usec", line)
        if m:
            driver = int(m.group(1))
            continue
        if "Process error" in line and clients:
            cycles.append({"clients": sorted(c for c, _ in clients), "states": dict(clients), "driver_late_us": driver})
            clients, driver = [], None
    if clients:
        cycles.append({"clients": sorted(c for c, _ in clients), "states": dict(clients), "driver_late_us": driver})
    return cycles


def mix_latency(chunks, times, frames, rolling, n, step, rate, a_slot, b_slot):
    """Seconds from the CC step (JACK frame time) to the start of the first chunk heard
    whose mix crossed over to the stepped-to slot (the bridge's recent_chunks: song frame
    span and slot weights). What the model makes of that mix is the style evals' business."""
    t_step, hi = step
    for first, end, weights, *_ in sorted(chunks, key=lambda c: c[0]):
        wa, wb = weights.get(a_slot, 0.0), weights.get(b_slot, 0.0)
        if not (wb > wa if hi == 127 else wa > wb):
            continue
        for p, f in enumerate(frames):  # where the chunk's first frame was played
            if rolling[p] and f <= first < f + n and times[p] + (first - f) >= t_step:
                return (times[p] + (first - f) - t_step) / rate
    return None


def measure_latency(audio, times, n, step, rate, click_onsets, dominant_hz):
    """Seconds from the CC step (JACK frame time) to the first click whose pitch shows it."""
    t_step, hi = step
    on = click_onsets(audio[0])
    for o in on:
        p = o // n
        if p >= len(times):
            break
        t = times[p] + o % n
        if t < t_step:
            continue
        f = dominant_hz(audio[0, o : o + 480], rate)
        if (hi == 127 and f > 1250) or (hi == 0 and f < 1250):
            return (t - t_step) / rate
    return None


if __name__ == "__main__":
    sys.exit(main())
