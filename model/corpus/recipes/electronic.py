"""Recipes of the electronic family: techno, house, drum and bass, ambient, synthwave."""

from __future__ import annotations

from model.corpus.arrangement import CABASA, CLAP, HAT, KICK, MARACAS, OPEN_HAT, RIDE, SHAKER, SNARE, Ctx
from model.corpus.harmony import MAJOR_PENTA, MINOR_PENTA, MINOR_SCALE, nearest, voice
from model.corpus.parts import melody


def techno(ctx: Ctx) -> None:
    """Four on the floor, off-beat open hats, a one-bar 16th bass riff; harmony kept minimal."""
    tl = ctx.timeline(ctx.pick([["i"], ["i", "i", "i", "bVI"], ["i7", "i7", "bVII", "bVII"]]))
    bass = ctx.track("bass", [(38, "analog synth bass"), (39, "acid synth bass"), (87, "synth bass lead")])
    drums = ctx.drums([(25, "808 kit"), (24, "909 drum machine"), (24, "drum machine")])
    stab = ctx.track("synth", [(81, "saw synth stab"), (90, "polysynth"), (50, "synth strings")])
    ctx.plan_fills(drums)
    riff = [
        (k, ctx.pick((0, 0, 0, 12, 7, 10, 3)))
        for k in range(16)
        if k % 4 != 0 and ctx.rng.random() < (0.35, 0.5, 0.65)[ctx.density]
    ] or [(2, 0)]
    closed = ("..x...x...x...x.", "x.x.x.x.x.x.x.x.", "xxXxxxXxxxXxxxXx")[ctx.density]
    clap = ctx.rng.random() < 0.7
    stab_pattern = ctx.pick(["..x.......x.....", "...x......x..x..", "......x.......x."])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x...x...x...", KICK, 115)
        ctx.grid(drums, s, "..x...x...x...x.", OPEN_HAT, 80)
        ctx.grid(drums, s, closed, HAT, 60)
        if clap:
            ctx.grid(drums, s, "....x.......x...", CLAP, 90)
        chord = tl.at(s)
        for k, iv in riff:
            if bar % 4 == 3 and k >= 12:
                iv += 12  # variation: the riff lifts at the end of each phrase
            ctx.add(bass, s + k / 4, 0.22, nearest(chord.root, 36, 31, 43) + iv, 96 if k % 2 == 0 else 80)
        if ctx.density >= 1 or bar % 2 == 1:
            for i, ch in enumerate(stab_pattern):
                if ch == "x":
                    ctx.chord(stab, s + i / 4, 0.3, voice(chord, 57), 62)


def house(ctx: Ctx) -> None:
    """Four on the floor with claps on 2 and 4, syncopated piano/organ stabs, off-beat bass."""
    prog = ctx.pick(
        [["i7", "iv7"], ["i7", "bVIImaj7", "bVImaj7", "bVII"], ["i9", "i9", "iv9", "bVII"]]
        if ctx.minor
        else [
            ["vi7", "IVmaj7", "Imaj7", "V"],
            ["ii7", "V7", "Imaj7", "vi7"],
            ["Imaj7", "IVmaj7"],
            ["IV", "V", "iii7", "vi7"],
        ]
    )
    tl = ctx.timeline(prog)
    bass = ctx.track("bass", [(38, "synth bass"), (39, "deep synth bass"), (33, "electric bass")])
    drums = ctx.drums([(24, "drum machine"), (25, "909 kit"), (0, "house drum kit")])
    keys = ctx.track("keys", [(0, "house piano"), (1, "bright piano"), (16, "organ"), (17, "percussive organ")])
    ctx.plan_fills(drums)
    stabs = ctx.pick(["x..x..x.........", "..x..x....x..x..", "x.....x...x.....", "...x..x...x..x.."])
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, "x...x...x...x...", KICK, 112)
        ctx.grid(drums, s, "....x.......x...", CLAP, 95)
        ctx.grid(drums, s, "..x...x...x...x.", OPEN_HAT if ctx.density != 1 else HAT, 75)
        if ctx.density >= 1:
            ctx.grid(drums, s, "xoxoxoxoxoxoxoxo", SHAKER, 55)
        for b in range(4):
            chord = tl.at(s + b)
            up = 12 if ctx.density == 2 and b == 3 else 0
            ctx.add(bass, s + b + 0.5, 0.4, nearest(chord.root, 38, 31, 45) + up, 92)
        for i, ch in enumerate(stabs):
            if ch == "x":
                t = s + i / 4
                ctx.chord(keys, t, 0.35, voice(tl.at(t), 58, max_notes=4), 78)


def dnb(ctx: Ctx) -> None:
    """Two-step break at 160-180: kick 1 and the and of 3, snare 2 and 4, sub bass under pads."""
    tl = ctx.timeline(ctx.pick([["i", "i", "bVI", "bVII"], ["i7", "bVImaj7"], ["i", "iv", "bVI", "v"]]))
    bass = ctx.track("bass", [(39, "sub bass"), (38, "reese synth bass"), (39, "deep sub bass")])
    drums = ctx.drums([(0, "breakbeat drums"), (25, "drum machine"), (8, "amen-style break")])
    pad = ctx.track("pad", [(89, "warm pad"), (50, "synth strings"), (91, "choir pad")])
    ctx.plan_fills(drums)
    kicks = [
        ctx.pick(["x.........x.....", "x.x.......x....."]),
        ctx.pick(["x.........x..x..", "x......x..x.....", "..x.......x....."]),
    ]
    snare = ("....x.......x...", "....x..o....x..o", "....x..o.o..x.oo")[ctx.density]
    hats = ("x.x.x.x.x.x.x.x.", "x.xxx.x.x.xxx.x.", "xxxxxxxxxxxxxxxx")[ctx.density]
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kicks[bar % 2], KICK, 112)
        ctx.grid(drums, s, snare, SNARE, 110)
        ctx.grid(drums, s, hats, RIDE if ctx.density == 2 else HAT, 64)
        chord = tl.at(s)
        root = nearest(chord.root, 33, 26, 38)
        ctx.add(bass, s, 2.4, root, 100)
        ctx.add(bass, s + 2.5, 1.4, root + (0 if bar % 2 == 0 else ctx.pick((0, 7, 12))), 92)
        if bar % 2 == 0 or chord != tl.at(s - 4):
            ctx.chord(pad, s, ctx.bpb * (2 if tl.at(s + 4) == chord else 1) - 0.1, voice(chord, 55, max_notes=4), 52)


