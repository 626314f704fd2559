"""Text's part of `biofm evaluate`: sequence embeddings and fine-tuning, with TF-IDF baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biofm.eval.sequence import embeddings, model_methods, tables

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

__all__ = ["baselines", "embeddings", "load_task", "model_methods", "recognise_task", "shipped_tasks", "tables"]


def shipped_tasks() -> list[str]:
    from biofm.text.tasks import SHIPPED_TEXT_TASKS

    return list(SHIPPED_TEXT_TASKS)


def recognise_task(spec: str) -> int:
    """2: a text task YAML for certain (`text_column`, `modality: text`); 1: a table with a `text`
    column, or a YAML whose table has one; 0: not text."""
    from pathlib import Path

    from biofm.eval.task_files import table_columns, task_yaml

    data = task_yaml(spec)
    if data is not None:
        if data.get("modality") == "text" or "text_column" in data:
            return 2
        if data.get("modality") not in (None, "text") or "h5ad" in data or "fasta" in data:
            return 0
        # the table, or the first of a fixed split's train / validation / test tables
        tables = [data.get(k) for k in ("table", "train", "validation", "test")]
        table = next((t for t in tables if isinstance(t, str) and not t.startswith("dataset:")), None)
        if table is not None:
            return 1 if "text" in table_columns(str(Path(spec).parent / table)) else 0
        return 0
    return 1 if "text" in table_columns(spec) else 0


def load_task(spec: str):
    from biofm.text.tasks import load_text_task

    return load_text_task(spec)


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.text.baselines import text_baseline_method

    return [(n, text_baseline_method(n, cfg.text_baselines)) for n in cfg.text_baselines.run]
