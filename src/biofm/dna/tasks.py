"""Labelled DNA tasks described by a small YAML file.

A task YAML names the examples (a CSV/TSV/parquet table, or one FASTA file per class) and whether
the label is a class or a number. Everything a user can get wrong in those files -- a missing
column, an empty sequence, a non-numeric regression label, a single class -- is reported as one
line naming the file and, for text tables, the line, because the alternative is a stack trace from
deep inside a model several minutes into an evaluation.

Sequences published in DNABERT's format (overlapping k-mers separated by spaces) are recognised and
turned back into plain sequences, so a benchmark file can be used as downloaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from biofm.config import Schema, build, read_yaml
from biofm.datasets import is_reference, resolve
from biofm.dna.fasta import normalise_sequence, read_fasta
from biofm.errors import BiofmError, where
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

# Fewer examples than this cannot give a cross-validated score that means anything.
MIN_EXAMPLES = 10
# A class seen once cannot appear on both sides of any split.
MIN_PER_CLASS = 2

TASKS_DIR = SHIPPED_TASKS_DIR
SHIPPED_TASKS: dict[str, str] = {"splice": "splice.yaml", "promoter": "promoter.yaml"}

_PARQUET_SUFFIXES = (".parquet", ".pq")
_DELIMITER_BY_SUFFIX = {".csv": ",", ".txt": ",", ".tsv": "\t", ".tab": "\t"}
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_GZIP_MAGIC = b"\x1f\x8b"


class TaskSpec(Schema):
    """The keys of a task YAML; unknown keys are errors so a typo is never silently ignored."""

    name: str = Field(min_length=1)
    type: Literal["classification", "regression"]
    description: str = ""
    table: str | None = Field(None, description="CSV/TSV/parquet file, relative to the YAML's folder")
    fasta: dict[str | int, str] | None = Field(None, description="class label -> FASTA file (one class per file)")
    sequence_column: str = "sequence"
    label_column: str = "label"
    fold_column: str | None = Field(None, description="predefined folds; default: the 'fold' column if present")
    header: bool = True
    columns: list[str] | None = Field(None, description="names of the columns of a table without a header line")
    delimiter: str | None = Field(None, description="default by extension: .csv/.txt comma, .tsv/.tab tab")
    max_length_bp: PositiveInt | None = None
    long_sequences: Literal["error", "truncate", "windows"] = "error"


@dataclass
class _Row:
    """One example before validation; `loc` is the file-and-line prefix for its error messages."""

    loc: str
    seq: Any
    label: Any
    fold: Any = None


# ---------------------------------------------------------------------------------------- public API


def load_task(path: str | Path) -> Task:
    """Read a task YAML and its examples into a `Task`, validating every example up front."""
    yaml_path = Path(path)
    spec = build(TaskSpec, read_yaml(yaml_path), str(yaml_path))
    _check_spec(spec, yaml_path)
    meta: dict[str, Any] = {"long_sequences": spec.long_sequences, "max_length_bp": spec.max_length_bp}
    if spec.description:
        meta["description"] = spec.description
    if spec.table is not None:
        table = _resolve(yaml_path, spec.table, "table")
        rows, data_source, has_folds = _table_rows(spec, yaml_path, table)
        meta["table"] = str(table)
        label_what = f"column {spec.label_column!r}"
    else:
        assert spec.fasta is not None
        rows = _fasta_rows(spec, yaml_path)
        data_source, has_folds = str(yaml_path), False
        label_what = "fasta:"

    if len(rows) < MIN_EXAMPLES:
        raise BiofmError(f"{data_source}: only {len(rows)} example(s); a task needs at least {MIN_EXAMPLES}")
    inputs = [_clean_sequence(r) for r in rows]
    if spec.type == "classification":
        labels, classes = _class_labels(rows, data_source, label_what)
    else:
        labels, classes = _regression_labels(rows, data_source), None
    folds = _folds(rows, data_source, spec.fold_column or "fold") if has_folds else None

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
    if spec.table is not None and spec.fasta is not None:
        raise BiofmError(f"{yaml_path}: give either table: or fasta:, not both")
    if spec.table is None and spec.fasta is None:
        raise BiofmError(f"{yaml_path}: no examples: give table: (CSV/TSV/parquet) or fasta: (label -> FASTA file)")
    if spec.fasta is not None:
        if spec.type != "classification":
            raise BiofmError(f"{yaml_path}: fasta: tasks are classification (one class per file), not {spec.type}")
        table_keys = ("fold_column", "columns", "delimiter")
        used = [k for k in table_keys if getattr(spec, k) is not None]
        if used:
            raise BiofmError(f"{yaml_path}: key {used[0]!r} applies to table: tasks, not fasta:")
        if not spec.fasta:
            raise BiofmError(f"{yaml_path}: fasta: is empty; map each class label to a FASTA file")
    if not spec.header and not spec.columns:
        raise BiofmError(f"{yaml_path}: header: false needs columns: [...] naming the table's columns in order")
    if spec.header and spec.columns:
        raise BiofmError(f"{yaml_path}: columns: names a table without a header line; add header: false")
    if spec.columns and len(set(spec.columns)) != len(spec.columns):
        raise BiofmError(f"{yaml_path}: columns: has duplicate names {spec.columns}")


def _resolve(yaml_path: Path, name: str, key: str) -> Path:
    """A file named in a task YAML: relative to the YAML's folder, or `dataset:NAME` from the registry."""
    if is_reference(name):
        return resolve(name)
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = yaml_path.parent / p
    if not p.exists():
        raise BiofmError(f"{yaml_path}: {key} file {name!r} not found (looked for {p})")
    if p.is_dir():
        raise BiofmError(f"{yaml_path}: {key} {name!r} is a folder, expected a file")
    return p


