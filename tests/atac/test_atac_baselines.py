from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pydantic import ValidationError
from sklearn.metrics import balanced_accuracy_score

from biofm.atac import baselines as B
from biofm.atac import evaluation as atac_eval
from biofm.atac.tasks import load_atac_task
from biofm.errors import BiofmError
from biofm.eval.folds import make_folds
from biofm.eval.types import FoldPrediction, Task


def _balanced_accuracy(task: Task, preds: list[FoldPrediction]) -> float:
    idx = np.concatenate([p.test_idx for p in preds])
    return float(balanced_accuracy_score(task.labels[idx], np.concatenate([p.pred for p in preds])))


def _two_type_task(tmp_path: Path, n: int = 120, n_peaks: int = 300, seed: int = 0) -> Task:
    """Two cell types that differ in which 40 peaks open more often, with a 4x spread of depths."""
    rng = np.random.default_rng(seed)
    labels = np.array(["A", "B"] * (n // 2))
    p = np.full((n, n_peaks), 0.04)
    p[labels == "A", :40] = 0.25
    p[labels == "B", 40:80] = 0.25
    depth = rng.uniform(0.5, 2.0, size=(n, 1))
    x = rng.binomial(2, np.clip(p * depth, 0, 1)).astype(np.int32)
    x[:, -1] = 1  # no empty cell
    names = [f"chr{1 + j % 5}_{10_000 * j}_{10_000 * j + 500}" for j in range(n_peaks)]
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(n)])
    path = tmp_path / "two.h5ad"
    ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=names)).write_h5ad(path)
    return load_atac_task(f"{path}:cell_type")


def test_tfidf_matches_the_formula() -> None:
    counts = np.array([[1, 0, 2, 0], [0, 3, 1, 0], [4, 1, 0, 1]], dtype=np.float64)
    x, idf = B.tfidf(sp.csr_matrix(counts))
    tf = counts / counts.sum(1, keepdims=True)
    expected_idf = counts.shape[0] / counts.sum(0)
    np.testing.assert_allclose(idf, expected_idf)
    np.testing.assert_allclose(x.toarray(), np.log1p(tf * expected_idf * 1e4))
    # test cells take the training IDF; a peak never seen in training gets 0
    train_idf = np.array([2.0, 0.0, 1.5, 3.0])
    y, same = B.tfidf(sp.csr_matrix(counts[:1]), train_idf)
    assert same is train_idf
    np.testing.assert_allclose(y.toarray()[0], np.log1p(tf[0] * train_idf * 1e4))
    z, idf0 = B.tfidf(sp.csr_matrix(counts[:2, :]))
    assert idf0[3] == 0.0 and z.toarray()[:, 3].tolist() == [0.0, 0.0]


