"""Soak the LV2 plugin: jalv instances on a private dummy JACK server, one `jamstream serve`.

    .venv/bin/python scripts/soak_plugin.py --minutes 10                       # the model, 256-frame periods
    .venv/bin/python scripts/soak_plugin.py --minutes 5 --instances 2          # two presets, one daemon
    .venv/bin/python scripts/soak_plugin.py --minutes 1 --mode metronome       # the rig alone

A HostSim (bridge/live/host_sim.py) is JACK's timebase master at the first preset's tempo
and rolls the transport for the whole soak; each jalv runs the plugin with its own preset
(`JAMSTREAM_PRESET`) and records nothing - the daemon's per-instance counters say what the
host heard. Reported (JSON on stdout):
- underruns after pre-roll per instance (the plugin's own counter, as the JACK bridge's);
- xruns jackd blames on a jalv client ("client = NAME was not finished" in its log) and
  all xruns it saw;
- RSS of every jalv and of the daemon every 10 s: first sample after the warm-up minute
  vs last, and the least-squares slope in MB/min;
- the longest run() the plugin measured (ctl CB_MAX_US) and the daemon's CPU share.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PRESETS = ("techno-dub", "jazz-trio-bossa")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def slope(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return 0.0
    t = np.array([s[0] for s in samples]) / 60.0
    y = np.array([s[1] for s in samples])
    return float(np.polyfit(t, y, 1)[0])


def rss_windows(samples: list[tuple[float, float]], minutes: float = 5.0) -> dict:
    """Peak and floor of (t s, MB) samples in each `minutes` window, and the peaks' slope
    (MB/min): a generator's RSS swings ~50 MB within seconds (a chunk's transient tensors
    come and go), so a line through every sample mostly measures where the swings fell; a
    heap that grows shows as rising peaks and floors."""
    peaks, floors = [], []
    # whole windows only: a last one of a sample or two would read as a step
    for k in range(int(samples[-1][0] // (60 * minutes)) if samples else 0):
        inside = [mb for t, mb in samples if k * 60 * minutes <= t < (k + 1) * 60 * minutes]
        if inside:
            peaks.append(round(max(inside), 1))
            floors.append(round(min(inside), 1))
    settled = [(k * 60 * minutes, peak) for k, peak in enumerate(peaks)][1:]  # the first window is the warm-up
    return {"peak_mb": peaks, "floor_mb": floors, "peak_slope_mb_per_min": round(slope(settled), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--instances", type=int, default=1, choices=(1, 2))
    ap.add_argument("--mode", choices=("model", "metronome"), default="model")
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--warmup-s", type=float, default=60.0, help="memory is compared from this far in")
    ap.add_argument("--threads", type=int, default=1, help="the daemon's torch threads per generator")
    args = ap.parse_args()

    from support.jackd import Jackd
    from support.plugin import Jalv, plugin_env
    from support.rig import wait_until
    from support.serve import Serve

    from bridge.jam.presets import find_preset
    from bridge.live.host_sim import HostSim

    tmp = Path(tempfile.mkdtemp(prefix="soak-plugin-"))
    log = tmp / "jackd.log"
    os.environ["JAMTEST_JACKD_LOG"] = str(log)
    jackd = Jackd(rate=48000, period=args.period)
    serve = Serve(tmp, "--threads", str(args.threads))
    host = HostSim(server=jackd.name, bpm=find_preset(PRESETS[0]).bpm, record_seconds=1)
    jalvs = []
    try:
        for k in range(args.instances):
            env = plugin_env(jackd.name, serve.socket, JAMSTREAM_MODE=args.mode, JAMSTREAM_PRESET=PRESETS[k])
            jalvs.append(Jalv(tmp, f"jsplug{k + 1}", env))
        for j in jalvs:
            j.wait_log(r"ready: latency \d+ frames", 300)
        status = serve.wait_for(lambda s: len(s["instances"]) == args.instances, 30, "every instance")
        print(
            f"soak: {args.instances} instance(s), {args.mode}, period {args.period}; rolling for "
            f"{args.minutes:g} min (logs in {tmp})",
            file=sys.stderr,
        )
        host.client.transport_frame = 0
        host.client.transport_start()
        t0 = time.monotonic()
        cpu0 = cpu_s(serve.proc.pid)
        mem: dict[str, list[tuple[float, float]]] = {"daemon": []}
        for j in jalvs:
            mem[j.name] = []
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(10)
            t = time.monotonic() - t0
            mem["daemon"].append((t, rss_mb(serve.proc.pid)))
            for j in jalvs:
                mem[j.name].append((t, rss_mb(j.proc.pid)))
            status = serve.status()
            lines = [f"{i['name']}: {i['underruns']} underruns, {i.get('pieces')} pieces" for i in status["instances"]]
            print(f"  {t / 60:4.1f} min: " + "; ".join(lines), file=sys.stderr)
        cpu = (cpu_s(serve.proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        status = serve.status()
        host.client.transport_stop()
        wait_until(lambda: True, 1, "")
    finally:
        for j in jalvs:
            j.close()
        host.close()
        serve.stop()
        jackd.stop()
    (tmp / "memory.json").write_text(json.dumps(mem))  # every sample, for a closer look than the report's
    text = log.read_text(errors="replace") if log.exists() else ""
    report = {
        "minutes": args.minutes,
        "mode": args.mode,
        "period": args.period,
        "threads": args.threads,
        "instances": [
            {
                "name": i["name"],
                "preset": i["preset"],
                "underruns": i["underruns"],
                "starved_periods": i["starved_periods"],
                "pieces": i.get("pieces"),
                "lookahead_ms": i.get("lookahead_ms"),
                "late_pieces": i.get("late_pieces"),
                "run_max_us": i["cb_max_us"],
                "runs_over_half_a_period": i["cb_slow"],
            }
            for i in status["instances"]
        ],
        "xruns_total": len(re.findall(r"(?i)xrun", text)),
        "xruns_blamed_on_jalv": {j.name: len(re.findall(rf"client = {j.name} was not finished", text)) for j in jalvs},
        "daemon_cpu_percent_of_one_core": round(cpu, 1),
        "memory_mb": {
            name: {
                "first": round(next((m for tt, m in s if tt >= args.warmup_s), s[0][1] if s else 0), 1),
                "last": round(s[-1][1], 1) if s else None,
                "slope_mb_per_min": round(slope([x for x in s if x[0] >= args.warmup_s]), 3),
                "windows_5min": rss_windows(s),
            }
            for name, s in mem.items()
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
