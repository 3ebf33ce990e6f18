"""Real scores from music21's bundled corpus, voiced onto General MIDI ensembles.

The procedural generators give us drums, bass and modern grooves; these scores give the
corpus real counterpoint and phrasing that no generator of ours would write. Each family
below is a genre tag with the ensembles it is plausibly played by, so the same chorale
can come out as an organ, a brass quartet or a choir - which teaches the style models
that instrumentation and genre are separate axes.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from model.corpus.piece import Note, Piece, Track, key_name

MIN_SECONDS = 10.0
MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Ensemble:
    name: str  # how the caption names the group: "brass quartet"
    programs: tuple[tuple[int, str], ...]  # (GM program, caption name), top voice first


@dataclass(frozen=True)
class ScoreFamily:
    genre: str
    folder: str  # music21 corpus folder
    pattern: str  # regex on the file name
    bpm_range: tuple[int, int]  # in beats of the score's own meter denominator
    moods: tuple[str, ...]
    ensembles: tuple[Ensemble, ...]
    max_bytes: int = 400_000  # huge scores parse slowly and give nothing a short clip needs


STRINGS = Ensemble("string quartet", ((40, "violin"), (40, "violin"), (41, "viola"), (42, "cello")))
ORGAN = Ensemble("church organ", ((19, "church organ"),))
CHOIR = Ensemble("choir", ((52, "choir aahs"),))
BRASS = Ensemble("brass quartet", ((56, "trumpet"), (60, "French horn"), (57, "trombone"), (58, "tuba")))
WINDS = Ensemble("woodwind quartet", ((73, "flute"), (68, "oboe"), (71, "clarinet"), (70, "bassoon")))
RECORDERS = Ensemble("recorder consort", ((74, "recorder"),))
STRING_ORCH = Ensemble("string orchestra", ((48, "string ensemble"),))
PIANO = Ensemble("solo piano", ((0, "grand piano"),))
HARPSICHORD = Ensemble("harpsichord", ((6, "harpsichord"),))

FAMILIES: tuple[ScoreFamily, ...] = (
    ScoreFamily(
        "chorale",
        "bach",
        r"^bwv.*\.mxl$",
        (60, 92),
        ("solemn", "stately", "gentle", "hymn-like"),
        (ORGAN, CHOIR, BRASS, STRINGS, WINDS, STRING_ORCH),
    ),
    ScoreFamily(
        "renaissance polyphony",
        "palestrina",
        r"\.krn$",
        (60, 84),
        ("serene", "flowing", "devotional"),
        (CHOIR, RECORDERS, STRING_ORCH, ORGAN, BRASS),
    ),
    ScoreFamily(
        "madrigal",
        "monteverdi",
        r"\.mxl$",
        (64, 100),
        ("expressive", "wistful", "lyrical"),
        (CHOIR, RECORDERS, STRINGS, WINDS),
    ),
    ScoreFamily(
        "string quartet",
        "(haydn|mozart|beethoven)",
        r"\.mxl$",
        (66, 150),
        ("elegant", "graceful", "spirited"),
        (STRINGS, STRING_ORCH, PIANO, WINDS),
    ),
    ScoreFamily(
        "celtic folk",
        "ryansMammoth",
        r"\.abc$",
        (84, 150),
        ("lively", "jaunty", "rollicking", "wistful"),
        (
            Ensemble("fiddle", ((40, "fiddle"),)),
            Ensemble("tin whistle", ((78, "tin whistle"),)),
            Ensemble("accordion", ((21, "accordion"),)),
            Ensemble("flute", ((73, "wooden flute"),)),
            Ensemble("harp", ((46, "harp"),)),
        ),
    ),
)

FAMILY_BY_GENRE = {f.genre: f for f in FAMILIES}
GENRES: tuple[str, ...] = tuple(f.genre for f in FAMILIES)

# A lone folk melody gets a plucked or droned accompaniment half the time, so tunes
# also appear with a pulse and a bass register.
FOLK_BACKING = ((24, "nylon-string guitar"), (25, "steel-string guitar"), (46, "harp"), (109, "bagpipe drone"))


class ScoreUnusable(Exception):
    """This score can't make a clip (parse failure, too short, no notes): pick another."""


@lru_cache(maxsize=None)
def family_paths(genre: str) -> tuple[str, ...]:
    """Sorted corpus paths of a family, so a seed picks the same files everywhere."""
    from music21 import corpus

    family = FAMILY_BY_GENRE[genre]
    folder = re.compile(rf"/corpus/{family.folder}/")
    name = re.compile(family.pattern, re.IGNORECASE)
    out = []
    for p in corpus.getPaths():
        p = str(p)
        if folder.search(p) and name.search(Path(p).name) and Path(p).stat().st_size <= family.max_bytes:
            out.append(p)
    return tuple(sorted(out))


def piece_id_for(path: str) -> str:
    """A score's identity is its path inside music21's corpus, independent of install dir."""
    return "music21:" + str(path).split("/corpus/", 1)[-1]


def _meter_of(score) -> tuple[int, int]:
    from music21 import meter

    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    if ts is None or ts.denominator not in (2, 4, 8) or not 1 <= ts.numerator <= 12:
        return (4, 4)
    return (int(ts.numerator), int(ts.denominator))


def _key_of(score, transpose: int) -> str:
    """Krumhansl key estimate of the excerpt, moved by our transposition."""
    try:
        k = score.analyze("key")
        return key_name(k.tonic.pitchClass + transpose, "minor" if k.mode == "minor" else "major")
    except Exception:  # music21 raises several types on degenerate input
        return key_name(transpose, "major")


