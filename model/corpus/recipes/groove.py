"""Recipes of the band-groove family: rock, funk, lofi hip hop, reggae, afrobeat."""

from __future__ import annotations

from model.corpus.arrangement import CABASA, COWBELL, HAT, KICK, OPEN_HAT, PEDAL_HAT, RIDE, SNARE, STICK, Ctx, swung
from model.corpus.harmony import MAJOR_PENTA, MINOR_PENTA, nearest, place, power_chord, voice
from model.corpus.parts import melody


def rock(ctx: Ctx) -> None:
    """Backbeat drums, power chords, root-eighth bass; also in 3/4 and 6/8."""
    prog = ctx.pick(
        [["i5", "bVII5", "bVI5", "bVII5"], ["i5", "bVI5", "bIII5", "bVII5"], ["i5", "i5", "iv5", "bVII5"]]
        if ctx.minor
        else [
            ["I5", "V5", "vi5", "IV5"],
            ["I5", "IV5", "V5", "IV5"],
            ["I5", "bVII5", "IV5", "I5"],
            ["I5", "I5", "IV5", "V5"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (34, "picked bass"), (33, "bass guitar")])
    drums = ctx.drums([(0, "rock drum kit"), (16, "power drum kit"), (8, "drum kit")])
    gtr = ctx.track("guitar", [(30, "distorted guitar"), (29, "overdriven guitar"), (30, "heavy guitar")])
    ctx.plan_fills(drums)
    six8 = ctx.meter == (6, 8)
    cymbal = RIDE if ctx.rng.random() < 0.3 else HAT
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        if six8:
            ctx.grid(drums, s, "x.....", KICK, 110, subdiv=1)
            ctx.grid(drums, s, "...x..", SNARE, 110, subdiv=1)
            ctx.grid(drums, s, "Xxxxxx", cymbal, 75, subdiv=1)
            if ctx.density == 2:
                ctx.grid(drums, s, ".....x", KICK, 85, subdiv=1)
        elif ctx.bpb == 3:
            ctx.grid(drums, s, "x.....", KICK, 110, subdiv=2)
            ctx.grid(drums, s, "..x.x.", SNARE, 105, subdiv=2)
            ctx.grid(drums, s, "XxxxXx" if ctx.density else "x.x.x.", cymbal, 75, subdiv=2)
        else:
            kick = ("x.......x.......", "x.......x.x.....", "x.....x.x.x.....")[ctx.density]
            ctx.grid(drums, s, kick, KICK, 112)
            ctx.grid(drums, s, "....x.......x...", SNARE, 112)
            ctx.grid(drums, s, ("x.x.x.x.x.x.x.x.", "X.x.X.x.X.x.X.x.", "XxxxXxxxXxxxXxxx")[ctx.density], cymbal, 78)
        step = 1.0 if six8 else 0.5
        n = int(ctx.bpb / step)
        for k in range(n):
            t = s + k * step
            chord = tl.at(t)
            root = nearest(chord.root, 38, 28, 43)
            ctx.add(bass, t, step * 0.9, root, 92 if k == 0 else 80)
            if ctx.density == 0 and k % (2 if six8 else 4) != 0:
                continue
            hold = step * (2 if six8 else 4) if ctx.density == 0 else step
            ctx.chord(gtr, t, hold * 0.9, power_chord(chord, 40), 95 if k % 2 == 0 else 78)


def funk(ctx: Ctx) -> None:
    """16th syncopation everywhere: ghosted snare, slap bass riff, scratch guitar on dominant 9ths."""
    prog = ctx.pick(
        [["i9"], ["i7", "IV9"], ["i9", "i9", "IV9", "IV9"]]
        if ctx.minor
        else [["I9"], ["I9", "IV9"], ["I9", "I9", "IV9", "I9"], ["I9", "bVII9"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(36, "slap bass"), (37, "slap bass"), (33, "finger bass")])
    drums = ctx.drums([(0, "funk drum kit"), (8, "tight drum kit"), (0, "drum kit")])
    gtr = ctx.track("guitar", [(27, "clean electric guitar"), (28, "muted funk guitar"), (7, "clavinet")])
    ctx.plan_fills(drums)
    kick = ctx.pick(["x..x..x...x..x..", "x.x...x..x.x....", "x..x....x.x..x..", "x......x..x..x.."])
    snare = ("....x.......x...", "....X..o.o..X..o", "..o.X.ooo.o.X.oo")[ctx.density]
    hats = ("x.x.x.x.x.x.x.x.", "XoxoXoxoXoxoXoxo", "XxxxXxxxXxxxXx.x")[ctx.density]
    riff = [(0, 0, 100, 0.4)]
    for k in range(2, 16):
        if ctx.rng.random() < (0.3, 0.42, 0.55)[ctx.density]:
            ghost = ctx.rng.random() < 0.25
            riff.append((k, ctx.pick((0, 12, 10, 7, 12, 5)), 45 if ghost else 88, 0.08 if ghost else 0.2))
    scratch = [k for k in range(16) if ctx.rng.random() < (0.3, 0.5, 0.7)[ctx.density]]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 108)
        ctx.grid(drums, s, snare, SNARE, 105)
        ctx.grid(drums, s, hats, HAT, 72)
        if ctx.density >= 1:
            ctx.grid(drums, s, "..............x.", OPEN_HAT, 70)
        chord = tl.at(s)
        root = nearest(chord.root, 35, 28, 40)
        for k, iv, vel, dur in riff:
            ctx.add(bass, s + k / 4, dur, root + iv, vel)
        v9 = [place((chord.root + i) % 12, 60) for i in (4, 10, 14)] + [place((chord.root + 7) % 12, 67)]
        for k in scratch:
            accent = k % 4 == 2 or k in (6, 14)
            ctx.chord(gtr, s + k / 4, 0.15 if accent else 0.07, sorted(v9), 88 if accent else 40)


def lofi(ctx: Ctx) -> None:
    """Lazy swung boom-bap under Rhodes 7ths and a mellow bass."""
    sw = ctx.rng.uniform(0.56, 0.62)
    prog = ctx.pick(
        [["i9", "iv9", "bVIImaj7", "bIIImaj7"], ["i7", "iv7", "v7", "i7"], ["ii7", "V7", "i9", "i9"]]
        if ctx.minor
        else [
            ["ii7", "V7", "Imaj7", "vi7"],
            ["Imaj7", "iii7", "vi7", "IVmaj7"],
            ["IVmaj7", "iii7", "ii7", "Imaj7"],
            ["Imaj9", "vi9", "ii9", "V13"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "mellow electric bass"), (32, "upright bass"), (38, "soft synth bass")])
    drums = ctx.drums([(0, "dusty drum kit"), (25, "boom-bap drums"), (0, "lo-fi drums")])
    keys = ctx.track("keys", [(4, "Rhodes electric piano"), (5, "electric piano"), (0, "mellow piano")])
    lead = ctx.track("lead", [(11, "vibraphone"), (26, "jazz guitar"), (73, "flute")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums)
    kick = ctx.pick(["x.........x.x...", "x......x..x.....", "x.......x.x....."])
    hats = ("x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x.", "xxx.x.xxx.x.x.xx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 100, subdiv=4, swing=sw)
        ctx.grid(drums, s, "....x.......x...", SNARE, 95)
        ctx.grid(drums, s, hats, HAT, 58, subdiv=4, swing=sw)
        for start, dur, chord in tl.spans():
            if s <= start < s + 4:
                ctx.chord(keys, start, dur * 0.97, voice(chord, 53, rootless=True), 58, strum=0.03)
                ctx.add(bass, start, 1.6, nearest(chord.root, 38, 28, 45), 80)
                if ctx.density >= 1:
                    ctx.add(
                        bass,
                        start + 2.5 if dur >= 4 else start + 1.5,
                        0.9,
                        nearest((chord.root + 7) % 12, 38, 28, 45),
                        66,
                    )
    if lead is not None:
        melody(ctx, lead, tl, MINOR_PENTA if ctx.minor else MAJOR_PENTA, 67, 84, 0.45, (0.5, 1.0, 1.5), 64, sw)


def reggae(ctx: Ctx) -> None:
    """One drop (kick and rim together on 3), skank on 2 and 4, organ bubble, melodic bass."""
    prog = ctx.pick(
        [["i", "iv"], ["i", "bVII"], ["i", "i", "iv", "v"], ["i", "bIII", "bVII", "iv"]]
        if ctx.minor
        else [["I", "IV"], ["I", "V", "vi", "IV"], ["ii", "V"], ["I", "IV", "V", "IV"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (33, "deep reggae bass"), (38, "dub bass")])
    drums = ctx.drums([(0, "one-drop drum kit"), (0, "drum kit"), (8, "rimshot drums")])
    gtr = ctx.track("guitar", [(27, "skank guitar"), (28, "muted guitar"), (27, "clean electric guitar")])
    organ = ctx.track("keys", [(16, "organ"), (17, "bubble organ")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums, triplet=True)
    sw = 0.5 if ctx.rng.random() < 0.5 else 0.6
    third = 3 if ctx.minor else 4
    riff_options = [
        [(0.5, 0.5, 0), (1, 1.0, 7), (2.5, 0.5, 12), (3, 0.5, 10 if ctx.minor else 9), (3.5, 0.5, 7)],
        [(0, 1.0, 0), (1.5, 0.5, third), (2, 1.0, 7), (3, 0.5, 5), (3.5, 0.5, third)],
        [(1, 0.5, 0), (1.5, 0.5, 0), (2, 1.0, 7), (3, 1.0, 12)],
    ]
    riff = ctx.pick(riff_options)
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "....x...", KICK, 105, subdiv=2)
        ctx.grid(drums, s, "....x...", STICK, 100, subdiv=2)
        ctx.grid(drums, s, ("x.x.x.x.", "xxxxxxxx", "xxxxxxxo")[ctx.density], HAT, 62, subdiv=2, swing=sw)
        if ctx.density == 2:
            ctx.grid(drums, s, "......x.", OPEN_HAT, 60, subdiv=2, swing=sw)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 28, 40)
        for pos, dur, iv in riff:
            ctx.add(bass, s + swung(pos, sw), dur * 0.9, root + iv, 90)
        for b in (1, 3):
            ctx.chord(gtr, s + b, 0.2, voice(tl.at(s + b), 60), 80)
        if organ is not None:
            for b in range(4):
                ctx.chord(organ, s + swung(b + 0.5, sw), 0.3, voice(tl.at(s + b), 55), 55)


def afrobeat(ctx: Ctx) -> None:
    """Fela-style afrobeat: bell and shekere ostinati, interlocking muted guitars, a horn riff on a vamp.

    Held out of the default corpus (see HELD_OUT_STYLES): the style fine-tuning is measured on.
    """
    prog = ctx.pick(
        [["i7"], ["i7", "i7", "iv7", "iv7"], ["i9", "bVII"], ["i7", "IV7"]]
        if ctx.minor
        else [["I7"], ["I7", "I7", "IV7", "IV7"], ["ii7", "ii7", "V7", "V7"]]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(33, "electric bass"), (34, "picked bass")])
    drums = ctx.drums([(0, "afrobeat drum kit"), (0, "drum kit"), (8, "tight drum kit")])
    gtr = ctx.track("guitar", [(28, "muted tenor guitar"), (27, "clean electric guitar")])
    horns = ctx.track("horns", [(61, "brass section"), (66, "tenor saxophone"), (56, "trumpet section")])
    organ = ctx.track("keys", [(16, "organ"), (17, "percussive organ")]) if ctx.density >= 1 else None
    ctx.plan_fills(drums)
    bell = ctx.pick(["x.x.xx.x.x.xx.x.", "x.x.x.x.xx.x.x.x", "x..x.x.xx..x.x.x"])
    kick = ctx.pick(["x.....x...x.....", "x..x......x..x..", "x.....x.x......x"])
    snare = ("....x.......x...", "....x..o..o.x...", "..o.x..o.oo.x.o.")[ctx.density]
    shekere = ("x.x.x.x.x.x.x.x.", "XoxoXoxoXoxoXoxo", "Xxxxxxxxxxxxxxxx")[ctx.density]
    # a two-bar syncopated bass ostinato, in scale steps from the root
    third = 3 if ctx.minor else 4
    riff = ctx.pick(
        [
            [(0, 0), (0.75, 0), (1.5, 7), (2.5, 10), (3, 12), (3.5, 10), (4.5, 7), (5.5, third), (6, 5), (7, 7)],
            [(0, 0), (1, 0), (1.75, 3 if ctx.minor else 2), (2.5, 5), (4, 7), (4.75, 5), (5.5, third), (6.5, 0)],
            [(0, 0), (0.5, 12), (1.5, 10), (2, 7), (3, 5), (4, 0), (4.5, 0), (5.5, 7), (6.5, 10)],
        ]
    )
    picks = [k for k in range(16) if k % 2 == 1 or ctx.rng.random() < 0.4]  # off-16ths carry the pluck
    horn_riff = [(0.0, 0.4, 0), (0.5, 0.4, 0), (1.5, 0.9, third), (2.5, 0.4, 5), (3.0, 0.9, 7)]
    horn_bars = ctx.pick((2, 4))
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 104)
        ctx.grid(drums, s, snare, SNARE, 98)
        ctx.grid(drums, s, "x...x...x...x...", PEDAL_HAT, 60)
        ctx.grid(drums, s, ".x.x.x.x.x.x.x.x", HAT, 56)
        ctx.grid(drums, s, bell, COWBELL, 70)
        ctx.grid(drums, s, shekere, CABASA, 52)
        chord = tl.at(s)
        root = nearest(chord.root, 38, 31, 43)
        for pos, iv in riff:
            if bar % 2 == pos // 4:
                ctx.add(bass, s + pos % 4, 0.35, root + iv, 94 if pos % 1 == 0 else 80)
        seventh = next((i for i in chord.intervals if i in (10, 11)), 10)
        tones = [place((chord.root + i) % 12, 64) for i in (0, 7, seventh)]
        for n, k in enumerate(picks):
            ctx.add(gtr, s + k / 4, 0.12, tones[n % len(tones)], 78 if k % 4 == 2 else 62)
        if organ is not None and bar % 2 == 1:
            ctx.chord(organ, s + 2.5, 1.4, voice(chord, 55, max_notes=4), 58)
        if bar % horn_bars == horn_bars - 1 or (ctx.density == 2 and bar % 2 == 1):
            hroot = place(chord.root, 58)
            for pos, dur, iv in horn_riff:
                ctx.chord(horns, s + pos, dur, [hroot + iv, hroot + iv + 12], 96)
