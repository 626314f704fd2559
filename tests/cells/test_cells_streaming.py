"""Streamed cell dataset builds: chunked reading gives what reading whole files gave, over many shards,
with per-gene medians exact past the memory budget, and memory bounded by a chunk, not the corpus."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import biofm.cells.data as cdata
from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.data import GeneMedians, StatsAccumulator, build_cell_dataset
from biofm.cells.h5ad import read_counts
from biofm.cells.tokenize import CellTokenizer, n_value_bins
from biofm.cells.vocab import build_vocab
from biofm.datasets import dataset_path
from biofm.errors import BiofmError

pytestmark = pytest.mark.filterwarnings("ignore:Variable names are not unique")

COLUMNS = ("gene_ids", "values", "counts", "size_factor", "cell")


# ------------------------------------------------------------------------------------------ helpers


def _write(path: Path, X: np.ndarray, genes: list[str], fmt: str = "csr", layers: dict[str, Any] | None = None) -> Path:
    obs = pd.DataFrame(index=[f"{path.stem}-{i}" for i in range(X.shape[0])])
    stored = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[fmt](X.astype(np.float32))
    ad.AnnData(X=stored, obs=obs, var=pd.DataFrame(index=genes), layers=layers or {}).write_h5ad(path)
    return path


def _counts(n: int, g: int, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(rng.gamma(0.4, 4, size=(n, g))).astype(np.float32)


SHARED = [f"S{i}" for i in range(30)]


def _shards(folder: Path) -> list[tuple[Path, np.ndarray, list[str]]]:
    """Six shards: genes shared by all plus one of each shard's own; shard 2 names two columns "S3",
    shard 5 has an unnamed column; one empty cell; CSR, dense and CSC storage."""
    rng = np.random.default_rng(7)
    out = []
    for k, (n, fmt) in enumerate(zip([23, 40, 17, 31, 9, 28], ["csr", "csr", "csr", "dense", "csc", "csr"],
                                     strict=True)):
        genes = [*SHARED[k % 3:], f"own{k}"]
        if k == 2:
            genes.append("S3")
        if k == 5:
            genes.append("")
        X = _counts(n, len(genes), rng)
        if k == 1:
            X[4] = 0
        out.append((_write(folder / f"shard{k}.h5ad", X, genes, fmt), X, genes))
    return out


def _reference(data_cfg: CellDataConfig, tok_cfg: CellTokenizerConfig, seed: int) -> dict[str, Any]:
    """The build as it was before streaming (every file read whole by read_counts), kept as the oracle."""
    matrices = [read_counts(p, data_cfg.layer, data_cfg.gene_column, data_cfg.allow_non_counts)
                for p in data_cfg.h5ad]
    totals = [m.totals() for m in matrices]
    keep = [t > 0 for t in totals]
    n_cells = [m.n_cells for m in matrices]
    offsets = np.cumsum([0, *n_cells[:-1]])
    is_val = cdata._split(n_cells, keep, data_cfg.val_fraction, seed)
    rows = {split: [np.flatnonzero(k & (is_val[off:off + n] == (split == "val")))
                    for k, off, n in zip(keep, offsets, n_cells, strict=True)] for split in ("train", "val")}
    vocab = build_vocab([m.rows(r) for m, r in zip(matrices, rows["train"], strict=True)], tok_cfg.min_cells)
    median_total = float(np.median(np.concatenate([t[r] for t, r in zip(totals, rows["train"], strict=True)])))
    tok = CellTokenizer(vocab, tok_cfg, median_total)
    acc = StatsAccumulator(vocab.vocab_size, n_value_bins(tok_cfg), vocab.gene_offset)
    out: dict[str, Any] = {"vocab": vocab, "median_total": median_total}
    for split in ("train", "val"):
        parts = []
        for m, r, t, off in zip(matrices, rows[split], totals, offsets, strict=True):
            batch = tok.tokenize(m.X[r], m.genes, r + off, seed=seed, totals=t[r])
            batch["cell"] = r + off
            parts.append(batch)
            if split == "train":
                acc.add(batch)
        out[split] = {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS}
    out["stats"] = acc.finish(median_total)
    return out


def _rows(view: Any) -> dict[str, np.ndarray]:
    return view[np.arange(len(view))]


def _assert_same(ds: cdata.CellDataset, ref: dict[str, Any]) -> None:
    for split in ("train", "val"):
        got = _rows(getattr(ds, split))
        for k in COLUMNS:
            np.testing.assert_array_equal(got[k], ref[split][k], err_msg=f"{split}/{k}")
    assert ds.vocab.genes.tolist() == ref["vocab"].genes.tolist()
    np.testing.assert_array_equal(ds.vocab.gene_n_cells, ref["vocab"].gene_n_cells)
    np.testing.assert_array_equal(ds.vocab.gene_median, ref["vocab"].gene_median)  # exact, not close
    assert ds.stats.median_total == ref["median_total"]
    for name in cdata.CellStats.ARRAYS:
        np.testing.assert_allclose(getattr(ds.stats, name), getattr(ref["stats"], name), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(ds.stats.global_mean_log1p, ref["stats"].global_mean_log1p, rtol=1e-12)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ equality


@pytest.mark.parametrize("tok", [
    CellTokenizerConfig(max_genes=12, n_bins=7),
    CellTokenizerConfig(mode="rank_value", max_genes=10),
    CellTokenizerConfig(binning="fixed", cap=6, selection="top", max_genes=40, zero_fraction=0.2, min_cells=3),
], ids=["quantile-sample", "rank_value", "fixed-top"])
def test_shards_streamed_in_small_chunks_equal_the_whole_file_build(tmp_path: Path, tok: CellTokenizerConfig) -> None:
    shards = _shards(tmp_path)
    paths = [str(p) for p, _, _ in shards]
    before = [_sha(Path(p)) for p in paths]
    # chunks of 5 cells, and so few values held for the medians that most genes go through the histogram
    cfg = CellDataConfig(h5ad=paths, val_fraction=0.2, chunk_cells=5, median_exact_values=400,
                         cache_dir=str(tmp_path / "c1"))
    ds = build_cell_dataset(cfg, tok, seed=3)
    _assert_same(ds, _reference(cfg, tok, 3))
    assert [_sha(Path(p)) for p in paths] == before  # inputs never written
    g = ds.meta["genes"]
    assert g["median_histogram_genes"] > 0 and g["medians_estimated"] == 0  # exact after the second pass
    assert ds.meta["duplicated_genes_merged"] == 1 and ds.meta["cells"]["empty_dropped"] == 1
    assert [i["unnamed_genes_dropped"] for i in ds.meta["inputs"]] == [0, 0, 0, 0, 0, 1]

    # the chunk size changes neither the dataset nor its cache key
    big = build_cell_dataset(cfg.model_copy(update={"chunk_cells": 4096, "cache_dir": str(tmp_path / "c2")}), tok, 3)
    assert big.path.name == ds.path.name
    for split in ("train", "val"):
        a, b = _rows(getattr(ds, split)), _rows(getattr(big, split))
        for k in COLUMNS:
            np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(big.vocab.gene_median, ds.vocab.gene_median)


def test_shards_equal_their_concatenation(tmp_path: Path) -> None:
    # without zero genes a cell's tokens do not depend on which other genes its file has, so the shards
    # tokenise exactly like one file holding all of them (genes: the union, duplicates summed)
    shards = _shards(tmp_path)
    union = sorted({g for _, _, genes in shards for g in genes if g})
    col = {g: i for i, g in enumerate(union)}
    blocks = []
    for _, X, genes in shards:
        full = np.zeros((X.shape[0], len(union)), dtype=np.float32)
        for j, g in enumerate(genes):
            if g:
                full[:, col[g]] += X[:, j]
        blocks.append(full)
    whole = _write(tmp_path / "whole.h5ad", np.concatenate(blocks), union)
    tok = CellTokenizerConfig(max_genes=16, n_bins=9, zero_fraction=0.0)
    cfg = CellDataConfig(h5ad=[str(p) for p, _, _ in shards], val_fraction=0.15, chunk_cells=8,
                         cache_dir=str(tmp_path / "c"))
    streamed = build_cell_dataset(cfg, tok, seed=1)
    one = build_cell_dataset(cfg.model_copy(update={"h5ad": [str(whole)]}), tok, seed=1)
    for split in ("train", "val"):
        a, b = _rows(getattr(streamed, split)), _rows(getattr(one, split))
        assert len(a["cell"]) == len(b["cell"]) > 0
        for k in COLUMNS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{split}/{k}")
    assert streamed.vocab.genes.tolist() == one.vocab.genes.tolist()
    assert streamed.meta["genes"]["median_histogram_genes"] == 0  # the default budget holds them all
    np.testing.assert_array_equal(streamed.vocab.gene_median, one.vocab.gene_median)
    np.testing.assert_allclose(streamed.stats.gene_bin_counts, one.stats.gene_bin_counts)
    np.testing.assert_allclose(streamed.stats.gene_mean_log1p, one.stats.gene_mean_log1p, rtol=1e-12)


@pytest.mark.parametrize("name,gene_column", [("pbmc700", None), ("mouse10k", "gene_ids")])
def test_registered_data_equal_the_whole_file_build(tmp_path: Path, name: str, gene_column: str | None,
                                                   mirror: Path) -> None:
    cfg = CellDataConfig(h5ad=[str(dataset_path(name))], gene_column=gene_column, chunk_cells=1500,
                         cache_dir=str(tmp_path / "c"))
    for tok in (CellTokenizerConfig(max_genes=64, n_bins=11), CellTokenizerConfig(mode="rank_value", max_genes=64)):
        _assert_same(build_cell_dataset(cfg, tok, seed=0), _reference(cfg, tok, 0))


# ------------------------------------------------------------------------------------------ medians


def _median_values(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gene, value) pairs like normalised counts: many ties (small counts) and a long tail."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 3000, size=40)
    genes = np.repeat(np.arange(40), n)
    counts = rng.poisson(rng.gamma(0.7, 3, size=len(genes))) + 1
    totals = rng.integers(300, 20_000, size=len(genes)).astype(np.float64)
    order = rng.permutation(len(genes))
    return genes[order], (counts * (1e4 / totals))[order]


def _feed(step: Any, genes: np.ndarray, values: np.ndarray, chunk: int = 997) -> None:
    for i in range(0, len(genes), chunk):
        step(genes[i:i + chunk], values[i:i + chunk])


def test_gene_medians_exact_past_the_budget_with_a_second_pass() -> None:
    genes, values = _median_values()
    # np.median is the mean of the two middle values, as vocab.gene_medians (the in-memory build) computes it
    expected = np.array([np.median(values[genes == g]) if (genes == g).any() else np.nan for g in range(42)])
    for budget in (10**9, 20_000, 3_000):
        gm = GeneMedians(42, budget)
        _feed(gm.add, genes, values)
        refine = gm.finish_pass()
        assert refine == (budget < len(genes)) and (gm.spilled > 0) == refine
        if refine:
            _feed(gm.add_refine, genes[::-1], values[::-1], chunk=1234)  # any order and chunking
        med = gm.result()
        np.testing.assert_array_equal(med, expected)  # bit-identical, NaN for the genes without values
        assert gm.exact[:40].all() and not gm.exact[40:].any()


def test_gene_medians_histogram_estimate_error() -> None:
    # with no room to collect the middle bins, medians are histogram estimates: within one bin width
    genes, values = _median_values(1)
    expected = np.array([np.median(values[genes == g]) for g in range(40)])
    gm = GeneMedians(40, 20)
    _feed(gm.add, genes, values)
    if gm.finish_pass():  # only the smallest genes' middle bins fit in 20 values
        _feed(gm.add_refine, genes, values)
    med = gm.result()
    est = ~gm.exact
    assert est.sum() >= 30
    rel = np.abs(med / expected - 1)
    bound = 2 ** (1 / GeneMedians.R) - 1
    assert rel[est].max() < bound and rel[est].mean() < bound / 4  # measured: max 1.0%, mean 0.3%
    np.testing.assert_array_equal(med[gm.exact], expected[gm.exact])
    # genes not wanted (outside the vocabulary) are never refined
    gm = GeneMedians(40, 5_000)
    _feed(gm.add, genes, values)
    wanted = np.zeros(40, dtype=bool)
    wanted[:3] = True
    assert gm.finish_pass(wanted)
    _feed(gm.add_refine, genes, values)
    med = gm.result()
    np.testing.assert_array_equal(med[:3], expected[:3])
    assert gm.exact[:3].all() and not gm.exact[3:].all()


# ------------------------------------------------------------------------------------------ checks


def test_count_checks_apply_to_every_chunk(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = _counts(30, 6, rng)
    X[23, 1] = -2.0
    genes = [f"G{i}" for i in range(6)]
    bad = _write(tmp_path / "neg.h5ad", X, genes)
    before = _sha(bad)
    cfg = CellDataConfig(h5ad=[str(bad)], chunk_cells=10, cache_dir=str(tmp_path / "c"))
    with pytest.raises(BiofmError) as err:
        build_cell_dataset(cfg, CellTokenizerConfig(max_genes=8), 0)
    msg = str(err.value)
    assert "\n" not in msg and _sha(bad) == before
    assert msg.startswith(f"{bad}: X holds negative values (e.g. -2 at cell 'neg-23', gene 'G1'), so it is scaled")

    counts = _counts(30, 6, rng)
    lognorm = counts.copy()
    lognorm[17, 4] = 2.5  # a non-integer in the third chunk of the chosen layer only
    path = _write(tmp_path / "layer.h5ad", counts, genes, layers={"maybe": sp.csr_matrix(lognorm)})
    cfg = CellDataConfig(h5ad=[str(path)], layer="maybe", chunk_cells=7, cache_dir=str(tmp_path / "c"))
    with pytest.raises(BiofmError) as err:
        build_cell_dataset(cfg, CellTokenizerConfig(max_genes=8), 0)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: layer 'maybe' holds non-integer values (e.g. 2.5 at cell 'layer-17', gene 'G4')")
    assert "X holds integers — leave data.layer unset" in msg
    ok = build_cell_dataset(cfg.model_copy(update={"allow_non_counts": True}), CellTokenizerConfig(max_genes=8), 0)
    assert ok.meta["inputs"][0]["integer_counts"] is False  # seen in a later chunk, still reported


# ------------------------------------------------------------------------------------------ memory

_MEMORY_SCRIPT = textwrap.dedent('''
    import json, os, re, resource, sys, time

    from biofm.cells.config import CellDataConfig, CellTokenizerConfig
    from biofm.cells.data import build_cell_dataset
    from biofm.cells.h5ad import read_counts
    from biofm.cells.vocab import build_vocab

    folder, headroom = sys.argv[1], int(sys.argv[2])
    shards = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("big"))
    tok = CellTokenizerConfig(max_genes=48, n_bins=9)
    def cfg(paths, cache):
        return CellDataConfig(h5ad=paths, chunk_cells=1024, median_exact_values=1 << 18, cache_dir=cache)
    # a small build first, so every lazy import and thread pool exists before the limit is set
    build_cell_dataset(cfg([os.path.join(folder, "warm.h5ad")], os.path.join(folder, "warm-cache")), tok, 0)
    def status(key):
        return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
    base = status("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (base + headroom, base + headroom))
    rss = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # restart the peak-RSS count (VmHWM) here
        fh.write("5")
    t = time.time()
    ds = build_cell_dataset(cfg(shards, os.path.join(folder, "cache")), tok, 0)
    out = {"seconds": time.time() - t, "cells": len(ds.train) + len(ds.val),
           "vm_growth": status("VmSize") - base, "rss_peak_growth": status("VmHWM") - rss,
           "histogram_genes": ds.meta["genes"]["median_histogram_genes"],
           "estimated": ds.meta["genes"]["medians_estimated"]}
    del ds
    try:  # the control: the corpus as dense cells x genes, in the same limited process
        dense = [read_counts(p).X.toarray() for p in shards]
        out["dense"] = "fits"
    except MemoryError:
        out["dense"] = "MemoryError"
    dense = None
    try:  # what the build did before streaming: every file read whole, then the vocabulary
        whole = [read_counts(p) for p in shards]
        build_vocab(whole)
        out["whole_files"] = "fits"
    except MemoryError:
        out["whole_files"] = "MemoryError"
    print(json.dumps(out))
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and limits RLIMIT_AS")
def test_memory_is_bounded_by_a_chunk_not_the_corpus(tmp_path: Path) -> None:
    # a child process limits its address space to what it uses after imports + 128 MiB, then builds a
    # dataset from shards that are 343 MiB dense (~30 MiB as CSR; the old whole-file build peaked at ~190
    # MiB on them): the streamed build fits (~50 MiB), and both controls run out of memory
    headroom = 128 << 20
    rng = np.random.default_rng(0)
    n_cells, n_genes, n_shards = 6000, 2500, 6
    genes = [f"G{i}" for i in range(n_genes)]
    for k in range(n_shards):  # ~4% non-zero: small files, large when dense
        X = sp.random(n_cells, n_genes, density=0.04, format="csr", dtype=np.float32, random_state=rng,
                      data_rvs=lambda n: rng.integers(1, 30, size=n))
        ad.AnnData(X=X, var=pd.DataFrame(index=genes)).write_h5ad(tmp_path / f"big{k}.h5ad")
    ad.AnnData(X=sp.csr_matrix(_counts(50, 20, rng)), var=pd.DataFrame(index=genes[:20])).write_h5ad(
        tmp_path / "warm.h5ad")
    dense_bytes = n_shards * n_cells * n_genes * 4
    assert dense_bytes > headroom  # the corpus does not fit in the headroom; one chunk does
    env = {**os.environ, "BIOFM_QUIET": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2"}
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path), str(headroom)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"memory test: {out} dense={dense_bytes >> 20} MiB headroom={headroom >> 20} MiB "
          f"subprocess {time.time() - t:.1f}s")
    assert out["cells"] == n_shards * n_cells
    assert out["dense"] == "MemoryError" and out["whole_files"] == "MemoryError"  # the limit bites
    assert out["histogram_genes"] > 0 and out["estimated"] == 0
