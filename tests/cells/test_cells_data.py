from __future__ import annotations

import hashlib
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import biofm.cells.data as cdata
from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.data import CellStats, build_cell_dataset, marginal_logp
from biofm.cells.vocab import GeneVocab
from biofm.data.blocks import ColumnWriter, open_columns
from biofm.errors import BiofmError


def _write(path: Path, X: np.ndarray, genes: list[str], layers=None) -> Path:
    obs = pd.DataFrame(index=[f"{path.stem}-{i}" for i in range(X.shape[0])])
    ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes),
               layers=layers or {}).write_h5ad(path)
    return path


def _random_counts(n: int, g: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(rng.gamma(0.5, 3, size=(n, g))).astype(np.float32)


def test_column_writer_roundtrip(tmp_path: Path) -> None:
    w = ColumnWriter(tmp_path / "c.arrow", {"ids": (4, "int32"), "v": (4, "int16"), "s": (None, "float32")})
    for k in range(3):  # several Arrow chunks
        w.write({"ids": np.arange(20).reshape(5, 4) + 100 * k, "v": -np.ones((5, 4)), "s": np.arange(5) + 10 * k})
    w.close()
    view = open_columns(tmp_path / "c.arrow")
    assert len(view) == 15 and view.seq_len == 4
    assert view.columns == {"ids": (4, "int32"), "v": (4, "int16"), "s": (0, "float32")}
    rows = view[np.array([14, 0, 7])]
    assert rows["ids"].tolist() == [[216, 217, 218, 219], [0, 1, 2, 3], [108, 109, 110, 111]]
    assert rows["s"].tolist() == [24, 0, 12] and rows["v"].dtype == np.int16
    assert view[3:5]["s"].tolist() == [3, 4]


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_dataset_split_cache_and_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    X = _random_counts(60, 30, 0)
    X[5] = 0  # an empty cell is dropped
    genes = [f"g{i}" for i in range(30)]
    genes[7] = genes[3]  # one duplicated name
    path = _write(tmp_path / "a.h5ad", X, genes)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    data = CellDataConfig(h5ad=[str(path)], val_fraction=0.2, cache_dir=str(tmp_path / "cache"))
    tok = CellTokenizerConfig(max_genes=12, n_bins=7)
    monkeypatch.delenv("BIOFM_QUIET", raising=False)
    ds = build_cell_dataset(data, tok, seed=0)
    err = capsys.readouterr().err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert "duplicated gene names merged: 1" in err
    n_in = ds.meta["genes"]["in_vocab"]
    assert re.search(rf"genes: 29 in data, {n_in} \({100 * n_in / 29:.1f}%\) in vocabulary", err)
    assert ds.meta["duplicated_genes_merged"] == 1 and ds.meta["cells"]["empty_dropped"] == 1

    train_cells = ds.train[np.arange(len(ds.train))]["cell"]
    val_cells = ds.val[np.arange(len(ds.val))]["cell"]
    assert len(train_cells) + len(val_cells) == 59 and len(val_cells) == round(0.2 * 59)
    assert not set(train_cells) & set(val_cells) and 5 not in set(train_cells) | set(val_cells)
    rows = ds.train[np.arange(4)]
    assert set(rows) == {"gene_ids", "values", "counts", "size_factor", "cell"}
    assert rows["gene_ids"].shape == (4, 13) and (rows["gene_ids"][:, 0] == ds.vocab.cls_id).all()
    assert ds.train.seq_len == 13 and ds.stats.gene_bin_counts.shape == (ds.vocab.vocab_size, 7)
    # a row holds that cell's counts
    cell = int(rows["cell"][0])
    g = rows["gene_ids"][0]
    real = g >= ds.vocab.gene_offset
    x_merged = X.copy()
    x_merged[:, 3] += x_merged[:, 7]
    col = {name: i for i, name in enumerate(genes) if i != 7}
    names = ds.vocab.genes[g[real] - ds.vocab.gene_offset]
    np.testing.assert_array_equal(rows["counts"][0][real], [x_merged[cell, col[n]] for n in names])
    assert (ds.path / "vocab" / "cell_tokenizer.json").exists()
    assert ds.vocab.settings["median_total"] == ds.stats.median_total

    def fail(*a, **k):  # a rerun must not tokenise again
        raise AssertionError("cache missed")

    monkeypatch.setattr(cdata, "_build", fail)
    again = build_cell_dataset(data, tok, seed=0)
    assert again.path == ds.path
    np.testing.assert_array_equal(again.train[np.arange(len(again.train))]["gene_ids"],
                                  ds.train[np.arange(len(ds.train))]["gene_ids"])
    with pytest.raises(AssertionError, match=r"cache missed"):
        build_cell_dataset(data, tok, seed=1)  # another seed is another dataset


def test_stats_hand_checked_on_three_cells(tmp_path: Path) -> None:
    # genes A B C; every cell has exactly one zero gene and 1 zero slot, so all 9 positions are selected
    X = np.array([[1, 0, 5], [2, 3, 0], [0, 1, 1]], dtype=np.float32)
    path = _write(tmp_path / "t.h5ad", X, ["A", "B", "C"])
    data = CellDataConfig(h5ad=str(path), val_fraction=0.0, cache_dir=str(tmp_path / "cache"))
    tok = CellTokenizerConfig(binning="fixed", cap=3, max_genes=3, zero_fraction=0.34, selection="top")
    ds = build_cell_dataset(data, tok, seed=0)
    assert len(ds.train) == 3 and len(ds.val) == 0
    s = ds.stats
    a, b, c = 5, 6, 7
    assert s.bin_counts.tolist() == [3, 3, 1, 2]  # bins: A 1 2 0, B 0 3 1, C 3 0 1
    assert s.gene_bin_counts[a].tolist() == [1, 1, 1, 0]
    assert s.gene_bin_counts[b].tolist() == [1, 1, 0, 1]
    assert s.gene_bin_counts[c].tolist() == [1, 1, 0, 1]
    assert s.gene_bin_counts[:5].sum() == 0
    assert s.gene_token_counts.tolist() == [0, 0, 0, 0, 0, 3, 3, 3]
    np.testing.assert_allclose(s.gene_mean_log1p[a], (np.log(2) + np.log(3)) / 3)
    np.testing.assert_allclose(s.gene_mean_log1p[c], (np.log(6) + np.log(2)) / 3)
    np.testing.assert_allclose(s.global_mean_log1p, np.log1p(X).sum() / 9)
    np.testing.assert_allclose(s.gene_nb_mean[[a, b, c]], [1, 4 / 3, 2])
    # C: mean 2, var 26/3 - 4 = 14/3 -> theta = 4 / (14/3 - 2) = 1.5; A: var 2/3 < mean -> Poisson-like
    np.testing.assert_allclose(s.gene_nb_theta[c], 1.5)
    assert s.gene_nb_theta[a] == cdata.THETA_RANGE[1]
    assert s.median_total == 5.0  # totals 6 5 2
    sf = ds.train[np.arange(3)]
    np.testing.assert_allclose(sf["size_factor"][np.argsort(sf["cell"])], [6 / 5, 5 / 5, 2 / 5])

    unigram, gene = marginal_logp(s, smoothing="add_one")
    np.testing.assert_allclose(np.exp(unigram), np.array([4, 4, 2, 3]) / 13)
    np.testing.assert_allclose(np.exp(gene[a]), np.array([2, 2, 2, 1]) / 7)
    unigram, gene = marginal_logp(s)  # default: B pseudo-counts spread like the unigram
    np.testing.assert_allclose(np.exp(gene[a]), (np.array([1, 1, 1, 0]) + 4 * np.array([4, 4, 2, 3]) / 13) / 7)
    np.testing.assert_allclose(np.exp(gene[0]), np.exp(unigram))  # never seen -> the unigram
    np.testing.assert_allclose(np.exp(gene).sum(1), 1.0)
    assert isinstance(CellStats.load(ds.path / "stats"), CellStats)


def test_reused_vocabulary_and_coverage(tmp_path: Path) -> None:
    genes = [f"g{i}" for i in range(20)]
    first = _write(tmp_path / "first.h5ad", _random_counts(40, 20, 1), genes)
    other = _write(tmp_path / "other.h5ad", _random_counts(30, 8, 2), ["g0", "g1", "g2", "g3", "x1", "x2", "x3", "x4"])
    tok = CellTokenizerConfig(max_genes=10)
    ds = build_cell_dataset(CellDataConfig(h5ad=[str(first)], cache_dir=str(tmp_path / "c")), tok, 0)
    vocab_dir = ds.vocab.save(tmp_path / "tok")
    reuse = CellTokenizerConfig(max_genes=10, vocab_path=str(vocab_dir))
    ds2 = build_cell_dataset(CellDataConfig(h5ad=[str(other)], cache_dir=str(tmp_path / "c")), reuse, 0)
    assert ds2.vocab.genes.tolist() == ds.vocab.genes.tolist()
    assert ds2.meta["genes"]["in_data"] == 8 and ds2.meta["genes"]["in_vocab"] == 4
    assert ds2.meta["genes"]["coverage"] == 0.5 and ds2.meta["genes"]["vocab_reused"]
    assert ds2.stats.median_total == ds.stats.median_total  # size factors keep the model's meaning
    g = ds2.train[np.arange(len(ds2.train))]["gene_ids"]
    assert set(np.unique(g[g >= 5]).tolist()) <= set(GeneVocab.load(vocab_dir).ids(["g0", "g1", "g2", "g3"])[0])
    # the same vocabulary passed as an object gives the same dataset
    ds3 = build_cell_dataset(CellDataConfig(h5ad=[str(other)], cache_dir=str(tmp_path / "c")), tok, 0,
                             vocab=GeneVocab.load(vocab_dir))
    assert ds3.path == ds2.path
    nothing = _write(tmp_path / "mouse.h5ad", _random_counts(10, 3, 3), ["ENSMUSG1", "ENSMUSG2", "ENSMUSG3"])
    with pytest.raises(BiofmError, match=r"none of the data's 3 genes is in the gene vocabulary .*data.gene_column"):
        build_cell_dataset(CellDataConfig(h5ad=[str(nothing)], cache_dir=str(tmp_path / "c")), reuse, 0)


def test_two_files_and_rank_value(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.h5ad", _random_counts(25, 10, 4), [f"g{i}" for i in range(10)])
    b = _write(tmp_path / "b.h5ad", _random_counts(15, 10, 5), [f"g{i}" for i in range(5, 15)])
    data = CellDataConfig(h5ad=[str(a), str(b)], val_fraction=0.25, cache_dir=str(tmp_path / "c"))
    ds = build_cell_dataset(data, CellTokenizerConfig(mode="rank_value", max_genes=6), 0)
    assert ds.meta["genes"]["in_data"] == 15
    cells = np.concatenate([ds.train[np.arange(len(ds.train))]["cell"], ds.val[np.arange(len(ds.val))]["cell"]])
    assert sorted(cells.tolist()) == sorted(set(cells.tolist())) and cells.max() >= 25  # both files
    rows = ds.train[np.arange(len(ds.train))]
    assert (rows["values"] == -1).all() and ((rows["counts"] > 0) == (rows["gene_ids"] >= 5)).all()
    assert ds.stats.bin_counts.shape == (0,) and ds.stats.gene_token_counts.sum() == (rows["gene_ids"] >= 5).sum()
    assert np.isfinite(ds.vocab.gene_median).all()


def test_non_count_input_is_refused(tmp_path: Path) -> None:
    X = _random_counts(10, 5, 6)
    X[0, 0] = 3.0
    lognorm = np.log1p(X)
    path = _write(tmp_path / "ln.h5ad", lognorm, [f"g{i}" for i in range(5)], layers={"counts": sp.csr_matrix(X)})
    with pytest.raises(BiofmError, match=r"pass data.layer=counts"):
        build_cell_dataset(CellDataConfig(h5ad=[str(path)], cache_dir=str(tmp_path / "c")), CellTokenizerConfig(), 0)
    ok = build_cell_dataset(CellDataConfig(h5ad=[str(path)], layer="counts", cache_dir=str(tmp_path / "c")),
                            CellTokenizerConfig(), 0)
    assert ok.meta["inputs"][0]["integer_counts"]
    with pytest.raises(BiofmError, match=r"missing.h5ad: file not found"):
        build_cell_dataset(CellDataConfig(h5ad=[str(tmp_path / "missing.h5ad")]), CellTokenizerConfig(), 0)
