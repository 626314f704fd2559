from __future__ import annotations

import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold

import biofm.cells.baselines as cb
from biofm.cells.baselines import (
    CELL_BASELINES,
    CellBaselineConfig,
    cell_baseline_method,
    fold_pca,
    highly_variable_genes,
    knn_method,
    log_normalise,
    logreg_method,
    pca_embedding,
)
from biofm.cells.tasks import load_cell_task
from biofm.config import build
from biofm.errors import BiofmError
from biofm.eval.types import Fold, FoldPrediction, Task

N_TYPES, N_PER, N_GENES = 3, 40, 200


def synthetic_h5ad(path: Path, seed: int = 0, negative: bool = False) -> Path:
    """3 cell types x 40 cells, 200 genes, negative-binomial counts; each type has 10 marker genes."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(N_TYPES), N_PER)
    mu = np.full((N_TYPES, N_GENES), 0.5)
    mu[:, 100:] = rng.gamma(1.0, 1.0, size=N_GENES - 100)  # shared background genes
    for t in range(N_TYPES):
        mu[t, t * 10 : (t + 1) * 10] = 6.0
    means = mu[codes] * rng.lognormal(0, 0.3, size=(len(codes), 1))  # library size varies by cell
    x = rng.negative_binomial(2, 2 / (2 + means)).astype(np.float32)
    if negative:
        x[0, 0] = -1
    obs = pd.DataFrame({"cell_type": np.array(["alpha", "beta", "gamma"])[codes],
                        "batch": np.tile(["b1", "b2"], len(codes) // 2)}, index=[f"c{i}" for i in range(len(codes))])
    ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)])).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Task:
    return load_cell_task(synthetic_h5ad(tmp_path_factory.mktemp("cells") / "toy.h5ad"), "cell_type", "batch")


def cv(task: Task, k: int = 3) -> list[Fold]:
    return list(StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(task.labels)), task.labels))


def accuracy(task: Task, preds: list[FoldPrediction]) -> float:
    return float(np.mean(np.concatenate([p.pred == task.labels[p.test_idx] for p in preds])))


@pytest.mark.parametrize("name", ["pca_logreg", "pca_knn", "hvg_logreg"])
def test_baselines_beat_chance(task: Task, name: str) -> None:
    folds = cv(task)
    cfg = CellBaselineConfig(n_hvg=50, n_pcs=10)
    preds = CELL_BASELINES[name](task, folds, 0, cfg)
    assert [p.fold for p in preds] == [0, 1, 2]
    for p, (_, test) in zip(preds, folds, strict=True):
        assert np.array_equal(p.test_idx, test)
        assert p.proba is not None and p.proba.shape == (len(test), N_TYPES)
        assert np.allclose(p.proba.sum(1), 1.0)
    assert accuracy(task, preds) > 0.9  # chance is 1/3


def test_log_normalise_by_hand() -> None:
    out = log_normalise(sp.csr_matrix(np.array([[1.0, 3.0], [0.0, 0.0], [2.0, 0.0]]))).toarray()
    assert np.allclose(out, [[np.log1p(2500), np.log1p(7500)], [0, 0], [np.log1p(1e4), 0]], rtol=1e-6)


def test_highly_variable_genes_by_hand() -> None:
    rng = np.random.default_rng(0)
    # Genes 0-3 constant-ish background, gene 4 highly dispersed, gene 5 never detected, gene 6 = gene 4.
    spiky = rng.poisson(5, size=200) * (rng.random(200) < 0.1) * 10
    x = np.column_stack([rng.poisson(5, size=(200, 4)), spiky, np.zeros(200), spiky])
    lognorm = np.log1p(x.astype(float))
    assert highly_variable_genes(lognorm, 1, n_bins=1).tolist() == [4, 6]  # scanpy keeps ties with the last
    # n_top >= genes: every gene with a normalised dispersion; the undetected gene 5 never has one
    assert highly_variable_genes(lognorm, 7, n_bins=1).tolist() == [0, 1, 2, 3, 4, 6]
    # 20 bins: genes 4 and 6 share a bin alone, their dispersions' s.d. is 0, 0 / 0 has no rank (scanpy's rule)
    assert highly_variable_genes(lognorm, 7).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no gene varies"):
        highly_variable_genes(np.zeros((5, 3)), 2)


def test_seurat_v3_flavour_runs_on_counts(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    """hvg_flavor=seurat_v3 chooses the HVGs from the training cells' COUNTS (scGPT's choice)."""
    pytest.importorskip("skmisc")
    seen: list[float] = []
    real = cb.highly_variable_genes_seurat_v3
    monkeypatch.setattr(cb, "highly_variable_genes_seurat_v3",
                        lambda x, n: seen.append(float(x.max())) or real(x, n))
    preds = cb.pca_logreg(task, cv(task), 0, CellBaselineConfig(n_hvg=50, n_pcs=10, hvg_flavor="seurat_v3"))
    assert len(seen) == 3 and min(seen) > 20  # raw counts, not log-normalised values (those stay below ~9)
    assert accuracy(task, preds) > 0.9


def test_preprocessing_fitted_on_training_cells_only(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    lognorm = log_normalise(cb._counts(task))
    train, test = cv(task)[0]
    a_tr, a_te = fold_pca(lognorm, train, test, n_hvg=50, n_pcs=10, seed=0)
    # Scramble the test cells completely: the training cells' features must not move at all.
    scrambled = lognorm.toarray()
    scrambled[test] = np.random.default_rng(1).permutation(scrambled[test].ravel()).reshape(len(test), -1) * 3
    b_tr, b_te = fold_pca(sp.csr_matrix(scrambled), train, test, n_hvg=50, n_pcs=10, seed=0)
    assert np.allclose(a_tr, b_tr, atol=1e-5) and not np.allclose(a_te, b_te)

    seen: list[int] = []
    real = cb.highly_variable_genes
    monkeypatch.setattr(cb, "highly_variable_genes", lambda x, n: seen.append(x.shape[0]) or real(x, n))
    folds = cv(task)
    cb.pca_logreg(task, folds, 0, CellBaselineConfig(n_hvg=50, n_pcs=10))
    assert seen == [len(tr) for tr, _ in folds]


def test_counts_follow_task_rows(task: Task, tmp_path: Path) -> None:
    full = cb._counts(task)
    sub = Task("sub", "classification", [5, 2, 7], np.array([0, 1, 0]), ["a", "b"], meta=task.meta)
    assert np.array_equal(cb._counts(sub).toarray(), full[[5, 2, 7]].toarray())
    bad = load_cell_task(synthetic_h5ad(tmp_path / "neg.h5ad", negative=True), "cell_type")
    with pytest.raises(BiofmError, match="negative values"):
        cb._counts(bad)


def test_embedding_classifiers() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 8)) + np.eye(3, 8)[labels] * 6
    X[:, 7] *= 1000  # a huge noise dimension: standardisation must tame it
    task = Task("emb", "classification", list(range(90)), labels, ["a", "b", "c"])
    folds = cv(task)
    assert accuracy(task, knn_method(X, k=5)(task, folds, 0)) > 0.95
    assert accuracy(task, logreg_method(X, C=1.0)(task, folds, 0)) > 0.95
    with pytest.raises(ValueError, match="do not match"):
        knn_method(X[:10])(task, folds, 0)


def test_class_missing_from_a_training_fold() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    X = np.eye(3)[labels] + np.random.default_rng(0).normal(0, 0.1, size=(22, 3))
    task = Task("gap", "classification", list(range(22)), labels, ["a", "b", "c"])
    train = np.flatnonzero(labels != 2)[::2]
    test = np.setdiff1d(np.arange(22), train)
    for method in (knn_method(X, 3), logreg_method(X)):
        (p,) = method(task, [(train, test)], 0)
        assert p.proba.shape == (len(test), 3) and np.all(p.proba[:, 2] == 0)


def test_pca_embedding_shape(task: Task) -> None:
    emb = pca_embedding(task, 0, CellBaselineConfig(n_hvg=100, n_pcs=20))
    assert emb.shape == (N_TYPES * N_PER, 20) and emb.dtype == np.float32


def test_config_and_registry() -> None:
    assert CellBaselineConfig().run == ["pca_logreg", "pca_knn", "hvg_logreg"]
    with pytest.raises(BiofmError, match="unknown cell baseline 'pca'"):
        build(CellBaselineConfig, {"run": ["pca"]}, "eval.yaml")
    assert callable(cell_baseline_method("pca_knn"))


@pytest.mark.skipif(importlib.util.find_spec("scvi") is not None, reason="scvi-tools is installed")
def test_scvi_not_installed_is_a_clear_error(task: Task) -> None:
    with pytest.raises(BiofmError, match="scvi-tools is not installed; pip install scvi-tools"):
        CELL_BASELINES["scvi"](task, cv(task), 0, CellBaselineConfig())


def test_dense_x_and_counts_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(20, 6)).astype(np.float32)
    obs = pd.DataFrame({"cell_type": ["a", "b"] * 10}, index=[f"c{i}" for i in range(20)])
    adata = ad.AnnData(np.log1p(counts), obs=obs)  # dense X holds processed values, the layer the counts
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(tmp_path / "dense.h5ad")
    (tmp_path / "t.yaml").write_text("name: d\nh5ad: dense.h5ad\nlabel_column: cell_type\nlayer: counts\n")
    task = load_cell_task(tmp_path / "t.yaml")
    assert np.array_equal(cb._counts(task).toarray(), counts)
    plain = load_cell_task(tmp_path / "dense.h5ad:cell_type")
    assert np.allclose(cb._counts(plain).toarray(), np.log1p(counts))
