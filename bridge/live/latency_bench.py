"""`jamstream bench latency`: how long a knob or a tempo change takes to be heard.

On a private dummy JACK server (bridge/live/jackd_server.py) it runs `jamstream jam` as a
subprocess, and a scripted DAW (bridge/live/host_sim.py's HostSim) is its timebase master,
sends it MIDI and records what it plays, with the JACK frame time of every period. So every
CC is sent at a known JACK frame and every recorded sample has one, and a latency is a
difference of two frame counts - no wall clock is involved. Three phases, one after the
other (a style change moves the level, so it must not overlap the gain flips):

- gain: the preset's gain control (CC) alternates between its top and `gain_step_db` lower.
  The output level (short-window RMS in dB; with the metronome, each click's peak, read on
  the host's beats since between clicks there is only silence) has an old plateau before the
  flip and a new one late in its interval; the latency is from the CC to the first level past
  half-way (in dB) that stays past it. Flips whose plateaus are not clearly apart are counted
  as unmeasured, not guessed.
- style: two slots' CCs step crosswise (A up/B down, then back). The latency is from the CC
  to the first piece heard whose slot weights, as the worker logs them in the status's
  `recent_chunks`, are past half-way to the new mix. What the model makes of a mix
  is the style evals' business; this times the control path.
- tempo: the DAW's tempo goes from `tempo_from` to `tempo_to` on a bar line. With the
  metronome the clicks are the beats jam conditions on: the follow time runs to the first
  click from which every click is within 10 ms of a new-grid beat. With the model, to the
  first piece heard whose logged bpm (the 4th `recent_chunks` element) is the new tempo.

Each flip lands at a random offset within a bar, so the latencies sampled are not locked to
the chunk grid. The bench reports; the targets it is read against are in `TARGETS`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from bridge.live.jackd_server import Jackd, terminate
from model.errors import JamstreamError

if TYPE_CHECKING:
    from bridge.jam.presets import CCBinding, Preset
    from bridge.live.host_sim import HostSim

REPO = Path(__file__).resolve().parents[2]
# What the engine rewrite aims at; the bench prints them beside the figures, never asserts them.
TARGETS = {"cc_to_audible_median_s": 0.3, "cc_to_audible_max_s": 0.5, "tempo_follow_s": 0.5}
LEVEL_WINDOW_S = 0.02  # RMS windows of the level curve
HOLD_S = 0.2  # a crossing counts once the level's running median stays past half-way this long
LATE_FRACTION = 0.5  # a plateau is read over the late half of an interval between flips
MIN_PLATEAU_GAP_DB = 6.0  # plateaus nearer than this: the flip is unmeasured
CLICK_GRID_S = 0.010  # a click within this of a beat is on that grid
BPM_MATCH = 0.005  # a logged bpm within 0.5% of the new tempo is the new tempo
FLOOR_DB = -120.0
SILENCE_DB = -90.0  # a level at or below this is silence: an underrun's, not the music's
MAX_SILENT_FRACTION = 0.2  # more silence than this around a flip: unmeasured


@dataclass
class LatencyBenchConfig:
    """What `jamstream bench latency` measures and against what. Flips alternate, so `flips`
    is the number of CC changes per kind; each interval is `flip_seconds` (+ up to a bar of
    random offset) and must be longer than the latency for the flip to be measured."""

    preset: str = "techno-dub"
    flips: int = 6
    flip_seconds: float = 3.0
    gain_step_db: float = 24.0
    tempo_from: float | None = None  # None: the preset's bpm
    tempo_to: float | None = None  # None: tempo_from x 1.32 (the 100 -> 132)
    tempo_seconds: float = 8.0  # recorded after the tempo change
    period: int = 256
    rate: int = 48000
    lm: str | None = None
    codec: str | None = None
    style: str | None = None
    metronome: bool = False
    threads: int = 1
    seed: int = 0
    ready_timeout_s: float = 300.0

    def check(self) -> None:
        """Refuse what cannot be measured, as one line, before any server starts."""
        for name in ("flips", "flip_seconds", "gain_step_db", "tempo_seconds", "period", "threads"):
            if not getattr(self, name) > 0:
                raise JamstreamError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(self, name):g})")
        for name in ("tempo_from", "tempo_to"):
            value = getattr(self, name)
            if value is not None and not 20 <= value <= 400:
                raise JamstreamError(f"--{name.replace('_', '-')} must be in [20, 400] bpm (got {value:g})")
        if self.flip_seconds < 1.0:
            raise JamstreamError(f"--flip-seconds must be >= 1: a plateau takes time (got {self.flip_seconds:g})")


@dataclass
class Flip:
    """One CC change: the JACK frame it was sent at, the next change's (where its interval
    ends), and which way it went (True: to the high value / to slot B)."""

    at: int
    until: int
    up: bool


# ---------------------------------------------------------------------- MIDI
def cc_bytes(binding: CCBinding, x: float) -> list[bytes]:
    """The CC message(s) that set `binding` to position x in [0, 1]: MSB then LSB for 14-bit."""
    status = 0xB0 | (binding.channel - 1)
    if binding.lsb is None:
        return [bytes([status, binding.number, round(min(1.0, max(0.0, x)) * 127)])]
    v = round(min(1.0, max(0.0, x)) * 16383)
    return [bytes([status, binding.number, v >> 7]), bytes([status, binding.lsb, v & 0x7F])]


def flip_schedule(start: int, n: int, seconds: float, bar_s: float, rate: int, rng: random.Random) -> list[int]:
    """JACK frames of `n` flips after a settling interval, `seconds` apart plus a random offset
    of up to a bar (at most a third of an interval); the last entry closes the last interval."""
    jitter = min(bar_s, seconds / 3)
    times = [start + int((k + 1) * seconds * rate + rng.uniform(0, jitter) * rate) for k in range(n)]
    return times + [start + int((n + 1) * seconds * rate + jitter * rate)]


# ---------------------------------------------------------------------- the recording
class Recording:
    """What the DAW recorded, on JACK frame time: audio from the first recorded period (a
    skipped cycle leaves a hole, not a shift) and the song frame <-> JACK time map."""

    def __init__(self, host: HostSim):
        audio, frames, rolling = host.stop_recording()
        self.rate, self.n = host.rate, host.client.blocksize
        self.t0 = int(host.rec_time[0])
        self.audio, _ = host.on_jack_time(audio)
        keep = rolling.astype(bool)
        self.song = frames[keep].astype(np.int64)
        self.jack = host.rec_time[: len(frames)][keep].astype(np.int64)

    def jack_of_song(self, f: float) -> int | None:
        """The JACK frame time at which song frame `f` was played (None: not while recording)."""
        p = int(np.searchsorted(self.song, f, side="right")) - 1
        if p < 0 or f >= self.song[p] + self.n:
            return None
        return int(self.jack[p] + (f - self.song[p]))

    def index(self, t: int) -> int:
        return int(t - self.t0)


def rms_levels(x: np.ndarray, rate: int, window_s: float = LEVEL_WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
    """(window start sample, RMS in dB) of both channels over consecutive windows."""
    w = max(1, int(window_s * rate))
    n = x.shape[1] // w
    power = np.mean(x[:, : n * w].reshape(x.shape[0], n, w) ** 2, axis=(0, 2))
    return np.arange(n) * w, np.maximum(FLOOR_DB, 10 * np.log10(power + 1e-30))


def click_levels(x: np.ndarray, at: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(sample, peak dB) of the click at each beat (sample indices): the peak over a window
    from 2 ms before to 15 ms after, where the metronome sounds its 10 ms click."""
    lo, hi = int(0.002 * rate), int(0.015 * rate)
    keep = [a for a in at if a - lo >= 0 and a + hi <= x.shape[1]]
    peaks = [np.max(np.abs(x[:, a - lo : a + hi])) for a in keep]
    return np.asarray(keep, np.int64), np.maximum(FLOOR_DB, 20 * np.log10(np.asarray(peaks) + 1e-30))


