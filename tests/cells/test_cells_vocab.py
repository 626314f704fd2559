from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.cells.h5ad import CellMatrix
from biofm.cells.vocab import SPECIAL_TOKENS, GeneVocab, build_vocab, gene_medians
from biofm.errors import BiofmError


def _matrix(X, genes) -> CellMatrix:
    X = sp.csr_matrix(np.asarray(X, dtype=np.float32))
    return CellMatrix(X=X, genes=np.asarray(genes, dtype=str), obs=pd.DataFrame(index=range(X.shape[0])),
                      n_duplicated=0, source="test")


def test_layout_and_lookups() -> None:
    v = GeneVocab(["CD3E", "HLA-A", "MS4A1"])
    assert SPECIAL_TOKENS == ("<pad>", "<mask>", "<cls>", "<unk>", "<eos>")
    assert (v.pad_id, v.mask_id, v.cls_id, v.unk_id, v.eos_id) == (0, 1, 2, 3, 4)
    assert v.special_ids == (0, 1, 2, 3, 4)
    assert v.vocab_size == len(v) == 8 and v.n_genes == 3
    assert v.tokens == [*SPECIAL_TOKENS, "CD3E", "HLA-A", "MS4A1"]
    ids, found = v.ids(["MS4A1", "NOPE", "CD3E"])
    assert ids.tolist() == [7, 3, 5] and found.tolist() == [True, False, True] and ids.dtype == np.int32
    assert v.coverage(["CD3E", "CD3E", "X", "Y"]) == pytest.approx(1 / 3)  # distinct genes
    assert v.coverage([]) == 0.0


def test_rejects_bad_gene_lists() -> None:
    with pytest.raises(BiofmError, match="'A' appears twice"):
        GeneVocab(["A", "B", "A"])
    with pytest.raises(BiofmError, match="whitespace"):
        GeneVocab(["A B"])
    with pytest.raises(BiofmError, match="special token"):
        GeneVocab(["<mask>"])
    with pytest.raises(BiofmError, match="empty"):
        GeneVocab([])


def test_build_vocab_min_cells_pools_files_and_sorts() -> None:
    a = _matrix([[1, 0, 2], [3, 0, 0]], ["Zfp", "Unused", "Actb"])
    b = _matrix([[0, 5], [0, 1]], ["Actb", "Gapdh"])
    v = build_vocab([a, b], min_cells=1)
    assert v.genes.tolist() == ["Actb", "Gapdh", "Zfp"]  # sorted; never-expressed "Unused" left out
    assert v.gene_n_cells.tolist() == [1, 2, 2]
    assert build_vocab([a, b], min_cells=2).genes.tolist() == ["Gapdh", "Zfp"]
    with pytest.raises(BiofmError, match="min_cells"):
        build_vocab([a, b], min_cells=3)


def test_gene_medians_hand_computed() -> None:
    # totals 4 and 10 (over ALL genes of the file, including OTHER which is not in the vocabulary)
    m = _matrix([[1, 3, 0, 0], [2, 0, 7, 1]], ["A", "B", "C", "OTHER"])
    v = GeneVocab(["A", "B", "C", "D"])
    med = gene_medians([m], v)
    # A: 1/4*1e4 = 2500, 2/10*1e4 = 2000 -> median 2250; B: 3/4*1e4; C: 7/10*1e4; D: never expressed
    np.testing.assert_allclose(med[:3], [2250.0, 7500.0, 7000.0])
    assert np.isnan(med[3])
    v.gene_median = med
    assert v.median[v.gene_offset + 3] == 1.0 and v.median[0] == 1.0  # no median -> neutral 1
    odd = _matrix([[1, 1], [1, 3], [1, 0]], ["A", "B"])  # A: 5000, 2500, 10000 -> 5000
    assert gene_medians([odd], GeneVocab(["A"]))[0] == pytest.approx(5000.0)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    v = GeneVocab(["A", "B-2", "C.1"], np.array([1.5, np.nan, 3.0]), n_cells=np.array([2, 0, 5]),
                  settings={"mode": "gene_value", "max_genes": 7, "median_total": 123.0})
    out = v.save(tmp_path / "tok")
    assert out == tmp_path / "tok"
    names = {p.name for p in out.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "gene_vocab.json", "cell_tokenizer.json"} <= names
    back = GeneVocab.load(out)
    assert back.genes.tolist() == ["A", "B-2", "C.1"]
    np.testing.assert_array_equal(back.gene_median[[0, 2]], [1.5, 3.0])
    assert np.isnan(back.gene_median[1])
    assert back.gene_n_cells.tolist() == [2, 0, 5]
    assert back.settings == v.settings
    assert back.fingerprint() == v.fingerprint()
    # saving into an existing (model) folder adds the files and keeps the rest
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    v.save(model)
    assert (model / "config.json").exists() and GeneVocab.load(model).genes.tolist() == v.genes.tolist()
    assert json.loads((model / "tokenizer_config.json").read_text())["model_max_length"] == 8


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(BiofmError, match="not a biofm gene vocabulary"):
        GeneVocab.load(tmp_path)
    (tmp_path / "gene_vocab.json").write_text("{broken")
    with pytest.raises(BiofmError, match="unreadable gene vocabulary"):
        GeneVocab.load(tmp_path)


def test_hf_tokenizer_in_a_fresh_interpreter(tmp_path: Path) -> None:
    v = GeneVocab(["CD3E", "HLA-A", "MS4A1", "RP11-34P13.7"])
    path = v.save(tmp_path / "tok")
    code = (
        "import sys, json\n"
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(path)!r})\n"
        "ids = t('HLA-A RP11-34P13.7 NOTAGENE  CD3E')['input_ids']\n"
        "print(json.dumps([ids, t.pad_token_id, t.mask_token_id, t.cls_token_id, len(t),\n"
        "                  any(m.startswith('biofm') for m in sys.modules)]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    ids, pad, mask, cls, n, imported = json.loads(res.stdout.strip().splitlines()[-1])
    assert ids == [v.cls_id, 6, 8, v.unk_id, 5]
    assert (pad, mask, cls, n, imported) == (0, 1, 2, v.vocab_size, False)
