"""scATAC-seq's part of `biofm evaluate`: cell embeddings, kNN and logistic-regression heads on the last
layer, the LSI / binary / spectral baselines, and the embedding-structure table (Leiden agreement with
the labels, silhouette, batch mixing over the donors) for LSI, spectral (when SnapATAC2 is installed)
and the model, side by side."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from biofm.eval.types import Fold, FoldPrediction, Task

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

# progress notes on stderr, as `biofm evaluate` prints its own (its console would import all of evaluate)
console = Console(stderr=True, markup=False, highlight=False)

# the evaluation report draws this modality's classification tasks as a 2-D map of the embeddings
EMBEDDING_MAP = True


def shipped_tasks() -> list[str]:
    from biofm.atac.tasks import SHIPPED_ATAC_TASKS

    return list(SHIPPED_ATAC_TASKS)


def recognise_task(spec: str) -> int:
    """2: an h5ad of peaks (`file.h5ad:label`, `dataset:NAME:label` of an atac dataset) or a YAML saying
    `modality: atac` or naming one; 0 otherwise (cells' hook then takes RNA h5ad files)."""
    from biofm.atac.tasks import is_atac_task

    return 2 if is_atac_task(spec) else 0


def load_task(spec: str) -> Task:
    from biofm.atac.tasks import load_atac_task

    return load_atac_task(spec)


def embeddings(task: Task, cfg: EvaluateConfig, model_dir: Path, model, tok) -> dict[str, np.ndarray]:
    """Pooling name -> [n_cells, n_layers, d], cached by the atac embedding code."""
    from biofm.atac.embed import task_embeddings

    return task_embeddings(model_dir, task, batch_size=cfg.embed_batch_size, cache_dir=cfg.cache_dir)


def model_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig,
                  model_dir: Path, model, tok) -> Iterator[tuple[str, str, Callable[[], list[FoldPrediction]]]]:
    """kNN and logistic regression on the last layer's embedding: the heads the LSI and spectral
    baselines use, so the comparison is embedding against embedding. (The layer-choosing probes run
    beside these, from the shared evaluation.)"""
    from biofm.cells.baselines import knn_method, logreg_method

    for pooling in [p for p in cfg.probes.poolings if p in emb]:
        X = np.asarray(emb[pooling])[:, -1]  # [n_cells, d]
        yield f"probe-knn-{pooling}", "probe", lambda X=X: knn_method(X, cfg.probes.knn_k)(task, folds, cfg.seed)
        yield (f"probe-lastlayer-logreg-{pooling}", "probe",
               lambda X=X: logreg_method(X, cfg.probes.C)(task, folds, cfg.seed))


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.atac.baselines import atac_baseline_method

    settings = cfg.atac_baselines  # the `atac_baselines` key, added to the schema from the registry
    return [(n, atac_baseline_method(n, settings)) for n in settings.run]


def tables(task: Task, cfg: EvaluateConfig, emb: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """Clustering agreement, label silhouette and batch mixing (obs.batch, when the task names one): the
    model's last layer beside LSI and, when SnapATAC2 is installed, its spectral embedding."""
    from biofm.atac.baselines import lsi_embedding, spectral_embedding
    from biofm.cells.metrics import embedding_report

    t0 = time.perf_counter()
    settings = cfg.atac_baselines
    spaces = {"baseline-lsi": lsi_embedding(task, cfg.seed, settings)}
    if importlib.util.find_spec("snapatac2") is not None:
        spaces["baseline-spectral"] = spectral_embedding(task, cfg.seed, settings)
    else:
        console.print(f"[{task.name}] spectral embedding skipped: snapatac2 is not installed")
    for pooling in ("mean", "cls"):
        if emb is not None and pooling in emb:
            spaces[f"biofm-{pooling}"] = np.asarray(emb[pooling])[:, -1]
    rows = embedding_report(spaces, task, cfg.seed)
    console.print(f"[{task.name}] embedding metrics in {time.perf_counter() - t0:.1f}s")
    return [{"name": "embedding_metrics", "title": "Embedding structure (last layer; no labels used to embed)",
             "rows": rows}]