def level_step(at: np.ndarray, db: np.ndarray, prev: int, flip: int, until: int, rate: int, hold: int) -> dict:
    """One gain flip measured on a level curve (`at` sample, `db` level). A plateau is the
    median over the late part (LATE_FRACTION) of an interval: the old one of the interval
    before the flip (from `prev`), the new one of its own (to `until`). The latency runs to
    the first level past half-way whose running median (over `hold` points) stays past it
    for `hold` points more."""
    before = (at >= flip - int(LATE_FRACTION * (flip - prev))) & (at < flip)
    late = (at >= until - int(LATE_FRACTION * (until - flip))) & (at < until)
    if before.sum() < 2 or late.sum() < 2:
        return {"latency_s": None, "why": "too few level readings around the flip (a longer --flip-seconds)"}
    silent = db <= SILENCE_DB  # digital silence is an underrun (or pre-roll), not the music's level
    if silent[before | late | ((at >= flip) & (at < until))].mean() > MAX_SILENT_FRACTION:
        return {"latency_s": None, "why": "silence around the flip (underruns?)"}
    keep = ~silent
    at, db, before, late = at[keep], db[keep], before[keep], late[keep]
    old, new = float(np.median(db[before])), float(np.median(db[late]))
    out = {"old_db": round(old, 1), "new_db": round(new, 1), "latency_s": None}
    if abs(new - old) < MIN_PLATEAU_GAP_DB:
        return {**out, "why": f"plateaus {abs(new - old):.1f} dB apart (< {MIN_PLATEAU_GAP_DB:g})"}
    half = (old + new) / 2
    sign = 1.0 if new > old else -1.0
    past = sign * (db - half) > 0
    for i in np.flatnonzero((at >= flip) & (at < until)):
        if not past[i]:
            continue
        run = db[i : i + 2 * hold]
        meds = [np.median(run[j : j + hold]) for j in range(max(1, len(run) - hold + 1))]
        if all(sign * (m - half) > 0 for m in meds):
            return {**out, "latency_s": round(float(at[i] - flip) / rate, 3)}
    return {**out, "why": "the level never stayed past half-way before the next flip"}


