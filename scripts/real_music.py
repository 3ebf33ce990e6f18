"""A codec corpus of real recorded music from Debian packages (not FluidSynth renders).

Musicians fine-tune on their own recordings, so the codec must not know only the GM
soundfont, and its pitch figures must hold on music it never saw. This makes a corpus in
jamstream's manifest format (codec use only: no beat annotations) from free-licence game
soundtracks that Debian ships:

  singularity-music  Max McCracken, CC BY-SA 3.0         (16 tracks, Ogg Vorbis)
  hyperrogue-music   Shawn Parrotte, Lincoln Domina, ...  CC BY-SA 3.0 (17 tracks)
  asc-music          Michael Kievernagel, GPL-2+          (3 tracks, MP3)

EVAL_TRACKS (8, two packages, several composers) become the `test` split as one 30 s
excerpt each, taken from 25% into the track; every other track becomes 20 s `train` clips.
No eval track is ever cut into train clips.

  python scripts/real_music.py --out /work/realmusic      # apt-get installs the packages if missing
  jamstream eval codec /work/realmusic --levels 16,32     # the test split
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.io.audio import SAMPLE_RATE, load_audio, loudness_normalize, write_audio  # noqa: E402

PACKAGES = {
    "singularity-music": ("/usr/share/games/singularity/music", "CC-BY-SA-3.0"),
    "hyperrogue-music": ("/usr/share/hyperrogue/music", "CC-BY-SA-3.0"),
    "asc-music": ("/usr/share/games/asc/music", "GPL-2+"),
}
EVAL_TRACKS = (
    "hr3-caves.ogg",
    "hr3-jungle.ogg",
    "hr-domina-mountain.ogg",
    "hr-savino-ocean.ogg",
    "Aberrations.ogg",
    "Coherence.ogg",
    "Nebula.ogg",
    "Awakening.ogg",
)
EVAL_SECONDS, TRAIN_SECONDS = 30.0, 20.0


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        print(f"real_music: installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    ensure_packages()
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for package, (folder, licence) in PACKAGES.items():
        for track in sorted(Path(folder).rglob("*")):
            if track.suffix.lower() not in (".ogg", ".mp3"):
                continue
            audio = load_audio(track)
            stem = f"{package.split('-')[0]}-{track.stem.replace(' ', '_')}"
            held_out = track.name in EVAL_TRACKS
            if held_out:
                start = int(0.25 * audio.shape[1])
                pieces = [(start, start + int(EVAL_SECONDS * SAMPLE_RATE))]
            else:
                n = int(TRAIN_SECONDS * SAMPLE_RATE)
                pieces = [(s, s + n) for s in range(0, audio.shape[1] - n + 1, n)]
            for k, (a, b) in enumerate(pieces):
                clip = audio[:, a:b]
                if clip.shape[1] < SAMPLE_RATE or float(np.abs(clip).max()) < 1e-3:
                    continue
                rel = Path("audio") / f"{stem}-{k:03d}.flac"
                if not (args.out / rel).is_file():
                    write_audio(args.out / rel, loudness_normalize(clip, SAMPLE_RATE))
                rows.append(
                    {
                        "id": f"{stem}-{k:03d}",
                        "path": str(rel),
                        "duration": round(clip.shape[1] / SAMPLE_RATE, 4),
                        "caption": f"recorded music: {track.stem} ({package}, {licence})",
                        "tags": {"genre": "recorded", "source": package, "license": licence, "track": track.name},
                        "beats": [],
                        "downbeats": [],
                        "split": "test" if held_out else "train",
                        "piece_id": stem,
                    }
                )
    tmp = args.out / ".manifest.partial"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(args.out / "manifest.jsonl")
    test = sum(r["split"] == "test" for r in rows)
    print(f"{len(rows)} clips ({test} test excerpts of {len(EVAL_TRACKS)} held-out tracks) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