def _delimiter(spec: TaskSpec, yaml_path: Path, table: Path) -> str:
    if spec.delimiter is not None:
        d = _DELIMITER_NAMES.get(spec.delimiter.lower(), spec.delimiter)
        if len(d) != 1:
            raise BiofmError(f"{yaml_path}: delimiter must be one character (or tab/comma), got {spec.delimiter!r}")
        return d
    suffix = _base_suffix(table)
    if suffix not in _DELIMITER_BY_SUFFIX:
        raise BiofmError(
            f"{table}: unknown table format {suffix or '(no extension)'!r}; use .csv, .tsv, .txt, .parquet "
            "or set delimiter: in the task YAML"
        )
    return _DELIMITER_BY_SUFFIX[suffix]


def _base_suffix(p: Path) -> str:
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _table_rows(spec: TaskSpec, yaml_path: Path, table: Path) -> tuple[list[_Row], str, bool]:
    """Rows of a table task, whether it has a fold column, and the name to blame for table-wide errors."""
    if _base_suffix(table) in _PARQUET_SUFFIXES:
        if not spec.header:
            raise BiofmError(f"{yaml_path}: header: false applies to text tables; parquet has column names")
        names, records = _read_parquet(table)
    else:
        names, records = _read_text(table, _delimiter(spec, yaml_path, table), spec.columns)
    if not records:
        raise BiofmError(f"{table}: no data rows")

    def col(key: str, name: str) -> int:
        if name not in names:
            raise BiofmError(
                f"{table}: no column {name!r} (columns found: {', '.join(names)}); set {key}: in {yaml_path.name}"
            )
        return names.index(name)

    i_seq = col("sequence_column", spec.sequence_column)
    i_label = col("label_column", spec.label_column)
    i_fold: int | None = None
    if spec.fold_column is not None:
        i_fold = col("fold_column", spec.fold_column)
    elif "fold" in names:
        i_fold = names.index("fold")
    rows = [
        _Row(loc, vals[i_seq], vals[i_label], vals[i_fold] if i_fold is not None else None) for loc, vals in records
    ]
    return rows, str(table), i_fold is not None


