"""Pack a corpus's train split as MP3 into a small corpus dir, to carry to a lent GPU.

The GPU machine can't run FluidSynth (no soundfont, no network), and a device call
carries at most 64 MiB; 128 kbps MP3 fits ~50 minutes of music in that. The output is an
ordinary corpus directory (manifest.jsonl + audio), so `jamstream train` reads it as is.

usage: python scripts/pack_corpus.py CORPUS OUT --megabytes 50 [--kbps 128]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.corpus.manifest import manifest_path  # noqa: E402
from model.io.audio import SAMPLE_RATE, load_audio  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--megabytes", type=float, default=50.0)
    ap.add_argument("--kbps", type=int, default=128)
    args = ap.parse_args()
    from pedalboard.io import AudioFile

    out = Path(args.out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    budget = args.megabytes * 1e6
    used = 0
    rows = []
    for line in manifest_path(args.corpus).read_text().splitlines():
        row = json.loads(line)
        if row["split"] != "train":
            continue
        audio = load_audio(Path(args.corpus) / row["path"])
        rel = f"audio/{row['id']}.mp3"
        with AudioFile(str(out / rel), "w", SAMPLE_RATE, 2, quality=str(args.kbps)) as f:
            f.write(audio)
        used += (out / rel).stat().st_size
        rows.append({**row, "path": rel})
        if used > budget:
            break
    manifest_path(out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    minutes = sum(r["duration"] for r in rows) / 60
    print(f"packed {len(rows)} clips, {minutes:.1f} min, {used / 1e6:.1f} MB into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
