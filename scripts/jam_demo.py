"""`make run`'s main job: play `jamstream jam` briefly and record what it played.

Starts a private dummy JACK server when none is running (so it works on any machine,
headless CI included), runs `jamstream jam --preset P` against it, and plays the DAW with
bridge.host_sim.HostSim: timebase master at the preset's tempo, transport start, a CC
crossfade from slot A to slot B, and a recorder on jamstream's outputs. Writes
OUT/jam-demo.wav (what the DAW heard, on the song timeline) and OUT/status.json, and
prints a summary. Falls back to `--metronome` (with a note) while no LM weights are
shipped. Exit code: jam's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.live.jackd_server import Jackd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def server_running(name: str | None) -> bool:
    """Whether a JACK server `name` runs: a client opened and closed at once (silently)."""
    from bridge.live.jackd_server import client_can_open

    return client_can_open(name)


def jam_arguments(args: argparse.Namespace) -> list[str]:
    """`jamstream jam`'s arguments; the metronome (with a note) while no LM weights are shipped."""
    jam_args = ["--preset", args.preset, "--sync-timeout", "30", "--quiet"]
    if args.lm:
        jam_args += ["--lm", args.lm]
    elif not args.metronome and not (REPO / "model" / "weights" / "lm.safetensors").is_file():
        print(
            "jam-demo: no shipped LM weights yet (model/weights/lm.safetensors): playing the metronome instead "
            "(set JAMSTREAM_LM=path/to/lm.safetensors to hear a trained model)",
            file=sys.stderr,
        )
        args.metronome = True
    if args.metronome:
        jam_args.append("--metronome")
    return jam_args


def start_server() -> Jackd | None:
    """A private dummy JACK server (bridge.live.jackd_server.Jackd), started and answering;
    None (with a one-line reason) when jackd is missing or never came up."""
    from bridge.live.jackd_server import Jackd
    from model.errors import JamstreamError

    try:
        jackd = Jackd(rate=48000, period=256, prefix="jamstream-demo")
    except JamstreamError as exc:
        print(f"jam-demo: no JACK server is running and {exc}", file=sys.stderr)
        return None
    print(f"jam-demo: started a dummy JACK server {jackd.name!r} (48 kHz, 256-frame periods)", file=sys.stderr)
    return jackd


def wait_until_ready(jam: subprocess.Popen, status_path: Path) -> bool:
    """Until jam's status says its worker is ready (False: jam exited first)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if jam.poll() is not None:
            return False
        try:
            if json.loads(status_path.read_text()).get("ready"):
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    return True


def play(host, preset, seconds: float):
    """Roll the transport for `seconds` with a CC crossfade from slot A to B in the middle
    third; what the DAW recorded, laid on the song timeline."""
    host.connect_from()
    host.client.transport_frame = 0
    time.sleep(0.3)
    host.start_recording()
    host.client.transport_start()
    a, b = preset.slots[0].cc, preset.slots[1].cc
    third = seconds / 3
    host.schedule_cc_sweep(a.channel, a.number, third, third, 127, 0)  # A out
    host.schedule_cc_sweep(b.channel, b.number, third, third, 0, 127)  # B in (MSB; 14-bit LSB stays 0)
    print(
        f"jam-demo: playing {seconds:g} s of {preset.name!r} at {preset.bpm:g} bpm, crossfading "
        f"{preset.slots[0].name} -> {preset.slots[1].name}...",
        file=sys.stderr,
    )
    time.sleep(seconds)
    host.client.transport_stop()
    time.sleep(0.2)
    audio, frames, rolling = host.stop_recording()
    return host.on_timeline(audio, frames, rolling, int(frames[rolling.astype(bool)].max()) + host.client.blocksize)


def stop(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Signal `proc` (if it still runs) and wait for it; kill it after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="techno-dub")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the DAW plays")
    ap.add_argument("--out", default="jam-demo", help="output directory")
    ap.add_argument("--lm", default=os.environ.get("JAMSTREAM_LM"), help="LM weights (default: shipped; $JAMSTREAM_LM)")
    ap.add_argument("--metronome", action="store_true", help="clicks instead of the model")
    args = ap.parse_args()

    from bridge.jam.presets import find_preset
    from bridge.live.host_sim import HostSim
    from model.io.audio import write_audio

    preset = find_preset(args.preset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jam_args = jam_arguments(args)
    jackd = None
    server = os.environ.get("JACK_DEFAULT_SERVER")
    own = not server_running(server)
    if own:
        jackd = start_server()
        if jackd is None:
            return 2
        server = jackd.name
    status_path = out / "status.json"
    status_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bridge.cli", "jam", "--json-status", str(status_path), *jam_args]
    if server:
        cmd += ["--server", server]
    jam = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    host = None
    try:
        if not wait_until_ready(jam, status_path):
            return jam.returncode
        host = HostSim(
            "jamstream-demo-daw",
            server=server,
            bpm=preset.bpm,
            meter=preset.meter,
            record_seconds=args.seconds + 5,
            timebase=own,
        )
        song = play(host, preset, args.seconds)
        wav = out / "jam-demo.wav"
        write_audio(wav, song, host.rate)
        status = json.loads(status_path.read_text())
        jam.send_signal(signal.SIGTERM)
        code = jam.wait(timeout=30)
        keys = ("bar", "bpm", "clock", "weights", "rtf", "underruns", "xruns", "latency_frames", "chunks")
        print(json.dumps({k: status.get(k) for k in keys}))
        print(
            f"jam-demo: recorded {song.shape[1] / host.rate:.1f} s to {wav} (jamstream exit code {code})",
            file=sys.stderr,
        )
        return code
    finally:
        if host is not None:
            host.close()
        stop(jam, signal.SIGTERM, 30)
        if jackd is not None:
            jackd.stop()


if __name__ == "__main__":
    sys.exit(main())
