"""Metrics, computed in one place for every method. MCC is the headline, as in Nucleotide Transformer."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from biofm.eval.types import FoldPrediction, Task

HEADLINE = {"classification": "mcc", "regression": "pearson"}


def classification_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, n_classes: int) -> dict:
    out = {
        "mcc": float(skm.matthews_corrcoef(y, pred)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "macro_f1": float(skm.f1_score(y, pred, average="macro", labels=np.arange(n_classes), zero_division=0)),
    }
    auroc = auprc = math.nan
    if proba is not None and len(np.unique(y)) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if n_classes == 2:
                auroc = skm.roc_auc_score(y, proba[:, 1])
                auprc = skm.average_precision_score(y, proba[:, 1])
            else:
                onehot = np.eye(n_classes)[y]
                present = onehot.sum(0) > 0
                auroc = skm.roc_auc_score(onehot[:, present], proba[:, present], average="macro")
                auprc = skm.average_precision_score(onehot[:, present], proba[:, present], average="macro")
    out["auroc"], out["auprc"] = float(auroc), float(auprc)
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    constant = np.std(pred) == 0 or np.std(y) == 0
    return {
        "pearson": math.nan if constant else float(stats.pearsonr(y, pred)[0]),
        "spearman": math.nan if constant else float(stats.spearmanr(y, pred)[0]),
        "r2": float(skm.r2_score(y, pred)),
    }


def fold_metrics(task: Task, p: FoldPrediction) -> dict:
    y = task.labels[p.test_idx]
    if task.type == "classification":
        return classification_metrics(y, p.pred, p.proba, task.n_classes)
    return regression_metrics(y, p.pred)


def summarise(per_fold: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof=1, as NT's ± 2 s.d. over folds) of every metric."""
    out = {}
    for key in per_fold[0]:
        vals = np.array([f[key] for f in per_fold], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[key] = {"mean": float(vals.mean()) if len(vals) else math.nan,
                    "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
