from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import biofm.eval.probe as probe_mod
from biofm.errors import BiofmError
from biofm.eval.probe import probe_layers, tune_probe

N, LAYERS, DIM = 600, 3, 16


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These problems are tiny; with OpenMP threads on a busy machine, spin-waiting makes them 10-20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def embeddings(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 [N, LAYERS, DIM] with per-feature offsets/scales, correlated features and a class signal
    that grows with depth (layer 0 is hard, layer 2 easy but not separable)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, N)
    shared = rng.standard_normal((N, 4))
    X = np.empty((N, LAYERS, DIM), np.float32)
    for layer in range(LAYERS):
        means = rng.standard_normal((n_classes, DIM)) * 0.25 * (layer + 1)
        mix = rng.standard_normal((4, DIM))
        raw = rng.standard_normal((N, DIM)) + shared @ mix + means[y]
        X[:, layer] = raw * np.exp(rng.normal(0, 1, DIM)) + rng.normal(0, 5, DIM)
    return X, y


def stratified(y: np.ndarray, k: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(y)), y))


def sklearn_logreg(X: np.ndarray, y: np.ndarray, layer: int, tr: np.ndarray, te: np.ndarray, C: float = 1.0):
    Xl = X[:, layer].astype(np.float64)
    scaler = StandardScaler().fit(Xl[tr])
    model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(scaler.transform(Xl[tr]), y[tr])
    return model.predict(scaler.transform(Xl[te])), model.predict_proba(scaler.transform(Xl[te]))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_matches_sklearn(n_classes: int) -> None:
    X, y = embeddings(n_classes)
    folds = stratified(y)
    res = probe_layers(X, y, folds, "classification")
    assert sorted(res) == list(range(LAYERS))
    for layer in range(LAYERS):
        assert [p.fold for p in res[layer]] == [0, 1, 2]
        for f, (tr, te) in enumerate(folds):
            ours = res[layer][f]
            pred, proba = sklearn_logreg(X, y, layer, tr, te)
            np.testing.assert_array_equal(ours.test_idx, te)
            assert ours.proba is not None and ours.proba.shape == (len(te), n_classes)
            np.testing.assert_allclose(ours.proba, proba, atol=1e-4)
            assert np.mean(ours.pred == y[te]) == pytest.approx(np.mean(pred == y[te]), abs=1e-12)
            np.testing.assert_array_equal(ours.pred, pred)


def test_per_fold_C_equals_separate_runs() -> None:
    X, y = embeddings(3)
    folds = stratified(y)
    Cs = [0.01, 1.0, 30.0]
    together = probe_layers(X, y, folds, "classification", C=Cs, layers=[1])[1]
    for f, C in enumerate(Cs):
        _, proba = sklearn_logreg(X, y, 1, *folds[f], C=C)
        assert together[f].proba is not None
        np.testing.assert_allclose(together[f].proba, proba, atol=1e-4)


def test_class_missing_from_a_fold_gets_zero_probability() -> None:
    X, y = embeddings(3)
    folds = stratified(y)
    tr, te = folds[0]
    tr = tr[y[tr] != 2]  # class 2 never seen in fold 0's training rows
    res = probe_layers(X, y, [(tr, te), folds[1]], "classification", layers=[2])[2]
    assert res[0].proba is not None and res[1].proba is not None
    assert np.all(res[0].proba[:, 2] == 0) and np.all(res[0].pred != 2)
    np.testing.assert_allclose(res[0].proba.sum(1), 1.0)
    assert res[1].proba[:, 2].max() > 0.5


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_ridge_matches_sklearn(C: float) -> None:
    X, y_cls = embeddings(3)
    rng = np.random.default_rng(1)
    y = X[:, 1, :4].astype(np.float64) @ rng.standard_normal(4) * 0.01 + y_cls + rng.standard_normal(N)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    res = probe_layers(X, y, folds, "regression", C=C)
    for layer in range(LAYERS):
        Xl = X[:, layer].astype(np.float64)
        for f, (tr, te) in enumerate(folds):
            scaler = StandardScaler().fit(Xl[tr])
            ref = Ridge(alpha=1.0 / C).fit(scaler.transform(Xl[tr]), y[tr]).predict(scaler.transform(Xl[te]))
            assert res[layer][f].proba is None
            np.testing.assert_allclose(res[layer][f].pred, ref, rtol=1e-6, atol=1e-6)


def separable() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 450)
    centres = rng.standard_normal((3, 8)) * 4
    X = np.stack([rng.standard_normal((450, 8)) + centres[y], rng.standard_normal((450, 8))], 1)
    return X.astype(np.float32), y  # layer 0 separable, layer 1 pure noise


