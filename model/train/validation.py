"""The Trainer's validation stage: when it runs, and the best state and early stopping it drives.

A task that has held-out data says how to score it (`Task.validate`) and how to read the
scores (`Task.validation()` -> `Validation`): every how many steps, which figure picks the
best state, whether lower or higher is better, and after how many stages without a better
figure training stops. The Trainer keeps every stage's record in a `ValidationHistory`,
which it writes into each checkpoint, so a resumed run continues early stopping - and
knows its best state - exactly where the checkpoint left off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Validation:
    every: int = 0  # steps between validation stages; 0: none on a schedule
    at_end: bool = False  # also on the run's last step (all steps done, or --max-minutes)
    metric: str | None = None  # the figure that picks the best state (None: no best state)
    higher_is_better: bool = False
    min_delta: float = 0.0  # a gain smaller than this is not better
    patience: int | None = None  # stages without a better figure before stopping (None: never)

    @property
    def enabled(self) -> bool:
        return self.every > 0 or self.at_end

    def due(self, step: int, last: bool) -> bool:
        return (self.every > 0 and step % self.every == 0) or (self.at_end and last)


RECORD_KEYS = ("step", "train_seconds", "improved")  # what a record holds beside the task's figures


class ValidationHistory:
    """Every validation stage's record: {"step", **figures, "train_seconds", "improved"}."""

    def __init__(self, spec: Validation, records: list[dict] | None = None):
        self.spec = spec
        self.records: list[dict] = list(records or [])

    def best(self) -> dict | None:
        """The record whose state is the best state: the last one that improved."""
        return next((r for r in reversed(self.records) if r["improved"]), None)

    def better(self, figures: dict[str, float]) -> bool:
        """Do these figures beat the best by more than min_delta? (The first stage always does.)"""
        name = self.spec.metric
        if name is None:
            return False
        if name not in figures:
            raise KeyError(f"validation returned no {name!r} (it returned {sorted(figures)})")
        best = self.best()
        if best is None:
            return True
        if self.spec.higher_is_better:
            return figures[name] > best[name] + self.spec.min_delta
        return figures[name] < best[name] - self.spec.min_delta

    def add(self, step: int, figures: dict[str, float], train_seconds: float) -> dict:
        record = {"step": step, **figures, "train_seconds": round(train_seconds, 3), "improved": self.better(figures)}
        self.records.append(record)
        return record

    def out_of_patience(self) -> bool:
        """`patience` stages in a row without a better figure."""
        if self.spec.patience is None or self.spec.metric is None:
            return False
        since = 0
        for record in reversed(self.records):
            if record["improved"]:
                break
            since += 1
        return since >= self.spec.patience