def _tune_kind(score) -> str:
    title = (score.metadata.title if score.metadata and score.metadata.title else "").lower()
    for kind in ("reel", "jig", "hornpipe", "strathspey", "march", "waltz", "polka", "air", "slide"):
        if kind in title:
            return kind
    return "tune"


def score_to_piece(path: str, seed: int, target_seconds: float) -> Piece:
    """Excerpt ~target_seconds of the score at a random bar, tempo, key and ensemble."""
    rng = random.Random(seed)
    family = next(f for f in FAMILIES if re.search(rf"/corpus/{f.folder}/", path))
    score = _parse(path)
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    num, den = _meter_of(score)
    beats_per_quarter = den / 4.0
    bpm = rng.uniform(*family.bpm_range)
    bar_seconds = num * 60.0 / bpm
    bars = max(1, round(target_seconds / bar_seconds))
    while bars * bar_seconds < MIN_SECONDS:
        bars += 1
    while bars > 1 and bars * bar_seconds > MAX_SECONDS:
        bars -= 1
    if not MIN_SECONDS <= bars * bar_seconds <= MAX_SECONDS:
        raise ScoreUnusable(f"{path}: a {num}/{den} bar at {bpm:.0f} bpm cannot fit 10-30 s")

    bar_quarters = num / beats_per_quarter
    total_quarters = float(score.highestTime)
    excerpt_quarters = bars * bar_quarters
    if total_quarters < excerpt_quarters * 0.6:
        raise ScoreUnusable(f"{path}: only {total_quarters:.0f} quarters long")
    # Start on a bar line of the first part (measures carry pickups correctly).
    measures = list(parts[0].getElementsByClass("Measure"))
    starts = [float(m.offset) for m in measures if float(m.offset) + excerpt_quarters <= total_quarters]
    start_q = rng.choice(starts) if starts else 0.0

    transpose = rng.randint(-5, 6)
    ensemble = rng.choice(family.ensembles)
    tracks, notes = _excerpt(
        rng, parts[:8], ensemble, (start_q, start_q + excerpt_quarters), beats_per_quarter, transpose
    )
    if len(notes) < 8:
        raise ScoreUnusable(f"{path}: excerpt has {len(notes)} notes")

    key = _key_of(score, transpose)
    ensemble_name = ensemble.name
    if family.genre == "celtic folk":
        kind = _tune_kind(score)
        ensemble_name = f"celtic {kind} on {ensemble.name}"
        if rng.random() < 0.5:
            notes += _folk_backing(rng, key, bars, num, len(tracks))
            program, name = rng.choice(FOLK_BACKING)
            tracks.append(Track(role="backing", program=program, instrument=name))
    return Piece(
        piece_id=piece_id_for(path),
        source="music21",
        genre=family.genre,
        bpm=bpm,
        meter=(num, den),
        key=key,
        bars=bars,
        tracks=tracks,
        notes=notes,
        mood=rng.choice(family.moods),
        ensemble=ensemble_name,
        extra_tags={"score": piece_id_for(path).split(":", 1)[1]},
    )


def _parse(path: str):
    """The score at `path`; an Opus (several tunes in one file) gives its first tune."""
    from music21 import converter

    try:
        score = converter.parse(path)
    except Exception as exc:  # corrupt or unsupported corpus file
        raise ScoreUnusable(f"{path}: {exc}") from exc
    if hasattr(score, "scores"):
        if not score.scores:
            raise ScoreUnusable(f"{path}: empty opus")
        score = score.scores[0]
    return score


def _excerpt(
    rng: random.Random,
    parts: list,
    ensemble: Ensemble,
    span: tuple[float, float],
    beats_per_quarter: float,
    transpose: int,
) -> tuple[list[Track], list[Note]]:
    """One track per part, voiced by `ensemble` (top voice first), and the notes starting in
    `span` (quarters), moved to start at 0 in beats of the meter and transposed."""
    start_q, end_q = span
    tracks: list[Track] = []
    notes: list[Note] = []
    for i, part in enumerate(parts):
        program, name = ensemble.programs[min(i, len(ensemble.programs) - 1)]
        tracks.append(Track(role=f"voice{i + 1}", program=program, instrument=name))
        for n in part.flatten().notes:
            q = float(n.offset)
            dur = float(n.quarterLength)
            if dur <= 0 or q < start_q or q >= end_q:
                continue
            vel = n.volume.velocity if n.volume.velocity else rng.randint(70, 96)
            for pitch in n.pitches:
                midi = pitch.midi + transpose
                if 0 <= midi <= 127:
                    notes.append(
                        Note(
                            start=(q - start_q) * beats_per_quarter,
                            duration=dur * beats_per_quarter,
                            pitch=midi,
                            velocity=int(vel),
                            track=i,
                        )
                    )
    return tracks, notes


def _folk_backing(rng: random.Random, key: str, bars: int, num: int, track: int) -> list[Note]:
    """Tonic-and-fifth on each downbeat: a drone that marks the bar without harmonising."""
    from model.corpus.piece import PITCH_CLASS_NAMES

    tonic = PITCH_CLASS_NAMES.index(key.split(" ")[0])
    root = 36 + tonic
    out = []
    for b in range(bars):
        for pitch in (root, root + 7):
            out.append(Note(start=b * num, duration=num * 0.9, pitch=pitch, velocity=rng.randint(55, 72), track=track))
    return out
