"""Labelled text tasks: a task YAML (like DNA's) or a bare table with `text` and `label` columns.

A task YAML names a table (.csv/.tsv/.jsonl/.parquet, optionally gzipped) and whether the label is
a class or a number:

    name: pubmedqa
    type: classification          # or regression
    table: pubmedqa.tsv.gz        # relative to the YAML's folder
    text_column: text
    label_column: label
    fold_column: fold             # optional; default: a column named `fold` when there is one

or names a benchmark's fixed split, scored on its test rows over `seeds` (default 3): `train:`,
`validation:` (optional) and `test:` tables instead of `table:`, or a `split` column (train / dev /
test; `split_column:` names another) in the one table. Test rows that duplicate a train or validation
text are removed (and counted) unless `keep_test_duplicates: true`.

A bare table path works too: its name becomes the task name, the columns must be `text` and
`label` (a `split` column, when present, makes it a fixed split), and the task is a regression when
every label is a number and some are not integers (classification otherwise). Everything a user can
get wrong -- a missing column, an empty text, a single class, too few examples -- is one line naming
the file and, where it applies, the line.

Texts longer than a model's context are truncated by default (`long_sequences: truncate`; the
evaluator reads it from `task.meta`), which is the usual practice for text classification.

`pubmedqa` is a shipped task name: its YAML ships with biofm, its table is the registered dataset
`pubmedqa` (PubMedQA's 1,000 expert-labelled questions, converted from the published JSON), scored on
the official 500-question test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt

from biofm.config import Schema, build, read_yaml
from biofm.errors import BiofmError
from biofm.eval.folds import with_fixed_split
from biofm.eval.tables import (
    SPLIT_KEYS,
    TABLE_SUFFIXES,
    Row,
    base_suffix,
    check_fixed_only,
    check_header_options,
    check_split_keys,
    infer_task_type,
    read_task_rows,
    require_examples,
    resolve_file,
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
    table: str | None = Field(None, description="CSV/TSV/JSONL/parquet file, relative to the YAML's folder")
    text_column: str = "text"
    label_column: str = "label"
    fold_column: str | None = Field(None, description="predefined folds; default: the 'fold' column if present")
    train: str | None = Field(None, description="fixed split: the training table (with test:, instead of table:)")
    validation: str | None = Field(None, description="fixed split: the model-selection table (optional)")
    test: str | None = Field(None, description="fixed split: the table every method is scored on")
    split_column: str | None = Field(None, description="fixed split in one table: train / dev / test per row; "
                                     "default: the 'split' column if present")
    seeds: PositiveInt | None = Field(None, description="fixed split: repeats, mean ± s.d. over seeds (default 3)")
    keep_test_duplicates: bool = Field(False, description="fixed split: keep test rows that duplicate a "
                                       "train/validation text (default: removed, and counted)")
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
        parts = {k: getattr(spec, k) for k in SPLIT_KEYS}
        check_split_keys(p, table=spec.table, parts=parts, fold_column=spec.fold_column,
                         split_column=spec.split_column)
        keys = {"table": spec.table} if spec.table is not None else {k: v for k, v in parts.items() if v is not None}
        if not keys:
            raise BiofmError(f"{p}: no examples: give table: or train: + test: tables")
        return _load(spec, p, {k: resolve_file(p, v, k) for k, v in keys.items()}, bare=False)
    if base_suffix(p) not in TABLE_SUFFIXES:
        raise BiofmError(f"{p}: unknown task file type; use a task YAML or a .csv/.tsv/.jsonl/.parquet table")
    name = p.name
    for s in reversed(p.suffixes):
        name = name.removesuffix(s)
    spec = TextTaskSpec(name=name or p.name, type="classification", table=p.name)
    return _load(spec, p, {"table": p}, bare=True)


# ------------------------------------------------------------------------------------------ helpers


def _load(spec: TextTaskSpec, source: Path, files: dict[str, Path], *, bare: bool) -> Task:
    check_header_options(source, spec.header, spec.columns)
    hint = f"the table needs columns {spec.text_column!r} and {spec.label_column!r}" if bare else None
    read = read_task_rows(
        files, source, header=spec.header, columns=spec.columns, delimiter=spec.delimiter, input_key="text_column",
        input_column=spec.text_column, label_column=spec.label_column, fold_column=spec.fold_column,
        split_column=spec.split_column, hint=hint,
    )
    rows = read.rows
    check_fixed_only(source, read.split is not None, seeds=spec.seeds, keep=spec.keep_test_duplicates)
    require_examples(len(rows), read.data_source)
    inputs = [_text(r) for r in rows]
    kind = infer_task_type([r.label for r in rows]) if bare else spec.type
    labels, classes, folds = task_arrays(rows, kind, read.data_source, label_what=f"column {spec.label_column!r}",
                                         fold_column=read.fold_column)
    meta: dict[str, Any] = {**{k: str(v) for k, v in files.items()}, "modality": "text",
                            "long_sequences": spec.long_sequences}
    if spec.description:
        meta["description"] = spec.description
    task = Task(name=spec.name, type=kind, inputs=inputs, labels=labels, classes=classes, folds=folds,
                source=str(source), meta=meta)
    if read.split is not None:
        task = with_fixed_split(task, read.split, keep_test_duplicates=spec.keep_test_duplicates, seeds=spec.seeds)
    return task


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
