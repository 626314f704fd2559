from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from biofm.cells.config import CellTokenizerConfig
from biofm.cells.h5ad import read_counts
from biofm.cells.tokenize import CellTokenizer, n_value_bins, quantile_bins
from biofm.cells.vocab import GeneVocab, build_vocab
from biofm.datasets import dataset_path

GENES = [f"G{i:02d}" for i in range(20)]  # token id = 5 + i


def _tok(vocab_genes=GENES, medians=None, median_total=None, **kw) -> CellTokenizer:
    return CellTokenizer(GeneVocab(vocab_genes, medians), CellTokenizerConfig(**kw), median_total)


def _real(out: dict, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gene ids, value bins and counts of a row's gene positions."""
    g = out["gene_ids"][row]
    sel = g >= 5
    return g[sel], out["values"][row][sel], out["counts"][row][sel]


def test_n_value_bins() -> None:
    assert n_value_bins(CellTokenizerConfig(binning="fixed", cap=100)) == 101
    assert n_value_bins(CellTokenizerConfig(binning="quantile", n_bins=51)) == 51
    assert n_value_bins(CellTokenizerConfig(mode="rank_value")) == 0
    assert _tok(binning="fixed", cap=7).n_value_bins == 8


def test_row_layout_and_fixed_cap_bins() -> None:
    X = sp.csr_matrix(np.array([[150, 0, 3, 100, 101] + [0] * 15], dtype=np.float32))
    tok = _tok(binning="fixed", cap=100, max_genes=6, zero_fraction=0.0, selection="top", median_total=177.0)
    out = tok.tokenize(X, GENES, np.array([0]))
    assert out["gene_ids"].shape == (1, 7) and out["gene_ids"].dtype == np.int32
    assert out["values"].dtype == np.int16 and out["counts"].dtype == np.float32
    assert out["gene_ids"][0].tolist() == [2, 5, 7, 8, 9, 0, 0]  # <cls>, genes by id, <pad>
    assert out["values"][0].tolist() == [-1, 100, 3, 100, 100, -1, -1]  # 150 -> bin cap
    assert out["counts"][0].tolist() == [0, 150, 3, 100, 101, 0, 0]
    assert out["size_factor"].tolist() == [pytest.approx(354 / 177)]


def test_fixed_bins_round_fractions_up() -> None:
    X = sp.csr_matrix(np.array([[0.2, 2.5] + [0] * 18], dtype=np.float32))
    out = _tok(binning="fixed", cap=2, zero_fraction=0.0).tokenize(X, GENES, np.array([0]))
    assert _real(out, 0)[1].tolist() == [1, 2]


def test_quantile_bins_hand_computed() -> None:
    # non-zero values 1 2 3 4 10, n_bins = 5 -> edges = quantiles at 0, 1/3, 2/3, 1 = 1, 2.333, 3.667, 10
    # bin = number of edges <= value: 1 -> 1, 2 -> 1, 3 -> 2, 4 -> 3, 10 -> 4
    vals = np.array([3, 10, 1, 4, 2], dtype=np.float32)
    assert quantile_bins(vals, 5).tolist() == [2, 4, 1, 3, 1]
    X = sp.csr_matrix(np.array([[3, 10, 0, 1, 4, 2] + [0] * 14], dtype=np.float32))
    out = _tok(binning="quantile", n_bins=5, zero_fraction=0.0).tokenize(X, GENES, np.array([0]))
    g, b, _ = _real(out, 0)
    assert g.tolist() == [5, 6, 8, 9, 10]
    assert b.tolist() == [2, 4, 1, 3, 1]
    # all values equal: every edge equals the value -> the top bin
    X1 = sp.csr_matrix(np.array([[2, 2, 2] + [0] * 17], dtype=np.float32))
    assert _real(_tok(n_bins=5, zero_fraction=0.0).tokenize(X1, GENES, np.array([0])), 0)[1].tolist() == [4, 4, 4]


def test_quantile_bins_match_the_per_cell_rule_on_random_cells() -> None:
    rng = np.random.default_rng(0)
    dense = rng.poisson(rng.gamma(0.3, 4, size=(60, 20))).astype(np.float32)
    dense[:3] = 0
    dense[3, :] = 7  # every gene expressed, all equal
    tok = _tok(n_bins=11, max_genes=20, zero_fraction=0.0)
    out = tok.tokenize(sp.csr_matrix(dense), GENES, np.arange(60))
    for r in range(60):
        nz = np.flatnonzero(dense[r])
        g, b, _ = _real(out, r)
        assert g.tolist() == (nz + 5).tolist()
        assert b.tolist() == quantile_bins(dense[r, nz], 11).tolist()


def test_top_selection_ties_by_gene_id_and_zero_fill() -> None:
    row_many = [5, 5, 5, 1] + [0] * 16  # 4 non-zero
    row_few = [0, 0, 9] + [0] * 17  # 1 non-zero
    X = sp.csr_matrix(np.array([row_many, row_few], dtype=np.float32))
    tok = _tok(selection="top", max_genes=2, zero_fraction=0.5, binning="fixed")
    out = tok.tokenize(X, GENES, np.array([0, 1]))
    g, _, c = _real(out, 0)
    assert g.tolist() == [5, 6] and c.tolist() == [5, 5]  # three 5s tie: lowest gene ids win; no zeros
    g, b, c = _real(out, 1)
    assert len(g) == 2 and 7 in g.tolist()  # the non-zero gene plus one zero gene in the free slot
    z = g[g != 7][0]
    assert c[g == z].tolist() == [0] and b[g == z].tolist() == [0]
    assert (np.diff(g) > 0).all()  # ordered by gene id


def test_top_selection_zero_budget() -> None:
    # max_genes 10, zero_fraction 0.2 -> at most 2 zeros, and only in slots non-zero genes leave free
    rows = np.zeros((3, 20), dtype=np.float32)
    rows[0, :3] = 1  # 3 non-zero -> 3 + 2 zeros
    rows[1, :9] = 2  # 9 non-zero -> 9 + 1 zero
    rows[2, :12] = np.arange(1, 13)  # 12 non-zero -> top 10, no zeros
    out = _tok(selection="top", max_genes=10, zero_fraction=0.2).tokenize(sp.csr_matrix(rows), GENES, np.arange(3))
    for r, (n_nz, n_zero) in enumerate([(3, 2), (9, 1), (10, 0)]):
        _, _, c = _real(out, r)
        assert (c > 0).sum() == n_nz and (c == 0).sum() == n_zero
    assert sorted(_real(out, 2)[2].tolist()) == list(range(3, 13))  # the 10 highest counts


def test_sample_selection_rule() -> None:
    # max_genes 10, zero_fraction 0.2: up to K = 8 non-zero genes, then up to 2 zero genes
    rows = np.zeros((3, 20), dtype=np.float32)
    rows[0, :15] = np.arange(1, 16)  # 15 non-zero -> 8 sampled + 2 zeros
    rows[1, 4:9] = 3  # 5 non-zero -> all 5 + 2 zeros
    rows[2, :] = 1  # no zero gene -> 8 non-zero only
    X = sp.csr_matrix(rows)
    out = _tok(selection="sample", max_genes=10, zero_fraction=0.2, binning="fixed").tokenize(X, GENES, np.arange(3))
    for r, (n_nz, n_zero) in enumerate([(8, 2), (5, 2), (8, 0)]):
        g, b, c = _real(out, r)
        assert (c > 0).sum() == n_nz and (c == 0).sum() == n_zero
        assert (np.diff(g) > 0).all()  # distinct, ordered by gene id
        np.testing.assert_array_equal(c, rows[r, g - 5])  # the counts are the cell's
        assert ((b == 0) == (c == 0)).all()
    assert set(_real(out, 1)[0][_real(out, 1)[2] > 0].tolist()) == {9, 10, 11, 12, 13}


def test_sampling_is_seeded_per_cell_and_batch_independent() -> None:
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((30, 20)) < 0.6) * rng.integers(1, 9, (30, 20)), dtype=np.float32)
    tok = _tok(max_genes=6, zero_fraction=0.34)
    keys = np.arange(100, 130)
    a = tok.tokenize(X, GENES, keys, seed=3)
    b = tok.tokenize(X, GENES, keys, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    alone = tok.tokenize(X[7:8], GENES, keys[7:8], seed=3)  # same cell, other batch
    assert all(np.array_equal(alone[k][0], a[k][7]) for k in a)
    c = tok.tokenize(X, GENES, keys, seed=4)
    assert not np.array_equal(a["gene_ids"], c["gene_ids"])


def test_sampling_is_uniform() -> None:
    # one cell repeated under 3000 keys: 12 non-zero genes, 6 slots for them, 2 zero slots over 8 zeros
    row = np.zeros(20, dtype=np.float32)
    row[:12] = 1
    X = sp.csr_matrix(np.tile(row, (3000, 1)))
    out = _tok(max_genes=8, zero_fraction=0.25).tokenize(X, GENES, np.arange(3000), seed=0)
    freq = np.bincount(out["gene_ids"].ravel(), minlength=25)[5:] / 3000
    np.testing.assert_allclose(freq[:12], 6 / 12, atol=0.04)
    np.testing.assert_allclose(freq[12:], 2 / 8, atol=0.04)


def test_genes_outside_the_vocabulary_are_ignored() -> None:
    X = sp.csr_matrix(np.array([[5, 7, 1, 0]], dtype=np.float32))
    tok = _tok(vocab_genes=["A", "C", "D"], binning="fixed", zero_fraction=0.0)
    out = tok.tokenize(X, np.array(["A", "B", "C", "D"]), np.array([0]), totals=np.array([20.0]))
    g, _, c = _real(out, 0)
    assert g.tolist() == [5, 6] and c.tolist() == [5, 1]  # B unknown, D zero (no zero slots)
    assert out["size_factor"].tolist() == [1.0]  # no median total given -> 1


def test_rank_value_orders_by_median_normalised_expression() -> None:
    # genes A B C D E with corpus medians 1, 10, 2, 4, 1
    medians = np.array([1.0, 10.0, 2.0, 4.0, 1.0])
    X = sp.csr_matrix(np.array([[3, 50, 8, 8, 0], [1, 0, 0, 0, 1]], dtype=np.float32))
    tok = _tok(vocab_genes=list("ABCDE"), medians=medians, mode="rank_value", max_genes=3)
    out = tok.tokenize(X, np.array(list("ABCDE")), np.array([0, 1]))
    # cell 0: A 3/1 = 3, B 50/10 = 5, C 8/2 = 4, D 8/4 = 2 -> B C A (D truncated), no zero genes
    assert out["gene_ids"][0].tolist() == [2, 6, 7, 5]
    assert out["counts"][0].tolist() == [0, 50, 8, 3]
    # cell 1: A and E tie at 1 -> gene id order; then padding
    assert out["gene_ids"][1].tolist() == [2, 5, 9, 0]
    assert (out["values"] == -1).all()


def test_pbmc700_tokenises_quickly(mirror) -> None:
    m = read_counts(dataset_path("pbmc700"))
    vocab = build_vocab([m])
    tok = CellTokenizer(vocab, CellTokenizerConfig(), float(np.median(m.totals())))
    t0 = time.perf_counter()
    out = tok.tokenize_matrix(m)
    assert time.perf_counter() - t0 < 10
    assert out["gene_ids"].shape == (700, 1001)
    n_nz = np.diff(m.X.indptr)
    real = out["gene_ids"] >= vocab.gene_offset
    assert ((out["counts"] > 0) & real).sum(1).tolist() == np.minimum(n_nz, 900).tolist()
    assert (out["values"][real] >= 0).all() and out["values"].max() <= 50
    np.testing.assert_allclose(np.median(out["size_factor"]), 1.0, atol=0.01)
