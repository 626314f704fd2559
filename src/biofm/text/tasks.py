"""Labelled text tasks: a task YAML (like DNA's) or a bare table with `text` and `label` columns.

A task YAML names a table (.csv/.tsv/.jsonl/.parquet, optionally gzipped) and whether the label is
a class or a number:

    name: pubmedqa
    type: classification          # or regression
    table: pubmedqa.tsv.gz        # relative to the YAML's folder
    text_column: text
    label_column: label
    fold_column: fold             # optional; default: a column named `fold` when there is one

A bare table path works too: its name becomes the task name, the columns must be `text` and
`label`, and the task is a regression when every label is a number and some are not integers
(classification otherwise). Everything a user can get wrong -- a missing column, an empty text, a
single class, too few examples -- is one line naming the file and, where it applies, the line.

Texts longer than a model's context are truncated by default (`long_sequences: truncate`; the
evaluator reads it from `task.meta`), which is the usual practice for text classification.

`pubmedqa` is a shipped task name: its YAML ships with biofm, its table is the registered dataset
`pubmedqa` (PubMedQA's 1,000 expert-labelled questions, converted from the published JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from biofm.config import Schema, build, read_yaml
from biofm.errors import BiofmError
from biofm.eval.tables import (
    TABLE_SUFFIXES,
    Row,
    base_suffix,
    check_header_options,
    infer_task_type,
    read_table,
    require_examples,
    resolve_file,
    table_rows,
    task_arrays,
)
from biofm.eval.types import SHIPPED_TASKS_DIR, Task

__all__ = [
    "SHIPPED_TEXT_TASKS",
    "TextTaskSpec",
    "load_text_task",
    "shipped_text_task",
]

SHIPPED_TEXT_TASKS: dict[str, str] = {"pubmedqa": "pubmedqa.yaml"}
_YAML_SUFFIXES = (".yaml", ".yml")


class TextTaskSpec(Schema):
    """The keys of a text task YAML; unknown keys are errors so a typo is never silently ignored."""

    name: str = Field(min_length=1)
    type: Literal["classification", "regression"]
    description: str = ""
    table: str = Field(description="CSV/TSV/JSONL/parquet file, relative to the YAML's folder")
    text_column: str = "text"
    label_column: str = "label"
    fold_column: str | None = Field(None, description="predefined folds; default: the 'fold' column if present")
    header: bool = True
    columns: list[str] | None = Field(None, description="names of the columns of a table without a header line")
    delimiter: str | None = Field(None, description="default by extension: .csv/.txt comma, .tsv/.tab tab")
    long_sequences: Literal["error", "truncate", "windows"] = Field(
        "truncate", description="texts longer than the model's context: cut them (default), tile them, or refuse"
    )


# ---------------------------------------------------------------------------------------- public API


def shipped_text_task(name: str) -> Path:
    """Path of a text task YAML shipped with biofm ("pubmedqa"); its table comes from the dataset registry."""
    file = SHIPPED_TEXT_TASKS.get(name)
    if file is None:
        raise BiofmError(f"unknown shipped text task {name!r}; available: {', '.join(SHIPPED_TEXT_TASKS)}")
    return SHIPPED_TASKS_DIR / file


def load_text_task(path: str | Path) -> Task:
    """Read a text task (YAML, bare table, or a shipped task's name) into a `Task` of strings."""
    p = Path(path)
    if str(path) in SHIPPED_TEXT_TASKS and not p.exists():
        p = shipped_text_task(str(path))
    if not p.exists():
        raise BiofmError(f"{p}: task file not found")
    if p.is_dir():
        raise BiofmError(f"{p}: is a folder, expected a task YAML or a table")
    if p.suffix.lower() in _YAML_SUFFIXES:
        spec = build(TextTaskSpec, read_yaml(p), str(p))
        return _load(spec, p, resolve_file(p, spec.table, "table"), bare=False)
    if base_suffix(p) not in TABLE_SUFFIXES:
        raise BiofmError(f"{p}: unknown task file type; use a task YAML or a .csv/.tsv/.jsonl/.parquet table")
    name = p.name
    for s in reversed(p.suffixes):
        name = name.removesuffix(s)
    spec = TextTaskSpec(name=name or p.name, type="classification", table=p.name)
    return _load(spec, p, p, bare=True)


# ------------------------------------------------------------------------------------------ helpers


def _load(spec: TextTaskSpec, source: Path, table: Path, *, bare: bool) -> Task:
    check_header_options(source, spec.header, spec.columns)
    names, records = read_table(table, source, header=spec.header, columns=spec.columns, delimiter=spec.delimiter)
    hint = f"the table needs columns {spec.text_column!r} and {spec.label_column!r}" if bare else None
    rows, fold_column = table_rows(
        table, names, records, source=source, input_key="text_column", input_column=spec.text_column,
        label_column=spec.label_column, fold_column=spec.fold_column, hint=hint,
    )
    require_examples(len(rows), table)
    inputs = [_text(r) for r in rows]
    kind = infer_task_type([r.label for r in rows]) if bare else spec.type
    labels, classes, folds = task_arrays(rows, kind, str(table), label_what=f"column {spec.label_column!r}",
                                         fold_column=fold_column)
    meta: dict[str, Any] = {"table": str(table), "modality": "text", "long_sequences": spec.long_sequences}
    if spec.description:
        meta["description"] = spec.description
    return Task(name=spec.name, type=kind, inputs=inputs, labels=labels, classes=classes, folds=folds,
                source=str(source), meta=meta)


def _text(row: Row) -> str:
    v = row.input
    if v is None or (isinstance(v, float) and v != v):
        raise BiofmError(f"{row.loc}: empty text")
    if not isinstance(v, str):
        raise BiofmError(f"{row.loc}: text is a {type(v).__name__} ({v!r}), expected a string")
    text = v.strip()
    if not text:
        raise BiofmError(f"{row.loc}: empty text")
    return text
