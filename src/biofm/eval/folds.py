"""Cross-validation folds shared by every method, so all are scored on the same splits."""

from __future__ import annotations

import numpy as np

from biofm.errors import BiofmError
from biofm.eval.types import Fold, Task


def make_folds(task: Task, n_folds: int = 10, seed: int = 0) -> list[Fold]:
    """The task's own `fold` column when it has one, else (stratified) k-fold with a fixed seed."""
    from sklearn.model_selection import KFold, StratifiedKFold  # lazy: seconds of import, see probe.py

    n = len(task.labels)
    if task.folds is not None:
        ids = np.unique(task.folds)
        if len(ids) < 2:
            raise BiofmError(f"{task.source}: the fold column has a single value; need at least 2 folds")
        return [(np.flatnonzero(task.folds != f), np.flatnonzero(task.folds == f)) for f in ids]
    if task.type == "classification":
        smallest = int(np.bincount(task.labels).min())
        if smallest < n_folds:
            raise BiofmError(f"{task.source}: the rarest class has {smallest} examples, fewer than the "
                             f"{n_folds} folds; use fewer folds (--folds)")
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(np.zeros(n), task.labels)]
    if n < n_folds:
        raise BiofmError(f"{task.source}: {n} examples for {n_folds} folds")
    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(n))]


# Below this many training rows a fold gets no validation set (see `validation_split`).
MIN_VALIDATION_ROWS = 10


def validation_split(
    train_idx: np.ndarray,
    task: Task,
    frac: float = 0.1,
    seed: int = 0,
    *,
    required: bool = False,
    min_rows: int = MIN_VALIDATION_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve an early-stopping / model-selection set out of a fold's training rows: (fit, val), both sorted.

    The one implementation for every method (CNN baseline, MLP probe, fine-tuning, layer choice). Only
    `train_idx` is ever split, so a fold's test rows can never end up in either part. The split is a
    deterministic function of (`train_idx`, the task's labels, `frac`, `seed`). Guards, and why:

    * `frac` must lie in (0, 1): 0 or 1 would leave nothing to fit or nothing to validate on.
    * Fewer than `min_rows` (10) training rows, or `round(frac * n)` = 0 validation rows: the fold
      is too small to spare rows, and an early-stopping signal from one or two rows is noise. The
      validation set comes back empty (callers train for their full budget) -- or, with
      `required=True` (callers that cannot work without one, like the MLP probe), a `BiofmError`.
    * The validation share is capped at n - 1 rows, so the fit set is never empty.
    * Classification is stratified (each class keeps its share in both parts) only when every class
      present has >= 2 rows and both parts have at least one row per class: scikit-learn's
      stratified split refuses anything less, so otherwise the split falls back to a plain random one
      rather than failing on a rare class.
    """
    from sklearn.model_selection import train_test_split  # lazy, as in make_folds

    train_idx = np.asarray(train_idx)
    if not 0 < frac < 1:
        raise BiofmError(f"validation fraction must lie strictly between 0 and 1, got {frac}")
    n = len(train_idx)
    n_val = min(round(n * frac), n - 1)
    if n < min_rows or n_val < 1:
        if required:
            raise BiofmError(f"a fold is too small to carve out a validation split ({n} training rows, "
                             f"fraction {frac}; need at least {min_rows} rows and one validation row)")
        return np.sort(train_idx), train_idx[:0]
    strat = None
    if task.type == "classification":
        labels = task.labels[train_idx]
        counts = np.unique(labels, return_counts=True)[1]
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
            strat = labels
    fit, val = train_test_split(train_idx, test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(fit), np.sort(val)
