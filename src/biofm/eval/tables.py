"""Labelled task tables, whatever the modality: reading them and turning their labels into a `Task`'s arrays.

Every modality's task loader reads the same kinds of files (CSV/TSV/JSONL/parquet, optionally gzipped,
named in a task YAML relative to the YAML or as `dataset:NAME`) and applies the same rules to labels
(class order, regression, predefined folds, fixed train / validation / test splits, minimum sizes). Those
rules live here, once, so a DNA task and a text task built from the same table get the same classes, folds,
splits and error messages; the modality modules only say what an input is (a sequence, a text, a cell) and
how to clean it.

A fixed split comes either as one table per part (`train:`, optional `validation:`, `test:` in the task
YAML) or as one table with a split column (`split_column:`, default a column named `split`) holding
train / dev, validation, valid or val / test: see `read_task_rows`.

Every mistake in a table is one line naming the file and, for text tables, the line (or the row of a
parquet file), because the alternative is a stack trace from deep inside a model minutes into a run.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from biofm.datasets import is_reference, resolve
from biofm.errors import BiofmError, where

__all__ = [
    "DELIMITER_BY_SUFFIX",
    "DELIMITER_NAMES",
    "JSONL_SUFFIXES",
    "MIN_EXAMPLES",
    "MIN_PER_CLASS",
    "PARQUET_SUFFIXES",
    "SPLIT_VALUES",
    "TABLE_SUFFIXES",
    "Records",
    "Row",
    "TaskRows",
    "as_number",
    "base_suffix",
    "check_fixed_only",
    "check_header_options",
    "check_split_keys",
    "class_codes",
    "class_labels",
    "fold_numbers",
    "infer_task_type",
    "label_text",
    "pick_delimiter",
    "read_delimited",
    "read_jsonl",
    "read_parquet",
    "read_table",
    "read_task_rows",
    "regression_labels",
    "require_examples",
    "resolve_file",
    "split_name",
    "split_values",
    "table_rows",
    "task_arrays",
    "text_lines",
]

# Fewer examples than this cannot give a cross-validated score that means anything.
MIN_EXAMPLES = 10
# A class seen once cannot appear on both sides of any split.
MIN_PER_CLASS = 2

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl",)
# Text tables: the delimiter follows from the extension unless the task YAML names one.
DELIMITER_BY_SUFFIX = {".csv": ",", ".txt": ",", ".tsv": "\t", ".tab": "\t"}
# Names a task YAML may use for a delimiter, because a literal tab is invisible (and easily lost) in YAML.
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
# Every table extension `read_table` understands (before an optional .gz).
TABLE_SUFFIXES = (*DELIMITER_BY_SUFFIX, *PARQUET_SUFFIXES, *JSONL_SUFFIXES)
_GZIP_MAGIC = b"\x1f\x8b"

# A table's data rows: (location prefix for error messages, one value per column).
Records = list[tuple[str, list[Any]]]
# The values a split column may hold (case and surrounding spaces ignored) and the part each one names.
SPLIT_VALUES = {"train": "train", "dev": "validation", "validation": "validation", "valid": "validation",
                "val": "validation", "test": "test"}
# The YAML keys naming one table per part of a fixed split, in row order.
SPLIT_KEYS = ("train", "validation", "test")


@dataclass
class Row:
    """One example before validation; `loc` is the file-and-line prefix for its error messages.

    `input` is whatever the modality makes an example from (a sequence, a text); the modality checks it.
    """

    loc: str
    input: Any
    label: Any
    fold: Any = None
    split: Any = None  # the row's raw split value (a split column) or part name (one table per part)


# ------------------------------------------------------------------------------------------ files


def resolve_file(yaml_path: Path, name: str, key: str, *, expected: str = "a file") -> Path:
    """A file named in a task YAML: relative to the YAML's folder (so a task folder can move as a whole),
    or `dataset:NAME` from the dataset registry (so a shipped YAML copied anywhere still finds its data).

    `key` names the YAML key in the messages (`table`, `h5ad`, ...); `expected` says what a folder should
    have been instead.
    """
    if is_reference(name):
        return resolve(name)
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = yaml_path.parent / p
    if not p.exists():
        raise BiofmError(f"{yaml_path}: {key} file {name!r} not found (looked for {p})")
    if p.is_dir():
        raise BiofmError(f"{yaml_path}: {key} {name!r} is a folder, expected {expected}")
    return p


def base_suffix(p: Path) -> str:
    """The extension that says the format, lower-cased and with a trailing `.gz` ignored (`t.TSV.gz` -> `.tsv`)."""
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def check_header_options(source: Path | str, header: bool, columns: list[str] | None) -> None:
    """`header:` and `columns:` must agree, or the first data row would be read as names (or the names as data)."""
    if not header and not columns:
        raise BiofmError(f"{source}: header: false needs columns: [...] naming the table's columns in order")
    if header and columns:
        raise BiofmError(f"{source}: columns: names a table without a header line; add header: false")
    if columns and len(set(columns)) != len(columns):
        raise BiofmError(f"{source}: columns: has duplicate names {columns}")


def pick_delimiter(delimiter: str | None, source: Path | str, table: Path) -> str:
    """The delimiter of a text table: the task's `delimiter:` (a character or a name such as `tab`), else by
    extension; an unknown extension is refused rather than guessed, since a wrong guess misreads every row."""
    if delimiter is not None:
        d = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
        if len(d) != 1:
            raise BiofmError(f"{source}: delimiter must be one character (or tab/comma), got {delimiter!r}")
        return d
    suffix = base_suffix(table)
    if suffix not in DELIMITER_BY_SUFFIX:
        raise BiofmError(
            f"{table}: unknown table format {suffix or '(no extension)'!r}; use .csv, .tsv, .txt, .jsonl, "
            ".parquet or set delimiter: in the task YAML"
        )
    return DELIMITER_BY_SUFFIX[suffix]


def read_table(
    table: Path,
    source: Path | str,
    *,
    header: bool = True,
    columns: list[str] | None = None,
    delimiter: str | None = None,
) -> tuple[list[str], Records]:
    """Column names and data rows of a task table, whatever its format; a table without rows is refused.

    `source` is the task file to blame for option errors (the YAML, or the table itself when bare).
    Call `check_header_options` first: `header`/`columns` apply to CSV/TSV only.
    """
    suffix = base_suffix(table)
    if suffix in PARQUET_SUFFIXES or suffix in JSONL_SUFFIXES:
        if not header:
            raise BiofmError(f"{source}: header: false applies to CSV/TSV tables, not {suffix}")
        names, records = read_parquet(table) if suffix in PARQUET_SUFFIXES else read_jsonl(table)
    else:
        names, records = read_delimited(table, pick_delimiter(delimiter, source, table), columns)
    if not records:
        raise BiofmError(f"{table}: no data rows")
    return names, records


def read_delimited(table: Path, delimiter: str, columns: list[str] | None) -> tuple[list[str], Records]:
    """Parse a delimited text table (gzipped or not) keeping each row's line number (pandas would lose it).

    With `columns` the file has no header line and these are its names. Blank lines are skipped and a
    trailing delimiter is forgiven; any other field-count mismatch names the line.
    """
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
    records: Records = []
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


def read_parquet(table: Path) -> tuple[list[str], Records]:
    """Column names and rows of a parquet file; rows are located as `file, row N` (parquet has no lines)."""
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


def json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of a JSON-lines file (gzipped or not); blank lines skipped, anything but an
    object per line is an error naming the line."""
    for n, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BiofmError(f"{where(path, n)}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise BiofmError(f"{where(path, n)}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def read_jsonl(table: Path) -> tuple[list[str], Records]:
    """One JSON object per line; columns are the keys, in first-seen order (missing values are None)."""
    objs: list[tuple[str, dict]] = []
    names: dict[str, None] = {}
    for n, obj in json_objects(table):
        names.update(dict.fromkeys(obj))
        objs.append((where(table, n), obj))
    cols = list(names)
    return cols, [(loc, [obj.get(c) for c in cols]) for loc, obj in objs]


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its terminator) of a text file, gzipped or not, strictly UTF-8,
    one line at a time, so a bad byte or a truncated gzip is reported at its line."""
    n = 0
    try:
        with _open(path) as fh:
            for n, raw in enumerate(fh, 1):
                if b"\x00" in raw:
                    raise BiofmError(f"{where(path, n)}: binary data (NUL byte), expected UTF-8 text")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise BiofmError(f"{where(path, n)}: not UTF-8 text (a binary file?)") from None
                if n == 1:
                    text = text.removeprefix("\ufeff")
                yield n, text.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise BiofmError(f"{where(path, n + 1)}: truncated or corrupt gzip file") from None
    except OSError as exc:
        raise BiofmError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _open(path: Path) -> IO[bytes]:
    """A binary handle on `path`, decompressing when its first bytes say gzip (whatever its name)."""
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if fh.read(2) == _GZIP_MAGIC:
        fh.close()
        return gzip.open(path, "rb")
    fh.seek(0)
    return fh


def table_rows(
    table: Path,
    names: list[str],
    records: Records,
    *,
    source: Path,
    input_key: str,
    input_column: str,
    label_column: str,
    fold_column: str | None = None,
    hint: str | None = None,
    split_column: str | None = None,
    folds: bool = True,
) -> tuple[list[Row], str | None]:
    """The table's examples as `Row`s, and the name of the fold column they carry (None when there is none).

    `input_key` is the YAML key naming the input column (`sequence_column`, `text_column`), so a missing
    column's message says which key to set in `source`; `hint` replaces that advice (for a bare table,
    which has no YAML to edit). Without `fold_column`, a column named `fold` is used when there is one --
    unless the rows are a fixed split (`split_column` given, or `folds=False` for one part's own table),
    where folds have no place. `split_column` puts each row's split value in `Row.split`.
    """

    def col(key: str, name: str) -> int:
        if name not in names:
            fix = hint if hint is not None else f"set {key}: in {source.name}"
            raise BiofmError(f"{table}: no column {name!r} (columns found: {', '.join(names)}); {fix}")
        return names.index(name)

    i_input = col(input_key, input_column)
    i_label = col("label_column", label_column)
    i_fold: int | None = None
    if fold_column is not None:
        i_fold = col("fold_column", fold_column)
    elif "fold" in names and folds and split_column is None:
        i_fold, fold_column = names.index("fold"), "fold"
    i_split = col("split_column", split_column) if split_column is not None else None
    rows = [
        Row(loc, vals[i_input], vals[i_label], vals[i_fold] if i_fold is not None else None,
            vals[i_split] if i_split is not None else None)
        for loc, vals in records
    ]
    return rows, fold_column if i_fold is not None else None


# ------------------------------------------------------------------------------------------ splits


def check_split_keys(
    source: Path | str,
    *,
    table: str | None,
    parts: dict[str, str | None],
    fold_column: str | None,
    split_column: str | None,
) -> None:
    """The keys of a task YAML that choose its rows must name one protocol: `table:` (cross-validated, or
    split by its `split_column:`) or `train:` + `test:` (+ `validation:`), never a mix."""
    given = [k for k in SPLIT_KEYS if parts.get(k) is not None]
    if not given:
        return
    if table is not None:
        raise BiofmError(f"{source}: give either table: or {' + '.join(f'{k}:' for k in given)}, not both")
    for needed in ("train", "test"):
        if needed not in given:
            raise BiofmError(f"{source}: a fixed split needs both train: and test: tables; {needed}: is missing "
                             "(validation: is optional)")
    for key, value in (("fold_column", fold_column), ("split_column", split_column)):
        if value is not None:
            raise BiofmError(f"{source}: {key}: applies to a single table:, not to train: / test: tables")


def check_fixed_only(source: Path | str, fixed: bool, *, seeds: int | None, keep: bool = False) -> None:
    """`seeds:` and `keep_test_duplicates:` mean something only under a fixed split; on a cross-validated
    task they would be silently ignored, so they are refused."""
    if not fixed and (seeds is not None or keep):
        key = "seeds" if seeds is not None else "keep_test_duplicates"
        raise BiofmError(f"{source}: {key}: applies to a fixed split (train: + test: tables, or a split column); "
                         "this task is cross-validated")


def split_name(value: Any) -> str | None:
    """The part a split value names (`train`, `validation` or `test`; `dev` is validation), or None."""
    return SPLIT_VALUES.get(label_text(value).lower()) if not isinstance(value, bool) else None


def split_values(rows: list[Row], column: str) -> np.ndarray:
    """Each row's part of a fixed split, from its `Row.split`; an unknown value names its row."""
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        name = split_name(r.split)
        if name is None:
            shown = "" if r.split is None else r.split
            raise BiofmError(f"{r.loc}: split {shown!r} is not train, dev / validation / valid / val or test "
                             f"(column {column!r})")
        out[i] = name
    return out


@dataclass
class TaskRows:
    """A task's examples as read from its table(s): the rows, their fold column (None when not
    cross-validated by one), each row's part of a fixed split (None under cross-validation), and the file
    or files to name in messages about the labels."""

    rows: list[Row]
    fold_column: str | None
    split: np.ndarray | None
    data_source: str


def read_task_rows(
    files: dict[str, Path],
    source: Path,
    *,
    header: bool,
    columns: list[str] | None,
    delimiter: str | None,
    input_key: str,
    input_column: str,
    label_column: str,
    fold_column: str | None = None,
    split_column: str | None = None,
    hint: str | None = None,
) -> TaskRows:
    """The rows of a task given as `{"table": path}` or as one table per part (`{"train": ..., "test": ...}`,
    plus `"validation"` when there is one).

    One table is cross-validated (by its fold column when it has one) unless it has a split column:
    `split_column`, or else a column named `split` (a table with both a `fold` and a `split` column and
    neither key set is refused as ambiguous). Tables per part share every column option; a fold column in
    them is ignored, since the files themselves are the split. Labels are coded over all parts together,
    so a class keeps its code in every part.
    """
    kw: dict[str, Any] = {"source": source, "input_key": input_key, "input_column": input_column,
                          "label_column": label_column, "hint": hint}
    if "table" in files:
        table = files["table"]
        names, records = read_table(table, source, header=header, columns=columns, delimiter=delimiter)
        if split_column is None and fold_column is None and "split" in names:
            if "fold" in names:
                raise BiofmError(f"{table}: both a 'fold' and a 'split' column; set fold_column: (cross-validation) "
                                 f"or split_column: (fixed split) in {source.name}")
            split_column = "split"
        rows, fold = table_rows(table, names, records, fold_column=fold_column, split_column=split_column, **kw)
        split = split_values(rows, split_column) if split_column is not None else None
        return TaskRows(rows, fold, split, str(table))
    rows, parts = [], []
    for part in SPLIT_KEYS:
        if part not in files:
            continue
        names, records = read_table(files[part], source, header=header, columns=columns, delimiter=delimiter)
        part_rows, _ = table_rows(files[part], names, records, folds=False, **kw)
        rows += part_rows
        parts += [part] * len(part_rows)
    return TaskRows(rows, None, np.asarray(parts, dtype=object), " + ".join(str(p) for p in files.values()))


# ----------------------------------------------------------------------------------------- labels


def require_examples(n: int, source: Path | str) -> None:
    """Refuse a task too small to cross-validate (`MIN_EXAMPLES`)."""
    if n < MIN_EXAMPLES:
        raise BiofmError(f"{source}: only {n} example(s); a task needs at least {MIN_EXAMPLES}")


def label_text(v: Any) -> str:
    """A label as the class name users see: `1.0` (a float from parquet or pandas) is `1`, missing (None or
    NaN) is the empty string, so the same label reads the same from every file format."""
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if v.is_integer():
            return str(int(v))
    return str(v).strip()


def as_number(text: str) -> float | None:
    """`text` as a float, or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def class_codes(texts: Sequence[str], source: Path | str, what: str) -> tuple[np.ndarray, list[str]]:
    """Each label's class code and the classes in code order; a single class is refused.

    Classes that are all numbers sort numerically (`1, 2, 10`, not `1, 10, 2`), so numeric labels keep
    their meaning as codes; any other labels sort as text. `what` names the labels' column in the message.
    """
    unique = set(texts)
    numbers = {t: as_number(t) for t in unique}
    if all(v is not None for v in numbers.values()):
        classes = sorted(unique, key=lambda t: (numbers[t], t))
    else:
        classes = sorted(unique)
    if len(classes) < 2:
        raise BiofmError(f"{source}: only one class ({classes[0]!r}) in {what}; classification needs at least two")
    code = {c: i for i, c in enumerate(classes)}
    return np.array([code[t] for t in texts], dtype=np.int64), classes


def class_labels(rows: list[Row], source: Path | str, what: str) -> tuple[np.ndarray, list[str]]:
    """Class codes and names of a classification task's rows; an empty label, a single class or a class with
    fewer than `MIN_PER_CLASS` examples is refused, naming the row."""
    texts = [label_text(r.label) for r in rows]
    for r, t in zip(rows, texts, strict=True):
        if not t:
            raise BiofmError(f"{r.loc}: empty label")
    labels, classes = class_codes(texts, source, what)
    counts = np.bincount(labels, minlength=len(classes))
    for i, n in enumerate(counts.tolist()):
        if n < MIN_PER_CLASS:
            first = rows[int(np.argmax(labels == i))].loc
            raise BiofmError(
                f"{source}: class {classes[i]!r} has only {n} example ({first}); "
                f"each class needs at least {MIN_PER_CLASS}"
            )
    return labels, classes


def regression_labels(rows: list[Row], source: Path | str) -> np.ndarray:
    """Float labels of a regression task; a non-finite or non-numeric label (naming its row) or labels that
    never vary are refused."""
    out = np.empty(len(rows), dtype=np.float64)
    for i, r in enumerate(rows):
        v = r.label
        if isinstance(v, bool) or v is None:
            value = None
        elif isinstance(v, int | float):
            value = float(v)
        else:
            value = as_number(str(v).strip())
        if value is None or not math.isfinite(value):
            shown = "" if v is None else v
            raise BiofmError(f"{r.loc}: label {shown!r} is not a finite number (task type is regression)")
        out[i] = value
    if np.all(out == out[0]):
        raise BiofmError(f"{source}: every label is {out[0]:g}; regression needs labels that vary")
    return out


def infer_task_type(labels: Sequence[Any]) -> Literal["classification", "regression"]:
    """For a table that does not say: regression when every label is a number and at least one is not a
    whole number (integer labels are far more often class codes than measurements)."""
    values = [as_number(label_text(v)) for v in labels]
    if all(v is not None for v in values) and any(not float(v).is_integer() for v in values if v is not None):
        return "regression"
    return "classification"


def fold_numbers(rows: list[Row], source: Path | str, column: str) -> np.ndarray:
    """The predefined fold of each row, from `column`; every fold must be an integer and there must be two."""
    out = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        v = r.fold
        number = as_number(label_text(v)) if not isinstance(v, bool) else None
        if number is None or not number.is_integer():
            raise BiofmError(f"{r.loc}: fold {'' if v is None else v!r} is not an integer (column {column!r})")
        out[i] = int(number)
    values = np.unique(out)
    if len(values) < 2:
        raise BiofmError(f"{source}: column {column!r} has only one fold ({values[0]}); need at least two")
    return out


def task_arrays(
    rows: list[Row],
    kind: Literal["classification", "regression"],
    source: Path | str,
    *,
    label_what: str,
    fold_column: str | None,
) -> tuple[np.ndarray, list[str] | None, np.ndarray | None]:
    """A `Task`'s labels, classes (None for regression) and folds (None when `fold_column` is None)."""
    if kind == "classification":
        labels, classes = class_labels(rows, source, label_what)
    else:
        labels, classes = regression_labels(rows, source), None
    folds = fold_numbers(rows, source, fold_column) if fold_column is not None else None
    return labels, classes, folds
