import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import matthews_corrcoef

from biofm.eval.folds import make_folds
from biofm.eval.types import Task
from biofm.text.baselines import TEXT_BASELINES, TextBaselineConfig, text_baseline_method, tfidf_logreg

POS = ["upregulated", "activation", "increase", "elevated", "induced", "enhanced"]
NEG = ["suppressed", "inhibition", "decrease", "reduced", "blocked", "impaired"]
SHARED = ["the", "cells", "were", "in", "patients", "with", "tumour", "protein", "expression", "after", "treatment"]


def _task(n=90, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 3  # three classes: 0 = pos, 1 = neg, 2 = neither
        words = list(rng.choice(SHARED, size=8))
        if y < 2:
            words += list(rng.choice(POS if y == 0 else NEG, size=2))
        if rng.random() < noise:
            y = int(rng.integers(3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return Task("synthetic", "classification", texts, np.array(labels), classes=["pos", "neg", "none"])


def test_tfidf_logreg_beats_chance_on_a_separable_task():
    task = _task()
    folds = make_folds(task, 3, seed=0)
    preds = TEXT_BASELINES["tfidf_logreg"](task, folds, 0, TextBaselineConfig())
    assert [p.fold for p in preds] == [0, 1, 2]
    y = np.concatenate([task.labels[p.test_idx] for p in preds])
    pred = np.concatenate([p.pred for p in preds])
    assert matthews_corrcoef(y, pred) > 0.8
    for p in preds:
        assert p.proba.shape == (len(p.test_idx), 3) and np.allclose(p.proba.sum(1), 1)
        assert (p.proba.argmax(1) == p.pred).all()


def test_deterministic_and_usable_as_a_method():
    task = _task(noise=0.2)
    folds = make_folds(task, 3, seed=1)
    method = text_baseline_method("tfidf_logreg", TextBaselineConfig(c_grid=[1.0]))
    a, b = method(task, folds, 0), method(task, folds, 0)
    assert method.__name__ == "tfidf_logreg"
    assert all((x.proba == y.proba).all() for x, y in zip(a, b, strict=True))


def test_vocabulary_comes_from_training_rows_only():
    # A word seen only in the test fold must not change a prediction: replace it and compare.
    task = _task()
    folds = make_folds(task, 3, seed=0)
    _train, test = folds[0]
    altered = list(task.inputs)
    for i in test:
        altered[i] = altered[i] + " zzzunseen zzzunseen"
    other = Task(task.name, task.type, altered, task.labels, task.classes)
    p1 = tfidf_logreg(task, [folds[0]], 0)[0]
    p2 = tfidf_logreg(other, [folds[0]], 0)[0]
    assert np.allclose(p1.proba, p2.proba)


def test_regression_uses_ridge():
    rng = np.random.default_rng(0)
    texts, values = [], []
    for _ in range(60):
        k = int(rng.integers(0, 4))
        texts.append(" ".join(["high"] * k + list(rng.choice(SHARED, size=6))))
        values.append(k + rng.normal(0, 0.1))
    task = Task("reg", "regression", texts, np.array(values))
    preds = tfidf_logreg(task, make_folds(task, 3, seed=0), 0)
    y = np.concatenate([task.labels[p.test_idx] for p in preds])
    pred = np.concatenate([p.pred for p in preds])
    assert preds[0].proba is None and np.corrcoef(y, pred)[0, 1] > 0.8


def test_config_validation():
    with pytest.raises(ValidationError, match="unknown text baseline 'bogus'"):
        TextBaselineConfig(run=["bogus"])
    with pytest.raises(ValidationError, match="c_grid"):
        TextBaselineConfig(c_grid=[0.0])
