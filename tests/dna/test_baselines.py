from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from biofm.config import build
from biofm.dna.baselines import (
    BASELINES,
    BaselineConfig,
    baseline_method,
    cnn,
    kmer_features,
    kmer_histgb,
    kmer_logreg,
    kmer_xgboost,
    one_hot,
    raw_token_logreg,
    resolve_baseline,
)
from biofm.errors import BiofmError
from biofm.eval.types import Fold, FoldPrediction, Task

MOTIF = "TGACGTCA"
# Small and quick: the CNN still finds an 8-bp motif in 10 epochs at this learning rate.
CNN_FAST = {"channels": 16, "n_dilated": 2, "epochs": 10, "lr": 5e-3, "patience": 10}


def motif_task(n: int = 300, length: int = 60, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    seqs = []
    for y in labels:
        s = list(rng.choice(list("ACGT"), size=length))
        if y:
            p = int(rng.integers(0, length - len(MOTIF)))
            s[p : p + len(MOTIF)] = MOTIF
        seqs.append("".join(s))
    return Task("motif", "classification", seqs, labels.astype(np.int64), ["absent", "present"])


def regression_task(n: int = 120, length: int = 40, seed: int = 1) -> Task:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]
    y = np.array([s.count("G") + s.count("C") for s in seqs], dtype=np.float64) + rng.normal(0, 0.5, n)
    return Task("gc", "regression", seqs, y)


def cv(task: Task, k: int = 3) -> list[Fold]:
    if task.type == "classification":
        return list(StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(task.labels)), task.labels))
    return list(KFold(k, shuffle=True, random_state=0).split(np.zeros(len(task.labels))))


def accuracy(task: Task, preds: list[FoldPrediction]) -> float:
    return float(np.mean(np.concatenate([p.pred == task.labels[p.test_idx] for p in preds])))


def check_shapes(task: Task, folds: list[Fold], preds: list[FoldPrediction]) -> None:
    assert [p.fold for p in preds] == list(range(len(folds)))
    for p, (_, test) in zip(preds, folds, strict=True):
        assert np.array_equal(p.test_idx, test)
        assert p.pred.shape == (len(test),)
        if task.type == "classification":
            assert p.pred.dtype == np.int64
            assert p.proba is not None and p.proba.shape == (len(test), task.n_classes)
            assert np.allclose(p.proba.sum(1), 1.0)
            assert np.array_equal(p.pred, p.proba.argmax(1))
        else:
            assert p.proba is None and np.all(np.isfinite(p.pred))


@pytest.fixture(scope="module")
def task() -> Task:
    return motif_task()


# --- features ------------------------------------------------------------------------------------


def test_kmer_features_match_naive_counts() -> None:
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGTN"), size=int(rng.integers(1, 25)))) for _ in range(40)]
    seqs += ["NNNN", "A", "ACGT"]
    ks = (1, 2, 3)
    x = kmer_features(seqs, ks).toarray()
    names = ["".join(p) for k in ks for p in itertools.product("ACGT", repeat=k)]
    for i, s in enumerate(seqs):
        expected = np.zeros(len(names))
        for k in ks:
            found = [s[j : j + k] for j in range(len(s) - k + 1) if "N" not in s[j : j + k]]
            for m in found:
                expected[names.index(m)] += 1 / len(found)
        assert np.allclose(x[i], expected, atol=1e-6), s


def test_kmer_features_default_width_and_speed() -> None:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=60)) for _ in range(3190)]
    t0 = time.perf_counter()
    x = kmer_features(seqs)
    elapsed = time.perf_counter() - t0
    assert x.shape == (3190, 4 + 16 + 64 + 256 + 1024 + 4096)
    assert np.allclose(x.sum(1), 6.0)  # one frequency block per k, each summing to 1
    assert elapsed < 2.0  # well under a second unloaded; slack for a busy shared machine


def test_one_hot_pads_and_zeroes_n() -> None:
    x, mask = one_hot(["ACGTN", "GG"])
    assert x.shape == (2, 4, 5) and mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert x[0, :, 4].sum() == 0 and x[1, :, 2:].sum() == 0
    assert x[0].argmax(0)[:4].tolist() == [0, 1, 2, 3]


# --- classification ------------------------------------------------------------------------------


def test_kmer_logreg_finds_motif(task: Task) -> None:
    folds = cv(task)
    preds = kmer_logreg(task, folds, seed=0)
    check_shapes(task, folds, preds)
    assert accuracy(task, preds) > 0.8


def test_kmer_xgboost_finds_motif(task: Task) -> None:
    folds = cv(task)
    preds = kmer_xgboost(task, folds, seed=0, n_estimators=40, n_jobs=1)
    check_shapes(task, folds, preds)
    assert accuracy(task, preds) > 0.8


