"""`jamstream jam` with the real model against a private dummy JACK server.

A test client is the DAW: timebase master at 120 bpm 4/4, starts the transport, sweeps
a CC from slot A (rock) to slot B (swing jazz) and records our outputs for 20 s. Needs the
shipped LM (model/weights/lm.safetensors) or JAMSTREAM_TEST_LM=path; the beat-alignment
figure depends on how well the trained LM learned tempo conditioning.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from netns import network_sockets, process_tree
from support.jackd import need_jackd
from support.rig import Rig, play_from

pytestmark = pytest.mark.slow
PRESET = Path(__file__).parent / "data" / "drums.toml"
SECONDS = 20.0


def lm_args() -> list[str]:
    path = os.environ.get("JAMSTREAM_TEST_LM")
    if path:
        return ["--lm", path]
    from model.weights import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "lm.safetensors").is_file():
        pytest.skip("no shipped LM weights (model/weights/lm.safetensors); set JAMSTREAM_TEST_LM to a checkpoint")
    return []


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    need_jackd()
    args = lm_args()
    tmp = tmp_path_factory.mktemp("jam-model")
    with Rig(
        tmp, ["--preset", str(PRESET), "--sync-timeout", "30", *args], ready_timeout=240, record_seconds=SECONDS + 5
    ) as rig:
        host, jam = rig.host, rig.jam
        play_from(host, 0, jam)
        # The pre-roll: start once the pieces the start needs (up to the lookahead) are in the
        # ring (the worker makes them while stopped). The slow-sync callback alone would let
        # the transport roll after the first piece, and on a loaded machine the rest - the
        # first inferences, the slowest - then race the playhead; what is measured is the
        # steady state after.
        jam.wait_for(
            lambda s: (
                s.get("pieces", 0) >= 1
                and not s["rolling"]
                and s["song_frame"] == 0
                and s["buffer_fill"] >= s["lookahead_ms"] / 1000
            ),
            120,
            "the start's pieces in the ring",
        )
        host.start_recording()
        host.client.transport_start()
        host.schedule_cc_sweep(1, 21, 6.0, 4.0, 0, 127)  # B in over 6-10 s
        host.schedule_cc_sweep(1, 20, 6.0, 4.0, 127, 0)  # A out
        time.sleep(SECONDS)
        audio, frames, rolling = host.stop_recording()
        status = jam.status()
        print(
            f"model jam: rtf {status['rtf']}, slowest piece {status['max_chunk_seconds']} s, "
            f"underruns {status['underruns']}, starved periods {status['starved_periods']}"
        )
        sockets = {pid: network_sockets(pid) for pid in process_tree(jam.proc.pid)}
        end = int(frames[rolling.astype(bool)].max())
        timeline = host.on_timeline(audio, frames, rolling, end)
        first = int(np.flatnonzero(rolling)[0])
        yield {
            "timeline": timeline,
            "status": status,
            "rate": host.rate,
            "host": host,
            "first_rolling_period": first,
            "sockets": sockets,
        }


REAL_TIME_RTF = 1.12  # the auto pacing's threshold for pieces shorter than 6 frames


def skip_unless_real_time(s: dict) -> None:
    """Whether the machine generated this model in real time during the take. Below that,
    underruns are the machine's speed, which is `jamstream bench`'s and the soak's to measure
    (speed targets are never timed tests); at or above it, an underrun is the bridge's fault.
    Seen on this 2-core VM on one day: rtf 0.73-1.7 for the same code, minutes apart. Real
    time needs headroom, not just rtf 1: the worker generates each piece just in time, so at
    rtf 1.03 (27 underruns in one CI run) the pieces' jitter alone outruns any lookahead that
    is still short; REAL_TIME_RTF is the margin the auto pacing plans for (bridge/jam/pacing.py)."""
    if (s["rtf"] or 0) < REAL_TIME_RTF:
        pytest.skip(
            f"this machine did not generate with real-time headroom during the take (rtf {s['rtf']} < "
            f"{REAL_TIME_RTF}, slowest piece "
            f"{s['max_chunk_seconds']} s): its {s['underruns']} underruns measure the CPU, not the bridge"
        )


def test_plays_without_underruns_after_the_pre_roll(played):
    tl, rate, s = played["timeline"], played["rate"], played["status"]
    skip_unless_real_time(s)
    assert s["underruns"] == 0, (
        f"{s['underruns']} underruns at rtf {s['rtf']}, slowest piece {s['max_chunk_seconds']} s",
        s,
    )
    assert s["clock"] == "jack-bbt" and s["bpm"] == pytest.approx(120.0)
    windows = [tl[:, k : k + rate // 2] for k in range(rate // 2, tl.shape[1] - rate // 2, rate // 2)]
    quiet = [i for i, w in enumerate(windows) if np.sqrt(np.mean(w**2)) < 1e-3]
    assert not quiet, f"silent half-seconds after the pre-roll at {[(i + 1) / 2 for i in quiet]} s"


def test_jam_with_the_model_and_no_link_opens_no_network_socket(played):
    """Text prompts, the style encoder and the LM load from local files; without --link the
    bridge and its generator process hold only unix sockets and pipes (JACK's included)."""
    sockets = played["sockets"]
    assert len(sockets) >= 2, sockets  # the bridge and its generator process, at least
    assert all(found == [] for found in sockets.values()), sockets


def test_style_moves_with_the_cc(played):
    from model.style.network import load_style

    tl, rate, s = played["timeline"], played["rate"], played["status"]
    assert s["weights"]["B"] > 0.9 and s["weights"]["A"] < 0.1, s["weights"]
    # The windows below are wall-clock seconds around the CC sweep: below real time (CI once
    # at rtf 0.52, 13 underruns) what plays at 13-19 s was generated before the sweep reached
    # the model, and the lean measured the CPU (-0.357 before, -0.358 after).
    skip_unless_real_time(s)
    style = load_style()
    text = style.embed_text(
        [
            "gritty rock band, distorted guitars, bass and drums",
            "laid-back swing jazz trio, piano, upright bass and brushed drums",
        ]
    )
    before = style.embed_audio(tl[:, 1 * rate : 6 * rate], rate)
    after = style.embed_audio(tl[:, 13 * rate : 19 * rate], rate)
    lean = lambda e: float(e @ text[1] - e @ text[0])  # noqa: E731  (towards B)
    print(f"lean toward B: {lean(before):+.3f} before the sweep, {lean(after):+.3f} after")
    assert lean(after) > lean(before), (lean(before), lean(after))


def test_drum_onsets_land_on_the_host_beats(played):
    """Onsets are backtracked to the rise of the onset envelope: a peak-picked onset lags
    its note by the envelope's rise time (on corpus clips with exact MIDI beats: median
    +14.5 ms, rock +19 to +23 ms), which is the detector, not the music. Backtracked, the
    same clips read 6 ms (rock 9-11 ms): scripts in the ARCHITECTURE note."""
    import librosa

    tl, rate, host = played["timeline"], played["rate"], played["host"]
    skip_unless_real_time(played["status"])  # gaps in the audio would misplace the onsets
    y = librosa.resample(tl.mean(0), orig_sr=rate, target_sr=22050)
    env = librosa.onset.onset_strength(y=y, sr=22050, hop_length=64)
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=22050, hop_length=64, units="time", backtrack=True)
    beats = host.beat_frames(int(0.5 * rate), tl.shape[1] - rate // 4) / rate
    d = np.array([onsets[np.argmin(np.abs(onsets - b))] - b for b in beats])
    median_ms = float(np.median(np.abs(d)) * 1000)
    print(
        f"onset-to-beat median {median_ms:.1f} ms (signed {np.median(d) * 1000:+.1f} ms) over {len(beats)} beats "
        f"({len(onsets)} onsets)"
    )
    assert median_ms <= 20.0, (
        f"median onset-to-beat distance {median_ms:.1f} ms (signed median {np.median(d) * 1000:.1f} ms)"
    )
