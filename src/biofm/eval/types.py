"""What every evaluation method receives and returns, whatever the modality.

A method gets the task and the folds, and returns its predictions on each fold's test examples;
metrics, summaries and verdicts are computed from those in one place, so every method is scored by
the same code on the same folds.

Two protocols share that shape. Cross-validation: k folds, each with its own test rows. A fixed split
(a benchmark's own train / validation / test files, `Task.split`): S "folds" that all hold the same
train and test rows and differ only in their seed -- fold k is seed `seed + k` -- so a method needs no
second signature, its mean ± s.d. is over seeds (as published tables report), and two methods are
paired seed by seed on the one test set.
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
    # fixed split of each example, "train" / "validation" / "test" (a task's train:/validation:/test: tables
    # or its split column); None = cross-validation. The validation rows, when there are any, are every
    # method's model-selection set (biofm.eval.folds.validation_split), never trained on or scored.
    split: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 0


Fold = tuple[np.ndarray, np.ndarray]  # (train indices, test indices); under a fixed split, the same for every seed


@dataclass
class FoldPrediction:
    fold: int  # the fold's index (the seed's index, seed + fold, under a fixed split)
    test_idx: np.ndarray
    pred: np.ndarray  # class codes (classification) or values (regression), [n_test]
    proba: np.ndarray | None = None  # [n_test, n_classes] class probabilities, classification only


# A method: (task, folds, seed) -> one FoldPrediction per fold.
Method = Callable[[Task, list[Fold], int], list[FoldPrediction]]
