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

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from biofm.config import Schema, build, read_yaml
from biofm.dna.tasks import (
    _DELIMITER_BY_SUFFIX,
    _DELIMITER_NAMES,
    _PARQUET_SUFFIXES,
    MIN_EXAMPLES,
    TASKS_DIR,
    _as_number,
    _base_suffix,
    _class_labels,
    _folds,
    _label_text,
    _read_parquet,
    _read_text,
    _regression_labels,
    _resolve,
    _Row,
)
from biofm.errors import BiofmError, where
from biofm.eval.types import Task
from biofm.text.corpus import _lines

__all__ = [
    "SHIPPED_TEXT_TASKS",
    "TextTaskSpec",
    "load_text_task",
    "shipped_text_task",
]

SHIPPED_TEXT_TASKS: dict[str, str] = {"pubmedqa": "pubmedqa.yaml"}
_YAML_SUFFIXES = (".yaml", ".yml")
_TABLE_SUFFIXES = (*_DELIMITER_BY_SUFFIX, *_PARQUET_SUFFIXES, ".jsonl")


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
    return TASKS_DIR / file


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
        return _load(spec, p, _resolve(p, spec.table, "table"), bare=False)
    if _base_suffix(p) not in _TABLE_SUFFIXES:
        raise BiofmError(f"{p}: unknown task file type; use a task YAML or a .csv/.tsv/.jsonl/.parquet table")
    name = p.name
    for s in reversed(p.suffixes):
        name = name.removesuffix(s)
    spec = TextTaskSpec(name=name or p.name, type="classification", table=p.name)
    return _load(spec, p, p, bare=True)


# ------------------------------------------------------------------------------------------ helpers


def _load(spec: TextTaskSpec, source: Path, table: Path, *, bare: bool) -> Task:
    if not spec.header and not spec.columns:
        raise BiofmError(f"{source}: header: false needs columns: [...] naming the table's columns in order")
    if spec.header and spec.columns:
        raise BiofmError(f"{source}: columns: names a table without a header line; add header: false")
    names, records = _read_table(spec, source, table)
    if not records:
        raise BiofmError(f"{table}: no data rows")

    def col(key: str, name: str) -> int:
        if name not in names:
            fix = (f"the table needs columns {spec.text_column!r} and {spec.label_column!r}" if bare
                   else f"set {key}: in {source.name}")
            raise BiofmError(f"{table}: no column {name!r} (columns found: {', '.join(names)}); {fix}")
        return names.index(name)

    i_text, i_label = col("text_column", spec.text_column), col("label_column", spec.label_column)
    i_fold = col("fold_column", spec.fold_column) if spec.fold_column else (
        names.index("fold") if "fold" in names else None)
    rows = [_Row(loc, v[i_text], v[i_label], v[i_fold] if i_fold is not None else None) for loc, v in records]
    if len(rows) < MIN_EXAMPLES:
        raise BiofmError(f"{table}: only {len(rows)} example(s); a task needs at least {MIN_EXAMPLES}")
    inputs = [_text(r) for r in rows]
    kind = _infer_type(rows) if bare else spec.type
    if kind == "classification":
        labels, classes = _class_labels(rows, str(table), f"column {spec.label_column!r}")
    else:
        labels, classes = _regression_labels(rows, str(table)), None
    folds = _folds(rows, str(table), spec.fold_column or "fold") if i_fold is not None else None
    meta: dict[str, Any] = {"table": str(table), "modality": "text", "long_sequences": spec.long_sequences}
    if spec.description:
        meta["description"] = spec.description
    return Task(name=spec.name, type=kind, inputs=inputs, labels=labels, classes=classes, folds=folds,
                source=str(source), meta=meta)


def _read_table(spec: TextTaskSpec, source: Path, table: Path) -> tuple[list[str], list[tuple[str, list]]]:
    suffix = _base_suffix(table)
    if suffix in _PARQUET_SUFFIXES or suffix == ".jsonl":
        if not spec.header:
            raise BiofmError(f"{source}: header: false applies to CSV/TSV tables, not {suffix}")
        return _read_parquet(table) if suffix in _PARQUET_SUFFIXES else _read_jsonl(table)
    if spec.delimiter is not None:
        delimiter = _DELIMITER_NAMES.get(spec.delimiter.lower(), spec.delimiter)
        if len(delimiter) != 1:
            raise BiofmError(f"{source}: delimiter must be one character (or tab/comma), got {spec.delimiter!r}")
    elif suffix in _DELIMITER_BY_SUFFIX:
        delimiter = _DELIMITER_BY_SUFFIX[suffix]
    else:
        raise BiofmError(
            f"{table}: unknown table format {suffix or '(no extension)'!r}; use .csv, .tsv, .jsonl, .parquet "
            "or set delimiter: in the task YAML"
        )
    return _read_text(table, delimiter, spec.columns)


def _read_jsonl(table: Path) -> tuple[list[str], list[tuple[str, list]]]:
    """One JSON object per line; columns are the keys, in first-seen order (missing values are None)."""
    objs: list[tuple[str, dict]] = []
    names: dict[str, None] = {}
    for n, line in _lines(table):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BiofmError(f"{where(table, n)}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise BiofmError(f"{where(table, n)}: expected a JSON object, got {type(obj).__name__}")
        names.update(dict.fromkeys(obj))
        objs.append((where(table, n), obj))
    cols = list(names)
    return cols, [(loc, [obj.get(c) for c in cols]) for loc, obj in objs]


def _text(row: _Row) -> str:
    v = row.seq
    if v is None or (isinstance(v, float) and v != v):
        raise BiofmError(f"{row.loc}: empty text")
    if not isinstance(v, str):
        raise BiofmError(f"{row.loc}: text is a {type(v).__name__} ({v!r}), expected a string")
    text = v.strip()
    if not text:
        raise BiofmError(f"{row.loc}: empty text")
    return text


def _infer_type(rows: list[_Row]) -> Literal["classification", "regression"]:
    """Regression when every label is a number and at least one is not a whole number."""
    values = [_as_number(_label_text(r.label)) for r in rows]
    if all(v is not None for v in values) and any(not float(v).is_integer() for v in values if v is not None):
        return "regression"
    return "classification"
