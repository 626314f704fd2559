"""Multiome's part of `biofm evaluate`: cell types from the joint embedding and from each modality's own
embedding (kNN and logistic regression on the last layer, beside the shared layer-choosing probes) against
RNA PCA, LSI / protein and concatenated baselines on the same folds; and, as a table, cross-modal
prediction on the cells held out of pretraining against ridge, kNN and per-feature-mean baselines fitted on
the others, with a paired verdict over features (per-feature Pearson, the model against the best baseline)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from biofm.eval.types import Fold, FoldPrediction, Task

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

console = Console(stderr=True, markup=False, highlight=False)

# the evaluation report draws this modality's classification tasks as a 2-D map of the embeddings
EMBEDDING_MAP = True


def shipped_tasks() -> list[str]:
    from biofm.multiome.tasks import SHIPPED

    return list(SHIPPED)


def recognise_task(spec: str) -> int:
    from biofm.multiome.tasks import is_multiome_task

    return 2 if is_multiome_task(spec) else 0


def load_task(spec: str) -> Task:
    from biofm.multiome.tasks import load_multiome_task

    return load_multiome_task(spec)


def embeddings(task: Task, cfg: EvaluateConfig, model_dir: Path, model: Any, tok: Any) -> dict[str, np.ndarray]:
    """{"mean", "cls", "mean_<role>"}: [n_cells, layers + 1, H], cached on the weights and the cells."""
    from biofm.eval.embeddings import cached_layers
    from biofm.multiome.baselines import task_data
    from biofm.multiome.embed import embed_cells, load_multiome_model

    rows = np.asarray(task.inputs, dtype=np.int64)
    key = [task.meta.get("h5mu"), task.meta.get("h5ad"), task.meta["modalities"], rows,
           (Path(model_dir) / "multiome_vocab.json").read_text()]

    def compute() -> dict[str, np.ndarray]:
        return embed_cells(load_multiome_model(model_dir), task_data(task), rows, batch_size=cfg.embed_batch_size)

    return cached_layers("multiomeemb", Path(model_dir), key, compute, {"task": task.name}, cfg.cache_dir)


def model_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig, model_dir: Path,
                  model: Any, tok: Any) -> Iterator[tuple[str, str, Callable[[], list[FoldPrediction]]]]:
    """kNN and logistic regression on the last layer: the joint embedding and each modality's own."""
    from biofm.cells.baselines import knn_method, logreg_method

    spaces = [("joint", "mean")] + [(f"{r}-only", f"mean_{r}") for r in task.meta["roles"]]
    for label, key in spaces:
        if key not in emb:
            continue
        X = np.asarray(emb[key])[:, -1]  # [n_cells, H]
        yield f"probe-knn-{label}", "probe", lambda X=X: knn_method(X, cfg.probes.knn_k)(task, folds, cfg.seed)
        yield (f"probe-lastlayer-logreg-{label}", "probe",
               lambda X=X: logreg_method(X, cfg.probes.C)(task, folds, cfg.seed))


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.multiome.baselines import multiome_baseline_method

    settings = cfg.multiome_baselines
    return [(n, multiome_baseline_method(n, settings)) for n in settings.run]


def tables(task: Task, cfg: EvaluateConfig, emb: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """Cross-modal prediction, when a model is evaluated (see `cross_modal_rows`)."""
    settings = cfg.multiome_baselines
    if emb is None or not cfg.model or not settings.cross_modal:
        return []
    from biofm.models.load import resolve_model_dir

    t0 = time.perf_counter()
    rows = cross_modal_rows(task, resolve_model_dir(cfg.model), cfg.seed, settings)
    console.print(f"[{task.name}] cross-modal prediction in {time.perf_counter() - t0:.1f}s")
    return [{"name": "cross_modal", "title": "Cross-modal prediction on cells held out of pretraining (mean "
             "per-feature and per-cell Pearson; baselines fitted on the other cells)", "rows": rows}]


def cross_modal_rows(task: Task, model_dir: Path, seed: int, settings: Any) -> list[dict[str, Any]]:
    """One row per (direction, method): model, ridge, kNN and mean; the model's row carries the verdict
    against the best baseline by per-feature Pearson, paired over features."""
    from biofm.eval.verdict import paired
    from biofm.multiome.baselines import fold_features, regression_baselines, scores, target_values, task_data
    from biofm.multiome.embed import load_multiome_model, predict_cross

    mm = load_multiome_model(model_dir)
    data = task_data(task)
    held = set(mm.vocab.settings.get("val_cells", []))
    is_test = np.array([c in held for c in data.cells.tolist()])
    if not is_test.any():
        console.print(f"[{task.name}] cross-modal prediction skipped: no task cell was held out of pretraining")
        return []
    rng = np.random.default_rng(seed)
    test = np.flatnonzero(is_test)
    fit = np.flatnonzero(~is_test)
    if len(test) > settings.max_eval_cells:
        test = np.sort(rng.choice(test, settings.max_eval_cells, replace=False))
    if len(fit) > settings.max_fit_cells:
        fit = np.sort(rng.choice(fit, settings.max_fit_cells, replace=False))
    keys = np.asarray(task.inputs, dtype=np.int64)
    out = []
    roles = list(mm.vocab.roles)
    for source in roles:
        target = next(r for r in roles if r != source)
        f = mm.vocab.features[target]
        cols = _columns(data, target, f.names)
        y = target_values(data, target, cols)  # [n_task_cells, F]
        x_tr, x_te = fold_features(data, source, fit, test, seed, settings)
        preds = regression_baselines(x_tr, x_te, y[fit], settings)
        preds = {"biofm": predict_cross(mm, data.rows(test), keys[test], source, target), **preds}
        results = {name: scores(y[test], p, target == "atac") for name, p in preds.items()}
        keep = np.std(y[test], axis=0) > 0  # features that vary among the scored cells
        best = max(("ridge", "knn"), key=lambda n: np.nanmean(results[n]["per_feature"][keep]))
        for name, r in results.items():
            row: dict[str, Any] = {
                "direction": f"{source} -> {target}", "method": name if name == "biofm" else f"baseline-{name}",
                "cells": len(test), "features": int(keep.sum()),
                "per_feature_pearson": float(np.nanmean(r["per_feature"][keep])) if name != "mean" else float("nan"),
                "per_cell_pearson": float(np.nanmean(r["per_cell"])), "rmse": r["rmse"]}
            if "auroc" in r:
                row["auroc_per_peak"] = float(np.nanmean(r["auroc"]))
            if name == "biofm":
                a, b = r["per_feature"][keep], results[best]["per_feature"][keep]
                ok = np.isfinite(a) & np.isfinite(b)
                pr = paired(a[ok], b[ok], unit="features")
                row["verdict"] = (f"{pr.outcome} baseline-{best} ({pr.text()})" if pr is not None else "n/a")
            out.append(row)
    return out


def _columns(data: Any, role: str, names: np.ndarray) -> np.ndarray:
    import pandas as pd

    from biofm.errors import BiofmError

    idx = pd.Index(data.features[role]).get_indexer(names)
    if (idx < 0).any():
        raise BiofmError(f"{data.source}: {int((idx < 0).sum())} of the model's {role} features are not in the task "
                         f"file (e.g. {names[idx < 0][0]!r}); cross-modal prediction needs them all")
    return idx
