from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biofm.config import read_yaml
from biofm.datasets import DATASETS, dataset_path
from biofm.dna.tasks import (
    SHIPPED_TASKS,
    TASKS_DIR,
    check_lengths,
    fit_to_length,
    load_task,
    shipped_task,
    unspace_kmers,
)
from biofm.errors import BiofmError

RNG = np.random.default_rng(0)


def random_seqs(n: int, length: int = 20) -> list[str]:
    return ["".join(RNG.choice(list("ACGT"), size=length)) for _ in range(n)]


def write_task(folder: Path, body: str, name: str = "task.yaml") -> Path:
    p = folder / name
    p.write_text(body)
    return p


def csv_task(folder: Path, rows: list[tuple], header: str = "sequence,label", extra: str = "") -> Path:
    lines = [header, *(",".join(str(v) for v in r) for r in rows)]
    (folder / "t.csv").write_text("\n".join(lines) + "\n")
    return write_task(folder, f"name: t\ntype: classification\ntable: t.csv\n{extra}")


def error_of(path: Path) -> str:
    with pytest.raises(BiofmError) as exc:
        load_task(path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def labelled(n: int = 12, labels: tuple[str, ...] = ("a", "b")) -> list[tuple[str, str]]:
    return [(s, labels[i % len(labels)]) for i, s in enumerate(random_seqs(n))]


# --- shipped tasks -------------------------------------------------------------------------------


def test_splice_task_loads(mirror: Path) -> None:
    task = load_task(shipped_task("splice"))
    assert task.name == "splice" and task.type == "classification"
    assert len(task.inputs) == 3190 and task.classes == ["EI", "IE", "N"]
    assert np.bincount(task.labels).tolist() == [767, 768, 1655]
    assert {len(s) for s in task.inputs} == {60}
    assert all(set(s) <= set("ACGTN") for s in task.inputs)
    # Line 1248 starts with the ambiguity code D, read as N.
    assert task.inputs[1247].startswith("NGACGGGG")
    assert task.folds is None and task.source.endswith("splice.yaml")
    assert task.meta["long_sequences"] == "error"


def test_promoter_task_reconstructs_6mers(mirror: Path) -> None:
    task = load_task(shipped_task("promoter"))
    assert len(task.inputs) == 1000 and task.classes == ["0", "1"]
    assert np.bincount(task.labels).tolist() == [500, 500]
    assert {len(s) for s in task.inputs} == {101}
    first = dataset_path("dnabert-promoter-sample").read_text().splitlines()[1].split("\t")[0]
    kmers = first.split(" ")
    manual = kmers[0] + "".join(k[5] for k in kmers[1:])
    assert task.inputs[0] == manual
    assert task.inputs[0].startswith("GTGGGGAGG")


def test_shipped_tasks_read_registered_datasets() -> None:
    for name in SHIPPED_TASKS:
        table = read_yaml(TASKS_DIR / SHIPPED_TASKS[name])["table"]
        assert table.startswith("dataset:") and table[len("dataset:"):] in DATASETS


def test_unknown_shipped_task() -> None:
    with pytest.raises(BiofmError, match="splice"):
        shipped_task("nope")


# --- tables --------------------------------------------------------------------------------------


def test_csv_numeric_classes_keep_numeric_order(tmp_path: Path) -> None:
    rows = labelled(12, ("10", "2", "1"))
    task = load_task(csv_task(tmp_path, rows))
    assert task.classes == ["1", "2", "10"]
    assert task.labels[:3].tolist() == [2, 1, 0]
    assert task.inputs[0] == rows[0][0]


def test_tsv_fold_column_and_normalisation(tmp_path: Path) -> None:
    seqs = random_seqs(12)
    seqs[0] = "acgtRYacgt"
    lines = ["label\tsequence\tfold"] + [f"{'xy'[i % 2]}\t{s}\t{i % 3}" for i, s in enumerate(seqs)]
    (tmp_path / "t.tsv").write_text("\r\n".join(lines) + "\r\n")
    task = load_task(write_task(tmp_path, "name: t\ntype: classification\ntable: t.tsv\nmax_length_bp: 500\n"))
    assert task.inputs[0] == "ACGTNNACGT"
    assert task.folds is not None and task.folds.tolist() == [i % 3 for i in range(12)]
    assert task.meta["max_length_bp"] == 500


def test_parquet_regression(tmp_path: Path) -> None:
    seqs = random_seqs(12)
    pq.write_table(pa.table({"dna": seqs, "y": [float(i) for i in range(12)]}), tmp_path / "t.parquet")
    yaml = "name: r\ntype: regression\ntable: t.parquet\nsequence_column: dna\nlabel_column: y\n"
    task = load_task(write_task(tmp_path, yaml))
    assert task.type == "regression" and task.classes is None
    assert task.labels.dtype == np.float64 and task.labels.tolist() == [float(i) for i in range(12)]
    assert task.inputs == seqs


def test_headerless_with_columns_and_padding(tmp_path: Path) -> None:
    rows = [f"{'AB'[i % 2]},   id{i},     {s}" for i, s in enumerate(random_seqs(12))]
    (tmp_path / "data.txt").write_text("\n".join(rows) + "\n\n")
    yaml = "name: h\ntype: classification\ntable: data.txt\nheader: false\ncolumns: [label, id, sequence]\n"
    task = load_task(write_task(tmp_path, yaml))
    assert len(task.inputs) == 12 and task.classes == ["A", "B"] and len(task.inputs[0]) == 20


def test_kmer_spaced_detection() -> None:
    assert unspace_kmers("ACGTAC CGTACG GTACGT") == "ACGTACGT"
    assert unspace_kmers("  ACGT  ") == "ACGT"
    # Pieces that do not overlap are left for normalisation to join (e.g. 10-base display blocks).
    assert unspace_kmers("ACGTACGTAC GGGGGGGGGG") == "ACGTACGTAC GGGGGGGGGG"


def test_fasta_task(tmp_path: Path) -> None:
    (tmp_path / "pos.fa").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(random_seqs(6))))
    (tmp_path / "neg.fa").write_text("".join(f">n{i}\n{s.lower()}\n" for i, s in enumerate(random_seqs(7))))
    task = load_task(write_task(tmp_path, "name: f\ntype: classification\nfasta:\n  pos: pos.fa\n  neg: neg.fa\n"))
    assert task.classes == ["neg", "pos"]
    assert np.bincount(task.labels).tolist() == [7, 6]
    assert all(s == s.upper() for s in task.inputs)


