"""Recipes of the swing and Latin-jazz family: swing jazz and jazz waltz, bossa nova, blues shuffle."""

from __future__ import annotations

from model.corpus.arrangement import HAT, KICK, PEDAL_HAT, RIDE, SHAKER, SNARE, STICK, Ctx, swung
from model.corpus.harmony import MAJOR_SCALE, MINOR_SCALE, nearest, place, voice
from model.corpus.parts import melody, swing_ratio, walking_bass


def jazz(ctx: Ctx) -> None:
    """Swing trio: walking bass, ride with hats on 2 and 4, rootless comping on ii-V-I."""
    sw = swing_ratio(ctx, 0.62, 0.67)
    if ctx.minor:
        prog = ctx.pick(
            [
                ["iiø7", "V7", "i7", "i7"],
                ["i7", "iv7", "iiø7", "V7"],
                ["i7", "bVImaj7", "iiø7", "V7"],
                ["iiø7 V7", "i7", "iv7", "iiø7 V7"],
            ]
        )
    else:
        prog = ctx.pick(
            [
                ["ii7", "V7", "Imaj7", "Imaj7"],
                ["Imaj7", "vi7", "ii7", "V7"],
                ["iii7", "vi7", "ii7", "V7"],
                ["Imaj7", "VI7", "ii7", "V7"],
                ["ii7 V7", "Imaj7", "ii7 V7", "Imaj7"],
                ["Imaj7", "I7", "IVmaj7", "iv7"],
            ]
        )
    if ctx.bpb == 3:  # a waltz breathes slower: a bar per chord, two for a whole-bar chord
        prog = [c for bar in prog for c in (bar.split() if " " in bar else [bar, bar])]
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(32, "upright bass"), (32, "acoustic bass"), (32, "double bass")])
    drums = ctx.drums([(40, "brushed drums"), (32, "jazz drums"), (32, "drum kit")])
    comp = ctx.track("keys", [(0, "piano"), (0, "grand piano"), (26, "jazz guitar"), (4, "Rhodes electric piano")])
    brushes = ctx.tracks[drums].instrument == "brushed drums"
    ctx.plan_fills(drums, triplet=True)
    walking_bass(ctx, bass, tl, sw)
    hat_beats = (1, 3) if ctx.bpb == 4 else (1, 2)
    skip_beats = (1, 3) if ctx.bpb == 4 else (1,)
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        for b in range(ctx.bpb):
            ctx.hit(drums, s + b, RIDE, 88 if b in hat_beats else 76)
            if b in skip_beats:
                ctx.hit(drums, s + b + sw, RIDE, 62)
            if b in hat_beats:
                ctx.hit(drums, s + b, PEDAL_HAT, 70)
            if ctx.density >= 1:
                ctx.hit(drums, s + b, KICK, 34)  # feathered
            if brushes:
                ctx.hit(drums, s + b, SNARE, 30)  # the sweep, felt more than heard
            if ctx.rng.random() < (0.1, 0.2, 0.35)[ctx.density]:
                ctx.hit(drums, s + b + sw, SNARE, 48)  # comping chatter on the "and"
        # comping: Charleston, pushes, or held chords
        hits = ctx.pick(
            ([(0, 1.0), (1.5, 0.5)], [(1.5, 1.5)], [(0, 0.5), (2.5, 1.0)], [(0.5, 1.0), (2.5, 0.5)], [(0, 2.0)])
            if ctx.bpb == 4
            else ([(0, 1.0)], [(1.5, 1.0)], [(0, 0.5), (1.5, 0.5)])
        )
        if ctx.density == 2 and ctx.bpb == 4:
            hits = hits + [(3.5, 0.4)]
        if ctx.density == 0:
            hits = hits[:1]
        for pos, dur in hits:
            t = s + swung(pos, sw)
            chord = tl.at(t + 0.5 if pos % 1 else t)  # an "and" anticipates the next chord
            ctx.chord(comp, t, dur, voice(chord, 50, rootless=True), 66)


