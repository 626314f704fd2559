"""Baselines an scATAC-seq foundation model has to beat, on the same folds and with the same classifiers.

* `lsi-logreg`, `lsi-knn` -- latent semantic indexing as Signac does it: TF-IDF (`RunTFIDF`, method 1)
  of the peak counts, then a truncated SVD (`RunSVD`). TF = count / the cell's total count, IDF =
  n_cells / the peak's total count, value = log(1 + TF * IDF * 1e4). Components 2..n_components (30)
  are kept: the FIRST component tracks sequencing depth (on the Granja fixture it correlates with log
  total counts at |r| > 0.9), so Signac and ArchR drop it, and so do we. IDF and SVD are fitted on
  each fold's TRAINING cells only and the test cells are projected (TF is per cell: nothing learned).
* `binary-logreg` -- logistic regression on the binarised peak matrix itself (accessible = count > 0,
  see `biofm.atac.peaks`), unscaled: 0/1 features already share a scale, and standardising would
  inflate rare peaks (and densify the sparse matrix).
* `spectral-logreg`, `spectral-knn` (opt-in; need `snapatac2`) -- SnapATAC2's spectral embedding
  (`snapatac2.tl.spectral`: Laplacian eigenmaps of the cosine similarity between cells' binary peak
  vectors, eigenvectors weighted by their eigenvalues), which beat LSI in independent benchmarks.
  It is TRANSDUCTIVE (no projection of new cells in the matrix-free algorithm), so it is fitted ONCE on
  all of the task's cells, WITHOUT labels -- exactly as the model's embedding is: pretrained without
  labels and computed for every cell. Only the classifier on top is fitted per fold on training cells.
  It therefore sees the test cells' peaks (never their labels), which LSI here does not.

The classifiers are single-cell RNA's (`biofm.cells.baselines`): logistic regression and kNN on
features standardised on the training rows, kNN with cosine distance and a uniform vote, and the same
fit-predict loop over the folds; so a model's embedding (`knn_method`, `logreg_method`) and these
baselines are scored with the same heads.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from biofm.atac.peaks import PeakMatrix, read_peaks
from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.eval.baselines import check_known, method_from
from biofm.eval.explain import linear_coefficients
from biofm.eval.fit import fit_predict, scaled_knn, scaled_logreg
from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = [
    "ATAC_BASELINES",
    "AtacBaselineConfig",
    "atac_baseline_method",
    "binary_logreg",
    "fold_lsi",
    "lsi_embedding",
    "lsi_knn",
    "lsi_logreg",
    "spectral_embedding",
    "spectral_knn",
    "spectral_logreg",
    "tfidf",
]

TFIDF_SCALE = 1e4  # Signac's scale.factor
SPECTRAL_HINT = "pip install snapatac2 (SnapATAC2 2.9; not a biofm dependency: it brings ~400 MB)"


class AtacBaselineConfig(Schema):
    """Knobs of the atac baselines, settable from an evaluation config's `atac_baselines` section."""

    run: list[str] = Field(
        default_factory=lambda: ["lsi-logreg", "lsi-knn", "binary-logreg"],
        description="which atac baselines to run, by name; spectral-logreg / spectral-knn are opt-in "
                    "(they need snapatac2)",
    )
    n_components: PositiveInt = Field(
        30, ge=2, description="LSI components computed (capped at training cells - 1 and peaks - 1); the first, "
                              "which tracks sequencing depth, is dropped, so 2..n_components are used")
    spectral_components: PositiveInt = Field(30, description="spectral embedding dimensions (SnapATAC2 n_comps)")
    knn_k: PositiveInt = Field(15, description="neighbours of the kNN classifier")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of logistic regression")
    max_iter: PositiveInt = 1000

    @field_validator("run")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_known(v, ATAC_BASELINES, "atac baseline")
        return v


# ------------------------------------------------------------------------------------------ counts


@lru_cache(maxsize=1)
def _matrix(path: str, layer: str | None, peak_column: str | None, stamp: tuple[int, int]) -> PeakMatrix:
    return read_peaks(path, layer, peak_column)


def _read(path: str, layer: str | None, peak_column: str | None, stamp: tuple[int, int]) -> sp.csr_matrix:
    return _matrix(path, layer, peak_column, stamp).counts