# ---------------------------------------------------------------------- style and tempo
def mix_share(weights: dict, a: str, b: str) -> float | None:
    """Slot B's share of the A+B mix (None when both are silent)."""
    wa, wb = float(weights.get(a, 0.0)), float(weights.get(b, 0.0))
    return wb / (wa + wb) if wa + wb > 0 else None


def heard_chunks(chunks: dict, rec: Recording) -> list[tuple[int, list]]:
    """(JACK frame its first frame was played at, entry) of every logged chunk the DAW heard, in order."""
    out = []
    for entry in chunks.values():
        t = rec.jack_of_song(entry[0])
        if t is not None:
            out.append((t, entry))
    return sorted(out, key=lambda c: c[0])


def style_step(heard: list[tuple[int, list]], flip: Flip, a: str, b: str, rate: int) -> dict:
    """One crosswise slot step: from the CC to the first chunk heard whose B share is past
    half-way from the share playing at the CC to the target (1 towards B, 0 back to A)."""
    target = 1.0 if flip.up else 0.0
    playing = [mix_share(e[2], a, b) for t, e in heard if t <= flip.at]
    old = next((s for s in reversed(playing) if s is not None), None)
    if old is None:
        return {"latency_s": None, "why": "no chunk heard at the CC"}
    if abs(target - old) < 0.25:
        return {"old_share": round(old, 3), "latency_s": None, "why": "the mix was already near the target"}
    half = (old + target) / 2
    for t, e in heard:
        s = mix_share(e[2], a, b)
        if t >= flip.at and s is not None and (s - half) * (target - old) > 0:
            return {"old_share": round(old, 3), "latency_s": round((t - flip.at) / rate, 3)}
    return {"old_share": round(old, 3), "latency_s": None, "why": "no chunk heard past half-way"}


