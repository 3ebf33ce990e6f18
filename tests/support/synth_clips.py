"""Test audio whose content is known: FluidSynth renders of MIDI written here (a drum
loop with exact beats, a piano chord progression) and noise."""

from __future__ import annotations

import mido
import numpy as np

from model.corpus.synth import default_soundfont, render_midi

SR = 48_000
CHORDS = ([60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67])  # C F G C


def _render(notes: list[tuple[float, float, int, int]], bpm: float, seconds: float, channel: int, program: int = 0):
    """notes: (beat, beats long, MIDI pitch, velocity)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    if channel != 9:
        track.append(mido.Message("program_change", program=program, channel=channel))
    events = []
    for beat, length, pitch, velocity in notes:
        events.append((round(beat * 480), 1, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
        events.append((round((beat + length) * 480), 0, mido.Message("note_off", note=pitch, channel=channel)))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    return render_midi(mid, seconds, default_soundfont())


def drum_loop(bpm: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(audio [2, n], beat times): kick on every beat, snare on 2 and 4, eighth hi-hats."""
    beats = int(seconds * bpm / 60.0) + 1
    notes = [(b / 2, 0.25, 42, 80) for b in range(2 * beats)]
    notes += [(b, 0.25, 36, 110) for b in range(beats)] + [(b, 0.25, 38, 100) for b in range(1, beats, 2)]
    audio = _render(notes, bpm, seconds, channel=9)
    return audio, np.arange(beats) * 60.0 / bpm


def piano_chords(seconds: float = 8.0, bpm: float = 120.0) -> np.ndarray:
    """A I-IV-V-I progression on piano, four beats a chord, with the root an octave down."""
    notes = []
    for bar in range(int(seconds * bpm / 240.0) + 1):
        chord = CHORDS[bar % len(CHORDS)]
        for beat in range(4):
            notes += [(4 * bar + beat, 1.0, p, 90) for p in [*chord, chord[0] - 12]]
    return _render(notes, bpm, seconds, channel=0)


def white_noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, int(seconds * SR))) * 0.1).astype(np.float32)


def pink_noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spec = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    spec[0] = 0.0
    spec[1:] /= np.sqrt(freqs[1:])
    x = np.fft.irfft(spec, n)
    return np.stack([x, x]).astype(np.float32) / np.abs(x).max() * 0.3
