"""`validation_split`: the one early-stopping / model-selection split every method uses."""

import numpy as np
import pytest

from biofm.errors import BiofmError
from biofm.eval.folds import make_folds, validation_split
from biofm.eval.types import Task


def _task(labels: np.ndarray, kind: str = "classification") -> Task:
    return Task(name="t", type=kind, inputs=[None] * len(labels), labels=labels)  # type: ignore[arg-type]


def test_stratified_proportions() -> None:
    # 300 rows, classes 60% / 30% / 10%: a 20% validation share keeps each class's share exactly.
    labels = np.repeat([0, 1, 2], [180, 90, 30])
    fit, val = validation_split(np.arange(300), _task(labels), 0.2, seed=3)
    assert len(val) == 60 and len(fit) == 240
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=3), [36, 18, 6])
    np.testing.assert_array_equal(np.bincount(labels[fit], minlength=3), [144, 72, 24])


def test_a_singleton_class_falls_back_to_an_unstratified_split() -> None:
    labels = np.array([0] * 30 + [1] * 29 + [2])  # class 2 has one row: sklearn could not stratify
    fit, val = validation_split(np.arange(60), _task(labels), 0.2, seed=0)
    assert len(val) == 12 and len(fit) == 48
    assert set(fit) | set(val) == set(range(60))


def test_too_few_validation_rows_per_class_falls_back() -> None:
    # 5 classes but only round(12 * 0.25) = 3 validation rows: no stratification, still a split.
    labels = np.repeat(np.arange(5), [4, 2, 2, 2, 2])
    fit, val = validation_split(np.arange(12), _task(labels), 0.25, seed=0)
    assert len(val) == 3 and len(fit) == 9


@pytest.mark.parametrize(("n", "frac"), [(9, 0.3), (5, 0.4), (12, 0.04)])
def test_small_fold_gets_an_empty_validation_set(n: int, frac: float) -> None:
    # fewer than 10 training rows, or a share that rounds to zero rows
    tr = np.arange(n)[::-1] * 2
    fit, val = validation_split(tr, _task(np.arange(2 * n) % 2), frac, seed=0)
    assert val.size == 0
    np.testing.assert_array_equal(fit, np.sort(tr))


def test_required_small_fold_raises() -> None:
    with pytest.raises(BiofmError, match="too small to carve out a validation split"):
        validation_split(np.arange(9), _task(np.arange(9) % 2), 0.3, required=True)
    fit, val = validation_split(np.arange(10), _task(np.arange(10) % 2), 0.3, required=True)
    assert len(val) == 3 and len(fit) == 7


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1])
def test_fraction_outside_unit_interval_is_refused(frac: float) -> None:
    with pytest.raises(BiofmError, match="between 0 and 1"):
        validation_split(np.arange(50), _task(np.arange(50) % 2), frac)


def test_fit_set_is_never_empty() -> None:
    fit, val = validation_split(np.arange(10), _task(np.arange(10.0), "regression"), 0.99)
    assert len(fit) == 1 and len(val) == 9


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_deterministic_for_a_seed(kind: str) -> None:
    labels = np.arange(200) % 4 if kind == "classification" else np.linspace(0, 1, 200)
    task, tr = _task(labels, kind), np.arange(0, 200, 2)
    a = validation_split(tr, task, 0.2, seed=11)
    b = validation_split(tr, task, 0.2, seed=11)
    c = validation_split(tr, task, 0.2, seed=12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_never_touches_test_rows() -> None:
    labels = np.repeat([0, 1], [70, 50])
    task = _task(labels)
    for train, test in make_folds(task, n_folds=5, seed=0):
        fit, val = validation_split(train, task, 0.2, seed=0)
        assert not (set(fit) | set(val)) & set(test)
        assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
        assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)  # sorted, no duplicates
        # stratified: each class's validation share matches the training fold's
        np.testing.assert_array_equal(np.bincount(labels[val]), np.round(np.bincount(labels[train]) * 0.2))
