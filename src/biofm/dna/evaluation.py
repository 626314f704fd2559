"""DNA's part of `biofm evaluate`: sequence embeddings and fine-tuning, with the DNA baselines
(logistic regression on raw tokens, k-mer counts + logistic regression / XGBoost, a CNN from scratch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biofm.eval.sequence import embeddings, model_methods, tables

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

__all__ = ["baselines", "embeddings", "load_task", "model_methods", "recognise_task", "shipped_tasks", "tables"]


def shipped_tasks() -> list[str]:
    from biofm.dna.tasks import SHIPPED_TASKS

    return list(SHIPPED_TASKS)


def recognise_task(spec: str) -> int:
    """2: a DNA task YAML for certain (FASTA per class, a sequence column); 1: a YAML or a table with a
    `sequence` column that could be DNA; 0: not DNA."""
    from biofm.eval.task_files import table_columns, task_yaml

    data = task_yaml(spec)
    if data is not None:
        if data.get("modality") not in (None, "dna") or "h5ad" in data or "text_column" in data:
            return 0
        return 2 if data.get("modality") == "dna" or "fasta" in data or "sequence_column" in data else 1
    return 1 if "sequence" in table_columns(spec) else 0


def load_task(spec: str):
    from biofm.dna.tasks import SHIPPED_TASKS, shipped_task
    from biofm.dna.tasks import load_task as load

    return load(shipped_task(spec) if spec in SHIPPED_TASKS else spec)


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.dna.baselines import BASELINES, resolve_baseline

    names = [resolve_baseline(n) for n in cfg.baselines.run]
    return [(n, lambda t, f, s, n=n: BASELINES[n](t, f, s, cfg.baselines)) for n in names]
