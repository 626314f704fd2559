"""biofm.eval.tables: the table reading and label rules every modality's task loader shares."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biofm.errors import BiofmError
from biofm.eval.tables import (
    MIN_EXAMPLES,
    MIN_PER_CLASS,
    Row,
    base_suffix,
    check_header_options,
    class_codes,
    class_labels,
    fold_numbers,
    infer_task_type,
    label_text,
    read_table,
    regression_labels,
    require_examples,
    resolve_file,
    table_rows,
    task_arrays,
)


def rows_of(labels: list, folds: list | None = None) -> list[Row]:
    folds = folds if folds is not None else [None] * len(labels)
    return [Row(f"t.csv, line {i + 2}", f"x{i}", lab, f) for i, (lab, f) in enumerate(zip(labels, folds, strict=True))]


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(BiofmError) as exc:
        fn(*args, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# --- labels --------------------------------------------------------------------------------------


def test_numeric_classes_sort_as_numbers_and_text_classes_as_text() -> None:
    labels, classes = class_labels(rows_of(["10", "2", "1", 10.0, 2, "1"]), "t.csv", "column 'label'")
    assert classes == ["1", "2", "10"]  # not 1, 10, 2; 10.0 from parquet reads as "10"
    assert labels.tolist() == [2, 1, 0, 2, 1, 0]
    _, classes = class_codes(["b", "10", "a", "2", "b", "10", "a", "2"], "t.csv", "x")
    assert classes == ["10", "2", "a", "b"]  # one non-number: every label sorts as text


def test_label_text_reads_every_format_the_same() -> None:
    assert label_text(1.0) == "1" and label_text(" yes ") == "yes" and label_text(0.5) == "0.5"
    assert label_text(None) == "" and label_text(float("nan")) == ""


def test_class_label_refusals() -> None:
    assert error(class_labels, rows_of(["a"] * 12), "t.csv", "column 'label'") == (
        "t.csv: only one class ('a') in column 'label'; classification needs at least two"
    )
    assert error(class_labels, rows_of(["a", "b", "", "a", "b"]), "t.csv", "column 'label'") == (
        "t.csv, line 4: empty label"
    )
    assert error(class_labels, rows_of(["a", "b", "a", "rare", "b"]), "t.csv", "column 'label'") == (
        f"t.csv: class 'rare' has only 1 example (t.csv, line 5); each class needs at least {MIN_PER_CLASS}"
    )


def test_regression_labels() -> None:
    out = regression_labels(rows_of(["1.5", 2, 3.25, " -4 "]), "t.csv")
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.0, 3.25, -4.0]
    assert error(regression_labels, rows_of(["1", "high"]), "t.csv") == (
        "t.csv, line 3: label 'high' is not a finite number (task type is regression)"
    )
    assert "line 2: label nan is not a finite number" in error(regression_labels, rows_of([float("nan"), 1.0]), "t")
    assert error(regression_labels, rows_of([True, 1.0]), "t.csv").startswith("t.csv, line 2: label True")
    assert error(regression_labels, rows_of(["2", 2.0, 2]), "t.csv") == (
        "t.csv: every label is 2; regression needs labels that vary"
    )


def test_regression_detection() -> None:
    assert infer_task_type(["0.5", "1", 2]) == "regression"
    assert infer_task_type([1.5, 2.5]) == "regression"
    assert infer_task_type(["1", "2", 3.0]) == "classification"  # whole numbers are class codes
    assert infer_task_type(["0.5", "high"]) == "classification"  # one non-number: classes
    assert infer_task_type(["yes", "no"]) == "classification"


def test_folds() -> None:
    folds = fold_numbers(rows_of(["a"] * 4, [0, "1", 2.0, " 1 "]), "t.csv", "fold")
    assert folds.dtype == np.int64 and folds.tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize(
    ("fold", "shown"), [("x", "'x'"), ("1.5", "'1.5'"), (None, "''"), (True, "True"), (float("nan"), "nan")]
)
def test_bad_fold_value_names_its_line(fold: object, shown: str) -> None:
    msg = error(fold_numbers, rows_of(["a"] * 3, [0, fold, 1]), "t.csv", "split")
    assert msg == f"t.csv, line 3: fold {shown} is not an integer (column 'split')"


def test_a_single_fold_is_refused() -> None:
    assert error(fold_numbers, rows_of(["a"] * 3, [4, 4, 4]), "t.csv", "fold") == (
        "t.csv: column 'fold' has only one fold (4); need at least two"
    )


def test_too_few_examples() -> None:
    require_examples(MIN_EXAMPLES, "t.csv")
    assert error(require_examples, MIN_EXAMPLES - 1, "t.csv") == (
        f"t.csv: only {MIN_EXAMPLES - 1} example(s); a task needs at least {MIN_EXAMPLES}"
    )


def test_task_arrays() -> None:
    labels, classes, folds = task_arrays(rows_of(["b", "a", "b", "a"], [0, 0, 1, 1]), "classification", "t",
                                         label_what="column 'label'", fold_column="fold")
    assert classes == ["a", "b"] and labels.tolist() == [1, 0, 1, 0] and folds.tolist() == [0, 0, 1, 1]
    labels, classes, folds = task_arrays(rows_of(["1", "2.5"]), "regression", "t", label_what="", fold_column=None)
    assert classes is None and folds is None and labels.tolist() == [1.0, 2.5]


# --- reading -------------------------------------------------------------------------------------


def test_gzipped_tsv_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.TSV.gz"
    path.write_bytes(gzip.compress(b"seq\tlabel\tfold\n\nAC\ta\t0\nGT\tb\t1\t\n"))
    assert base_suffix(path) == ".tsv"
    names, records = read_table(path, path)
    assert names == ["seq", "label", "fold"]
    assert records == [(f"{path}, line 3", ["AC", "a", "0"]), (f"{path}, line 4", ["GT", "b", "1"])]
    rows, fold = table_rows(path, names, records, source=tmp_path / "t.yaml", input_key="sequence_column",
                            input_column="seq", label_column="label")
    assert fold == "fold" and rows[1] == Row(f"{path}, line 4", "GT", "b", "1")


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" * 100)[:-12])
    assert error(read_table, path, path) == f"{path}: truncated or corrupt gzip file"


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": ["a", "b"], "y": [1.0, None]}), path)
    names, records = read_table(path, path)
    assert names == ["x", "y"] and records == [(f"{path}, row 1", ["a", 1.0]), (f"{path}, row 2", ["b", None])]
    assert error(read_table, path, "t.yaml", header=False, columns=["x", "y"]) == (
        "t.yaml: header: false applies to CSV/TSV tables, not .parquet"
    )
    (tmp_path / "bad.parquet").write_text("x,y\n")
    assert error(read_table, tmp_path / "bad.parquet", "t.yaml").startswith(f"{tmp_path / 'bad.parquet'}: unreadable")


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"label": 2, "fold": 0}\n')
    names, records = read_table(path, path)
    assert names == ["text", "label", "fold"]
    assert records == [(f"{path}, line 1", ["a", 1, None]), (f"{path}, line 3", [None, 2, 0])]
    path.write_text('{"text": "a"}\n[1, 2]\n')
    assert error(read_table, path, path) == f"{path}, line 2: expected a JSON object, got list"


def test_headerless_table_and_delimiter_names(tmp_path: Path) -> None:
    path = tmp_path / "t.dat"
    path.write_text("a|1\nb|2\n")
    assert error(read_table, path, "t.yaml") == (
        f"{path}: unknown table format '.dat'; use .csv, .tsv, .txt, .jsonl, .parquet "
        "or set delimiter: in the task YAML"
    )
    names, records = read_table(path, "t.yaml", header=False, columns=["x", "y"], delimiter="pipe")
    assert names == ["x", "y"] and [v for _, v in records] == [["a", "1"], ["b", "2"]]
    assert error(read_table, path, "t.yaml", delimiter="||") == (
        "t.yaml: delimiter must be one character (or tab/comma), got '||'"
    )


def test_header_option_refusals() -> None:
    check_header_options("t.yaml", True, None)
    assert "header: false needs columns:" in error(check_header_options, "t.yaml", False, None)
    assert "add header: false" in error(check_header_options, "t.yaml", True, ["a"])
    assert error(check_header_options, "t.yaml", False, ["a", "a"]) == "t.yaml: columns: has duplicate names ['a', 'a']"


def test_table_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("seq,label\nAC,a\nGT,b,extra\n")
    assert error(read_table, path, path) == (
        f"{path}, line 3: 3 field(s), expected 2 (seq, label); is the delimiter ',' right?"
    )
    path.write_text("seq,label\n\n")
    assert error(read_table, path, path) == f"{path}: no data rows"
    path.write_bytes(b"seq,label\nA\x00C,a\n")
    assert "binary data" in error(read_table, path, path)
    path.write_bytes(b"seq,label\nAC,a\nGT,\xff\n")
    assert error(read_table, path, path) == f"{path}, line 3: unreadable table: not UTF-8 text"


def test_missing_columns_say_what_to_change(tmp_path: Path) -> None:
    names, records = ["seq", "label"], [("t.csv, line 2", ["AC", "a"])]
    table, yaml = tmp_path / "t.csv", tmp_path / "t.yaml"
    kw = {"source": yaml, "input_key": "sequence_column", "label_column": "label"}
    assert error(table_rows, table, names, records, input_column="sequence", **kw) == (
        f"{table}: no column 'sequence' (columns found: seq, label); set sequence_column: in t.yaml"
    )
    assert error(table_rows, table, names, records, input_column="seq", fold_column="split", **kw).endswith(
        "no column 'split' (columns found: seq, label); set fold_column: in t.yaml"
    )
    msg = error(table_rows, table, names, records, input_column="text", hint="the table needs a text column", **kw)
    assert msg.endswith("; the table needs a text column")
    rows, fold = table_rows(table, names, records, input_column="seq", **kw)
    assert fold is None and rows == [Row("t.csv, line 2", "AC", "a", None)]


def test_resolve_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text("x\n")
    yaml = tmp_path / "task.yaml"
    assert resolve_file(yaml, "sub/t.csv", "table") == tmp_path / "sub" / "t.csv"
    assert error(resolve_file, yaml, "nope.csv", "table") == (
        f"{yaml}: table file 'nope.csv' not found (looked for {tmp_path / 'nope.csv'})"
    )
    assert error(resolve_file, yaml, "sub", "h5ad", expected="an .h5ad file") == (
        f"{yaml}: h5ad 'sub' is a folder, expected an .h5ad file"
    )


def test_resolve_file_reads_the_dataset_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIOFM_DATA_MIRROR", raising=False)
    monkeypatch.setenv("BIOFM_CACHE", str(tmp_path))
    with pytest.raises(BiofmError, match=re.escape("'uci-splice'")):
        resolve_file(tmp_path / "t.yaml", "dataset:uci-splice", "table")
