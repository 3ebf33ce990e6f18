"""How good is the style space: retrieval and zero-shot genre figures, and cosines on demand.

- text -> audio retrieval on the corpus's test split: each test caption queries all
  test clips; R@1, R@5 and MRR of its own clip.
- zero-shot genre accuracy: each test clip against "<genre> music" for every genre tag
  in the corpus (all splits), so the model must pick from the full genre list.
- `cosine_matrix`: given audio files against given prompts, for listening checks.
Clip embeddings come from the files through `embed_audio`, the same path users take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from model.corpus.manifest import read_manifest
from model.errors import JamstreamError
from model.io.audio import SAMPLE_RATE, AudioReadError, load_audio
from model.progress import progress
from model.style.network import StyleModel, genre_prompt


@dataclass
class RetrievalResult:
    r_at_1: float
    r_at_5: float
    mrr: float
    genre_accuracy: float
    clips: int
    genres: list[str]
    confusions: dict[str, str] = field(default_factory=dict)  # clip id -> wrong genre picked


def evaluate_corpus(
    model: StyleModel, corpus: str | Path, split: str = "test", show_progress: bool = True
) -> RetrievalResult:
    corpus = Path(corpus)
    every = read_manifest(corpus)
    rows = [r for r in every if r.split == split]
    if not rows:
        raise JamstreamError(f"{corpus}: the {split} split is empty; nothing to evaluate")
    audio = torch.stack(
        [
            model.embed_audio(load_audio(r.path), SAMPLE_RATE)
            for r in progress(rows, desc=f"embed {split}", unit="clip", enabled=show_progress)
        ]
    )
    captions = model.embed_text([r.caption for r in rows])
    sims = captions @ audio.T  # [query caption, clip]
    own = sims.diagonal()[:, None]
    rank = (sims > own).sum(1) + 1  # ties count in the query's favour
    genres = sorted({r.genre for r in every})
    prompts = model.embed_text([genre_prompt(g) for g in genres])
    picked = (audio @ prompts.T).argmax(1)
    confusions = {r.id: genres[int(p)] for r, p in zip(rows, picked) if genres[int(p)] != r.genre}
    return RetrievalResult(
        r_at_1=float((rank <= 1).float().mean()),
        r_at_5=float((rank <= 5).float().mean()),
        mrr=float((1.0 / rank.float()).mean()),
        genre_accuracy=1.0 - len(confusions) / len(rows),
        clips=len(rows),
        genres=genres,
        confusions=confusions,
    )


@dataclass
class CosineResult:
    files: list[str]
    prompts: list[str]
    cosine: list[list[float]]  # [file][prompt]
    skipped: list[dict]  # {"path", "reason"} for files that could not be read


def cosine_matrix(model: StyleModel, files: Sequence[str | Path], prompts: Sequence[str]) -> CosineResult:
    text = model.embed_text(list(prompts))
    kept, rows, skipped = [], [], []
    for f in files:
        try:
            emb = model.embed_audio(load_audio(f), SAMPLE_RATE)
        except AudioReadError as exc:
            skipped.append({"path": str(f), "reason": str(exc)})
            continue
        kept.append(str(f))
        rows.append([round(float(v), 4) for v in text @ emb])
    return CosineResult(kept, list(prompts), rows, skipped)


def format_cosines(result: CosineResult) -> str:
    width = max([len(Path(f).name) for f in result.files] + [4])
    lines = [" " * width + "  " + "  ".join(f"{p[:18]:>18}" for p in result.prompts)]
    for f, row in zip(result.files, result.cosine):
        lines.append(f"{Path(f).name:<{width}}  " + "  ".join(f"{v:>18.3f}" for v in row))
    for s in result.skipped:
        lines.append(f"skipped {s['reason']}")
    return "\n".join(lines)
