"""Build biofm's shipped text data from the raw corpora (run once; biofm never reads them at run time).

    python scripts/build_text_data.py [SOURCE_DIR] [DEST_DIR]

SOURCE_DIR (default ../shared/data/text) holds `pubmedqa/` (ori_pqal.json, test_ground_truth.json),
`ncbi_disease/original-data/{train,devel,test}/*.txt` and `bc5cdr/CDR_*.PubTator.txt`. DEST_DIR
(default src/biofm/text_data) receives:

* `pubmedqa.tsv.gz` -- columns id, text, label, split: text is the question, a space, and the
  abstract's contexts joined (the conclusion -- PubMedQA's `LONG_ANSWER` -- left out, as in its
  reasoning-required setting); label is `final_decision` (yes/no/maybe); split is `test` for the
  500 ids of the official test set (test_ground_truth.json), else `train`.
* `abstracts.jsonl.gz` -- {"pmid", "text", "source"} per line: title + abstract of every NCBI
  disease and BC5CDR article, each PubMed id once and each text once, leaving out every article
  that is in PubMedQA so a PubMedQA probe never scores text seen in pretraining.

Whitespace runs become single spaces; nothing else is changed. Output is byte-reproducible (gzip
with a zero timestamp and no file name).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBTATOR_FILES = [
    ("ncbi_disease", "ncbi_disease/original-data/train/NCBItrainset_corpus.txt"),
    ("ncbi_disease", "ncbi_disease/original-data/devel/NCBIdevelopset_corpus.txt"),
    ("ncbi_disease", "ncbi_disease/original-data/test/NCBItestset_corpus.txt"),
    ("bc5cdr", "bc5cdr/CDR_TrainingSet.PubTator.txt"),
    ("bc5cdr", "bc5cdr/CDR_DevelopmentSet.PubTator.txt"),
    ("bc5cdr", "bc5cdr/CDR_TestSet.PubTator.txt"),
]
_WS = re.compile(r"\s+")
_TITLE_ABSTRACT = re.compile(r"^(\d+)\|([ta])\|(.*)$")


def squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def write_gz(dest: Path, text: str) -> int:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(dest)
    return len(buf.getvalue())


def pubmedqa_rows(src: Path) -> list[dict[str, str]]:
    data = json.loads((src / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
    test = json.loads((src / "pubmedqa" / "test_ground_truth.json").read_text(encoding="utf-8"))
    rows = []
    for pmid, item in data.items():
        label = item["final_decision"]
        assert label in ("yes", "no", "maybe"), (pmid, label)
        if pmid in test:
            assert test[pmid] == label, (pmid, test[pmid], label)
        text = squash(item["QUESTION"] + " " + " ".join(item["CONTEXTS"]))
        rows.append({"id": pmid, "text": text, "label": label, "split": "test" if pmid in test else "train"})
    assert len(rows) == 1000 and sum(r["split"] == "test" for r in rows) == len(test) == 500
    return rows


def pubtator_articles(path: Path) -> dict[str, dict[str, str]]:
    """{pmid: {"t": title, "a": abstract}} in file order."""
    out: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _TITLE_ABSTRACT.match(line)
        if m:
            pmid, kind, text = m.groups()
            out.setdefault(pmid, {})[kind] = text
    return out


def abstracts(src: Path, exclude: set[str]) -> tuple[list[dict[str, str]], Counter]:
    stats: Counter = Counter()
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    out = []
    for source, rel in PUBTATOR_FILES:
        for pmid, parts in pubtator_articles(src / rel).items():
            stats[f"{source} articles"] += 1
            if pmid in exclude:
                stats["left out: in PubMedQA"] += 1
                continue
            if pmid in seen_ids:
                stats["left out: repeated PubMed id"] += 1
                continue
            text = squash(parts.get("t", "") + " " + parts.get("a", ""))
            if not text:
                stats["left out: empty"] += 1
                continue
            if text in seen_text:
                stats["left out: repeated text"] += 1
                continue
            seen_ids.add(pmid)
            seen_text.add(text)
            out.append({"pmid": pmid, "text": text, "source": source})
    return out, stats


def main(argv: list[str]) -> None:
    src = Path(argv[0]) if argv else ROOT.parent / "shared" / "data" / "text"
    dest = Path(argv[1]) if len(argv) > 1 else ROOT / "src" / "biofm" / "text_data"
    dest.mkdir(parents=True, exist_ok=True)

    rows = pubmedqa_rows(src)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "text", "label", "split"], delimiter="\t",
                            lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(rows)
    size = write_gz(dest / "pubmedqa.tsv.gz", buf.getvalue())
    labels = Counter(r["label"] for r in rows)
    test_labels = Counter(r["label"] for r in rows if r["split"] == "test")
    print(f"pubmedqa.tsv.gz: {len(rows)} questions, labels {dict(labels)}, "
          f"official test split {dict(test_labels)}, {size:,} bytes")

    docs, stats = abstracts(src, {r["id"] for r in rows})
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    size = write_gz(dest / "abstracts.jsonl.gz", lines)
    chars = sum(len(d["text"]) for d in docs)
    by_source = Counter(d["source"] for d in docs)
    print(f"abstracts.jsonl.gz: {len(docs)} abstracts {dict(by_source)}, {chars:,} characters, "
          f"{size:,} bytes; {dict(stats)}")


if __name__ == "__main__":
    main(sys.argv[1:])
