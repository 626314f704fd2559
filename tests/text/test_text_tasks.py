import gzip
import json

import numpy as np
import pytest

from biofm.datasets import dataset_path
from biofm.errors import BiofmError
from biofm.text.tasks import SHIPPED_TEXT_TASKS, load_text_task, shipped_text_task

ROWS = [(f"text number {i} about {'cats' if i % 2 else 'dogs'}", "yes" if i % 2 else "no") for i in range(12)]


def _csv(path, rows=ROWS, header="text,label"):
    path.write_text(header + "\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
    return path


def test_yaml_task(tmp_path):
    (tmp_path / "t.tsv").write_text("sentence\ty\tfold\n" + "".join(f"{t}\t{lab}\t{i % 3}\n"
                                                                  for i, (t, lab) in enumerate(ROWS)))
    (tmp_path / "t.yaml").write_text("name: mytask\ntype: classification\ntable: t.tsv\n"
                                     "text_column: sentence\nlabel_column: y\n")
    task = load_text_task(tmp_path / "t.yaml")
    assert task.name == "mytask" and task.type == "classification" and task.classes == ["no", "yes"]
    assert task.inputs[1] == "text number 1 about cats" and task.labels[:2].tolist() == [0, 1]
    assert task.folds.tolist()[:4] == [0, 1, 2, 0]  # a `fold` column is used when present
    assert task.meta["long_sequences"] == "truncate"


@pytest.mark.parametrize("kind", ["csv", "tsv.gz", "jsonl", "parquet"])
def test_bare_tables(tmp_path, kind):
    if kind == "csv":
        path = _csv(tmp_path / "cats.csv")
    elif kind == "tsv.gz":
        path = tmp_path / "cats.tsv.gz"
        path.write_bytes(gzip.compress(("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in ROWS)).encode()))
    elif kind == "jsonl":
        path = tmp_path / "cats.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": lab, "extra": 1}) + "\n" for t, lab in ROWS))
    else:
        import pandas as pd

        path = tmp_path / "cats.parquet"
        pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(path)
    task = load_text_task(path)
    assert task.name == "cats" and len(task.inputs) == 12 and task.classes == ["no", "yes"]
    assert task.folds is None and task.source == str(path)


def test_bare_table_with_fractional_numbers_is_regression(tmp_path):
    rows = [(f"value {i}", f"{i * 0.5:.1f}") for i in range(12)]
    task = load_text_task(_csv(tmp_path / "r.csv", rows))
    assert task.type == "regression" and task.labels[3] == 1.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("txt,label\n" + "a,yes\n" * 12, r"r\.csv: no column 'text' \(columns found: txt, label\)"),
        ("text,label\n" + "a,yes\n" * 3 + " ,no\n" + "b,no\n" * 8, r"r\.csv, line 5: empty text"),
        ("text,label\n" + "a,yes\n" * 12, r"r\.csv: only one class \('yes'\)"),
        ("text,label\n" + "a,yes\nb,no\n" * 3, r"r\.csv: only 6 example\(s\); a task needs at least 10"),
        ("text,label\n" + "a,yes\n" * 11 + "b,no\n", r"class 'no' has only 1 example \(.*r\.csv, line 13\)"),
        ("text,label\n" + "a,yes\n" * 6 + "b,\n" + "c,no\n" * 6, r"r\.csv, line 8: empty label"),
    ],
)
def test_table_errors_are_one_line_with_file_and_line(tmp_path, content, message):
    (tmp_path / "r.csv").write_text(content)
    with pytest.raises(BiofmError, match=message) as err:
        load_text_task(tmp_path / "r.csv")
    assert "\n" not in str(err.value)


def test_yaml_errors(tmp_path):
    _csv(tmp_path / "t.csv")
    (tmp_path / "a.yaml").write_text("name: a\ntype: classification\ntable: t.csv\ntext_column: body\n")
    with pytest.raises(BiofmError, match=r"t\.csv: no column 'body'.*set text_column: in a\.yaml"):
        load_text_task(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("name: b\ntype: classification\ntable: missing.csv\n")
    with pytest.raises(BiofmError, match=r"b\.yaml: table file 'missing\.csv' not found"):
        load_text_task(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("name: c\ntype: classification\ntable: t.csv\nsequence_column: x\n")
    with pytest.raises(BiofmError, match=r"c\.yaml: unknown key 'sequence_column'"):
        load_text_task(tmp_path / "c.yaml")
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(BiofmError, match=r"d\.jsonl, line 2: invalid JSON"):
        load_text_task(tmp_path / "d.jsonl")
    with pytest.raises(BiofmError, match="not found"):
        load_text_task(tmp_path / "none.csv")


def test_shipped_pubmedqa(mirror):
    assert set(SHIPPED_TEXT_TASKS) == {"pubmedqa"}
    task = load_text_task("pubmedqa")
    assert task.source == str(shipped_text_task("pubmedqa"))
    assert len(task.inputs) == 1000 and task.classes == ["maybe", "no", "yes"]
    assert np.bincount(task.labels).tolist() == [110, 338, 552]
    assert task.folds is None  # the official split is a column, not the default folds
    assert all(len(t) > 200 for t in task.inputs) and task.inputs[0].startswith("Do mitochondria play a role")


def test_pretraining_corpus_has_no_pubmedqa_article(mirror):
    import csv
    import io

    with gzip.open(dataset_path("pubmed-abstracts"), "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    table = dataset_path("pubmedqa")
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(table.read_bytes()).decode()), delimiter="\t"))
    assert len(docs) > 2000 and {d["source"] for d in docs} == {"ncbi_disease", "bc5cdr"}
    assert len({d["pmid"] for d in docs}) == len(docs) == len({d["text"] for d in docs})
    assert not {d["pmid"] for d in docs} & {r["id"] for r in rows}
    assert sum(r["split"] == "test" for r in rows) == 500
