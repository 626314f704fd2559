"""Labelled DNA tasks described by a small YAML file.

A task YAML names the examples (a CSV/TSV/JSONL/parquet table, one FASTA file per class, or a
benchmark's own `train:` / `validation:` / `test:` tables, scored on that fixed split) and whether the
label is a class or a number. Everything a user can get wrong in those files -- a missing
column, an empty sequence, a non-numeric regression label, a single class -- is reported as one
line naming the file and, for text tables, the line, because the alternative is a stack trace from
deep inside a model several minutes into an evaluation. Reading tables and the label, fold and size
rules are every modality's and live in `biofm.eval.tables`; this module adds what is DNA's own.

Sequences published in DNABERT's format (overlapping k-mers separated by spaces) are recognised and
turned back into plain sequences, so a benchmark file can be used as downloaded.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from biofm.config import Schema, build, read_yaml
from biofm.dna.fasta import normalise_sequence, read_fasta
from biofm.errors import BiofmError, where
from biofm.eval.folds import with_fixed_split
from biofm.eval.tables import (
    SPLIT_KEYS,
    Row,
    check_fixed_only,
    check_header_options,
    check_split_keys,
    read_task_rows,
    require_examples,
    resolve_file,
    task_arrays,
)
from biofm.eval.types import SHIPPED_TASKS_DIR, Task

__all__ = [
    "SHIPPED_TASKS",
    "TaskSpec",
    "check_lengths",
    "fit_to_length",
    "load_task",
    "shipped_task",
    "unspace_kmers",
]

TASKS_DIR = SHIPPED_TASKS_DIR
SHIPPED_TASKS: dict[str, str] = {"splice": "splice.yaml", "promoter": "promoter.yaml",
                                 "ecoli-elements": "ecoli_elements.yaml", "ecoli-cds-strand": "ecoli_cds_strand.yaml"}


class TaskSpec(Schema):
    """The keys of a task YAML; unknown keys are errors so a typo is never silently ignored."""

    name: str = Field(min_length=1)
    type: Literal["classification", "regression"]
    description: str = ""
    table: str | None = Field(None, description="CSV/TSV/JSONL/parquet file, relative to the YAML's folder")
    fasta: dict[str | int, str] | None = Field(None, description="class label -> FASTA file (one class per file)")
    sequence_column: str = "sequence"
    label_column: str = "label"
    fold_column: str | None = Field(None, description="predefined folds; default: the 'fold' column if present")
    train: str | None = Field(None, description="fixed split: the training table (with test:, instead of table:)")
    validation: str | None = Field(None, description="fixed split: the model-selection table (optional)")
    test: str | None = Field(None, description="fixed split: the table every method is scored on")
    split_column: str | None = Field(None, description="fixed split in one table: train / dev / test per row; "
                                     "default: the 'split' column if present")
    seeds: PositiveInt | None = Field(None, description="fixed split: repeats, mean ± s.d. over seeds (default 3)")
    keep_test_duplicates: bool = Field(False, description="fixed split: keep test rows that duplicate a "
                                       "train/validation sequence (default: removed, and counted)")
    header: bool = True
    columns: list[str] | None = Field(None, description="names of the columns of a table without a header line")
    delimiter: str | None = Field(None, description="default by extension: .csv/.txt comma, .tsv/.tab tab")
    max_length_bp: PositiveInt | None = None
    long_sequences: Literal["error", "truncate", "windows"] = "error"


# ---------------------------------------------------------------------------------------- public API


def load_task(path: str | Path) -> Task:
    """Read a task YAML and its examples into a `Task`, validating every example up front."""
    yaml_path = Path(path)
    spec = build(TaskSpec, read_yaml(yaml_path), str(yaml_path))
    _check_spec(spec, yaml_path)
    meta: dict[str, Any] = {"long_sequences": spec.long_sequences, "max_length_bp": spec.max_length_bp}
    if spec.description:
        meta["description"] = spec.description
    split = None
    if spec.table is not None or spec.train is not None:
        keys = {"table": spec.table} if spec.table is not None else {k: getattr(spec, k) for k in SPLIT_KEYS}
        files = {k: resolve_file(yaml_path, v, k) for k, v in keys.items() if v is not None}
        read = read_task_rows(
            files, yaml_path, header=spec.header, columns=spec.columns, delimiter=spec.delimiter,
            input_key="sequence_column", input_column=spec.sequence_column, label_column=spec.label_column,
            fold_column=spec.fold_column, split_column=spec.split_column,
        )
        rows, fold_column, split = read.rows, read.fold_column, read.split
        meta.update({k: str(v) for k, v in files.items()})
        data_source, label_what = read.data_source, f"column {spec.label_column!r}"
    else:
        rows, fold_column = _fasta_rows(spec, yaml_path), None
        data_source, label_what = str(yaml_path), "fasta:"

    check_fixed_only(yaml_path, split is not None, seeds=spec.seeds, keep=spec.keep_test_duplicates)
    require_examples(len(rows), data_source)
    inputs = [_clean_sequence(r) for r in rows]
    labels, classes, folds = task_arrays(rows, spec.type, data_source, label_what=label_what, fold_column=fold_column)

    task = Task(
        name=spec.name,
        type=spec.type,
        inputs=inputs,
        labels=labels,
        classes=classes,
        folds=folds,
        source=str(yaml_path),
        meta=meta,
    )
    if split is not None:  # after cleaning, so duplicates are compared as the models see them
        task = with_fixed_split(task, split, keep_test_duplicates=spec.keep_test_duplicates, seeds=spec.seeds)
    if spec.max_length_bp is not None:
        _check_limit(task, spec.max_length_bp, f"max_length_bp ({spec.max_length_bp} bp)")
    return task


def check_lengths(task: Task, max_tokens: int, tokens_per_bp: float, *, what: str = "the model") -> int:
    """Fail early, with a fix, when sequences exceed a model's context; returns the usable length in bp.

    `max_tokens` is the number of sequence tokens the model accepts (context minus special tokens)
    and `tokens_per_bp` how many tokens a base costs (1/k for a k-mer tokenizer; pass a slightly
    larger value when leftover single-base tokens matter). The task's own `max_length_bp`, when set,
    lowers the limit further. Under `long_sequences: truncate|windows` nothing is raised: the caller
    cuts sequences to the returned length (see `fit_to_length`).
    """
    if max_tokens < 1 or tokens_per_bp <= 0:
        raise ValueError(f"max_tokens must be >= 1 and tokens_per_bp > 0, got {max_tokens}, {tokens_per_bp}")
    limit = math.floor(max_tokens / tokens_per_bp + 1e-9)
    cap = task.meta.get("max_length_bp")
    if cap is not None:
        limit = min(limit, int(cap))
    _check_limit(task, limit, f"{what}'s context ({max_tokens} tokens ≈ {limit} bp)")
    return limit


def fit_to_length(seq: str, limit_bp: int, policy: str) -> list[str]:
    """Cut one sequence to at most `limit_bp` per piece under the task's `long_sequences` policy.

    `windows` tiles the sequence with non-overlapping windows and aligns the last one to the end, so
    every window is full length and every base is covered (the last two may overlap).
    """
    if limit_bp < 1:
        raise ValueError(f"limit_bp must be >= 1, got {limit_bp}")
    if len(seq) <= limit_bp or policy == "error":
        return [seq]
    if policy == "truncate":
        return [seq[:limit_bp]]
    if policy == "windows":
        starts = list(range(0, len(seq) - limit_bp + 1, limit_bp))
        if starts[-1] + limit_bp < len(seq):
            starts.append(len(seq) - limit_bp)
        return [seq[s : s + limit_bp] for s in starts]
    raise ValueError(f"unknown long_sequences policy {policy!r}")


def shipped_task(name: str) -> Path:
    """Path of a task YAML shipped with biofm ("splice", "promoter"); its table comes from the dataset registry."""
    file = SHIPPED_TASKS.get(name)
    if file is None:
        raise BiofmError(f"unknown shipped task {name!r}; available: {', '.join(SHIPPED_TASKS)}")
    return TASKS_DIR / file


def unspace_kmers(text: str) -> str:
    """Undo DNABERT's spaced overlapping k-mers (`ACGTAC CGTACG ...` -> `ACGTACG...`).

    Only text whose pieces all have one length k > 1 and overlap by k - 1 is reconstructed; anything
    else comes back stripped (inner whitespace is then dropped by `normalise_sequence`, which is right
    for sequences printed in groups, e.g. 10-base blocks).
    """
    pieces = text.upper().split()
    if len(pieces) < 2:
        return text.strip()
    k = len(pieces[0])
    if k < 2 or any(len(p) != k for p in pieces):
        return text.strip()
    if any(a[1:] != b[:-1] for a, b in itertools.pairwise(pieces)):
        return text.strip()
    return pieces[0] + "".join(p[-1] for p in pieces[1:])


# ------------------------------------------------------------------------------------------ helpers


def _check_spec(spec: TaskSpec, yaml_path: Path) -> None:
    parts = {k: getattr(spec, k) for k in SPLIT_KEYS}
    if (spec.table is not None or any(v is not None for v in parts.values())) and spec.fasta is not None:
        raise BiofmError(f"{yaml_path}: give either table: (or train: + test:) or fasta:, not both")
    if spec.table is None and spec.fasta is None and all(v is None for v in parts.values()):
        raise BiofmError(f"{yaml_path}: no examples: give table: (CSV/TSV/parquet), train: + test: tables, or "
                         "fasta: (label -> FASTA file)")
    check_split_keys(yaml_path, table=spec.table, parts=parts, fold_column=spec.fold_column,
                     split_column=spec.split_column)
    if spec.fasta is not None:
        if spec.type != "classification":
            raise BiofmError(f"{yaml_path}: fasta: tasks are classification (one class per file), not {spec.type}")
        table_keys = ("fold_column", "split_column", "columns", "delimiter")
        used = [k for k in table_keys if getattr(spec, k) is not None]
        if used:
            raise BiofmError(f"{yaml_path}: key {used[0]!r} applies to table: tasks, not fasta:")
        if not spec.fasta:
            raise BiofmError(f"{yaml_path}: fasta: is empty; map each class label to a FASTA file")
    check_header_options(yaml_path, spec.header, spec.columns)


def _fasta_rows(spec: TaskSpec, yaml_path: Path) -> list[Row]:
    assert spec.fasta is not None
    rows: list[Row] = []
    for label, name in spec.fasta.items():
        path = resolve_file(yaml_path, name, f"fasta (class {label!r})")
        before = len(rows)
        for rec in read_fasta(path):
            rows.append(Row(where(path, rec.line, rec.name), rec.seq, str(label)))
        if len(rows) == before:  # read_fasta already refuses files without records; belt and braces
            raise BiofmError(f"{path}: no sequences for class {label!r}")
    return rows


def _clean_sequence(row: Row) -> str:
    if row.input is None or not isinstance(row.input, str):
        if row.input is None:
            raise BiofmError(f"{row.loc}: empty sequence")
        raise BiofmError(f"{row.loc}: sequence is a {type(row.input).__name__} ({row.input!r}), expected text")
    seq = normalise_sequence(unspace_kmers(row.input), row.loc)
    if not seq:
        raise BiofmError(f"{row.loc}: empty sequence")
    return seq


def _check_limit(task: Task, limit_bp: int, what: str) -> None:
    if task.meta.get("long_sequences", "error") != "error":
        return
    lengths = np.fromiter((len(s) for s in task.inputs), dtype=np.int64, count=len(task.inputs))
    too_long = int(np.count_nonzero(lengths > limit_bp))
    if too_long:
        raise BiofmError(
            f"{task.source}: {too_long} of {len(lengths)} sequences are longer than {what}; longest is "
            f"{int(lengths.max())} bp. Add `long_sequences: truncate` or `long_sequences: windows` to the task YAML"
        )
