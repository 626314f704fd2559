"""Cross-validation folds shared by every method, so all are scored on the same splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from biofm.errors import BiofmError
from biofm.eval.types import Fold, Task


def make_folds(task: Task, n_folds: int = 10, seed: int = 0) -> list[Fold]:
    """The task's own `fold` column when it has one, else (stratified) k-fold with a fixed seed."""
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


def validation_split(
    train_idx: np.ndarray, task: Task, frac: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve an early-stopping set out of a fold's training rows (never its test rows)."""
    strat = task.labels[train_idx] if task.type == "classification" else None
    if strat is not None and np.bincount(strat).min() < 2:
        strat = None
    fit, val = train_test_split(train_idx, test_size=frac, random_state=seed, stratify=strat)
    return np.sort(fit), np.sort(val)
