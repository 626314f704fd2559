"""Baselines a single-cell foundation model has to beat: the standard scanpy-style pipeline.

Counts are library-size normalised to 10,000 per cell and log1p-transformed (per cell, nothing
learned), then -- fitted on each fold's TRAINING cells only -- highly variable genes are chosen
(scanpy's `highly_variable_genes`, flavour "seurat" on the log-normalised cells, or "seurat_v3" on
the counts with `hvg_flavor: seurat_v3`; both tested equal to scanpy's selection),
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
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.eval.baselines import check_known, method_from
from biofm.eval.explain import linear_coefficients
from biofm.eval.fit import fit_predict, scaled_knn, scaled_logreg
from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = [
    "CELL_BASELINES",
    "CellBaselineConfig",
    "cell_baseline_method",
    "fold_pca",
    "gene_names",
    "highly_variable_genes",
    "highly_variable_genes_seurat_v3",
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
    n_hvg: PositiveInt = Field(2000, description="highly variable genes kept (scanpy's rule: genes tied with the "
                               "last are kept too; genes without a dispersion never are)")
    hvg_flavor: Literal["seurat", "seurat_v3"] = Field(
        "seurat", description="scanpy's HVG flavour: seurat (log-normalised cells) or seurat_v3 (counts; scGPT's "
        "choice; needs scikit-misc: pip install 'biofm[seurat-v3]')")
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


@lru_cache(maxsize=1)
def _var_names(path: str, column: str | None, stamp: tuple[int, int]) -> np.ndarray:
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        var = read_elem(f["var"])
    if column is not None and column not in var.columns:
        raise BiofmError(f"{path}: no var column {column!r} to name the genes")
    return np.asarray(var.index if column is None else var[column].to_numpy(), dtype=str)


def gene_names(task: Task) -> np.ndarray:
    """The name of each column of the task's count matrix (var names, or the task's gene column)."""
    path = str(task.meta["h5ad"])
    st = Path(path).stat()
    return _var_names(path, task.meta.get("gene_column"), (st.st_mtime_ns, st.st_size))


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


def _mean_var(x: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and variance (ddof 1) of CSR cells x genes, as scanpy's `_get_mean_var` computes them:
    float64 sums of the values and of their squares taken in the data's own dtype."""
    n, n_genes = x.shape
    total = np.bincount(x.indices, weights=x.data.astype(np.float64), minlength=n_genes)
    total_sq = np.bincount(x.indices, weights=(x.data * x.data).astype(np.float64), minlength=n_genes)
    mean = total / n
    var = total_sq / n - mean**2
    if n != 1:
        var *= n / (n - 1)
    return mean, var


def highly_variable_genes(lognorm: sp.spmatrix | np.ndarray, n_top: int, n_bins: int = 20) -> np.ndarray:
    """Indices (sorted) of the highly variable genes of log-normalised cells: scanpy's
    `pp.highly_variable_genes(flavor="seurat", n_top_genes=n_top, n_bins=n_bins)`, Seurat v1's rule.

    Per gene, mean and variance of the un-logged values (expm1, natural log as `log_normalise` writes);
    dispersion = variance / mean, log of both (an undetected gene's mean counts as 1e-12, a zero
    dispersion as missing); genes binned by log mean into `n_bins` equal-width bins (pandas' `cut`) and
    the dispersion z-scored within its bin -- variable relative to genes of similar expression; a bin
    with one gene scores it 1. The `n_top` highest normalised dispersions are kept, with every gene tied
    with the last one (so a tie can add genes); genes without a normalised dispersion never are, even when
    `n_top` exceeds the gene count. Pass only the training cells: the choice then knows nothing about
    the test cells. Tested equal to scanpy's selection on real data.
    """
    import pandas as pd

    x = sp.csr_matrix(lognorm, copy=True)
    x.data = np.expm1(x.data)  # in the data's dtype, as scanpy does
    mean, var = _mean_var(x)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = var / mean
        disp[disp == 0] = np.nan
        disp = np.log(disp)  # a (rounding-)negative variance gives NaN, as in scanpy
    bins = pd.cut(pd.Series(np.log1p(mean)), bins=n_bins)
    stats = pd.DataFrame({"disp": disp, "bin": bins}).groupby("bin", observed=True)["disp"].agg(avg="mean", dev="std")
    single = stats["dev"].isnull()  # one gene (with a dispersion) in the bin: normalised to 1
    stats.loc[single, "dev"] = stats.loc[single, "avg"]
    stats.loc[single, "avg"] = 0.0
    per_gene = stats.loc[bins]  # [n_genes, 2]: each gene's bin statistics
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (disp - per_gene["avg"].to_numpy()) / per_gene["dev"].to_numpy()
    ranked = np.sort(norm[~np.isnan(norm)])[::-1]
    if not len(ranked):
        raise ValueError("no gene varies across these cells: no highly variable genes to choose")
    cutoff = ranked[min(n_top, len(ranked)) - 1]
    return np.flatnonzero(np.nan_to_num(norm, nan=-np.inf) >= cutoff)