def bossa(ctx: Ctx) -> None:
    """Nylon guitar syncopation over a surdo-like bass and cross-stick clave."""
    if ctx.minor:
        prog = ctx.pick(
            [
                ["i7", "i7", "iv7", "iv7", "iiø7", "V7", "i7", "i7"],
                ["i7", "iv7", "bVIImaj7", "bIIImaj7"],
                ["i7", "bII7", "i7", "V7"],
            ]
        )
    else:
        prog = ctx.pick(
            [
                ["Imaj7", "Imaj7", "II7", "II7", "ii7", "V7", "Imaj7", "Imaj7"],
                ["Imaj7", "vi7", "ii7", "V7"],
                ["ii7", "V7", "Imaj7", "VI7"],
                ["Imaj7", "IVmaj7", "iii7", "VI7"],
            ]
        )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(32, "acoustic bass"), (33, "electric bass"), (32, "upright bass")])
    drums = ctx.drums([(40, "brushed drums"), (0, "light drum kit"), (0, "drum kit")])
    gtr = ctx.track("guitar", [(24, "nylon-string guitar"), (24, "classical guitar")])
    extra = ctx.track("keys", [(0, "piano"), (73, "flute"), (11, "vibraphone")]) if ctx.density == 2 else None
    ctx.plan_fills(drums)
    clave = ctx.pick(["x..x..x...x..x..", "x..x..x...x.x...", "..x..x..x..x..x."])  # 2 bars of 8ths
    comp = ctx.pick(["x.xx.x.x.x.xx.x.", "x..x..x.x.x..x..", "x.x..x.xx.x..x.x", ".x.xx.x.x.x.x..x"])
    kick = ctx.pick(["x..xx..x", "x...x..x", "x..xx..."])
    hats = ("x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo", "xxxxxxxxxxxxxxxx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        half = (bar % 2) * 8
        ctx.grid(drums, s, clave[half : half + 8], STICK, 80, subdiv=2)
        ctx.grid(drums, s, kick, KICK, 72, subdiv=2)
        ctx.grid(drums, s, hats, SHAKER if ctx.density else HAT, 50, subdiv=4)
        for pos, dur, fifth in ((0, 1.4, False), (1.5, 0.45, True), (2, 1.4, True), (3.5, 0.45, False)):
            chord = tl.at(s + pos + (0.5 if pos == 3.5 else 0))
            pc = (chord.root + 7) % 12 if fifth else chord.root
            ctx.add(bass, s + pos, dur, nearest(pc, 38, 28, 47), 84 if pos == 0 else 70)
        for i, ch in enumerate(comp[half : half + 8]):
            if ch == "x":
                t = s + i / 2
                ctx.chord(gtr, t, 0.45, voice(tl.at(t + 0.25), 52, rootless=True), 64, strum=0.01)
    if extra is not None:
        melody(ctx, extra, tl, MINOR_SCALE if ctx.minor else MAJOR_SCALE, 67, 86, 0.55, (0.5, 1.0, 1.5), 70)


def blues(ctx: Ctx) -> None:
    """Twelve-bar shuffle: triplet-swung hats, boogie bass, 5-6 rhythm figure."""
    sw = ctx.rng.uniform(0.64, 0.67)
    quick = ctx.rng.random() < 0.5
    tl = ctx.timeline(["I7", "IV7" if quick else "I7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7"])
    bass = ctx.track("bass", [(33, "electric bass"), (32, "upright bass")])
    drums = ctx.drums([(0, "shuffle drum kit"), (0, "drum kit")])
    comp = ctx.track(
        "guitar", [(29, "overdriven guitar"), (0, "boogie piano"), (16, "Hammond organ"), (27, "clean electric guitar")]
    )
    ctx.plan_fills(drums, triplet=True)
    walk = ctx.pick([(0, 4, 7, 9, 10, 9, 7, 4), (0, 0, 7, 7, 9, 9, 7, 7), (0, 4, 7, 9, 12, 9, 7, 4)])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x..." if ctx.density else "x.......", KICK, 100, subdiv=2)
        ctx.grid(drums, s, "..x...x.", SNARE, 105, subdiv=2)
        ctx.grid(drums, s, "xxxxxxxx", RIDE if ctx.density == 2 else HAT, 70, subdiv=2, swing=sw)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 28, 40)
        for k, iv in enumerate(walk):
            ctx.add(bass, s + swung(k / 2, sw), 0.45, root + iv, 90 if k % 2 == 0 else 74)
            r = place(chord.root, 45)
            sixth = 9 if (k // 2) % 2 else 7
            if ctx.density == 2 and k == 6:
                sixth = 10
            ctx.chord(comp, s + swung(k / 2, sw), 0.4, [r, r + sixth], 84 if k % 2 == 0 else 66)
