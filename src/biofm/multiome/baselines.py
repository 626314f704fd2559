"""Baselines a multiome model has to beat, on the same folds / cells and with the same heads.

Cell types (`biofm evaluate` methods, the shared fit-predict loop and classifiers):
* `rna-pca-logreg`, `rna-pca-knn` -- RNA alone: log-normalised counts, HVGs, scaling and PCA fitted on each
  fold's training cells (`biofm.cells.baselines.fold_pca`);
* `other-logreg`, `other-knn` -- the second modality alone: ATAC LSI (TF-IDF + SVD fitted per training fold,
  components 2.., `biofm.atac.baselines.fold_lsi`) or the proteins' CLR values;
* `joint-logreg`, `joint-knn` -- both concatenated (PCA + LSI, or PCA + protein), each block fitted per
  fold, standardised together by the classifier.

Cross-modal prediction (`cross_modal_rows`): predict one modality's values from the other's, for the cells
held out of pretraining, from representations fitted on the cells it trained on: ridge regression and kNN
regression on the source's PCA (RNA), LSI (ATAC) or CLR proteins, and the per-feature training mean.
Scored per feature and per cell by Pearson (NeurIPS 2021's lesson: a per-gene mean can tie kNN on RMSE
while per-gene Pearson separates methods; the mean scores no per-feature Pearson at all), RMSE beside
them, and for peaks AUROC per peak.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema
from biofm.eval.baselines import check_known, method_from
from biofm.eval.fit import fit_predict, scaled_knn, scaled_logreg
from biofm.eval.types import Fold, FoldPrediction, Method, Task
from biofm.multiome.data import Paired, protein_values, read_paired, rna_values


class MultiomeBaselineConfig(Schema):
    """Knobs of the multiome baselines, settable from an evaluation config's `multiome_baselines` section."""

    run: list[str] = Field(default_factory=lambda: ["rna-pca-logreg", "other-logreg", "joint-logreg", "joint-knn"],
                           description="cell-type baselines to run, by name")
    n_hvg: PositiveInt = Field(2000, description="RNA highly variable genes before PCA")
    n_pcs: PositiveInt = Field(50, description="RNA principal components")
    n_lsi: PositiveInt = Field(30, ge=2, description="ATAC LSI components (the first, depth, is dropped)")
    knn_k: PositiveInt = 15
    C: float = Field(1.0, gt=0)
    max_iter: PositiveInt = 1000
    ridge_alpha: float = Field(1.0, gt=0, description="cross-modal ridge penalty (on standardised features)")
    cross_modal: bool = Field(True, description="score cross-modal prediction (the tables hook) on the cells "
                                                "held out of pretraining")
    max_eval_cells: PositiveInt = Field(1000, description="cross-modal: held-out cells scored at most (seeded)")
    max_fit_cells: PositiveInt = Field(4000, description="cross-modal: training cells the baselines fit at most")

    @field_validator("run")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_known(v, MULTIOME_BASELINES, "multiome baseline")
        return v


# ------------------------------------------------------------------------------------------ data


@lru_cache(maxsize=2)
def _paired(h5mu: str | None, h5ad: tuple[tuple[str, str], ...] | None, modalities: tuple[tuple[str, str], ...],
            roles: tuple[str, ...], stamp: tuple[int, ...]) -> Paired:
    return read_paired(h5mu, dict(h5ad) if h5ad else None, dict(modalities), list(roles), say=False)


def task_data(task: Task) -> Paired:
    """The task's paired cells (rows in task order), read once per file (cached on its size and mtime)."""
    m = task.meta
    files = [m["h5mu"]] if m.get("h5mu") else list(m["h5ad"].values())
    stamp = tuple(x for f in files for x in (Path(f).stat().st_mtime_ns, Path(f).stat().st_size))
    p = _paired(m.get("h5mu"), tuple(sorted(m["h5ad"].items())) if m.get("h5ad") else None,
                tuple(sorted(m["modalities"].items())), tuple(m["roles"]), stamp)
    return p.rows(np.asarray(task.inputs, dtype=np.int64))


def other_role(roles: list[str]) -> str:
    return next(r for r in roles if r != "rna")


def fold_features(paired: Paired, role: str, train: np.ndarray, test: np.ndarray, seed: int,
                  cfg: MultiomeBaselineConfig) -> tuple[np.ndarray, np.ndarray]:
    """One modality's standard representation, fitted on the training rows: RNA PCA, ATAC LSI, protein CLR."""
    if role == "rna":
        from biofm.cells.baselines import fold_pca

        return fold_pca(rna_values(paired.counts["rna"]), train, test, cfg.n_hvg, cfg.n_pcs, seed)
    if role == "atac":
        from biofm.atac.baselines import fold_lsi

        return fold_lsi(paired.counts["atac"], train, test, cfg.n_lsi, seed)
    x = protein_values(paired.counts["protein"])
    return x[train], x[test]


