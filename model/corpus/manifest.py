"""The corpus manifest: one JSON object a line, one line a clip.

Every model reads the corpus through `read_manifest`, so a damaged manifest is caught
in one place and reported by line number instead of surfacing as a KeyError in a
training loop an hour later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from model.errors import JamstreamError

MANIFEST_NAME = "manifest.jsonl"
SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("id", "path", "duration", "caption", "tags", "beats", "downbeats", "split", "piece_id")


@dataclass(frozen=True)
class ClipRow:
    id: str
    path: Path  # absolute path of the FLAC
    duration: float
    caption: str
    tags: dict
    beats: list[float]
    downbeats: list[float]
    split: str
    piece_id: str

    @property
    def genre(self) -> str:
        return self.tags["genre"]

    @property
    def bpm(self) -> float:
        return float(self.tags["bpm"])

    @property
    def meter(self) -> tuple[int, int]:
        num, den = self.tags["meter"].split("/")
        return int(num), int(den)


def manifest_path(corpus_dir: str | Path) -> Path:
    return Path(corpus_dir) / MANIFEST_NAME


def parse_row(line: str, where: str, corpus_dir: Path) -> ClipRow:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise JamstreamError(f"{where}: not valid JSON ({exc.msg}); delete the line or rebuild the corpus") from exc
    if not isinstance(obj, dict):
        raise JamstreamError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise JamstreamError(f"{where}: missing keys {', '.join(missing)}; rebuild the corpus")
    if obj["split"] not in SPLITS:
        raise JamstreamError(f"{where}: split {obj['split']!r} is not one of {', '.join(SPLITS)}")
    return ClipRow(
        id=str(obj["id"]),
        path=(corpus_dir / obj["path"]).resolve(),
        duration=float(obj["duration"]),
        caption=str(obj["caption"]),
        tags=dict(obj["tags"]),
        beats=[float(b) for b in obj["beats"]],
        downbeats=[float(b) for b in obj["downbeats"]],
        split=str(obj["split"]),
        piece_id=str(obj["piece_id"]),
    )


def read_manifest(corpus_dir: str | Path, split: str | None = None) -> list[ClipRow]:
    """All rows (or one split's), raising a one-line JamstreamError on any bad line."""
    corpus_dir = Path(corpus_dir)
    path = manifest_path(corpus_dir)
    if not path.is_file():
        raise JamstreamError(
            f"{corpus_dir}: no {MANIFEST_NAME} here; build one with `jamstream corpus build --out {corpus_dir}`"
        )
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            rows.append(parse_row(line, f"{path}:{number}", corpus_dir))
    if split is not None:
        rows = [r for r in rows if r.split == split]
    return rows