def _peak_names(task: Task) -> np.ndarray:
    """The name of each column of `_counts(task)` (the file's peak names, in genome order)."""
    path = str(task.meta["h5ad"])
    st = Path(path).stat()
    return _matrix(path, task.meta.get("layer"), task.meta.get("peak_column"), (st.st_mtime_ns, st.st_size)).peak_names


def _counts(task: Task) -> sp.csr_matrix:
    """The task's cells (rows in task order) x all peaks in genome order, int32 CSR counts, checked."""
    path = str(task.meta["h5ad"])
    st = Path(path).stat()
    counts = _read(path, task.meta.get("layer"), task.meta.get("peak_column"), (st.st_mtime_ns, st.st_size))
    return counts[np.asarray(task.inputs, dtype=np.int64)]


def _binary(counts: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    out.data[:] = 1.0  # stored entries are counts > 0
    return out


# ------------------------------------------------------------------------------------------ LSI


def tfidf(counts: sp.spmatrix, idf: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Signac's TF-IDF (method 1) of cells x peaks counts: log1p(count / cell total * IDF * 1e4).

    IDF = n_cells / the peak's total count over these cells, unless `idf` (fitted on other cells,
    e.g. a fold's training cells) is given. A peak with no count in the fitting cells gets IDF 0 (it
    carries no information there; Signac would give it infinity). Returns (TF-IDF CSR float64, idf).
    """
    x = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    totals = np.asarray(x.sum(axis=1)).ravel()  # [n_cells]
    if idf is None:
        peak_totals = np.asarray(x.sum(axis=0)).ravel()  # [n_peaks]
        idf = np.divide(x.shape[0], peak_totals, out=np.zeros_like(peak_totals), where=peak_totals > 0)
    inv = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    x.data *= np.repeat(inv, np.diff(x.indptr)) * idf[x.indices] * TFIDF_SCALE
    np.log1p(x.data, out=x.data)
    return x, idf


def _svd(x: sp.csr_matrix, n_components: int, seed: int) -> Any:
    from sklearn.decomposition import TruncatedSVD

    k = max(2, min(n_components, x.shape[0] - 1, x.shape[1] - 1))
    return TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed).fit(x)


def fold_lsi(counts: sp.csr_matrix, train: np.ndarray, test: np.ndarray, n_components: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """LSI components 2..n_components of training and test cells; IDF and SVD fitted on the training cells."""
    x_tr, idf = tfidf(counts[train])
    x_te, _ = tfidf(counts[test], idf)
    svd = _svd(x_tr, n_components, seed)
    # [n, k] scores (U * S for the training cells, projections for the test cells); drop the depth component
    return (svd.transform(x_tr)[:, 1:].astype(np.float32), svd.transform(x_te)[:, 1:].astype(np.float32))


def lsi_embedding(task: Task, seed: int = 0, cfg: AtacBaselineConfig | None = None) -> np.ndarray:
    """Unsupervised LSI of every cell (TF-IDF and SVD on the whole dataset), components 2..n, each scaled
    to mean 0 and unit variance (Signac's scale.embeddings), float32 [n_cells, n_components - 1].

    For the clustering / silhouette / batch-mixing table beside the model's embedding: no label is
    used, so fitting on all cells leaks nothing there. Not for the classification folds.
    """
    from threadpoolctl import threadpool_limits

    cfg = cfg or AtacBaselineConfig()
    x, _ = tfidf(_counts(task))
    with threadpool_limits(limits=1, user_api="blas"):  # one small SVD: extra BLAS threads only contend
        z = _svd(x, cfg.n_components, seed).transform(x)[:, 1:]  # [n_cells, k - 1]
    sd = z.std(axis=0)
    return ((z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


# ------------------------------------------------------------------------------------------ spectral


def _snapatac2() -> Any:
    if importlib.util.find_spec("snapatac2") is None:
        raise BiofmError(f"the spectral baselines need SnapATAC2, which is not installed: {SPECTRAL_HINT}")
    import snapatac2

    return snapatac2


@lru_cache(maxsize=2)
def _spectral(path: str, layer: str | None, peak_column: str | None, stamp: tuple[int, int], rows: bytes,
              n_comps: int, seed: int) -> np.ndarray:
    import anndata as ad

    snap = _snapatac2()
    counts = _read(path, layer, peak_column, stamp)[np.frombuffer(rows, dtype=np.int64)]
    adata = ad.AnnData(X=_binary(counts))
    # every peak is used (features=None): SnapATAC2's feature selection targets genome-wide bin matrices
    # of ~500k features, and these files hold already-called peaks
    snap.tl.spectral(adata, n_comps=n_comps, features=None, random_state=seed, num_threads=os.cpu_count() or 1)
    return np.asarray(adata.obsm["X_spectral"], dtype=np.float32)


def spectral_embedding(task: Task, seed: int = 0, cfg: AtacBaselineConfig | None = None) -> np.ndarray:
    """SnapATAC2's spectral embedding of every task cell (binary peak matrix, all cells, no labels),
    float32 [n_cells, <= spectral_components]; cached for the task's cells (both classifiers and the
    embedding table use it)."""
    cfg = cfg or AtacBaselineConfig()
    path = str(task.meta["h5ad"])
    st = Path(path).stat()
    rows = np.asarray(task.inputs, dtype=np.int64).tobytes()
    return _spectral(path, task.meta.get("layer"), task.meta.get("peak_column"), (st.st_mtime_ns, st.st_size),
                     rows, cfg.spectral_components, seed)


# ------------------------------------------------------------------------------------------ baselines


def lsi_logreg(task: Task, folds: list[Fold], seed: int, cfg: AtacBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on LSI components 2..n (TF-IDF and SVD fitted per training fold)."""
    counts = _counts(task)
    return fit_predict(task, folds, lambda tr, te: fold_lsi(counts, tr, te, cfg.n_components, seed),
                        lambda _kind, _fold, n: scaled_logreg(cfg.C, seed, cfg.max_iter))


def lsi_knn(task: Task, folds: list[Fold], seed: int, cfg: AtacBaselineConfig) -> list[FoldPrediction]:
    """kNN on LSI components 2..n (TF-IDF and SVD fitted per training fold)."""
    counts = _counts(task)
    return fit_predict(task, folds, lambda tr, te: fold_lsi(counts, tr, te, cfg.n_components, seed),
                        lambda _kind, _fold, n: scaled_knn(min(cfg.knn_k, n)))


def _make_sparse_logreg(C: float, seed: int, max_iter: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


def binary_logreg(task: Task, folds: list[Fold], seed: int, cfg: AtacBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on the binary peak matrix (sparse, unscaled; nothing else is fitted). Inside an
    evaluation that collects explanations (biofm.eval.explain), its coefficients per peak and class."""
    x = _binary(_counts(task))
    return fit_predict(task, folds, lambda tr, te: (x[tr], x[te]),
                       lambda _kind, _fold, n: _make_sparse_logreg(cfg.C, seed, cfg.max_iter),
                       on_fit=linear_coefficients(lambda _fitted: _peak_names(task)))


def spectral_logreg(task: Task, folds: list[Fold], seed: int, cfg: AtacBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression per fold on SnapATAC2's spectral embedding, fitted once on all cells without
    labels (transductive, like the model's own embedding)."""
    z = spectral_embedding(task, seed, cfg)
    return fit_predict(task, folds, z, lambda _kind, _fold, n: scaled_logreg(cfg.C, seed, cfg.max_iter))


def spectral_knn(task: Task, folds: list[Fold], seed: int, cfg: AtacBaselineConfig) -> list[FoldPrediction]:
    """kNN per fold on SnapATAC2's spectral embedding, fitted once on all cells without labels
    (transductive, like the model's own embedding)."""
    z = spectral_embedding(task, seed, cfg)
    return fit_predict(task, folds, z, lambda _kind, _fold, n: scaled_knn(min(cfg.knn_k, n)))


AtacBaselineFn = Callable[[Task, list[Fold], int, AtacBaselineConfig], list[FoldPrediction]]

ATAC_BASELINES: dict[str, AtacBaselineFn] = {
    "lsi-logreg": lsi_logreg,
    "lsi-knn": lsi_knn,
    "binary-logreg": binary_logreg,
    "spectral-logreg": spectral_logreg,
    "spectral-knn": spectral_knn,
}


def atac_baseline_method(name: str, cfg: AtacBaselineConfig | None = None) -> Method:
    """The named atac baseline as a plain `Method` (task, folds, seed), with its knobs taken from `cfg`."""
    return method_from(ATAC_BASELINES, name, cfg or AtacBaselineConfig(), "atac baseline")