def click_onsets(x: np.ndarray, threshold: float, min_gap: int = 4800) -> np.ndarray:
    """Sample indices where |x| first crosses `threshold` after at least `min_gap` quiet
    samples (tests/support/clicks.py's detector; the threshold is the caller's so an echo
    effect's repeats stay under it)."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return loud
    return loud[np.concatenate([[True], np.diff(loud) > min_gap])]


def follow_from_clicks(clicks: np.ndarray, beats: np.ndarray, change: int, rate: int) -> tuple[float | None, str]:
    """Seconds from the change (sample) to the first click from which every click sits within
    CLICK_GRID_S of a new-grid beat (samples); with at least three such clicks."""
    clicks = clicks[clicks >= change - int(CLICK_GRID_S * rate)]
    if clicks.size < 3 or beats.size == 0:
        return None, "too few clicks after the tempo change"
    near = np.array([np.min(np.abs(beats - c)) <= CLICK_GRID_S * rate for c in clicks])
    off = np.flatnonzero(~near)
    first = 0 if off.size == 0 else int(off[-1]) + 1
    if clicks.size - first < 3:
        return None, "the clicks were not on the new grid by the end of the recording"
    return round(max(0, int(clicks[first]) - change) / rate, 3), "metronome clicks on the new grid"


def follow_from_bpm(heard: list[tuple[int, list]], change: int, to_bpm: float, rate: int) -> tuple[float | None, str]:
    """Seconds from the change (JACK frame) to the first piece heard whose logged bpm is the new tempo."""
    if not any(len(e) >= 4 for _, e in heard):
        return None, "the worker does not log each piece's bpm yet (recent_chunks has no 4th element)"
    for t, e in heard:
        if t >= change and len(e) >= 4 and e[3] and abs(float(e[3]) / to_bpm - 1) <= BPM_MATCH:
            return round((t - change) / rate, 3), "recent_chunks bpm"
    return None, "no piece heard at the new tempo by the end of the recording"


def summary(latencies: list[float | None]) -> dict:
    found = [x for x in latencies if x is not None]
    return {
        "median_s": round(float(np.median(found)), 3) if found else None,
        "max_s": round(float(np.max(found)), 3) if found else None,
        "measured": len(found),
        "unmeasured": len(latencies) - len(found),
    }


# ---------------------------------------------------------------------- the run
class _Session:
    """The running rig: jackd, `jamstream jam` and the DAW, with the status polled as it goes
    (so no piece the worker logged falls out of its 48-entry window unread)."""

    def __init__(self, cfg: LatencyBenchConfig, preset: Preset, tmp: Path, say: Callable[[str], None]):
        self.cfg, self.preset, self.tmp, self.say = cfg, preset, tmp, say
        self.status_path = tmp / "status.json"
        self.log_path = tmp / "jam.log"
        self.chunks: dict[tuple[int, int], list] = {}
        self.host: HostSim | None = None
        self.jam: subprocess.Popen | None = None
        self.jackd = Jackd(rate=cfg.rate, period=cfg.period, log=tmp / "jackd.log", prefix="jamstream-bench")

    def start_jam(self) -> None:
        cfg = self.cfg
        args = ["--preset", str(self.preset.path), "--sync-timeout", "30", "--threads", str(cfg.threads)]
        if cfg.metronome:
            args.append("--metronome")
        for flag in ("lm", "codec", "style"):
            if getattr(cfg, flag):
                args += [f"--{flag}", str(getattr(cfg, flag))]
        cmd = [sys.executable, "-m", "bridge.cli", "jam", "--server", self.jackd.name, "--name", "jamstream"]
        cmd += ["--quiet", "--json-status", str(self.status_path), "--seed", str(cfg.seed), *args]
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with open(self.log_path, "w") as log:
            self.jam = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def poll(self) -> dict:
        """The latest status, its logged chunks kept (keyed by their frame span)."""
        s = self.status()
        for entry in s.get("recent_chunks") or []:
            self.chunks[(int(entry[0]), int(entry[1]))] = entry
        return s

    def wait_for(self, pred: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.jam.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise JamstreamError(
                    f"jam exited ({self.jam.returncode}) waiting for {what}; log {self.log_path}: {tail!r}"
                )
            s = self.poll()
            if s and pred(s):
                return s
            time.sleep(0.1)
        raise JamstreamError(f"timed out after {timeout:g} s waiting for {what}; log {self.log_path}")

    def sleep_until(self, jack_frame: int) -> None:
        """Sleep (polling the status) until the server's frame time passes `jack_frame`."""
        while True:
            left = (jack_frame - self.host.client.frame_time) / self.host.rate
            if left <= 0:
                return
            if self.jam.poll() is not None:
                raise JamstreamError(f"jam exited ({self.jam.returncode}) during the bench; log {self.log_path}")
            self.poll()
            time.sleep(min(0.25, left))

    def close(self) -> int | None:
        """Stop the DAW, jam (SIGTERM, SIGKILL after 20 s) and jackd, whatever happened; jam's exit code."""
        if self.host is not None:
            self.host.close()
        code = terminate(self.jam, 20.0)
        self.jackd.stop()
        return code


