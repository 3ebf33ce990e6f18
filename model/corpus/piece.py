"""The one symbolic form every corpus source produces.

Scores from music21 and our procedural style generators both become a `Piece`, and
only a `Piece` is ever written to MIDI. That keeps the tempo map, the beat grid and the
caption in one place, so the beat times in the manifest can't drift from the audio.

Time is counted in *beats* of the meter's denominator (a quarter in 4/4, an eighth in
6/8) and `bpm` counts those beats; MIDI's quarter-note tempo is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mido

TICKS_PER_QUARTER = 480
DRUM_CHANNEL = 9

# Spelled the way musicians write keys in prose ("B-flat major").
PITCH_CLASS_NAMES = ["C", "D-flat", "D", "E-flat", "E", "F", "F-sharp", "G", "A-flat", "A", "B-flat", "B"]


def key_name(tonic_pitch_class: int, mode: str) -> str:
    """'B-flat major' from (10, 'major'); mode is 'major' or 'minor'."""
    return f"{PITCH_CLASS_NAMES[tonic_pitch_class % 12]} {mode}"


@dataclass(frozen=True)
class Note:
    start: float  # beats from the start of the clip
    duration: float  # beats
    pitch: int  # MIDI note number (a GM drum key on a drum track)
    velocity: int  # 1..127
    track: int  # index into Piece.tracks


@dataclass(frozen=True)
class Track:
    role: str  # "drums", "bass", "keys", "lead", "pad", a voice name from a score...
    program: int  # General MIDI program 0..127 (ignored for drums)
    instrument: str  # what a caption calls it: "upright bass", "brushed drums"
    is_drum: bool = False


@dataclass
class Piece:
    """A clip's worth of music plus everything the manifest says about it."""

    piece_id: str  # unit of the train/val/test split: a score path or a generator seed
    source: str  # "music21" or "generator"
    genre: str  # one genre tag, e.g. "swing jazz", "chorale"
    bpm: float  # beats (of the meter's denominator) per minute
    meter: tuple[int, int]  # (numerator, denominator)
    key: str  # "B-flat major"
    bars: int
    tracks: list[Track]
    notes: list[Note]
    mood: str = ""  # leading adjectives of the caption: "laid-back", "driving"
    ensemble: str = ""  # how a caption names the group: "swing jazz trio"
    extra_tags: dict = field(default_factory=dict)

    @property
    def beats_per_bar(self) -> int:
        return self.meter[0]

    @property
    def total_beats(self) -> float:
        return float(self.bars * self.beats_per_bar)

    @property
    def seconds(self) -> float:
        return self.total_beats * 60.0 / self.bpm

    @property
    def meter_str(self) -> str:
        return f"{self.meter[0]}/{self.meter[1]}"

    @property
    def instruments(self) -> list[str]:
        seen: list[str] = []
        for t in self.tracks:
            if t.instrument not in seen:
                seen.append(t.instrument)
        return seen

    def caption(self) -> str:
        """A sentence a musician would write: mood, ensemble, instruments, tempo, key."""
        head = " ".join(w for w in (self.mood, self.ensemble or self.genre) if w)
        inst = self.instruments
        if len(inst) > 1:
            inst_text = ", ".join(inst[:-1]) + " and " + inst[-1]
        else:
            inst_text = inst[0] if inst else ""
        parts = [head]
        if inst_text:
            parts.append(inst_text)
        parts.append(f"{round(self.bpm)} bpm")
        if self.meter != (4, 4):
            parts.append(f"in {self.meter_str}")
        parts.append(self.key)
        return ", ".join(parts)

    def tags(self) -> dict:
        return {
            "genre": self.genre,
            "instruments": self.instruments,
            "bpm": round(self.bpm, 3),
            "key": self.key,
            "meter": self.meter_str,
            "source": self.source,
            **self.extra_tags,
        }


def quarter_tempo_us(bpm: float, meter: tuple[int, int]) -> int:
    """MIDI tempo (microseconds per quarter) for `bpm` counted in the meter's beat unit."""
    quarters_per_beat = 4.0 / meter[1]
    return int(round(60_000_000.0 / bpm / quarters_per_beat))


