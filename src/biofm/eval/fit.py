"""Fit a scikit-learn-style model on each fold's training rows and predict its test rows: the one
fit-predict loop behind every baseline (k-mers, TF-IDF, PCA / LSI features, cell and peak matrices)
and the kNN / logistic-regression readouts of frozen embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from biofm.eval.types import Fold, FoldPrediction, Task

TaskType = Literal["classification", "regression"]
# features: rows indexable by fold indices (an array, a sparse matrix, a list of texts), or a function
# (train rows, test rows) -> (train features, test features) for features fitted per fold (PCA, LSI)
Features = Any
Maker = Callable[[TaskType, int, int], Any]  # (task type, fold, n training rows) -> an unfitted estimator


@dataclass
class Fitted:
    """One fold's fitted estimator with the test rows it predicted, for a per-fold callback (`on_fit`):
    what an explanation (biofm.eval.explain) needs without a second fit-predict loop."""

    fold: int
    model: Any  # the fitted estimator
    x_test: Any  # the test rows' features, exactly as the estimator saw them
    test_idx: np.ndarray
    y_test: np.ndarray  # the test rows' labels (task class codes, or values)
    # classification: the task's class code of each of the estimator's outputs 0..m-1 (the classes present
    # in the training rows); regression: empty
    present: np.ndarray


OnFit = Callable[[Fitted], None]


def check_folds(task: Task, folds: list[Fold]) -> None:
    """Each fold has train and test rows, all within the task."""
    if task.type not in ("classification", "regression"):
        raise ValueError(f"unknown task type {task.type!r}")
    n = len(task.labels)
    for i, (train, test) in enumerate(folds):
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"fold {i} has an empty train or test set")
        if max(int(np.max(train)), int(np.max(test))) >= n or min(int(np.min(train)), int(np.min(test))) < 0:
            raise ValueError(f"fold {i} has indices outside 0..{n - 1}")


def _rows(features: Features, train: np.ndarray, test: np.ndarray) -> tuple[Any, Any]:
    if callable(features):
        return features(train, test)
    if isinstance(features, list):
        return [features[i] for i in train], [features[i] for i in test]
    return features[train], features[test]


def fit_predict(task: Task, folds: list[Fold], features: Features, make: Maker,
                on_fit: OnFit | None = None) -> list[FoldPrediction]:
    """For each fold: features of its rows, `make(type, fold, n_train)` fitted on the train rows, the test
    rows predicted; `on_fit`, when given, then sees the fitted estimator and its test rows (not called for a
    training fold with a single class, where nothing is fitted).

    Classes missing from a training fold are handled here once for every model: the model sees labels
    re-coded to 0..m-1 and its probabilities are scattered back into all of the task's classes (absent
    classes get probability 0), so every fold's `proba` has the same columns; a training fold with a
    single class predicts it.

    BLAS is held to one thread: these fits are many small matrix products, and when the cores are
    shared a multi-threaded BLAS stalls on each one (a 40-example fit measured 7 s instead of 0.05 s).
    """
    from threadpoolctl import threadpool_limits

    check_folds(task, folds)
    y = task.labels
    out: list[FoldPrediction] = []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (train, test) in enumerate(folds):
            train, test = np.asarray(train), np.asarray(test)
            x_tr, x_te = _rows(features, train, test)
            if task.type == "regression":
                model = make("regression", i, len(train))
                model.fit(x_tr, y[train].astype(np.float64))
                out.append(FoldPrediction(i, test, np.asarray(model.predict(x_te), dtype=np.float64)))
                if on_fit is not None:
                    on_fit(Fitted(i, model, x_te, test, y[test], np.zeros(0, dtype=np.int64)))
                continue
            present, y_tr = np.unique(y[train], return_inverse=True)
            proba = np.zeros((len(test), max(task.n_classes, int(y.max()) + 1)), dtype=np.float64)
            if len(present) == 1:
                proba[:, present[0]] = 1.0
            else:
                model = make("classification", i, len(train))
                model.fit(x_tr, y_tr)
                proba[:, present] = model.predict_proba(x_te)
                if on_fit is not None:
                    on_fit(Fitted(i, model, x_te, test, y[test], present))
            out.append(FoldPrediction(i, test, proba.argmax(1).astype(np.int64), proba))
    return out


def scaled_logreg(C: float, seed: int, max_iter: int = 1000) -> Any:
    """L2 logistic regression on features standardised on the training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


def scaled_knn(k: int) -> Any:
    """k nearest neighbours (cosine distance, uniform vote) on features standardised on the training rows."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine"))