def test_table_path_relative_to_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "tasks"
    sub.mkdir()
    path = csv_task(sub, labelled())
    monkeypatch.chdir(tmp_path)
    assert len(load_task(Path("tasks") / path.name).inputs) == 12


# --- errors --------------------------------------------------------------------------------------


def test_yaml_errors(tmp_path: Path) -> None:
    assert "not found" in error_of(tmp_path / "missing.yaml")
    p = write_task(tmp_path, "name: t\ntype: classification\ntable: t.csv\ncolour: red\n")
    assert "task.yaml" in (msg := error_of(p)) and "colour" in msg
    p = write_task(tmp_path, "name: t\ntype: clustering\ntable: t.csv\n")
    assert "type" in error_of(p)
    p = write_task(tmp_path, "name: t\ntype: classification\ntable: t.csv\nmax_length_bp: many\n")
    assert "max_length_bp" in error_of(p)
    p = write_task(tmp_path, "type: classification\ntable: t.csv\n")
    assert "name" in error_of(p)


def test_both_or_neither_source(tmp_path: Path) -> None:
    p = write_task(tmp_path, "name: t\ntype: classification\n")
    assert "task.yaml" in (msg := error_of(p)) and "table" in msg and "fasta" in msg
    p = write_task(tmp_path, "name: t\ntype: classification\ntable: a.csv\nfasta: {x: a.fa}\n")
    assert "not both" in error_of(p)


def test_missing_table(tmp_path: Path) -> None:
    msg = error_of(write_task(tmp_path, "name: t\ntype: classification\ntable: nowhere.csv\n"))
    assert "nowhere.csv" in msg and "not found" in msg


def test_unreadable_tables(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_bytes(b"PK\x03\x04")
    msg = error_of(write_task(tmp_path, "name: t\ntype: classification\ntable: t.xlsx\n"))
    assert "t.xlsx" in msg and "format" in msg
    (tmp_path / "t.csv").write_bytes(b"\x00\x01\x02binary")
    msg = error_of(write_task(tmp_path, "name: t\ntype: classification\ntable: t.csv\n"))
    assert "t.csv" in msg and "binary" in msg
    (tmp_path / "t.parquet").write_text("sequence,label\n")
    msg = error_of(write_task(tmp_path, "name: t\ntype: classification\ntable: t.parquet\n"))
    assert "t.parquet" in msg and "parquet" in msg


def test_missing_column_lists_found(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(), header="seq,label"))
    assert "t.csv" in msg and "'sequence'" in msg and "seq, label" in msg


def test_empty_sequence_line(tmp_path: Path) -> None:
    rows = labelled()
    rows[4] = ("", "a")
    msg = error_of(csv_task(tmp_path, rows))
    assert "t.csv, line 6" in msg and "empty sequence" in msg


def test_invalid_base_line(tmp_path: Path) -> None:
    rows = labelled()
    rows[2] = ("ACGTXACGT", "a")
    msg = error_of(csv_task(tmp_path, rows))
    assert "t.csv, line 4" in msg and "'X'" in msg


