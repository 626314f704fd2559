"""The rows every method trains, selects and is scored on, shared by all so all are scored on the same splits.

Two protocols (see `biofm.eval.types`): cross-validation (k folds, or the task's own `fold` column), and
a fixed split -- a benchmark's train / validation / test rows (`Task.split`), repeated over S seeds as S
"folds" that share the one test set, fold k being seed `seed + k`. Which one a task was scored under is
written beside every number (`protocol`), so scores are never compared across protocols by accident.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np

from biofm.errors import BiofmError
from biofm.eval.types import Fold, Task

SPLITS = ("train", "validation", "test")
# Seeds of a fixed-split task when neither the task (`seeds:`) nor the evaluation (`seeds`) says.
DEFAULT_SEEDS = 3


def is_fixed(task: Task) -> bool:
    """Whether the task names fixed train / (validation) / test rows instead of being cross-validated."""
    return task.split is not None


def n_seeds(task: Task, override: int | None = None) -> int:
    """Seeds of a fixed-split task: the evaluation's `seeds` when given, else the task's `seeds:`, else 3."""
    return int(override or task.meta.get("seeds") or DEFAULT_SEEDS)


def unit(task: Task, plural: bool = True) -> str:
    """What the spread of a task's scores is over: seeds (a fixed split) or folds (cross-validation)."""
    word = "seed" if is_fixed(task) else "fold"
    return word + "s" if plural else word


def split_sizes(task: Task) -> dict[str, int] | None:
    """Rows in each part of a fixed split ({"train": N, "validation": M, "test": T}); None under CV."""
    if task.split is None:
        return None
    return {s: int(np.count_nonzero(task.split == s)) for s in SPLITS}


def protocol(task: Task, seeds: int | None = None) -> str:
    """`k-fold CV`, or `fixed split (train N / validation M / test T, S seeds)` (the validation carved from
    the training rows when the task names none): the words written beside every score of the task."""
    sizes = split_sizes(task)
    if sizes is None:
        return "k-fold CV"
    n = n_seeds(task, seeds)
    val = f"validation {sizes['validation']}" if sizes["validation"] else "validation carved from train"
    return f"fixed split (train {sizes['train']} / {val} / test {sizes['test']}, {n} seed{'s' * (n != 1)})"


def make_folds(task: Task, n_folds: int = 10, seed: int = 0, seeds: int | None = None) -> list[Fold]:
    """The folds every method shares.

    A fixed split gives `n_seeds(task, seeds)` copies of (train rows, test rows), one per seed; otherwise
    the task's own `fold` column when it has one, else (stratified) k-fold with a fixed seed.
    """
    from sklearn.model_selection import KFold, StratifiedKFold  # lazy: seconds of import, see probe.py

    n = len(task.labels)
    if task.split is not None:
        train, test = np.flatnonzero(task.split == "train"), np.flatnonzero(task.split == "test")
        return [(train.copy(), test.copy()) for _ in range(n_seeds(task, seeds))]
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


def with_fixed_split(
    task: Task,
    split: np.ndarray,
    *,
    keep_test_duplicates: bool = False,
    seeds: int | None = None,
    keys: Sequence[Hashable] | None = None,
) -> Task:
    """`task` scored on a fixed split: `split` holds each row's part (train / validation / test).

    Test rows whose input also occurs among the train or validation rows (exact duplicates, compared
    by `keys`, default the inputs when they are strings) are counted and -- unless
    `keep_test_duplicates` -- dropped from the task: several public promoter benchmarks share dozens
    of identical sequences across their splits, and a test row seen in training measures memory, not
    generalisation. The count is kept in `meta["test_duplicates"]` ({"found", "removed"}; None when the
    inputs cannot be compared, e.g. cells, which are rows of a matrix). Dropping rows assumes no other
    per-row arrays in `meta` (true of sequence and text tasks, whose inputs are their content).

    Refused, naming the task file: a split without train or test rows (before or after the duplicates
    go), and a classification task whose train rows hold a single class.
    """
    split = np.asarray(split, dtype=object)
    if len(split) != len(task.labels):
        raise ValueError(f"split has {len(split)} values for {len(task.labels)} rows")
    unknown = set(split.tolist()) - set(SPLITS)
    if unknown:
        raise ValueError(f"split values must be {SPLITS}, got {sorted(map(str, unknown))}")
    for part in ("train", "test"):
        if not np.any(split == part):
            raise BiofmError(f"{task.source}: the fixed split has no {part} rows")
    if keys is None and all(isinstance(x, str) for x in task.inputs):
        keys = task.inputs
    duplicates = None
    keep = np.ones(len(split), dtype=bool)
    if keys is not None:
        seen = {keys[i] for i in np.flatnonzero(split != "test")}
        dup = np.array([s == "test" and keys[i] in seen for i, s in enumerate(split.tolist())], dtype=bool)
        found = int(dup.sum())
        duplicates = {"found": found, "removed": 0 if keep_test_duplicates else found}
        if not keep_test_duplicates:
            keep = ~dup
    if not np.any(split[keep] == "test"):
        raise BiofmError(f"{task.source}: every test row duplicates a train or validation row; "
                         "set keep_test_duplicates: true to score them anyway")
    if task.type == "classification" and len(np.unique(task.labels[keep & (split == "train")])) < 2:
        raise BiofmError(f"{task.source}: the train rows hold a single class; classification needs at least two")
    meta = {**task.meta, "seeds": seeds, "test_duplicates": duplicates}
    rows = np.flatnonzero(keep)
    return replace(task, inputs=[task.inputs[i] for i in rows], labels=task.labels[rows], folds=None,
                   split=np.asarray(split[rows].tolist(), dtype=object), meta=meta)


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
    """A fold's early-stopping / model-selection set: (fit, val), both sorted.

    The one implementation for every method (CNN baseline, MLP probe, fine-tuning, layer choice). When
    the task names validation rows (a fixed split's `validation:` table or `dev` rows) those are the
    validation set, whatever `frac` and `seed` say, and `fit` is `train_idx` without them: every method
    then selects on the benchmark's own validation rows, as published results do. Otherwise the set is
    carved out of `train_idx`: only `train_idx` is ever split, so a fold's test rows can never end up in
    either part, and the split is a deterministic function of (`train_idx`, the task's labels, `frac`,
    `seed`). Guards, and why:

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
    if task.split is not None and np.any(task.split == "validation"):
        val = np.flatnonzero(task.split == "validation")
        return np.sort(np.setdiff1d(train_idx, val)), val
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
