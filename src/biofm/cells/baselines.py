"""Baselines a single-cell foundation model has to beat: the standard scanpy-style pipeline.

Counts are library-size normalised to 10,000 per cell and log1p-transformed (per cell, nothing
learned), then -- fitted on each fold's TRAINING cells only -- highly variable genes are chosen,
genes are scaled to unit variance (clipped at ±10, as scanpy does) and PCA is fitted. Test cells are
only transformed. On top of that the same two classifiers are used as for the model's embeddings:

* `pca_logreg` -- L2 logistic regression on PCA(50) of the HVGs;
* `pca_knn` -- k-nearest-neighbour vote on PCA(50) of the HVGs;
* `hvg_logreg` -- logistic regression on the scaled HVGs themselves (no PCA);
* `scvi` (opt-in) -- logistic regression on scVI's latent space, when scvi-tools is installed.

`knn_method` and `logreg_method` wrap exactly these classifiers around precomputed features (a
model's cell embeddings), so a model and the baselines are compared with the same heads.

Classifier choices, the same for every feature set:

* logistic regression: features standardised on the training rows, L2 penalty with `C`, lbfgs;
* kNN: features standardised on the training rows, then cosine distance, `k` = 15 neighbours
  with a uniform (unweighted) vote; its class probabilities are the neighbour fractions.
  Standardising keeps a few large-magnitude dimensions (common in transformer embeddings) from
  deciding every distance on their own. Standardising also gives PCA's low-variance (noisy)
  components the same weight as the leading ones, and with Euclidean distance that wrecked kNN on
  PBMC (700 cells, 5 folds: macro-F1 0.19 standardised-Euclidean vs 0.60 on raw PCs); cosine
  distance on the standardised features does not suffer from it (0.67) and is the usual distance
  for embedding kNN. An unweighted vote is the textbook kNN and makes the probabilities easy to read.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.eval.baselines import check_known, method_from
from biofm.eval.fit import fit_predict, scaled_knn, scaled_logreg
from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = [
    "CELL_BASELINES",
    "CellBaselineConfig",
    "cell_baseline_method",
    "fold_pca",
    "highly_variable_genes",
    "hvg_logreg",
    "knn_method",
    "log_normalise",
    "logreg_method",
    "pca_embedding",
    "pca_knn",
    "pca_logreg",
    "scvi_logreg",
]

TARGET_SUM = 1e4
SCALE_CLIP = 10.0


class CellBaselineConfig(Schema):
    """Knobs of the cell baselines, settable from an evaluation config's cell-baselines section."""

    run: list[str] = Field(
        default_factory=lambda: ["pca_logreg", "pca_knn", "hvg_logreg"],
        description="which cell baselines to run, by name (scvi is opt-in: needs scvi-tools)",
    )
    n_hvg: PositiveInt = Field(2000, description="highly variable genes kept (capped at the number of genes)")
    n_pcs: PositiveInt = Field(50, description="principal components (capped at training cells - 1 and n_hvg)")
    knn_k: PositiveInt = Field(15, description="neighbours of the kNN classifier")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of logistic regression")
    max_iter: PositiveInt = 1000
    scvi_max_epochs: PositiveInt | None = Field(None, description="scVI epochs; default scvi-tools' heuristic")
    scvi_n_latent: PositiveInt = 10

    @field_validator("run")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_known(v, CELL_BASELINES, "cell baseline")
        return v


# ------------------------------------------------------------------------------------------ counts


@lru_cache(maxsize=1)
def _read_matrix(path: str, layer: str | None, stamp: tuple[int, int]) -> sp.csr_matrix:
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        x = read_elem(f["layers"][layer] if layer else f["X"])
    return sp.csr_matrix(x, dtype=np.float32)


def _counts(task: Task) -> sp.csr_matrix:
    """The task's cells (rows in task order) x all genes, as CSR float32 raw counts.

    Stop-gap reader: to be replaced by `biofm.cells.h5ad.read_counts`, which checks more.
    """
    path, layer = str(task.meta["h5ad"]), task.meta.get("layer")
    st = Path(path).stat()
    x = _read_matrix(path, layer, (st.st_mtime_ns, st.st_size))[np.asarray(task.inputs, dtype=np.int64)]
    what = f"{path}{f' layer {layer!r}' if layer else ' X'}"
    if x.nnz and not np.isfinite(x.data).all():
        raise BiofmError(f"{what}: contains NaN or infinite values; expected raw counts")
    if x.nnz and x.data.min() < 0:
        raise BiofmError(f"{what}: contains negative values (scaled data?); expected raw counts (set layer:)")
    return x


# ------------------------------------------------------------------------------------------ preprocessing


