"""Turn a public original into the file biofm reads; each function is named by a registry entry.

A conversion gets `inputs` (dataset name -> its local files, in registry order) and writes one file at
`out` (a temporary path the caller renames into place). Text outputs are byte-reproducible (gzip with
no name and a zero timestamp), so the registry can hold their checksum and a test can hold a
conversion to it. Bump a function's entry in `VERSIONS` when its output changes: cached results
are then rebuilt.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import warnings
from pathlib import Path

from biofm.errors import BiofmError

VERSIONS = {"pubmedqa_table": 1, "pubmed_abstracts": 1, "pbmc_counts": 1}

_WS = re.compile(r"\s+")
_PUBTATOR_TITLE_ABSTRACT = re.compile(r"^(\d+)\|([ta])\|(.*)$")


def _squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _write_gz(out: Path, text: str) -> None:
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def _pubmedqa(files: list[Path]) -> tuple[dict, dict]:
    ori, truth = files
    return json.loads(ori.read_text(encoding="utf-8")), json.loads(truth.read_text(encoding="utf-8"))


def pubmedqa_table(inputs: dict[str, list[Path]], out: Path) -> None:
    """PubMedQA PQA-L as a TSV.gz with columns id, text, label, split.

    text = the question, a space, and the abstract's contexts joined (its conclusion, PubMedQA's
    LONG_ANSWER, left out: the reasoning-required setting); label = final_decision (yes/no/maybe);
    split = `test` for the 500 ids of the official test set, else `train`.
    """
    data, test = _pubmedqa(inputs["pubmedqa-pqal"])
    rows = []
    for pmid, item in data.items():
        label = item.get("final_decision")
        if label not in ("yes", "no", "maybe"):
            raise BiofmError(f"{inputs['pubmedqa-pqal'][0]}: question {pmid}: final_decision {label!r} is not "
                             "yes/no/maybe")
        if pmid in test and test[pmid] != label:
            raise BiofmError(f"{inputs['pubmedqa-pqal'][1]}: question {pmid}: test label {test[pmid]!r} differs "
                             f"from final_decision {label!r}")
        text = _squash(item["QUESTION"] + " " + " ".join(item["CONTEXTS"]))
        rows.append({"id": pmid, "text": text, "label": label, "split": "test" if pmid in test else "train"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "text", "label", "split"], delimiter="\t", lineterminator="\n",
                            quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(rows)
    _write_gz(out, buf.getvalue())


def _pubtator_articles(path: Path) -> dict[str, dict[str, str]]:
    """{pmid: {"t": title, "a": abstract}} in file order (annotation lines are skipped)."""
    found: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PUBTATOR_TITLE_ABSTRACT.match(line)
        if m:
            pmid, kind, text = m.groups()
            found.setdefault(pmid, {})[kind] = text
    return found


def pubmed_abstracts(inputs: dict[str, list[Path]], out: Path) -> None:
    """Title + abstract of every NCBI-disease and BC5CDR article as JSONL.gz (`pmid`, `text`, `source`).

    Each PubMed id and each text is kept once (the NCBI corpus repeats PMID 8528200), and every article
    that is in PubMedQA is left out, so a PubMedQA probe never scores text seen in pretraining.
    """
    exclude = set(_pubmedqa(inputs["pubmedqa-pqal"])[0])
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    lines = []
    for source, key in (("ncbi_disease", "ncbi-disease"), ("bc5cdr", "bc5cdr")):
        for path in inputs[key]:
            for pmid, parts in _pubtator_articles(path).items():
                text = _squash(parts.get("t", "") + " " + parts.get("a", ""))
                if pmid in exclude or pmid in seen_ids or not text or text in seen_text:
                    continue
                seen_ids.add(pmid)
                seen_text.add(text)
                lines.append(json.dumps({"pmid": pmid, "text": text, "source": source}, ensure_ascii=False) + "\n")
    _write_gz(out, "".join(lines))


def pbmc_counts(inputs: dict[str, list[Path]], out: Path) -> None:
    """Integer raw counts from scanpy's pbmc68k_reduced: rint(expm1(raw.X) * obs.n_counts / 1e4).

    scanpy stores the cells log-normalised to 10,000 counts (log1p of count / total * 1e4) in `.raw`
    and each cell's total in `obs.n_counts`; undoing both gives the counts back (the recomputed values
    sit within 0.05 of an integer). obs keeps the labels and QC columns; var keeps the gene names.
    """
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    src = inputs["pbmc68k-reduced"][0]
    with warnings.catch_warnings():  # anndata's notes on moving uns['neighbors'] matrices into obsp
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(src)
    if adata.raw is None or "n_counts" not in adata.obs:
        raise BiofmError(f"{src}: expected scanpy's pbmc68k_reduced (log-normalised .raw and obs.n_counts)")
    raw = adata.raw.X.toarray() if sp.issparse(adata.raw.X) else np.asarray(adata.raw.X)
    counts = np.expm1(raw.astype(np.float64)) * adata.obs["n_counts"].to_numpy(np.float64)[:, None] / 1e4
    rounded = np.rint(counts)
    off = float(np.abs(counts - rounded).max()) if counts.size else 0.0
    if off > 0.5:
        raise BiofmError(f"{src}: .raw does not undo to integer counts (an entry is {off:.2f} from an integer)")
    obs = adata.obs[["bulk_labels", "louvain", "phase", "n_counts", "n_genes", "percent_mito"]].copy()
    result = ad.AnnData(X=sp.csr_matrix(rounded.astype(np.int32)), obs=obs,
                        var=pd.DataFrame(index=adata.raw.var_names.copy()),
                        uns={"origin": "scanpy 10x_pbmc68k_reduced.h5ad; counts = rint(expm1(raw.X) * obs.n_counts "
                                       "/ 1e4)"})
    result.write_h5ad(out)
