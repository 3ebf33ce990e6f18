"""Procedural style generators: a seed in, a captioned `Piece` out.

Scores alone give us chorales and folk tunes; these generators give the corpus the
contemporary styles a jam partner is asked for (jazz, bossa, techno, rock...), with
captions that are true by construction because the generator chose every attribute.

Two rules matter downstream:
  * Determinism: each piece draws only from its own `random.Random(seed)`, so a
    piece_id ("gen:<style>:<seed>") fully reproduces the clip.
  * The beat grid is sacred: drum hits are never time-humanized, and swing only delays
    off-beat subdivisions, so audio onsets on the beats line up with the MIDI tempo map
    (a later test checks they sit within 30 ms of it). Only pitched parts get timing
    jitter, and that is a few milliseconds.

This module is the registry (`Style`, `generate`); the recipes it registers live in
model/corpus/recipes/, one module per family, written with harmony.py (chords, voicings),
arrangement.py (`Ctx`, the piece under construction) and parts.py (shared lines).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from model.corpus.arrangement import Ctx
from model.corpus.piece import Piece, key_name
from model.corpus.recipes.electronic import ambient, dnb, house, synthwave, techno
from model.corpus.recipes.groove import afrobeat, funk, lofi, reggae, rock
from model.corpus.recipes.jazz import blues, bossa, jazz

DENSITIES = ("sparse", "medium", "busy")

Meter = tuple[int, int]


@dataclass(frozen=True)
class Style:
    """What a genre allows: tempo per meter (weights pick the meter), modes, moods, ensemble."""

    write: Callable[[Ctx], None]
    tempi: tuple[tuple[Meter, int, int, float], ...]  # (meter, bpm lo, bpm hi, weight)
    modes: tuple[str, ...]
    moods: tuple[str, ...]
    ensemble: str


_REGISTRY: dict[str, Style] = {
    "swing jazz": Style(
        jazz,
        (((4, 4), 100, 180, 1.0),),
        ("major", "major", "minor"),
        ("laid-back", "swinging", "smoky", "late-night", "relaxed", "warm"),
        "swing jazz trio",
    ),
    "jazz waltz": Style(
        jazz,
        (((3, 4), 120, 180, 1.0),),
        ("major", "minor"),
        ("lilting", "gentle", "wistful", "elegant"),
        "jazz waltz trio",
    ),
    "bossa nova": Style(
        bossa,
        (((4, 4), 110, 145, 1.0),),
        ("major", "major", "minor"),
        ("breezy", "gentle", "sunny", "intimate", "smooth"),
        "bossa nova trio",
    ),
    "techno": Style(
        techno,
        (((4, 4), 122, 145, 1.0),),
        ("minor",),
        ("driving", "hypnotic", "dark", "relentless", "pulsing"),
        "techno track",
    ),
    "house": Style(
        house,
        (((4, 4), 118, 128, 1.0),),
        ("major", "minor"),
        ("uplifting", "groovy", "warm", "euphoric", "soulful"),
        "house track",
    ),
    "rock": Style(
        rock,
        (((4, 4), 95, 160, 0.7), ((3, 4), 100, 150, 0.1), ((6, 8), 140, 180, 0.2)),
        ("major", "minor"),
        ("driving", "energetic", "gritty", "anthemic", "raw"),
        "rock band",
    ),
    "funk": Style(
        funk,
        (((4, 4), 90, 118, 1.0),),
        ("major", "minor"),
        ("greasy", "tight", "groovy", "punchy", "strutting"),
        "funk band",
    ),
    "lofi hip hop": Style(
        lofi,
        (((4, 4), 70, 90, 1.0),),
        ("major", "minor"),
        ("mellow", "laid-back", "dusty", "nostalgic", "chill"),
        "lofi hip hop beat",
    ),
    "reggae": Style(
        reggae,
        (((4, 4), 66, 90, 1.0),),
        ("major", "minor"),
        ("laid-back", "sunny", "easy", "rootsy", "warm"),
        "reggae band",
    ),
    "drum and bass": Style(
        dnb,
        (((4, 4), 160, 180, 1.0),),
        ("minor",),
        ("driving", "frantic", "dark", "energetic", "rolling"),
        "drum and bass track",
    ),
    "ambient": Style(
        ambient,
        (((4, 4), 60, 80, 0.8), ((3, 4), 60, 80, 0.2)),
        ("major", "minor"),
        ("dreamy", "calm", "ethereal", "spacious", "meditative"),
        "ambient piece",
    ),
    "synthwave": Style(
        synthwave,
        (((4, 4), 90, 120, 1.0),),
        ("minor",),
        ("nostalgic", "neon", "driving", "moody", "retro"),
        "synthwave track",
    ),
    "blues shuffle": Style(
        blues, (((4, 4), 90, 140, 1.0),), ("major",), ("gritty", "bouncy", "soulful", "swaggering"), "blues band"
    ),
}

# Styles no default corpus build draws (model/corpus/build.py plans from STYLES only): the
# shipped models never heard them, so fine-tuning (model/train/finetune.py) is measured on them.
# Render them explicitly: `jamstream corpus build --styles afrobeat ...`.
_HELD_OUT: dict[str, Style] = {
    "afrobeat": Style(
        afrobeat,
        (((4, 4), 100, 126, 1.0),),
        ("minor", "minor", "major"),
        ("hypnotic", "driving", "hot", "interlocking", "political"),
        "afrobeat band",
    ),
}

STYLES: tuple[str, ...] = tuple(_REGISTRY)
HELD_OUT_STYLES: tuple[str, ...] = tuple(_HELD_OUT)
ALL_STYLES: tuple[str, ...] = STYLES + HELD_OUT_STYLES


def choose_bars(bpm: float, meter: Meter, target_seconds: float) -> int:
    """Bars closest to the target length, never under 10 s nor over 30 s."""
    bar_seconds = meter[0] * 60.0 / bpm
    lo = math.ceil(10.0 / bar_seconds - 1e-9)
    hi = math.floor(30.0 / bar_seconds + 1e-9)
    return max(lo, min(hi, round(target_seconds / bar_seconds)))


# Bounds of a spread tempo range: slow ambient and fast drum and bass, not beyond.
SPREAD_BPM = (56, 190)


def spread_tempo_range(lo: int, hi: int, spread: float) -> tuple[int, int]:
    """The genre's range widened by `spread` each way (lo / spread .. hi * spread), kept in SPREAD_BPM."""
    return max(SPREAD_BPM[0], min(lo, round(lo / spread))), min(SPREAD_BPM[1], max(hi, round(hi * spread)))