def highly_variable_genes_seurat_v3(counts: sp.spmatrix | np.ndarray, n_top: int, span: float = 0.3) -> np.ndarray:
    """Indices (sorted) of the `n_top` highly variable genes of raw COUNTS: scanpy's
    `pp.highly_variable_genes(flavor="seurat_v3", n_top_genes=n_top, span=span)` (Seurat v3's
    variance-stabilising rule, scGPT's default), one batch.

    A LOESS fit (degree 2) of log10 variance on log10 mean gives each gene its expected standard
    deviation; counts are clipped at mean + sd x sqrt(n_cells) and the genes ranked by the variance of
    (count - mean) / sd. Needs scikit-misc's LOESS (the one scanpy uses). Tested equal to scanpy on real data.
    """
    try:
        from skmisc.loess import loess
    except ImportError:
        raise BiofmError("hvg_flavor seurat_v3 needs scikit-misc's LOESS: pip install 'biofm[seurat-v3]'") from None
    x = sp.csr_matrix(counts)
    n, n_genes = x.shape
    mean, var = _mean_var(x)
    varies = var > 0
    fitted = np.zeros(n_genes)
    model = loess(np.log10(mean[varies]), np.log10(var[varies]), span=span, degree=2)
    model.fit()
    fitted[varies] = model.outputs.fitted_values
    sd = np.sqrt(10**fitted)  # expected sd at the gene's mean; 1 for constant genes
    clipped = np.minimum(x.data.astype(np.float64), (sd * np.sqrt(n) + mean)[x.indices])
    total = np.bincount(x.indices, weights=clipped, minlength=n_genes)
    total_sq = np.bincount(x.indices, weights=clipped**2, minlength=n_genes)
    norm_var = (1 / ((n - 1) * np.square(sd))) * (n * np.square(mean) + total_sq - 2 * total * mean)
    rank = np.argsort(np.argsort(-norm_var[None, :], axis=1), axis=1)[0]  # scanpy's call: same tie order
    return np.flatnonzero(rank < n_top)


def _scale_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    sd[~(sd > 0)] = 1.0
    return mu, sd