def bar_seconds(preset: Preset, bpm: float) -> float:
    return preset.meter[0] * 4.0 / preset.meter[1] * 60.0 / bpm


def run_latency_bench(cfg: LatencyBenchConfig, say: Callable[[str], None] = lambda _m: None) -> dict:
    """The whole measurement (a private server, jam, the DAW, three phases) and its report."""
    from bridge.jam.presets import find_preset

    cfg.check()
    preset = find_preset(cfg.preset)
    if len(preset.slots) < 2:
        raise JamstreamError(f"{preset.path}: the style flips need two slots (it has {len(preset.slots)})")
    bpm_from = cfg.tempo_from or preset.bpm
    bpm_to = cfg.tempo_to or round(bpm_from * 1.32, 3)
    tmp = Path(tempfile.mkdtemp(prefix="jamstream-bench-latency-"))
    say(f"bench latency: private JACK server, jam log in {tmp}")
    session = _Session(cfg, preset, tmp, say)
    gc.freeze()  # the DAW's callback is Python in this process: keep full collections off its thread
    gc.disable()
    try:
        session.start_jam()
        plan = _play(session, bpm_from, bpm_to)
        final = session.poll()
    finally:
        gc.enable()
        gc.unfreeze()
        code = session.close()
    say("bench latency: analysing")
    return _report(cfg, preset, session, plan, final, code, bpm_from, bpm_to)


