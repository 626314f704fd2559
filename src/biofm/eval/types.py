"""What every evaluation method receives and returns, whatever the modality.

A method gets the task and the cross-validation folds, and returns its predictions on each fold's
test examples; metrics, summaries and verdicts are computed from those in one place, so every
method is scored by the same code on the same folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

TaskType = Literal["classification", "regression"]

# The task YAMLs shipped with biofm (every modality's); their data are registered datasets (`dataset:NAME`).
SHIPPED_TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


@dataclass
class Task:
    name: str
    type: TaskType
    inputs: list[Any]  # one per example: DNA sequences (str), texts, or cell indices
    labels: np.ndarray  # int class codes 0..C-1 for classification, float for regression
    classes: list[str] | None = None  # class names for codes 0..C-1
    folds: np.ndarray | None = None  # predefined fold of each example (the table's `fold` column)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 0


Fold = tuple[np.ndarray, np.ndarray]  # (train indices, test indices)


@dataclass
class FoldPrediction:
    fold: int
    test_idx: np.ndarray
    pred: np.ndarray  # class codes (classification) or values (regression), [n_test]
    proba: np.ndarray | None = None  # [n_test, n_classes] class probabilities, classification only


# A method: (task, folds, seed) -> one FoldPrediction per fold.
Method = Callable[[Task, list[Fold], int], list[FoldPrediction]]