def beat_ticks(meter: tuple[int, int]) -> float:
    return TICKS_PER_QUARTER * 4.0 / meter[1]


def to_midi(piece: Piece) -> mido.MidiFile:
    """Type-1 MIDI: a conductor track (tempo, meter, key) then one track per instrument.

    Melodic tracks get channels 0..15 skipping the drum channel; the drum track always
    sits on channel 10 (index 9) as General MIDI requires.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=piece.piece_id[:60], time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=quarter_tempo_us(piece.bpm, piece.meter), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=piece.meter[0], denominator=piece.meter[1], time=0))
    end_tick = int(round(piece.total_beats * beat_ticks(piece.meter)))
    conductor.append(mido.MetaMessage("end_of_track", time=end_tick))
    mid.tracks.append(conductor)

    tpb = beat_ticks(piece.meter)
    melodic_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    next_melodic = 0
    for index, track in enumerate(piece.tracks):
        if track.is_drum:
            channel = DRUM_CHANNEL
        else:
            channel = melodic_channels[next_melodic % len(melodic_channels)]
            next_melodic += 1
        events: list[tuple[int, int, mido.Message]] = []
        for n in piece.notes:
            if n.track != index or n.start >= piece.total_beats:
                continue
            on = int(round(n.start * tpb))
            off = int(round(min(n.start + max(n.duration, 0.05), piece.total_beats) * tpb))
            off = max(off, on + 1)
            vel = max(1, min(127, int(n.velocity)))
            pitch = max(0, min(127, int(n.pitch)))
            # note_off sorts before note_on at the same tick so repeated notes retrigger.
            events.append((on, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
            events.append((off, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1], e[2].note))
        mtrack = mido.MidiTrack()
        mtrack.append(mido.MetaMessage("track_name", name=track.role, time=0))
        # On the drum channel a program change picks the kit (GM2 / FluidR3: 0 standard,
        # 25 TR-808, 32 jazz, 40 brush...), so "brushed drums" in a caption is what we hear.
        mtrack.append(mido.Message("program_change", channel=channel, program=track.program, time=0))
        now = 0
        for tick, _, msg in events:
            mtrack.append(msg.copy(time=tick - now))
            now = tick
        mtrack.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
        mid.tracks.append(mtrack)
    return mid


def beat_times(mid: mido.MidiFile, total_seconds: float) -> tuple[list[float], list[float]]:
    """Beat and downbeat times in seconds, read back from a MIDI file's tempo map.

    Reading the written file (not the Piece) is deliberate: it is the file FluidSynth
    renders, so these are exactly the beats in the audio. Beats follow the meter's
    denominator; a downbeat starts each bar. Tempo and meter changes are honoured.
    """
    tempo_events: list[tuple[int, int]] = [(0, 500_000)]
    meter_events: list[tuple[int, int, int]] = [(0, 4, 4)]
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_events.append((tick, msg.tempo))
            elif msg.type == "time_signature":
                meter_events.append((tick, msg.numerator, msg.denominator))
    tempo_events.sort(key=lambda e: e[0])
    meter_events.sort(key=lambda e: e[0])
    tpq = mid.ticks_per_beat

    def tick_to_seconds(target: float) -> float:
        seconds, last_tick, tempo = 0.0, 0, tempo_events[0][1]
        for t, new_tempo in tempo_events:
            if t > target:
                break
            seconds += (t - last_tick) / tpq * tempo / 1e6
            last_tick, tempo = t, new_tempo
        return seconds + (target - last_tick) / tpq * tempo / 1e6

    beats: list[float] = []
    downbeats: list[float] = []
    tick = 0.0
    meter_index = 0
    beat_in_bar = 0
    while True:
        while meter_index + 1 < len(meter_events) and meter_events[meter_index + 1][0] <= tick:
            meter_index += 1
            beat_in_bar = 0
        _, num, den = meter_events[meter_index]
        t = tick_to_seconds(tick)
        if t >= total_seconds - 1e-3:  # tempo is stored in whole microseconds
            break
        beats.append(round(t, 6))
        if beat_in_bar == 0:
            downbeats.append(round(t, 6))
        beat_in_bar = (beat_in_bar + 1) % num
        tick += tpq * 4.0 / den
    return beats, downbeats