def test_mlp_learns_and_is_deterministic() -> None:
    X, y = separable()
    folds = stratified(y)
    kw = {"hidden": (16,), "max_iter": 25, "batch_size": 128, "lr": 2e-2, "seed": 7}
    a = probe_layers(X, y, folds, "classification", "mlp", **kw)
    b = probe_layers(X, y, folds, "classification", "mlp", **kw)
    for layer in (0, 1):
        for pa, pb in zip(a[layer], b[layer], strict=True):
            np.testing.assert_array_equal(pa.pred, pb.pred)
            np.testing.assert_array_equal(pa.proba, pb.proba)
    acc = [np.mean(np.concatenate([p.pred == y[p.test_idx] for p in a[layer]])) for layer in (0, 1)]
    assert acc[0] > 0.95
    assert acc[1] < 0.6  # noise layer stays near chance (1/3): no leakage from the separable layer
    # Two hidden layers and a layer subset give that layer the same result as the full run.
    kw2 = {**kw, "hidden": (16, 8)}
    full = probe_layers(X, y, folds, "classification", "mlp", **kw2)
    only = probe_layers(X, y, folds, "classification", "mlp", layers=[-1], **kw2)
    assert list(only) == [-1]  # keyed as asked
    for pf, po in zip(full[1], only[-1], strict=True):
        np.testing.assert_allclose(pf.proba, po.proba, atol=1e-6)


def test_mlp_regression_beats_mean() -> None:
    X, _ = separable()
    y = X[:, 0, 0].astype(np.float64) * 2 + X[:, 0, 1]
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    res = probe_layers(X, y, folds, "regression", "mlp", hidden=(16,), max_iter=60, lr=1e-2, layers=[0])[0]
    mse = np.mean(np.concatenate([(p.pred - y[p.test_idx]) ** 2 for p in res]))
    assert mse < 0.2 * np.var(y)


def test_layers_subset() -> None:
    X, y = embeddings(3)
    folds = stratified(y)
    full = probe_layers(X, y, folds, "classification")
    sub = probe_layers(X, y, folds, "classification", layers=[2, 0])
    assert sorted(sub) == [0, 2]
    for layer in (0, 2):
        for a, b in zip(full[layer], sub[layer], strict=True):
            np.testing.assert_allclose(a.proba, b.proba, atol=1e-12)
    X2 = np.ascontiguousarray(X[:, 2], dtype=np.float64)
    before = X2.copy()
    two_d = probe_layers(X2, y, folds, "classification")
    np.testing.assert_array_equal(X2, before)  # the caller's array is never standardised in place
    assert list(two_d) == [0]
    np.testing.assert_allclose(two_d[0][1].proba, full[2][1].proba, atol=1e-12)
    both = probe_layers(X, y, folds, "classification", layers=[-1, 2])
    assert list(both) == [-1, 2]
    np.testing.assert_array_equal(both[-1][0].proba, both[2][0].proba)
    with pytest.raises(BiofmError, match="out of range"):
        probe_layers(X, y, folds, "classification", layers=[3])


def test_bad_inputs() -> None:
    X, y = embeddings(3)
    folds = stratified(y)
    with pytest.raises(BiofmError, match="one value per example"):
        probe_layers(X, y[:-1], folds, "classification")
    with pytest.raises(BiofmError, match="unknown probe kind"):
        probe_layers(X, y, folds, "classification", "svm")  # type: ignore[arg-type]
    with pytest.raises(BiofmError, match="C must be positive"):
        probe_layers(X, y, folds, "classification", C=[1.0, 2.0])
    bad = X.copy()
    bad[5, 1, 3] = np.nan
    with pytest.raises(BiofmError, match="layer 1"):
        probe_layers(bad, y, folds, "classification")


def test_tune_never_reads_test_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = embeddings(3)
    X1 = X[:, 2].copy()
    folds = stratified(y)
    clean = tune_probe(X1, y, folds, "classification", "logreg", n_trials=4, seed=0)
    # Poison every outer fold's test rows in turn: features NaN, labels invalid. Any read of them would
    # raise (NaN check, label check) or change the chosen C.
    seen: list[np.ndarray] = []
    real = probe_mod.probe_layers

    def spy(Xs: np.ndarray, *args: object, **kwargs: object):
        seen.append(np.asarray(Xs))
        return real(Xs, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe_mod, "probe_layers", spy)
    for o, (tr, te) in enumerate(folds):
        Xp, yp = X1.copy(), y.copy()
        Xp[te] = np.nan
        yp[te] = -7
        seen.clear()
        chosen = tune_probe(Xp, yp, [(tr, te)], "classification", "logreg", n_trials=4, seed=0)
        assert chosen == [clean[o]]
        assert len(seen) == 4 and all(s.shape == (len(tr), DIM) for s in seen)
    assert len(clean) == len(folds)
    assert all(set(p) == {"C"} and 1e-4 <= p["C"] <= 1e2 for p in clean)
    # The chosen values plug straight back into probe_layers.
    res = probe_layers(X1, y, folds, "classification", C=[p["C"] for p in clean])
    assert len(res[0]) == len(folds)


def test_tune_mlp_returns_probe_kwargs() -> None:
    X, y = separable()
    folds = stratified(y)
    chosen = tune_probe(X[:, 0], y, folds, "classification", "mlp", n_trials=2, seed=1, max_iter=3)
    assert len(chosen) == len(folds)
    for params in chosen:
        assert set(params) == {"hidden", "weight_decay", "lr"}
        assert isinstance(params["hidden"], tuple) and len(params["hidden"]) == 1
    out = probe_layers(X[:, :1], y, folds[:1], "classification", "mlp", max_iter=3, **chosen[0])
    assert len(out[0]) == 1