def _read_text(table: Path, delimiter: str, columns: list[str] | None) -> tuple[list[str], list[tuple[str, list]]]:
    """Parse a delimited text table keeping each row's line number (pandas would lose it)."""
    raw = table.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error):
            raise BiofmError(f"{table}: truncated or corrupt gzip file") from None
    if b"\x00" in raw:
        raise BiofmError(f"{table}: unreadable table: binary data, expected CSV/TSV text (or a .parquet name)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BiofmError(f"{where(table, line)}: unreadable table: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    names = list(columns) if columns else None
    records: list[tuple[str, list]] = []
    try:
        for row in reader:
            fields = [f.strip() for f in row]
            if not any(fields):
                continue
            line = reader.line_num
            if names is None:
                names = fields
                if len(set(names)) != len(names):
                    raise BiofmError(f"{where(table, line)}: duplicate column names in header {names}")
                continue
            while len(fields) > len(names) and not fields[-1]:
                fields.pop()  # a trailing delimiter is harmless
            if len(fields) != len(names):
                raise BiofmError(
                    f"{where(table, line)}: {len(fields)} field(s), expected {len(names)} ({', '.join(names)}); "
                    f"is the delimiter {delimiter!r} right?"
                )
            records.append((where(table, line), fields))
    except csv.Error as exc:
        raise BiofmError(f"{where(table, reader.line_num)}: unreadable table ({exc})") from None
    if names is None:
        raise BiofmError(f"{table}: empty table")
    return names, records


def _read_parquet(table: Path) -> tuple[list[str], list[tuple[str, list]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(table)
    except (pa.ArrowException, OSError) as exc:
        raise BiofmError(f"{table}: unreadable parquet file ({str(exc).splitlines()[0]})") from None
    names = [str(n) for n in data.column_names]
    cols = [data.column(i).to_pylist() for i in range(data.num_columns)]
    records = [(f"{table}, row {i + 1}", [c[i] for c in cols]) for i in range(data.num_rows)]
    return names, records


def _fasta_rows(spec: TaskSpec, yaml_path: Path) -> list[_Row]:
    assert spec.fasta is not None
    rows: list[_Row] = []
    for label, name in spec.fasta.items():
        path = _resolve(yaml_path, name, f"fasta (class {label!r})")
        before = len(rows)
        for rec in read_fasta(path):
            rows.append(_Row(where(path, rec.line, rec.name), rec.seq, str(label)))
        if len(rows) == before:  # read_fasta already refuses files without records; belt and braces
            raise BiofmError(f"{path}: no sequences for class {label!r}")
    return rows


def _clean_sequence(row: _Row) -> str:
    if row.seq is None or not isinstance(row.seq, str):
        if row.seq is None:
            raise BiofmError(f"{row.loc}: empty sequence")
        raise BiofmError(f"{row.loc}: sequence is a {type(row.seq).__name__} ({row.seq!r}), expected text")
    seq = normalise_sequence(unspace_kmers(row.seq), row.loc)
    if not seq:
        raise BiofmError(f"{row.loc}: empty sequence")
    return seq


def _label_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _class_labels(rows: list[_Row], source: str, what: str) -> tuple[np.ndarray, list[str]]:
    texts = [_label_text(r.label) for r in rows]
    for r, t in zip(rows, texts, strict=True):
        if not t:
            raise BiofmError(f"{r.loc}: empty label")
    unique = set(texts)
    numbers = {t: _as_number(t) for t in unique}
    if all(v is not None for v in numbers.values()):
        classes = sorted(unique, key=lambda t: (numbers[t], t))
    else:
        classes = sorted(unique)
    if len(classes) < 2:
        raise BiofmError(f"{source}: only one class ({classes[0]!r}) in {what}; classification needs at least two")
    code = {c: i for i, c in enumerate(classes)}
    labels = np.array([code[t] for t in texts], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    for i, n in enumerate(counts.tolist()):
        if n < MIN_PER_CLASS:
            first = rows[int(np.argmax(labels == i))].loc
            raise BiofmError(
                f"{source}: class {classes[i]!r} has only {n} example ({first}); "
                f"each class needs at least {MIN_PER_CLASS}"
            )
    return labels, classes


def _regression_labels(rows: list[_Row], source: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.float64)
    for i, r in enumerate(rows):
        v = r.label
        if isinstance(v, bool) or v is None:
            value = None
        elif isinstance(v, int | float):
            value = float(v)
        else:
            value = _as_number(str(v).strip())
        if value is None or not math.isfinite(value):
            shown = "" if v is None else v
            raise BiofmError(f"{r.loc}: label {shown!r} is not a finite number (task type is regression)")
        out[i] = value
    if np.all(out == out[0]):
        raise BiofmError(f"{source}: every label is {out[0]:g}; regression needs labels that vary")
    return out


def _folds(rows: list[_Row], source: str, column: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        v = r.fold
        number = _as_number(_label_text(v)) if not isinstance(v, bool) else None
        if number is None or not number.is_integer():
            raise BiofmError(f"{r.loc}: fold {'' if v is None else v!r} is not an integer (column {column!r})")
        out[i] = int(number)
    values = np.unique(out)
    if len(values) < 2:
        raise BiofmError(f"{source}: column {column!r} has only one fold ({values[0]}); need at least two")
    return out


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