def test_kmer_histgb_finds_motif_and_repeats(task: Task) -> None:
    folds = cv(task)
    kw = {"n_estimators": 20, "ks": (1, 2, 3, 4)}  # 340 dense k-mer columns: seconds, not half a minute
    preds = kmer_histgb(task, folds, seed=0, **kw)
    check_shapes(task, folds, preds)
    assert accuracy(task, preds) > 0.8
    again = kmer_histgb(task, folds, seed=0, **kw)
    for a, b in zip(preds, again, strict=True):
        assert np.array_equal(a.pred, b.pred) and np.allclose(a.proba, b.proba)


def test_without_xgboost_the_default_runs_histgb_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from types import SimpleNamespace

    from biofm.dna.baselines import BaselineConfig
    from biofm.dna.evaluation import baselines

    cfg = SimpleNamespace(baselines=BaselineConfig())  # the default `baselines.run`
    assert "kmer_xgboost" in [n for n, _ in baselines(cfg)]
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now raises ImportError
    assert resolve_baseline("kmer_xgboost") == "kmer_histgb"
    assert resolve_baseline("cnn") == "cnn"
    names = [n for n, _ in baselines(cfg)]
    assert "kmer_histgb" in names and "kmer_xgboost" not in names
    with pytest.raises(BiofmError, match="kmer_histgb"):
        kmer_xgboost(motif_task(40), [], seed=0)


def test_cnn_finds_motif_and_is_deterministic(task: Task) -> None:
    folds = cv(task)
    preds = cnn(task, folds, seed=0, **CNN_FAST)
    check_shapes(task, folds, preds)
    assert accuracy(task, preds) > 0.8
    again = cnn(task, folds, seed=0, **CNN_FAST)
    for a, b in zip(preds, again, strict=True):
        assert np.array_equal(a.pred, b.pred) and np.allclose(a.proba, b.proba)


def test_raw_token_logreg_runs(task: Task) -> None:
    folds = cv(task)
    preds = raw_token_logreg(task, folds, seed=0)
    check_shapes(task, folds, preds)


def test_sklearn_baselines_deterministic(task: Task) -> None:
    folds = cv(task)
    for run in (
        lambda: kmer_logreg(task, folds, seed=3),
        lambda: kmer_xgboost(task, folds, seed=3, n_estimators=10, n_jobs=1),
    ):
        a, b = run(), run()
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x.pred, y.pred) and np.array_equal(x.proba, y.proba)


def test_class_missing_from_a_training_fold() -> None:
    base = motif_task(60)
    labels = base.labels.copy()
    labels[:3] = 2
    task = Task("three", "classification", base.inputs, labels, ["a", "b", "c"])
    test = np.arange(0, 20)  # every example of class 2 is in the test fold
    folds = [(np.arange(20, 60), test), (np.arange(0, 40), np.arange(40, 60))]
    for preds in (
        kmer_logreg(task, folds, seed=0),
        kmer_xgboost(task, folds, seed=0, n_estimators=5, n_jobs=1),
        cnn(task, folds, seed=0, **{**CNN_FAST, "epochs": 2}),
    ):
        check_shapes(task, folds, preds)
    assert np.all(kmer_logreg(task, folds, seed=0)[0].proba[:, 2] == 0)


# --- regression ----------------------------------------------------------------------------------


def test_regression_variants() -> None:
    task = regression_task()
    folds = cv(task)
    results = {
        "logreg": kmer_logreg(task, folds, seed=0),
        "xgboost": kmer_xgboost(task, folds, seed=0, n_estimators=30, n_jobs=1),
        "cnn": cnn(task, folds, seed=0, **{**CNN_FAST, "epochs": 3}),
        "raw": raw_token_logreg(task, folds, seed=0),
    }
    for preds in results.values():
        check_shapes(task, folds, preds)
    pred = np.empty(len(task.labels))
    for p in results["logreg"]:
        pred[p.test_idx] = p.pred
    assert np.corrcoef(pred, task.labels)[0, 1] > 0.5  # GC content is a linear function of 1-mers


# --- config and registry -------------------------------------------------------------------------


def test_registry_and_config(task: Task) -> None:
    cfg = build(
        BaselineConfig,
        {"kmer_ks": [1, 2, 3], "xgboost": {"n_estimators": 5, "n_jobs": 1}, "cnn": {"epochs": 1, "channels": 4}},
        "eval.yaml",
    )
    folds = cv(task)
    assert set(BASELINES) == {"kmer_logreg", "kmer_xgboost", "kmer_histgb", "cnn", "raw_token_logreg"}
    for name in cfg.run:
        method = baseline_method(name, cfg)
        check_shapes(task, folds, method(task, folds, 0))


def test_config_rejects_unknown_baseline_and_keys() -> None:
    with pytest.raises(BiofmError, match=r"eval\.yaml: .*unknown baseline 'svm'"):
        build(BaselineConfig, {"run": ["svm"]}, "eval.yaml")
    with pytest.raises(BiofmError, match=r"unknown key 'cnn\.epoch'"):
        build(BaselineConfig, {"cnn": {"epoch": 3}}, "eval.yaml")
