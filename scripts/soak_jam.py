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
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


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


def main() -> int:
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
    args = ap.parse_args()

    import gc

    from jackutil import Jackd, Jam, click_onsets

    from bridge.jam.presets import find_preset
    from bridge.live.host_sim import HostSim

    gc.freeze()  # the scripted DAW's callback is Python too: keep full collections off its thread
    gc.disable()
    preset = find_preset(args.preset)
    a_cc, b_cc = preset.slots[0].cc, preset.slots[1].cc
    a_slot, b_slot = preset.slots[0].name, preset.slots[1].name
    traffic = next(iter(preset.controls.values())).cc if preset.controls else type(a_cc)(a_cc.channel, 7)
    tmp = Path(tempfile.mkdtemp(prefix="jam-soak-"))
    os.environ["JAMTEST_JACKD_LOG"] = str(tmp / "jackd.log")
    jackd = Jackd(period=args.period)
    jam_args = ["--preset", args.preset, "--sync-timeout", "30", "--threads", str(args.threads)]
    jam_args += ["--metronome"] if args.metronome else (["--lm", args.lm] if args.lm else [])
    jam = Jam(jackd.name, jam_args, tmp)
    host = None
    rng = random.Random(args.seed)
    samples, latencies, jumps = [], [], 0
    try:
        jam.wait_for(lambda s: s.get("ready"), 300, "the worker")
        worker_pid = worker_of(jam.proc.pid)
        host = HostSim(
            "soak-daw", server=jackd.name, bpm=preset.bpm, meter=preset.meter, record_seconds=args.jump_every + 5
        )
        host.connect_from()
        rate = host.rate
        host.client.transport_frame = 0
        time.sleep(0.3)
        host.client.transport_start()
        start = time.monotonic()
        end = start + args.minutes * 60
        next_jump = start + args.jump_every
        next_sample = start
        step_state = 0
        jam.wait_for(lambda s: s["rolling"] and s.get("chunks", 0) > 0, 60, "rolling")
        host.start_recording()
        step_at = None
        while time.monotonic() < end:
            now = time.monotonic()
            # CC traffic: one second of sweeps at cc_rate (split over both slots), queued ahead
            # CC traffic on a bound knob (the preset's first sampling control, else CC 7), a second queued ahead
            host.schedule_cc_sweep(
                traffic.channel,
                traffic.number,
                0.0,
                1.0,
                rng.randrange(64),
                64 + rng.randrange(64),
                rate_hz=args.cc_rate,
            )
            if step_at is None and now - (next_jump - args.jump_every) > 3.0:
                # a CC step on the slots (other traffic goes to CC 7/gain... bound or not, it is parsed)
                hi, lo = (127, 0) if step_state == 0 else (0, 127)
                host.send(bytes([0xB0 | (a_cc.channel - 1), a_cc.number, lo]))
                host.send(bytes([0xB0 | (b_cc.channel - 1), b_cc.number, hi]))
                step_at = (host.client.frame_time, hi)
                step_state ^= 1
            if now >= next_sample:
                next_sample = now + 10
                s = jam.status()
                jcpu, jrss = proc_stat(jam.proc.pid)
                wcpu, wrss = proc_stat(worker_pid) if worker_pid else (0.0, 0.0)
                samples.append(
                    {
                        "t": round(now - start, 1),
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
                print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            if now >= next_jump:
                audio, frames, rolling = host.stop_recording()
                if step_at is not None:
                    if args.metronome:
                        latencies.append(
                            measure_latency(
                                audio,
                                host.rec_time[: len(frames)],
                                host.client.blocksize,
                                step_at,
                                rate,
                                click_onsets,
                                dominant_hz,
                            )
                        )
                    else:
                        latencies.append(
                            mix_latency(
                                jam.status().get("recent_chunks", []),
                                host.rec_time[: len(frames)],
                                frames,
                                rolling,
                                host.client.blocksize,
                                step_at,
                                rate,
                                a_slot,
                                b_slot,
                            )
                        )
                step_at = None
                bar = rng.randrange(1, 200)
                host.client.transport_frame = host.frame_at_bar(bar)
                jumps += 1
                next_jump = now + args.jump_every
                host.start_recording()
            time.sleep(1.0 - (time.monotonic() - now) % 1.0)
        final = jam.status()
    finally:
        if host is not None:
            host.close()
        code = jam.stop()
        jackd.stop()
    log = (tmp / "jackd.log").read_text(errors="replace") if (tmp / "jackd.log").exists() else ""
    ours = len(re.findall(r"client = jamstream was not finished", log))
    others = len(re.findall(r"client = (?!jamstream)\S+ was not finished", log))
    cycles = late_cycles(log)
    first = next((x for x in samples if x["t"] >= 30), samples[0])
    last = samples[-1]
    minutes = (last["t"] - first["t"]) / 60 or 1.0
    lat = [x for x in latencies if x is not None]
    report = {
        "minutes": args.minutes,
        "preset": args.preset,
        "model": "metronome" if args.metronome else (args.lm or "shipped"),
        "period": args.period,
        "cc_per_second": args.cc_rate,
        "jumps": jumps,
        "underruns_after_preroll": final.get("underruns"),
        "starved_periods_incl_preroll": final.get("starved_periods"),
        "xruns_server": final.get("xruns"),
        "xruns_blaming_jamstream": ours,
        "xruns_blaming_other_clients": others,
        "late_cycles": len(cycles),
        "late_cycles_only_jamstream": sum(c["clients"] == ["jamstream"] for c in cycles),
        "late_cycles_every_client": sum(len(c["clients"]) > 1 for c in cycles),
        "late_cycles_driver_late": sum(c["driver_late_us"] is not None for c in cycles),
        "late_cycles_detail": cycles,
        "jam_rss_mb": [first["jam_rss_mb"], last["jam_rss_mb"]],
        "worker_rss_mb": [first["worker_rss_mb"], last["worker_rss_mb"]],
        "jam_rss_slope_mb_per_min": round((last["jam_rss_mb"] - first["jam_rss_mb"]) / minutes, 3),
        "worker_rss_slope_mb_per_min": round((last["worker_rss_mb"] - first["worker_rss_mb"]) / minutes, 3),
        "jack_process_cpu_percent": round(100 * (last["jam_cpu_s"] - first["jam_cpu_s"]) / (last["t"] - first["t"]), 2),
        "worker_cpu_percent": round(100 * (last["worker_cpu_s"] - first["worker_cpu_s"]) / (last["t"] - first["t"]), 2),
        "callback_max_us": final.get("callback_max_us"),
        "callbacks_over_half_period": final.get("callbacks_over_half_period"),
        "callback_entry_max_frames": final.get("callback_entry_max_frames"),
        "rtf": final.get("rtf"),
        "chunks": final.get("chunks"),
        "rejoins": final.get("rejoins"),
        "cc_counts": final.get("cc"),
        "midi_overflow": final.get("midi_overflow"),
        "cc_to_audible_s": {
            "n": len(lat),
            "median": round(float(np.median(lat)), 3) if lat else None,
            "max": round(float(np.max(lat)), 3) if lat else None,
        },
        # one chunk + lookahead, + the smoothing's time to half-way (the step's midpoint is
        # what is detected) + one beat (clicks only sound on beats)
        "bound_s": round(
            max_chunk_seconds(preset)
            + preset.lookahead_ms / 1000
            + preset.smoothing_ms / 1000 * 0.693
            + 60 / preset.bpm,
            3,
        ),
        "exit_code": code,
        "logs": str(tmp),
    }
    print(json.dumps(report, indent=1))
    return 0


def max_chunk_seconds(preset) -> float:
    unit = preset.chunk.count * (preset.meter[0] if preset.chunk.unit == "bar" else 1)
    return unit * 60.0 / preset.bpm


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
    for first, end, weights in sorted(chunks, key=lambda c: c[0]):
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