def _scale(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.clip((x - mu) / sd, -SCALE_CLIP, SCALE_CLIP).astype(np.float32)


def _choose_hvg(lognorm: sp.csr_matrix, rows: np.ndarray, n_hvg: int, counts: sp.csr_matrix | None = None
                ) -> np.ndarray:
    """HVGs of these cells: the seurat flavour on their log-normalised values, or seurat_v3 on their counts
    when `counts` is given."""
    if counts is None:
        return highly_variable_genes(lognorm[rows], n_hvg)
    return highly_variable_genes_seurat_v3(counts[rows], n_hvg)


def _inputs(task: Task, cfg: CellBaselineConfig) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """The task's log-normalised cells, and its counts when the HVGs are chosen on counts (seurat_v3)."""
    counts = _counts(task)
    return log_normalise(counts), counts if cfg.hvg_flavor == "seurat_v3" else None


def _hvg_scaled(lognorm: sp.csr_matrix, train: np.ndarray, test: np.ndarray, n_hvg: int,
                chosen: list[np.ndarray] | None = None, counts: sp.csr_matrix | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """HVGs chosen and scaling fitted on the training cells; both sets transformed. The genes' columns are
    appended to `chosen` when given (explanations name them)."""
    genes = _choose_hvg(lognorm, train, n_hvg, counts)
    if chosen is not None:
        chosen.append(genes)
    x_tr = lognorm[train][:, genes].toarray()
    x_te = lognorm[test][:, genes].toarray()
    mu, sd = _scale_fit(x_tr)
    return _scale(x_tr, mu, sd), _scale(x_te, mu, sd)


def _pca(x_tr: np.ndarray, n_pcs: int, seed: int) -> Any:
    from sklearn.decomposition import PCA

    n_comp = max(1, min(n_pcs, x_tr.shape[0] - 1, x_tr.shape[1]))
    return PCA(n_components=n_comp, random_state=seed).fit(x_tr)


def fold_pca(lognorm: sp.csr_matrix, train: np.ndarray, test: np.ndarray, n_hvg: int, n_pcs: int, seed: int,
             counts: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PCA scores of training and test cells, with HVGs, scaling and PCA all fitted on the training cells
    (HVGs by seurat_v3 on `counts` when given, else by the seurat flavour)."""
    x_tr, x_te = _hvg_scaled(lognorm, train, test, n_hvg, counts=counts)
    pca = _pca(x_tr, n_pcs, seed)
    return pca.transform(x_tr).astype(np.float32), pca.transform(x_te).astype(np.float32)


def pca_embedding(task: Task, seed: int = 0, cfg: CellBaselineConfig | None = None) -> np.ndarray:
    """Unsupervised PCA embedding of every cell (log-norm -> HVG -> scale -> PCA on the whole dataset).

    For the clustering / silhouette / batch-mixing table beside the model's embedding. No label is
    used, so fitting on all cells leaks nothing there; it is not for the classification folds.
    """
    cfg = cfg or CellBaselineConfig()
    lognorm, v3 = _inputs(task, cfg)
    everyone = np.arange(lognorm.shape[0])
    x, _ = _hvg_scaled(lognorm, everyone, everyone[:0], cfg.n_hvg, counts=v3)
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
    lognorm, v3 = _inputs(task, cfg)
    return _fit_predict(task, folds, lambda tr, te: fold_pca(lognorm, tr, te, cfg.n_hvg, cfg.n_pcs, seed, v3),
                        lambda n: scaled_logreg(cfg.C, seed, cfg.max_iter))


def pca_knn(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """kNN on PCA(n_pcs) of the scaled log-normalised HVGs (all fitted per training fold)."""
    lognorm, v3 = _inputs(task, cfg)
    return _fit_predict(task, folds, lambda tr, te: fold_pca(lognorm, tr, te, cfg.n_hvg, cfg.n_pcs, seed, v3),
                        lambda n: scaled_knn(min(cfg.knn_k, n)))


def hvg_logreg(task: Task, folds: list[Fold], seed: int, cfg: CellBaselineConfig) -> list[FoldPrediction]:
    """Logistic regression on the scaled log-normalised HVGs themselves (HVGs and scaling per training fold).

    Inside an evaluation that collects explanations (biofm.eval.explain), each fold's coefficients per gene
    and class are reported (per standard deviation of the gene's scaled expression; not SHAP)."""
    _check(task)
    lognorm, v3 = _inputs(task, cfg)
    chosen: list[np.ndarray] = []  # each fold's HVG columns; the loop runs the folds one after another
    return fit_predict(task, folds, lambda tr, te: _hvg_scaled(lognorm, tr, te, cfg.n_hvg, chosen, v3),
                       lambda _kind, _fold, n: scaled_logreg(cfg.C, seed, cfg.max_iter),
                       on_fit=linear_coefficients(lambda fitted: gene_names(task)[chosen[-1]]))


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
        genes = _choose_hvg(lognorm, train, cfg.n_hvg, counts if cfg.hvg_flavor == "seurat_v3" else None)
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