def log_normalise(counts: sp.spmatrix | np.ndarray, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """Scale each cell to `target_sum` total counts, then log1p. Per cell: nothing is fitted.

    Cells with no counts stay all-zero.
    """
    x = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    x.data *= np.repeat(scale, np.diff(x.indptr)).astype(np.float32)
    np.log1p(x.data, out=x.data)
    return x


def highly_variable_genes(lognorm: sp.spmatrix | np.ndarray, n_top: int, n_bins: int = 20) -> np.ndarray:
    """Indices (sorted) of the `n_top` most variable genes of log-normalised cells (Seurat v1 / scanpy "seurat").

    For each gene, mean and dispersion (variance / mean) of the normalised, un-logged expression;
    log of both; genes are binned by mean (`n_bins` equal-width bins) and the dispersion is z-scored
    within its bin, so a gene is "variable" relative to genes of similar expression. Genes never
    detected in these cells rank last; a bin with a single gene (or no spread) scores 0. Pass only
    the training cells: the choice then knows nothing about the test cells.
    """
    x = sp.csr_matrix(lognorm, dtype=np.float64)
    n_cells, n_genes = x.shape
    if n_top >= n_genes:
        return np.arange(n_genes)
    x.data = np.expm1(x.data)
    mean = np.asarray(x.mean(axis=0)).ravel()
    mean_sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    var = np.maximum(mean_sq - mean**2, 0.0) * n_cells / max(n_cells - 1, 1)
    detected = (mean > 0) & (var > 0)
    log_disp = np.full(n_genes, np.nan)
    log_disp[detected] = np.log(var[detected] / mean[detected])
    log_mean = np.log1p(mean)
    score = np.full(n_genes, -np.inf)
    if detected.any():
        lo, hi = log_mean[detected].min(), log_mean[detected].max()
        edges = np.linspace(lo, hi, n_bins + 1)
        bins = np.clip(np.searchsorted(edges, log_mean, side="right") - 1, 0, n_bins - 1)
        for b in np.unique(bins[detected]):
            members = np.flatnonzero(detected & (bins == b))
            d = log_disp[members]
            sd = d.std(ddof=1) if len(d) > 1 else 0.0
            score[members] = (d - d.mean()) / sd if sd > 0 else 0.0
    order = np.argsort(-score, kind="stable")
    return np.sort(order[:n_top])


def _scale_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    sd[~(sd > 0)] = 1.0
    return mu, sd


def _scale(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.clip((x - mu) / sd, -SCALE_CLIP, SCALE_CLIP).astype(np.float32)


def _hvg_scaled(lognorm: sp.csr_matrix, train: np.ndarray, test: np.ndarray, n_hvg: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """HVGs chosen and scaling fitted on the training cells; both sets transformed."""
    genes = highly_variable_genes(lognorm[train], n_hvg)
    x_tr = lognorm[train][:, genes].toarray()
    x_te = lognorm[test][:, genes].toarray()
    mu, sd = _scale_fit(x_tr)
    return _scale(x_tr, mu, sd), _scale(x_te, mu, sd)


def _pca(x_tr: np.ndarray, n_pcs: int, seed: int) -> Any:
    from sklearn.decomposition import PCA

    n_comp = max(1, min(n_pcs, x_tr.shape[0] - 1, x_tr.shape[1]))
    return PCA(n_components=n_comp, random_state=seed).fit(x_tr)


def fold_pca(lognorm: sp.csr_matrix, train: np.ndarray, test: np.ndarray, n_hvg: int, n_pcs: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """PCA scores of training and test cells, with HVGs, scaling and PCA all fitted on the training cells."""
    x_tr, x_te = _hvg_scaled(lognorm, train, test, n_hvg)
    pca = _pca(x_tr, n_pcs, seed)
    return pca.transform(x_tr).astype(np.float32), pca.transform(x_te).astype(np.float32)


def pca_embedding(task: Task, seed: int = 0, cfg: CellBaselineConfig | None = None) -> np.ndarray:
    """Unsupervised PCA embedding of every cell (log-norm -> HVG -> scale -> PCA on the whole dataset).

    For the clustering / silhouette / batch-mixing table beside the model's embedding. No label is
    used, so fitting on all cells leaks nothing there; it is not for the classification folds.
    """
    cfg = cfg or CellBaselineConfig()
    lognorm = log_normalise(_counts(task))
    everyone = np.arange(lognorm.shape[0])
    x, _ = _hvg_scaled(lognorm, everyone, everyone[:0], cfg.n_hvg)
    return _pca(x, cfg.n_pcs, seed).transform(x).astype(np.float32)


# ------------------------------------------------------------------------------------------ classifiers

Features = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check(task: Task) -> None:
    if task.type != "classification":
        raise ValueError(f"cell baselines are classifiers; task {task.name!r} is {task.type}")


def _fit_predict(task: Task, folds: list[Fold], features: Features, make: Callable[[int], Any]
                 ) -> list[FoldPrediction]:
    """biofm.eval.fit.fit_predict for classifiers `make(n_train)` (kNN caps k at the training rows)."""
    _check(task)
    return fit_predict(task, folds, features, lambda _kind, _fold, n: make(n))


def _rows(X: np.ndarray, task: Task) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(task.labels):
        raise ValueError(f"features of shape {X.shape} do not match the task's {len(task.labels)} cells")
    return X


def knn_method(X: np.ndarray, k: int = 15) -> Method:
    """kNN (standardised on the training rows, cosine distance, uniform vote) on precomputed cell features."""

    def method(task: Task, folds: list[Fold], seed: int) -> list[FoldPrediction]:
        feats = _rows(X, task)
        return _fit_predict(task, folds, lambda tr, te: (feats[tr], feats[te]), lambda n: scaled_knn(min(k, n)))

    method.__name__ = "knn"
    return method


def logreg_method(X: np.ndarray, C: float = 1.0, max_iter: int = 1000) -> Method:
    """L2 logistic regression (standardised on the training rows) on precomputed cell features."""

    def method(task: Task, folds: list[Fold], seed: int) -> list[FoldPrediction]:
        feats = _rows(X, task)
        return _fit_predict(task, folds, lambda tr, te: (feats[tr], feats[te]),
                            lambda n: scaled_logreg(C, seed, max_iter))

    method.__name__ = "logreg"
    return method


# ------------------------------------------------------------------------------------------ baselines


def pca_logreg(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on PCA(n_pcs) of the scaled log-normalised HVGs (all fitted per training fold)."""
    lognorm = log_normalise(_counts(task))
    return _fit_predict(task, folds, lambda tr, te: fold_pca(lognorm, tr, te, cfg.n_hvg, cfg.n_pcs, seed),
                        lambda n: scaled_logreg(cfg.C, seed, cfg.max_iter))


def pca_knn(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """kNN on PCA(n_pcs) of the scaled log-normalised HVGs (all fitted per training fold)."""
    lognorm = log_normalise(_counts(task))
    return _fit_predict(task, folds, lambda tr, te: fold_pca(lognorm, tr, te, cfg.n_hvg, cfg.n_pcs, seed),
                        lambda n: scaled_knn(min(cfg.knn_k, n)))


def hvg_logreg(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on the scaled log-normalised HVGs themselves (HVGs and scaling per training fold)."""
    lognorm = log_normalise(_counts(task))
    return _fit_predict(task, folds, lambda tr, te: _hvg_scaled(lognorm, tr, te, cfg.n_hvg),
                        lambda n: scaled_logreg(cfg.C, seed, cfg.max_iter))


def scvi_logreg(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on scVI's latent space; scVI is trained on each fold's training cells only.

    Opt-in: needs scvi-tools. scVI models raw counts of the fold's HVGs (chosen on the training
    cells), with the task's batch column as its batch covariate when there is one.
    """
    if importlib.util.find_spec("scvi") is None:
        raise BiofmError("scvi-tools is not installed; pip install scvi-tools to enable the scvi baseline")
    import anndata as ad
    import pandas as pd
    import scvi

    counts = _counts(task)
    lognorm = log_normalise(counts)
    batch = task.meta.get("batch")
    obs = pd.DataFrame(index=[str(i) for i in range(counts.shape[0])])
    if batch is not None:
        obs["batch"] = pd.Categorical(np.asarray(task.meta["batch_names"])[batch])

    def latent(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scvi.settings.seed = seed
        genes = highly_variable_genes(lognorm[train], cfg.n_hvg)
        part = {name: ad.AnnData(counts[idx][:, genes], obs=obs.iloc[idx].copy())
                for name, idx in (("train", train), ("test", test))}
        scvi.model.SCVI.setup_anndata(part["train"], batch_key="batch" if batch is not None else None)
        model = scvi.model.SCVI(part["train"], n_latent=cfg.scvi_n_latent)
        model.train(max_epochs=cfg.scvi_max_epochs)
        return model.get_latent_representation(part["train"]), model.get_latent_representation(part["test"])

    return _fit_predict(task, folds, latent, lambda n: scaled_logreg(cfg.C, seed, cfg.max_iter))


CellBaselineFn = Callable[[Task, list[Fold], int, CellBaselineConfig], list[FoldPrediction]]

CELL_BASELINES: dict[str, CellBaselineFn] = {
    "pca_logreg": pca_logreg,
    "pca_knn": pca_knn,
    "hvg_logreg": hvg_logreg,
    "scvi": scvi_logreg,
}


def cell_baseline_method(name: str, cfg: CellBaselineConfig | None = None) -> Method:
    """The named cell baseline as a plain `Method` (task, folds, seed), with its knobs taken from `cfg`."""
    return method_from(CELL_BASELINES, name, cfg or CellBaselineConfig(), "cell baseline")