def test_fold_lsi_drops_the_first_component_and_projects(tmp_path: Path) -> None:
    task = _two_type_task(tmp_path)
    counts = B._counts(task)
    train, test = np.arange(0, 100), np.arange(100, 120)
    z_tr, z_te = B.fold_lsi(counts, train, test, 10, seed=0)
    assert z_tr.shape == (100, 9) and z_te.shape == (20, 9)
    # projecting the training cells as if they were test cells gives their training scores
    z_again, _ = B.fold_lsi(counts, train, train, 10, seed=0)
    np.testing.assert_allclose(z_again, z_tr, rtol=1e-4, atol=1e-4)
    # the test cells did not shape the fit: the same training cells with other test cells, same scores
    z_tr2, _ = B.fold_lsi(counts, train, np.arange(100, 110), 10, seed=0)
    np.testing.assert_allclose(z_tr2, z_tr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lsi-logreg", "lsi-knn", "binary-logreg"])
def test_baselines_learn_two_types_and_not_shuffled_labels(tmp_path: Path, name: str) -> None:
    task = _two_type_task(tmp_path)
    folds = make_folds(task, 5, 0)
    method = B.atac_baseline_method(name, B.AtacBaselineConfig(n_components=10))
    assert _balanced_accuracy(task, method(task, folds, 0)) > 0.9
    shuffled = Task(task.name, task.type, task.inputs, np.random.default_rng(1).permutation(task.labels),
                    task.classes, meta=task.meta)
    assert _balanced_accuracy(shuffled, method(shuffled, make_folds(shuffled, 5, 0), 0)) < 0.7


def test_config_refuses_unknown_baselines_and_too_few_components() -> None:
    with pytest.raises(ValidationError, match="unknown atac baseline 'pca_logreg'"):
        B.AtacBaselineConfig(run=["pca_logreg"])
    with pytest.raises(ValidationError):
        B.AtacBaselineConfig(n_components=1)  # nothing would be left after dropping the first
    assert B.AtacBaselineConfig().run == ["lsi-logreg", "lsi-knn", "binary-logreg"]


def test_missing_snapatac2_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = _two_type_task(tmp_path)
    monkeypatch.setattr(B.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BiofmError, match=r"need SnapATAC2, which is not installed: pip install snapatac2"):
        B.atac_baseline_method("spectral-logreg")(task, make_folds(task, 5, 0), 0)


def test_fixture_end_to_end(mirror: Path) -> None:
    task = load_atac_task("granja-celltypes-600")
    folds = make_folds(task, 5, 0)
    for name in B.AtacBaselineConfig().run:
        ba = _balanced_accuracy(task, B.atac_baseline_method(name)(task, folds, 0))
        assert ba > 0.6, f"{name}: balanced accuracy {ba:.3f} (chance 1/6)"
    # the first LSI component is sequencing depth, which is why it is dropped
    counts = B._counts(task)
    x, _ = B.tfidf(counts)
    first = B._svd(x, 30, 0).transform(x)[:, 0]
    depth = np.log(np.asarray(counts.sum(axis=1)).ravel())
    assert abs(np.corrcoef(first, depth)[0, 1]) > 0.9


def test_tables_and_hooks_on_the_fixture(mirror: Path) -> None:
    task = load_atac_task("granja-celltypes-600")
    cfg = SimpleNamespace(seed=0, atac_baselines=B.AtacBaselineConfig(), embed_batch_size=8, cache_dir=None,
                          probes=SimpleNamespace(poolings=["mean"], knn_k=15, C=1.0))
    assert [n for n, _ in atac_eval.baselines(cfg)] == ["lsi-logreg", "lsi-knn", "binary-logreg"]
    lsi = B.lsi_embedding(task, 0)
    assert lsi.shape == (600, 29) and np.allclose(lsi.std(axis=0), 1.0, atol=1e-3)
    # a model embedding: LSI itself stands in, so both heads must score well above chance
    folds = make_folds(task, 5, 0)
    methods = dict((n, run) for n, _, run in atac_eval.model_methods(task, folds, {"mean": lsi[:, None, :]}, cfg,
                                                                     Path("m"), None, None))
    assert set(methods) == {"probe-knn-mean", "probe-lastlayer-logreg-mean"}
    assert all(_balanced_accuracy(task, run()) > 0.6 for run in methods.values())
    rows = atac_eval.tables(task, cfg, {"mean": lsi[:, None, :]})[0]["rows"]
    by = {r["embedding"]: r for r in rows}
    assert by["baseline-lsi"]["leiden_ari"] > 0.3 and by["biofm-mean"]["leiden_ari"] == by["baseline-lsi"]["leiden_ari"]
    assert "batch_asw" in by["baseline-lsi"] and "ilisi" in by["baseline-lsi"]


@pytest.mark.skipif(importlib.util.find_spec("snapatac2") is None,
                    reason="snapatac2 is not installed (optional: pip install snapatac2)")
def test_spectral_on_the_fixture(mirror: Path) -> None:
    task = load_atac_task("granja-celltypes-600")
    z = B.spectral_embedding(task, 0)
    assert z.shape[0] == 600 and 2 <= z.shape[1] <= 30 and np.isfinite(z).all()
    folds = make_folds(task, 5, 0)
    for name in ("spectral-logreg", "spectral-knn"):
        ba = _balanced_accuracy(task, B.atac_baseline_method(name)(task, folds, 0))
        assert ba > 0.6, f"{name}: balanced accuracy {ba:.3f} (chance 1/6)"