def _play(session: _Session, bpm_from: float, bpm_to: float) -> dict:
    """Roll the DAW and send the three phases' events; what was sent, and the recording."""
    from bridge.live.host_sim import HostSim

    cfg, preset, say = session.cfg, session.preset, session.say
    say("bench latency: loading the generator")
    session.wait_for(lambda s: s.get("ready"), cfg.ready_timeout_s, "the generator to be ready")
    bar_s = bar_seconds(preset, bpm_from)
    phase_s = (cfg.flips + 2) * cfg.flip_seconds + bar_s
    total = 2 + 2 * phase_s + 2 * bar_s + cfg.tempo_seconds + 10
    host = HostSim("bench-daw", server=session.jackd.name, bpm=bpm_from, meter=preset.meter, record_seconds=total)
    session.host = host
    host.connect_from()
    host.client.transport_frame = 0
    time.sleep(0.3)
    host.start_recording()
    host.client.transport_start()
    session.wait_for(lambda s: s.get("rolling") and s.get("chunks", 0) > 0, 60, "the transport to roll")
    rate = host.rate
    rng = random.Random(cfg.seed)
    plan: dict = {"rate": rate}

    gain = preset.controls.get("gain")
    if gain is not None:
        hi_x = 1.0
        lo_x = gain.position(max(gain.min, gain.max - cfg.gain_step_db))
        hi_x, lo_x = round(hi_x * 127) / 127, round(lo_x * 127) / 127  # what a 7-bit CC can say
        times = flip_schedule(host.client.frame_time + rate // 5, cfg.flips, cfg.flip_seconds, bar_s, rate, rng)
        start = times[0] - int(cfg.flip_seconds * rate)
        events = [(start, m) for m in cc_bytes(gain.cc, hi_x)]
        flips = [Flip(t, times[k + 1], up=k % 2 == 1) for k, t in enumerate(times[:-1])]
        for f in flips:
            events += [(f.at, m) for m in cc_bytes(gain.cc, hi_x if f.up else lo_x)]
        events += [(times[-1], m) for m in cc_bytes(gain.cc, gain.position(gain.initial))]  # back where it began
        host.send_at(events)
        plan["gain"] = {
            "settle": start,
            "flips": flips,
            "values_db": [round(gain.value(hi_x), 2), round(gain.value(lo_x), 2)],
        }
        for k, f in enumerate(flips):
            say(f"bench latency: gain flip {k + 1}/{len(flips)} ({'up' if f.up else 'down'})")
            session.sleep_until(f.at)
        session.sleep_until(times[-1])

    a, b = preset.slots[0], preset.slots[1]
    times = flip_schedule(host.client.frame_time + rate // 5, cfg.flips, cfg.flip_seconds, bar_s, rate, rng)
    start = times[0] - int(cfg.flip_seconds * rate)
    events = [(start, m) for m in cc_bytes(a.cc, 1.0) + cc_bytes(b.cc, 0.0)]
    flips = [Flip(t, times[k + 1], up=k % 2 == 0) for k, t in enumerate(times[:-1])]
    for f in flips:
        events += [(f.at, m) for m in cc_bytes(a.cc, 0.0 if f.up else 1.0) + cc_bytes(b.cc, 1.0 if f.up else 0.0)]
    host.send_at(events)
    plan["style"] = {"flips": flips, "slots": [a.name, b.name]}
    for k, f in enumerate(flips):
        say(f"bench latency: style flip {k + 1}/{len(flips)} ({a.name if not f.up else b.name})")
        session.sleep_until(f.at)
    session.sleep_until(times[-1])

    # the tempo change on the bar line at least a bar ahead, where the DAW's map says it is
    _, pos = host.client.transport_query_struct()
    beats = host.beats_at(pos.frame + int(bar_s * rate))
    bar = math.ceil(beats / preset.meter[0] + 1e-9) + 1
    change_song = host.frame_at_bar(bar)
    change_jack = host.client.frame_time + (change_song - pos.frame)  # near enough to sleep on
    host.set_tempo(bpm_to, change_song)
    say(f"bench latency: tempo {bpm_from:g} -> {bpm_to:g} bpm at bar {bar}")
    session.sleep_until(change_jack + int(cfg.tempo_seconds * rate))
    plan["recording"] = rec = Recording(host)
    plan["tempo"] = {"change_song": change_song, "change_jack": rec.jack_of_song(change_song) or change_jack}
    return plan


def _report(
    cfg: LatencyBenchConfig,
    preset: Preset,
    session: _Session,
    plan: dict,
    final: dict,
    code: int | None,
    bpm_from: float,
    bpm_to: float,
) -> dict:
    """The figures from the recording and the logged chunks, with the status's counters."""
    rec: Recording = plan["recording"]
    rate = rec.rate
    host = session.host
    heard = heard_chunks(session.chunks, rec)

    gain_rows, gain_note = [], None
    if "gain" in plan:
        if cfg.metronome:  # clicks on the beats, silence between them: read the level at each click
            song_beats = host.beat_frames(int(rec.song[0]), plan["tempo"]["change_song"])
            at = [rec.jack_of_song(f) for f in song_beats]
            at = np.array([rec.index(t) for t in at if t is not None], np.int64)
            at, db = click_levels(rec.audio, at, rate)
            hold = 2
        else:
            at, db = rms_levels(rec.audio, rate)
            hold = max(1, int(HOLD_S / LEVEL_WINDOW_S))
        prev = plan["gain"]["settle"]
        for f in plan["gain"]["flips"]:
            row = level_step(at, db, rec.index(prev), rec.index(f.at), rec.index(f.until), rate, hold)
            prev = f.at
            gain_rows.append({"at_s": round((f.at - rec.t0) / rate, 3), "up": f.up, **row})
    else:
        gain_note = f"preset {preset.name!r} has no gain control: no gain flips"

    a, b = plan["style"]["slots"]
    style_rows = []
    for f in plan["style"]["flips"]:
        row = style_step(heard, f, a, b, rate)
        style_rows.append({"at_s": round((f.at - rec.t0) / rate, 3), "to": b if f.up else a, **row})

    change = plan["tempo"]["change_jack"]
    if cfg.metronome:
        x = rec.audio[0, rec.index(change) - rate :]
        threshold = max(0.01, 0.3 * float(np.max(np.abs(x)))) if x.size else 0.05
        clicks = click_onsets(x, threshold) + rec.index(change) - rate
        song_beats = host.beat_frames(plan["tempo"]["change_song"], int(rec.song[-1]) + rec.n)
        beats = [rec.jack_of_song(f) for f in song_beats]
        beats = np.array([rec.index(t) for t in beats if t is not None], np.float64)
        follow, how = follow_from_clicks(clicks, beats, rec.index(change), rate)
    else:
        follow, how = follow_from_bpm(heard, change, bpm_to, rate)

    gain_lat = [r["latency_s"] for r in gain_rows]
    style_lat = [r["latency_s"] for r in style_rows]
    both = summary(gain_lat + style_lat)
    g, s = summary(gain_lat), summary(style_lat)
    warnings = []
    if final.get("rtf") is not None and 0 < final["rtf"] < 1:
        warnings.append(
            f"generation ran at {final['rtf']:g}x real time here: the ring drains, and the latencies "
            "include catching up (a busy or slow machine), not only the engine's design"
        )
    if final.get("underruns"):
        warnings.append(f"{final['underruns']} underruns: flips with silence around them are unmeasured")
    log = (session.tmp / "jackd.log").read_text(errors="replace") if (session.tmp / "jackd.log").exists() else ""
    return {
        "preset": preset.name,
        "model": "metronome" if cfg.metronome else (cfg.lm or "shipped"),
        "cc_to_audible_median_s": both["median_s"],
        "cc_to_audible_max_s": both["max_s"],
        "cc_to_audible_measured": both["measured"],
        "cc_to_audible_unmeasured": both["unmeasured"],
        "gain_median_s": g["median_s"] if gain_rows else None,
        "gain_max_s": g["max_s"] if gain_rows else None,
        "gain_measured": g["measured"],
        "gain_unmeasured": g["unmeasured"],
        "gain_note": gain_note,
        "gain_cc": str(preset.controls["gain"].cc) if "gain" in plan else None,
        "gain_values_db": plan["gain"]["values_db"] if "gain" in plan else None,
        "gain_level": "click peaks on the beats" if cfg.metronome else f"{LEVEL_WINDOW_S * 1000:g} ms RMS",
        "gain_flips": gain_rows,
        "style_median_s": s["median_s"],
        "style_max_s": s["max_s"],
        "style_measured": s["measured"],
        "style_unmeasured": s["unmeasured"],
        "style_slots": [a, b],
        "style_flips": style_rows,
        "tempo_from": bpm_from,
        "tempo_to": bpm_to,
        "tempo_follow_s": follow,
        "tempo_follow_method": how if follow is not None else None,
        "tempo_follow_note": None if follow is not None else how,
        "underruns": final.get("underruns"),
        "xruns": final.get("xruns"),
        "xruns_blaming_jamstream": len(re.findall(r"client = jamstream was not finished", log)),
        "rtf": final.get("rtf"),
        "lookahead_ms": final.get("lookahead_ms"),
        "piece_frames": final.get("piece_frames"),
        "margin_ms": final.get("margin_ms"),
        "latency_frames": final.get("latency_frames"),
        "smoothing_ms": preset.smoothing_ms,
        # the controls' one-pole smoothing reaches half-way after ln 2 time constants: a floor
        # under any measured half-way latency, by design
        "smoothing_half_s": round(preset.smoothing_ms / 1000 * math.log(2), 3),
        "targets": TARGETS,
        "warnings": warnings,
        "config": asdict(cfg),
        "jam_exit_code": code,
        "log_dir": str(session.tmp),
    }