def generate(style: str, seed: int, target_seconds: float, tempo_spread: float = 1.0) -> Piece:
    """One clip of `style`, reproducible from (style, seed, tempo_spread).

    With `tempo_spread` > 1 half the clips (by a seeded coin) draw their tempo from the
    genre's range widened by that factor each way. Why: in a corpus where each genre has
    its own tempo band, tempo alone names the genre, and an LM asked for reggae at a
    techno tempo plays techno (measured: the techno-dub preset at 124 bpm, 0/7 bars moved
    toward reggae). The native half keeps what musicians usually play. Spread 1 draws
    exactly as before, so existing corpora rebuild bit-for-bit.
    """
    spec = _REGISTRY.get(style) or _HELD_OUT.get(style)
    if spec is None:
        raise ValueError(f"unknown style {style!r}; known styles: {', '.join(ALL_STYLES)}")
    if not tempo_spread >= 1.0:
        raise ValueError(f"tempo_spread must be >= 1 (got {tempo_spread})")
    rng = random.Random(f"{style}:{seed}")  # seeded per style, so styles don't share choices
    meter, lo, hi, _ = rng.choices(spec.tempi, weights=[t[3] for t in spec.tempi])[0]
    if tempo_spread > 1.0 and rng.random() < 0.5:
        lo, hi = spread_tempo_range(lo, hi, tempo_spread)
    bpm = float(rng.randint(lo, hi))
    mode = rng.choice(spec.modes)
    tonic = rng.randrange(12)
    density = rng.randrange(3)
    bars = choose_bars(bpm, meter, target_seconds)
    moods = rng.sample(spec.moods, rng.choice((1, 1, 2)))
    ctx = Ctx(rng=rng, bpm=bpm, meter=meter, bars=bars, tonic=tonic, mode=mode, density=density)
    spec.write(ctx)
    return Piece(
        piece_id=f"gen:{style}:{seed}",
        source="generator",
        genre=style,
        bpm=bpm,
        meter=meter,
        key=key_name(tonic, mode),
        bars=bars,
        tracks=ctx.tracks,
        notes=ctx.finish(),
        mood=", ".join(moods),
        ensemble=spec.ensemble,
        extra_tags={"density": DENSITIES[density]},
    )