def _features(task: Task, roles: list[str], seed: int, cfg: MultiomeBaselineConfig
              ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    paired = task_data(task)

    def make(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [fold_features(paired, r, train, test, seed, cfg) for r in roles]
        return np.hstack([p[0] for p in parts]), np.hstack([p[1] for p in parts])

    return make


def _method(which: str, head: str) -> Callable[[Task, list[Fold], int, MultiomeBaselineConfig], list[FoldPrediction]]:
    def run(task: Task, folds: list[Fold], seed: int, cfg: MultiomeBaselineConfig) -> list[FoldPrediction]:
        roles = list(task.meta["roles"])
        chosen = {"rna": ["rna"], "other": [other_role(roles)], "joint": roles}[which]
        make = (lambda _k, _f, n: scaled_logreg(cfg.C, seed, cfg.max_iter)) if head == "logreg" else \
            (lambda _k, _f, n: scaled_knn(min(cfg.knn_k, n)))
        return fit_predict(task, folds, _features(task, chosen, seed, cfg), make)

    run.__name__ = f"{which}_{head}"
    return run


MULTIOME_BASELINES: dict[str, Callable[[Task, list[Fold], int, MultiomeBaselineConfig], list[FoldPrediction]]] = {
    "rna-pca-logreg": _method("rna", "logreg"),
    "rna-pca-knn": _method("rna", "knn"),
    "other-logreg": _method("other", "logreg"),
    "other-knn": _method("other", "knn"),
    "joint-logreg": _method("joint", "logreg"),
    "joint-knn": _method("joint", "knn"),
}


def multiome_baseline_method(name: str, cfg: MultiomeBaselineConfig | None = None) -> Method:
    return method_from(MULTIOME_BASELINES, name, cfg or MultiomeBaselineConfig(), "multiome baseline")


# ------------------------------------------------------------------------------------------ cross-modal


def target_values(paired: Paired, role: str, columns: np.ndarray) -> np.ndarray:
    """What cross-modal prediction is scored on, dense [n, F] over the model's features: RNA log-normalised,
    protein CLR, ATAC 0/1."""
    if role == "rna":
        return np.asarray(rna_values(paired.counts["rna"])[:, columns].toarray(), dtype=np.float64)
    if role == "protein":
        return protein_values(paired.counts["protein"])[:, columns].astype(np.float64)
    x = sp.csr_matrix(paired.counts["atac"][:, columns])
    return (x > 0).toarray().astype(np.float64)


def _standardise(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = a.mean(0), a.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (a - mu) / sd, (b - mu) / sd


def regression_baselines(x_tr: np.ndarray, x_te: np.ndarray, y_tr: np.ndarray, cfg: MultiomeBaselineConfig
                         ) -> dict[str, np.ndarray]:
    """Predictions [n_test, F] of ridge, kNN regression (cosine, uniform mean) and the per-feature mean."""
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from threadpoolctl import threadpool_limits

    a, b = _standardise(x_tr, x_te)
    with threadpool_limits(limits=1, user_api="blas"):
        ridge = Ridge(alpha=cfg.ridge_alpha).fit(a, y_tr).predict(b)
        knn = KNeighborsRegressor(n_neighbors=min(cfg.knn_k, len(a)), metric="cosine").fit(a, y_tr).predict(b)
    return {"ridge": ridge, "knn": knn, "mean": np.broadcast_to(y_tr.mean(0), (len(b), y_tr.shape[1])).copy()}


def _pearson_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson of each row of y with the same row of p; NaN where either is constant."""
    yc, pc = y - y.mean(1, keepdims=True), p - p.mean(1, keepdims=True)
    den = np.sqrt((yc * yc).sum(1) * (pc * pc).sum(1))
    varies = (np.ptp(y, axis=1) > 0) & (np.ptp(p, axis=1) > 0)  # exactly constant rows: no correlation
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(varies & (den > 0), (yc * pc).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def scores(y: np.ndarray, p: np.ndarray, binary: bool) -> dict[str, Any]:
    """Per-feature Pearson (over cells), per-cell Pearson (over features), RMSE, AUROC per feature (binary)."""
    out: dict[str, Any] = {"per_feature": _pearson_rows(y.T, p.T), "per_cell": _pearson_rows(y, p),
                           "rmse": float(np.sqrt(np.mean((y - p) ** 2)))}
    if binary:
        from sklearn.metrics import roc_auc_score

        auc = np.full(y.shape[1], np.nan)
        for j in range(y.shape[1]):
            if 0 < y[:, j].sum() < len(y):
                auc[j] = roc_auc_score(y[:, j], p[:, j])
        out["auroc"] = auc
    return out


__all__ = ["MULTIOME_BASELINES", "MultiomeBaselineConfig", "fold_features", "multiome_baseline_method",
           "other_role", "regression_baselines", "scores", "target_values", "task_data"]
