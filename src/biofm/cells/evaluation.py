"""Cells' part of `biofm evaluate`: cell embeddings, kNN probes, PCA/HVG baselines and the
embedding-structure table (Leiden / k-means agreement with the labels, silhouette, batch mixing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biofm.eval.types import Fold, FoldPrediction, Task

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

# the evaluation report draws this modality's classification tasks as a 2-D map of the embeddings
EMBEDDING_MAP = True


def shipped_tasks() -> list[str]:
    from biofm.cells.tasks import SHIPPED_CELL_TASKS

    return list(SHIPPED_CELL_TASKS)


def recognise_task(spec: str) -> int:
    """2: an h5ad (`file.h5ad:label`, `dataset:NAME:label`) or a YAML naming one; 0 otherwise."""
    from biofm.cells.tasks import is_cell_task

    return 2 if is_cell_task(spec) else 0


def load_task(spec: str) -> Task:
    from biofm.cells.tasks import load_cell_task

    return load_cell_task(spec)


def embeddings(task: Task, cfg: EvaluateConfig, model_dir: Path, model, tok) -> dict[str, np.ndarray]:
    from biofm.cells.embed import task_embeddings

    return task_embeddings(model_dir, task, batch_size=cfg.embed_batch_size, cache_dir=cfg.cache_dir)


def model_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig,
                  model_dir: Path, model, tok) -> Iterator[tuple[str, str, Callable[[], list[FoldPrediction]]]]:
    """kNN on the last layer's embedding, as single-cell benchmarks score cell-type transfer."""
    from biofm.cells.baselines import knn_method

    for pooling in [p for p in cfg.probes.poolings if p in emb]:
        X = np.asarray(emb[pooling])[:, -1]
        yield f"probe-knn-{pooling}", "probe", lambda X=X: knn_method(X, cfg.probes.knn_k)(task, folds, cfg.seed)


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.cells.baselines import cell_baseline_method

    return [(n, cell_baseline_method(n, cfg.cell_baselines)) for n in cfg.cell_baselines.run]


def tables(task: Task, cfg: EvaluateConfig, emb: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """Clustering agreement, label silhouette and batch mixing: the model's last layer beside PCA."""
    from biofm.cells.baselines import pca_embedding
    from biofm.cells.metrics import embedding_report
    from biofm.eval.evaluate import console

    t0 = time.perf_counter()
    spaces = {"baseline-pca": pca_embedding(task, cfg.seed, cfg.cell_baselines)}
    for pooling in ("mean", "cls"):
        if emb is not None and pooling in emb:
            spaces[f"biofm-{pooling}"] = np.asarray(emb[pooling])[:, -1]
    rows = embedding_report(spaces, task, cfg.seed)
    console.print(f"[{task.name}] embedding metrics in {time.perf_counter() - t0:.1f}s")
    return [{"name": "embedding_metrics", "title": "Embedding structure (last layer; no labels used to embed)",
             "rows": rows}]
