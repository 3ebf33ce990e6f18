"""Ardour 7 headless: a session with the plugin on a MIDI track (ardour7-lua), rendered
by `ardour7-export` - what ../shared/notes/ardour-headless.md verified works on Debian 12."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from support.plugin import URI, built_bundle, need

SUPERCLOCK_PER_SECOND = 282_240_000  # Ardour 7's position unit

SESSION_LUA = """
local s = create_session("{dir}", "{name}", {rate})
assert(s, "could not create the session")
local tm = Temporal.TempoMap.write_copy()
tm:set_tempo(Temporal.Tempo({bpm}, {bpm}, 4), Temporal.timepos_t(0))
Temporal.TempoMap.update(tm)
local info = ARDOUR.LuaAPI.new_plugin_info("{uri}", ARDOUR.PluginType.LV2)
assert(not info:isnil(), "the jamstream plugin is not on LV2_PATH")
local tracks = s:new_midi_track(ARDOUR.ChanCount(ARDOUR.DataType("midi"), 1),
  ARDOUR.ChanCount(ARDOUR.DataType("audio"), 2), true, info, nil, nil, 1, "music",
  ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true, false)
assert(tracks:size() == 1, "no track")
-- Ardour connects a new track to the master in its auto-connect thread: a session saved
-- before that thread ran had a track playing into nothing (measured: 1 export in 3 silent)
local route = tracks:front()
for c = 0, 1 do
  local out, master = route:output():audio(c), s:master_out():input():audio(c)
  if not out:connected_to(master:name()) then out:connect(master:name()) end
end
ARDOUR.LuaAPI.usleep(200000)
s:save_state("", false, false, false, false, false)
close_session()
"""


def make_session(tmp: Path, name: str, bpm: float, seconds: float, env: dict, rate: int = 48000) -> Path:
    """A session NAME in tmp/NAME at `bpm`, one MIDI track holding the plugin (its state saved
    from the plugin's defaults in `env`), with a session range 0..`seconds`."""
    need("ardour7-lua")
    folder = tmp / name
    script = tmp / f"{name}.lua"
    script.write_text(SESSION_LUA.format(dir=folder, name=name, rate=rate, bpm=bpm, uri=URI))
    env = dict(env, LV2_PATH=str(built_bundle()))
    session = folder / f"{name}.ardour"
    for _ in range(3):  # ardour7-lua 7.3 itself aborts now and then registering the new track's ports
        # ("Port already exists", measured 2 in ~20 runs, before the plugin runs): a fresh try is its cure
        shutil.rmtree(folder, ignore_errors=True)
        done = subprocess.run(["ardour7-lua", str(script)], capture_output=True, text=True, env=env, timeout=300)
        if done.returncode == 0 or "Port already exists" not in done.stdout + done.stderr:
            break
    assert done.returncode == 0 and session.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    # Lua cannot set the session range in 7.3: write it into the file (see the notes)
    end = int(round(seconds * SUPERCLOCK_PER_SECOND))
    text = session.read_text()
    assert text.count('<Connection other="Master/audio_in') == 2, "the track is not connected to the master bus"
    location = (
        f'<Location id="990001" name="session" start="a0" end="a{end}" flags="IsSessionRange" '
        'locked="0" timestamp="0" cue="0"/>'
    )
    text, n = re.subn(r"<Locations\s*/>", f"<Locations>{location}</Locations>", text)
    assert n == 1, "the session has no empty <Locations/> to fill"
    session.write_text(text)
    return folder


# glibc's words when it aborts on a corrupted heap
HEAP_ABORT = re.compile(r"free\(\): invalid|munmap_chunk\(\)|double free or corruption|corrupted (size|double-linked)")


# ardour7-export's main loop prints its progress every second while an export runs (also while
# the plugin waits for the generator): this long without a byte of output is a hang
HANG_S = 60.0


def _run_export(cmd: list[str], env: dict, logs: Path, timeout: float) -> tuple[int | None, str, str]:
    """One `ardour7-export`: (returncode, stdout, stderr), returncode None when it hung (killed)."""
    out_log, err_log = logs.with_suffix(".stdout"), logs.with_suffix(".stderr")
    with open(out_log, "wb") as out, open(err_log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        start = last = time.monotonic()
        size, hung = 0, False
        while proc.poll() is None:
            time.sleep(0.2)
            now = time.monotonic()
            grown = out_log.stat().st_size
            if grown != size:
                size, last = grown, now
            hung = now - last > HANG_S or now - start > timeout
            if hung:
                proc.kill()
                proc.wait()
    return (None if hung else proc.returncode), out_log.read_text(errors="replace"), err_log.read_text(errors="replace")


def export(folder: Path, out: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """`ardour7-export -o OUT FOLDER NAME`: the session range through the master, in freewheel.

    ardour7-export 7.3 has two faults of its own that a fresh export cures, and gets one:
    - now and then it aborts in free() as it tears the export down (its core:
      ~PortExportChannel freeing its buffer from main(), after the process thread ran the last
      cycle). Through Ardour's LV2 log our lines made that 1 export in 9 (the plugin now logs to
      stderr in Ardour); without them it was 1 in ~100 here (3 in 5 on a CI machine), with the
      plugin writing nothing of Ardour's but the buffers run() is handed, and valgrind finding no
      bad access;
    - under load it can hang before the export begins (measured: 1 export in 24 beside three CPU
      hogs on 2 cores; gdb: main in Session::start_audio_export -> Butler::wait_until_finished,
      the butler in butler_transport_work, the process thread idle, the plugin's run() called
      once): no progress line for HANG_S seconds is that hang.
    As make_session retries ardour7-lua's own aborts; any other failure fails, saying how."""
    need("ardour7-export")
    env = dict(env, LV2_PATH=str(built_bundle()))
    cmd = ["ardour7-export", "-o", str(out), str(folder), folder.name]
    for attempt in range(3):
        out.unlink(missing_ok=True)
        code, stdout, stderr = _run_export(cmd, env, out.with_name(f"{out.stem}-try{attempt}"), timeout)
        if code is None:
            print(f"ardour7-export printed nothing for {HANG_S:g} s (its start-of-export hang): exporting again")
            continue
        heap = HEAP_ABORT.search(stdout + stderr)
        if not (code in (-signal.SIGABRT, 128 + signal.SIGABRT) and heap):
            break
        print(f"ardour7-export aborted on its heap ({heap[0]}): exporting again")
    how = "hung" if code is None else f"exit status {code}"
    assert code == 0 and out.exists(), f"ardour7-export: {how}\n{stdout[-2000:]}{stderr[-2000:]}"
    return subprocess.CompletedProcess(cmd, code, stdout, stderr)


def base_env(socket: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAMSTREAM_")}
    env["JAMSTREAM_SOCKET"] = str(socket)
    env.update(extra)
    return env