def ambient(ctx: Ctx) -> None:
    """Long pads over a low drone; soft kick and shaker keep the pulse audible for the beat labels."""
    prog = ctx.pick(
        [["iadd9", "bVImaj7", "bIIImaj7", "bVII"], ["i9", "i9", "iv9", "iv9"]]
        if ctx.minor
        else [["Imaj7", "IVmaj7"], ["Iadd9", "vi7", "IVmaj9", "Isus2"], ["Imaj9", "Imaj9", "iii7", "IVmaj7"]]
    )
    tl = ctx.timeline(prog)
    low = ctx.track("bass", [(89, "low synth drone"), (39, "deep pad bass"), (48, "low strings")])
    drums = ctx.drums([(0, "soft percussion"), (0, "soft kick and shaker")])
    pad = ctx.track("pad", [(89, "warm pad"), (88, "new age pad"), (94, "halo pad"), (95, "sweep pad")])
    bell = ctx.track(
        "lead", [(8, "celesta"), (9, "glockenspiel"), (11, "vibraphone"), (0, "soft piano"), (98, "crystal bells")]
    )
    shaker = ctx.pick((SHAKER, MARACAS, CABASA))
    for bar in range(ctx.bars):
        s = bar * ctx.bpb
        ctx.hit(drums, s, KICK, 66)
        if ctx.bpb == 4 and ctx.density >= 1:
            ctx.hit(drums, s + 2, KICK, 48)
        for b in range(ctx.bpb):
            ctx.hit(drums, s + b, shaker, 46 if b else 56)
            if ctx.density == 2:
                ctx.hit(drums, s + b + 0.5, shaker, 30)
    for start, dur, chord in tl.spans():
        ctx.add(low, start, dur, nearest(chord.root, 36, 28, 43), 70)
        ctx.chord(pad, start, dur, voice(chord, 55, max_notes=4), 55)
    melody(
        ctx,
        bell,
        tl,
        MINOR_PENTA if ctx.minor else MAJOR_PENTA,
        72,
        91,
        (0.25, 0.4, 0.55)[ctx.density],
        (1.0, 2.0, 1.5),
        60,
    )


def synthwave(ctx: Ctx) -> None:
    """80s: gated-snare backbeat, 8th-note arpeggiated synth bass, pads and a saw lead."""
    tl = ctx.timeline(
        ctx.pick(
            [
                ["i", "bVI", "bIII", "bVII"],
                ["i", "bVII", "bVI", "bVII"],
                ["i", "i", "bVI", "v"],
                ["bVI", "bVII", "i", "i"],
            ]
        )
    )
    bass = ctx.track("bass", [(38, "analog synth bass"), (39, "arpeggiated synth bass")])
    drums = ctx.drums([(24, "LinnDrum-style drum machine"), (16, "gated-reverb drums"), (25, "electronic drums")])
    pad = ctx.track("pad", [(90, "polysynth pad"), (89, "warm pad"), (50, "synth strings")])
    lead = ctx.track("lead", [(81, "saw lead"), (80, "square lead"), (81, "analog lead synth")])
    ctx.plan_fills(drums)
    arp = ctx.pick(
        [
            (0, 0, 12, 0, 0, 12, 0, 12),
            (0, 12, 0, 12, 0, 12, 0, 12),
            (0, 7, 12, 7, 0, 7, 12, 7),
            (0, 0, 0, 0, 0, 0, 12, 7),
        ]
    )
    kick = "x...x...x...x..." if ctx.rng.random() < 0.5 else "x.......x.x....."
    for bar in range(ctx.bars):
        s = bar * 4
        ctx.grid(drums, s, kick, KICK, 110)
        ctx.grid(drums, s, "....x.......x...", SNARE, 118)
        ctx.grid(drums, s, "....x.......x...", CLAP, 80)  # layered for the big gated crack
        ctx.grid(drums, s, ("x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx")[ctx.density], HAT, 62)
        chord = tl.at(s)
        root = nearest(chord.root, 36, 29, 41)
        for k, iv in enumerate(arp):
            ctx.add(bass, s + k / 2, 0.45, root + iv, 92 if k % 2 == 0 else 80)
        ctx.chord(pad, s, 3.95, voice(chord, 57, max_notes=3), 50)
    if ctx.density == 2:
        for start, dur, chord in tl.spans():
            tones = voice(chord, 67)
            for k in range(int(dur * 4)):
                ctx.add(lead, start + k / 4, 0.22, tones[k % len(tones)] + (12 if (k // len(tones)) % 2 else 0), 66)
    else:
        melody(
            ctx,
            lead,
            tl,
            MINOR_SCALE,
            67,
            86,
            (0.45, 0.6, 0.6)[ctx.density],
            (0.5, 1.0, 1.0, 2.0),
            78,
            start_bar=min(2, ctx.bars // 3),
        )