def test_wrong_field_count_line(tmp_path: Path) -> None:
    rows: list[tuple] = list(labelled())
    rows[3] = ("ACGT", "a", "extra")
    msg = error_of(csv_task(tmp_path, rows))
    assert "t.csv, line 5" in msg and "3 field" in msg


def test_single_class(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(12, ("only",))))
    assert "t.csv" in msg and "one class" in msg and "'only'" in msg


def test_class_with_one_example(tmp_path: Path) -> None:
    rows = labelled(12)
    rows[7] = (rows[7][0], "rare")
    msg = error_of(csv_task(tmp_path, rows))
    assert "'rare'" in msg and "line 9" in msg


def test_regression_label_not_number(tmp_path: Path) -> None:
    rows = [(s, f"{i}.5") for i, s in enumerate(random_seqs(12))]
    rows[5] = (rows[5][0], "high")
    (tmp_path / "t.csv").write_text("sequence,label\n" + "".join(f"{s},{v}\n" for s, v in rows))
    msg = error_of(write_task(tmp_path, "name: t\ntype: regression\ntable: t.csv\n"))
    assert "t.csv, line 7" in msg and "'high'" in msg and "regression" in msg


def test_too_few_examples(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(4)))
    assert "t.csv" in msg and "4 example" in msg


def test_bad_fold_value(tmp_path: Path) -> None:
    rows = [(s, "ab"[i % 2], i % 2) for i, s in enumerate(random_seqs(12))]
    rows[2] = (rows[2][0], "a", "x")
    msg = error_of(csv_task(tmp_path, rows, header="sequence,label,fold"))
    assert "t.csv, line 4" in msg and "fold" in msg


def test_explicit_fold_column_missing(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(), extra="fold_column: split\n"))
    assert "'split'" in msg and "sequence, label" in msg


def test_headerless_needs_columns(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(), extra="header: false\n"))
    assert "task.yaml" in msg and "columns" in msg


def test_fasta_map_errors(tmp_path: Path) -> None:
    msg = error_of(write_task(tmp_path, "name: f\ntype: classification\nfasta:\n  pos: nope.fa\n"))
    assert "nope.fa" in msg
    msg = error_of(write_task(tmp_path, "name: f\ntype: regression\nfasta:\n  pos: nope.fa\n"))
    assert "classification" in msg


def test_max_length_bp_enforced(tmp_path: Path) -> None:
    msg = error_of(csv_task(tmp_path, labelled(), extra="max_length_bp: 10\n"))
    assert "12 of 12" in msg and "long_sequences: truncate" in msg
    task = load_task(csv_task(tmp_path, labelled(), extra="max_length_bp: 10\nlong_sequences: truncate\n"))
    assert task.meta["long_sequences"] == "truncate"


# --- lengths -------------------------------------------------------------------------------------


def test_check_lengths(tmp_path: Path) -> None:
    rows = labelled()
    rows[1] = ("ACGT" * 30, "b")
    task = load_task(csv_task(tmp_path, rows))
    assert check_lengths(task, max_tokens=100, tokens_per_bp=1 / 6) == 600
    with pytest.raises(BiofmError) as exc:
        check_lengths(task, max_tokens=10, tokens_per_bp=1 / 6, what="NT-50M")
    msg = str(exc.value)
    assert "1 of 12" in msg and "120 bp" in msg and "60 bp" in msg and "windows" in msg and "task.yaml" in msg
    task.meta["long_sequences"] = "windows"
    assert check_lengths(task, max_tokens=10, tokens_per_bp=1 / 6) == 60


def test_fit_to_length() -> None:
    seq = "ACGTACGTAC"
    assert fit_to_length(seq, 4, "truncate") == ["ACGT"]
    assert fit_to_length(seq, 4, "windows") == ["ACGT", "ACGT", "GTAC"]
    assert fit_to_length(seq, 5, "windows") == ["ACGTA", "CGTAC"]
    assert fit_to_length(seq, 20, "windows") == [seq]


def test_copied_shipped_yaml_still_loads(tmp_path: Path, mirror: Path) -> None:
    # The table is a registered dataset, not a file beside the YAML, so a copy anywhere still loads.
    shutil.copy(shipped_task("splice"), tmp_path / "splice.yaml")
    assert len(load_task(tmp_path / "splice.yaml").inputs) == 3190


def test_shipped_task_without_its_data_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIOFM_DATA_MIRROR", raising=False)
    monkeypatch.setenv("BIOFM_CACHE", str(tmp_path))
    msg = error_of(shipped_task("splice"))
    assert "'uci-splice'" in msg and "dna/tasks/uci_splice_junctions.txt" in msg and "\n" not in msg
