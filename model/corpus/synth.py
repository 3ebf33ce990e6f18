"""MIDI -> 48 kHz stereo audio through the FluidSynth program and a GM soundfont.

We call the `fluidsynth` command rather than a Python binding: it is the Debian package
the README installs, it renders faster than real time by two orders of magnitude, and a
crash in it can't take the corpus builder down with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mido
import numpy as np

from model.errors import JamstreamError
from model.io.audio import SAMPLE_RATE, load_audio

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
FADE_SECONDS = 0.03  # the clip ends on a bar line; a short fade stops the cut clicking


def default_soundfont() -> str:
    return os.environ.get("JAMSTREAM_SOUNDFONT", DEFAULT_SOUNDFONT)


def check_synth(soundfont: str) -> None:
    """Fail before any work starts if we can't render at all."""
    if shutil.which("fluidsynth") is None:
        raise JamstreamError(
            "fluidsynth is not installed (apt-get install fluidsynth), or run the README's setup command"
        )
    sf = Path(soundfont)
    if not sf.is_file():
        raise JamstreamError(
            f"soundfont not found: {sf} (apt-get install fluid-soundfont-gm, or pass --soundfont / set "
            "JAMSTREAM_SOUNDFONT)"
        )


def render_midi(mid: mido.MidiFile, seconds: float, soundfont: str) -> np.ndarray:
    """Render to float32 [2, round(seconds * 48000)]: exactly the clip, no release tail."""
    with tempfile.TemporaryDirectory(prefix="jamstream-synth-") as tmp:
        midi_path = Path(tmp) / "clip.mid"
        wav_path = Path(tmp) / "clip.wav"
        mid.save(str(midi_path))
        cmd = [
            "fluidsynth", "-ni", "-q",
            "-o", "synth.cpu-cores=1",
            "-o", "audio.file.format=float",
            "-r", str(SAMPLE_RATE),
            "-F", str(wav_path),
            soundfont, str(midi_path),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not wav_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise JamstreamError(f"fluidsynth failed: {tail[0]}")
        audio = load_audio(wav_path)
    n = int(round(seconds * SAMPLE_RATE))
    if audio.shape[1] < n:
        audio = np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    audio = audio[:, :n].copy()
    fade = int(FADE_SECONDS * SAMPLE_RATE)
    audio[:, -fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio
