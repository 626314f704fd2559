"""h5ad files → tokenised cells on disk (train / validation) + the context-free baseline statistics.

`build_cell_dataset` streams the files (`CountReader`: read-only, `data.chunk_cells` cells at a time),
drops cells with no counts, splits the cells at random (seeded) into train and validation, builds the
gene vocabulary from the TRAINING cells (unless one is given), tokenises both splits (`CellTokenizer`)
and writes them as Arrow files in `<cache>/cells-<hash>/`, keyed by the files' contents, the settings,
the vocabulary and the seed, so a rerun reuses them. The folder is written under a temporary name and
renamed when complete.

Streaming, so that the corpus may be larger than memory: no more than one chunk of cells is held at
a time, plus per-gene statistics and a few numbers per cell (total count, split, sequence length:
~15 bytes a cell, ~30 while the seeded split permutes all cells at once, as it always has). The files
are read in passes, each chunk by chunk:
  1. every cell: the count checks and each cell's total (so empty cells and the split are known);
  2. training cells only, unless a vocabulary is given: each gene's number of expressing cells and its
     median normalised value (`GeneMedians`: exact; see there for corpora past `median_exact_values`);
  3. every kept cell: tokenise, append to train.arrow or val.arrow, and add the training rows to
     `CellStats`.
The result does not depend on `chunk_cells` (a cell's tokens are seeded by its own number), and equals
what reading every file whole gives (the `CellStats` float sums up to rounding, ~1e-14 relative: they
are added chunk by chunk). meta.json's genes.median_histogram_genes / genes.medians_estimated say how
many genes' medians went through a histogram, and how many of the vocabulary's are estimates (0 unless
the corpus is far past `median_exact_values`).

Arrow columns (one row per cell; L = max_genes + 1):
  gene_ids [L] int32, values [L] int16, counts [L] float32 (see `biofm.cells.tokenize`),
  size_factor float32 (cell total / median total of the training cells),
  cell int64 (the cell's row in the concatenated input files, for tracing it back).

`CellStats` are counted over the TRAINING cells' tokenised gene positions (every position but `<cls>`
and padding — exactly the positions a value objective can hide), so the baselines built from them use
no context: the value-bin frequencies (unigram), each gene's own value-bin distribution (per-gene
marginal), each gene's mean log1p(count) (per-gene-mean MSE), each gene's negative-binomial fit by
moments, and each gene id's frequency (the rank_value gene-id unigram).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.h5ad import CountReader
from biofm.cells.tokenize import CellTokenizer, n_value_bins
from biofm.cells.vocab import NORM_TOTAL, GeneVocab
from biofm.data.blocks import ColumnView, ColumnWriter, cache_key, open_columns
from biofm.datasets import resolve_all
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json
from biofm.io.files import cache_root, file_fingerprint

FORMAT_VERSION = 1
THETA_RANGE = (1e-3, 1e4)  # NB inverse dispersion clip; the upper end is practically Poisson


# ------------------------------------------------------------------------------------------ statistics


@dataclass
class CellStats:
    """Counts over the training cells' gene positions (V = vocab size, B = value bins)."""

    bin_counts: np.ndarray  # [B] value-bin histogram
    gene_bin_counts: np.ndarray  # [V, B] float32 per-gene value-bin histogram
    gene_token_counts: np.ndarray  # [V] int64 positions holding each gene id
    gene_mean_log1p: np.ndarray  # [V] mean log1p(count) per gene (unseen genes: the global mean)
    global_mean_log1p: float
    gene_nb_mean: np.ndarray  # [V] mean count per gene (unseen genes: the global mean)
    gene_nb_theta: np.ndarray  # [V] NB inverse dispersion by moments, clipped into THETA_RANGE
    median_total: float  # median total count of the training cells (size factor denominator)

    ARRAYS = ("bin_counts", "gene_bin_counts", "gene_token_counts", "gene_mean_log1p", "gene_nb_mean",
              "gene_nb_theta")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))
        (folder / "scalars.json").write_text(json.dumps(
            {"global_mean_log1p": self.global_mean_log1p, "median_total": self.median_total}) + "\n")

    @classmethod
    def load(cls, folder: Path) -> CellStats:
        scalars = json.loads((folder / "scalars.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy") for name in cls.ARRAYS}
        return cls(**arrays, global_mean_log1p=float(scalars["global_mean_log1p"]),
                   median_total=float(scalars["median_total"]))


@dataclass
class StatsAccumulator:
    """Adds up `CellStats` batch by batch."""

    vocab_size: int
    n_bins: int
    first_gene_id: int
    bins: np.ndarray = field(init=False)
    gene_bins: np.ndarray = field(init=False)
    n: np.ndarray = field(init=False)
    s_log1p: np.ndarray = field(init=False)
    s_count: np.ndarray = field(init=False)
    s_count2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        v, b = self.vocab_size, self.n_bins
        self.bins = np.zeros(b, dtype=np.int64)
        self.gene_bins = np.zeros(v * b, dtype=np.int64)
        self.n = np.zeros(v, dtype=np.int64)
        self.s_log1p, self.s_count, self.s_count2 = np.zeros(v), np.zeros(v), np.zeros(v)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        g = batch["gene_ids"].astype(np.int64)
        sel = g >= self.first_gene_id
        g = g[sel]
        c = batch["counts"][sel].astype(np.float64)
        v = self.vocab_size
        self.n += np.bincount(g, minlength=v)
        self.s_log1p += np.bincount(g, weights=np.log1p(c), minlength=v)
        self.s_count += np.bincount(g, weights=c, minlength=v)
        self.s_count2 += np.bincount(g, weights=c * c, minlength=v)
        if self.n_bins:
            b = batch["values"][sel].astype(np.int64)
            ok = b >= 0
            self.bins += np.bincount(b[ok], minlength=self.n_bins)[: self.n_bins]
            self.gene_bins += np.bincount(g[ok] * self.n_bins + b[ok], minlength=v * self.n_bins)

    def finish(self, median_total: float) -> CellStats:
        n = self.n.astype(np.float64)
        total = n.sum()
        seen = n > 0
        g_log = self.s_log1p.sum() / total if total else 0.0
        g_mean = self.s_count.sum() / total if total else 0.0
        g_var = self.s_count2.sum() / total - g_mean**2 if total else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_log = np.where(seen, self.s_log1p / n, g_log)
            mean = np.where(seen, self.s_count / n, g_mean)
            var = np.where(seen, self.s_count2 / n - mean**2, g_var)
            theta = mean**2 / np.maximum(var - mean, 1e-8)
        theta = np.where(mean > 0, theta, THETA_RANGE[1])
        theta = np.clip(np.nan_to_num(theta, nan=THETA_RANGE[1]), *THETA_RANGE)
        return CellStats(
            bin_counts=self.bins.astype(np.float64),
            gene_bin_counts=self.gene_bins.reshape(self.vocab_size, self.n_bins).astype(np.float32),
            gene_token_counts=self.n.copy(), gene_mean_log1p=mean_log, global_mean_log1p=float(g_log),
            gene_nb_mean=mean, gene_nb_theta=theta, median_total=float(median_total),
        )


def marginal_logp(stats: CellStats, smoothing: str = "unigram") -> tuple[np.ndarray, np.ndarray]:
    """Context-free log-probabilities of a value bin: (unigram [B], per gene [V, B]).

    unigram: add-one smoothed bin frequencies. Per gene: the gene's own bin counts plus B pseudo-counts
    ("unigram", default: spread like the unigram, so a rarely seen gene backs off to the unigram) or
    one pseudo-count per bin ("add_one"). Score the baselines on the very targets the model predicts:
    -unigram[bin] and -gene[gene_id, bin].
    """
    counts = np.asarray(stats.bin_counts, dtype=np.float64)
    b = len(counts)
    if b == 0:
        return np.zeros(0), np.zeros((len(stats.gene_token_counts), 0))
    unigram = (counts + 1.0) / (counts.sum() + b)
    gene = np.asarray(stats.gene_bin_counts, dtype=np.float64)
    if smoothing == "unigram":
        prior = b * unigram
    elif smoothing == "add_one":
        prior = np.ones(b)
    else:
        raise ValueError(f"unknown smoothing {smoothing!r}")
    gene_p = (gene + prior) / (gene.sum(axis=1, keepdims=True) + prior.sum())
    return np.log(unigram), np.log(gene_p)


# ------------------------------------------------------------------------------------------ gene medians


class GeneMedians:
    """Per-gene medians of positive values that arrive in chunks, exact within a memory budget.

    rank_value tokenisation divides by each gene's median normalised value (`vocab.gene_medians`),
    which needs all of a gene's values: a streamed build cannot hold a corpus's. Values are kept
    exactly (gene id + float64: 12 bytes each) while at most `budget` are held; past it, the genes with
    the most values move to a log-spaced histogram each (`R` bins per octave from 2**LOW to 2**HIGH,
    the end bins open: 3.8 kB a gene), and their later values are only counted. After the pass,
    `finish_pass` gives the exact medians of the held genes and, for a histogram gene, finds the bins
    holding its two middle ranks; a second pass (`add_refine`) collects the values in those bins (few:
    ~4% of a gene's values, fewer for spread-out genes), so their medians are exact as well. Only
    genes whose middle bins would not fit the budget together keep the histogram estimate (rank
    interpolated geometrically inside the bin: off by less than the bin width, 2**(1/R) - 1 = 4.4%).
    Exact medians here are bit-identical to `vocab.gene_medians` (same values, same sort, same mean of
    the two middle values).
    """

    R = 16
    LOW, HIGH = -16, 14  # octaves: normalised values are count / total * 1e4 <= 1e4 < 2**14
    N_BINS = (HIGH - LOW) * R

    def __init__(self, n_genes: int, budget: int):
        self.n_genes, self.budget = int(n_genes), max(1, int(budget))
        self._g: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._n = 0
        self.row = np.full(self.n_genes, -1, dtype=np.int64)  # gene -> histogram row (-1: values held)
        self._hist = np.zeros((0, self.N_BINS), dtype=np.int64)  # rows beyond `spilled`: spare capacity
        self.spilled = 0  # genes whose values went to a histogram
        self.median = np.full(self.n_genes, np.nan)
        self.exact = np.zeros(self.n_genes, dtype=bool)
        self._win = np.full((self.n_genes, 2), -1, dtype=np.int64)  # refined genes: first, last bin
        self._below = np.zeros(self.n_genes, dtype=np.int64)  # values in lower bins
        self._ranks = np.zeros((self.n_genes, 2), dtype=np.int64)  # the two middle ranks
        self._refining = False

    @classmethod
    def bins(cls, values: np.ndarray) -> np.ndarray:
        lg = np.floor(np.log2(np.maximum(values, 2.0**cls.LOW)) * cls.R) - cls.LOW * cls.R
        return np.clip(lg, 0, cls.N_BINS - 1).astype(np.int64)

    @property
    def hist(self) -> np.ndarray:
        """[spilled, N_BINS] value counts of the histogram genes (row `row[gene]`)."""
        return self._hist[:self.spilled]

    def add(self, genes: np.ndarray, values: np.ndarray) -> None:
        """Values (> 0) of the given genes (ints < n_genes), in any order."""
        genes = np.asarray(genes, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if self.spilled:
            r = self.row[genes]
            counted = r >= 0
            if counted.any():
                self._count(r[counted], values[counted])
                genes, values = genes[~counted], values[~counted]
        self._hold(genes, values)
        if self._n > self.budget:
            self._spill()

    def _hold(self, genes: np.ndarray, values: np.ndarray) -> None:
        if len(genes):
            self._g.append(genes.astype(np.int32))
            self._v.append(values)
            self._n += len(genes)

    def _take(self) -> tuple[np.ndarray, np.ndarray]:
        g = np.concatenate(self._g) if self._g else np.zeros(0, dtype=np.int32)
        v = np.concatenate(self._v) if self._v else np.zeros(0)
        self._g, self._v, self._n = [], [], 0
        return g, v

    def _count(self, rows: np.ndarray, values: np.ndarray) -> None:
        cells, counts = np.unique(rows * self.N_BINS + self.bins(values), return_counts=True)
        self._hist.reshape(-1)[cells] += counts

    def _spill(self) -> None:
        """Move the genes with the most held values to histograms until at most half the budget is held."""
        g, v = self._take()
        per = np.bincount(g, minlength=self.n_genes)
        order = np.argsort(-per, kind="stable")
        left = len(g) - np.cumsum(per[order])
        k = int(np.argmax(left <= self.budget // 2)) + 1
        new = order[:k]
        new = new[per[new] > 0]
        self.row[new] = self.spilled + np.arange(len(new))
        self.spilled += len(new)
        if self.spilled > len(self._hist):  # grow by doubling: spills come again and again on a large corpus
            rows = min(self.n_genes, max(self.spilled, 2 * len(self._hist)))
            grown = np.zeros((rows, self.N_BINS), dtype=np.int64)
            grown[:len(self._hist)] = self._hist
            self._hist = grown
        r = self.row[g]
        counted = r >= 0
        self._count(r[counted], v[counted])
        self._hold(g[~counted], v[~counted])

    def finish_pass(self, wanted: np.ndarray | None = None) -> bool:
        """Medians after the first pass; True if a second pass (`add_refine`, then `result`) is needed
        to make the histogram genes among `wanted` (default all) exact."""
        g, v = self._take()
        _exact_medians(self.median, self.exact, g, v, np.zeros(self.n_genes, dtype=np.int64),
                       np.zeros((self.n_genes, 2), dtype=np.int64) - 1)
        genes = np.flatnonzero(self.row >= 0)
        if wanted is not None:
            genes = genes[np.asarray(wanted, dtype=bool)[genes]]
        if not len(genes):
            return False
        h = self.hist[self.row[genes]]
        cum = np.cumsum(h, axis=1)
        n = cum[:, -1]
        ranks = np.stack([(n - 1) // 2, n // 2], axis=1)
        first = np.argmax(cum > ranks[:, :1], axis=1)
        last = np.argmax(cum > ranks[:, 1:], axis=1)
        at = np.arange(len(genes))
        below = cum[at, first] - h[at, first]
        inside = cum[at, last] - below
        self.median[genes] = (self._estimate(h, cum, ranks[:, 0]) + self._estimate(h, cum, ranks[:, 1])) / 2
        order = np.argsort(inside, kind="stable")
        chosen = order[np.cumsum(inside[order]) <= self.budget]
        if not len(chosen):
            return False
        refine = genes[chosen]
        self._win[refine] = np.stack([first[chosen], last[chosen]], axis=1)
        self._below[refine] = below[chosen]
        self._ranks[refine] = ranks[chosen]
        self._refining = True
        return True

    def _estimate(self, h: np.ndarray, cum: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """The value of each row's `rank`-th value from its histogram: geometric inside the bin."""
        at = np.arange(len(rank))
        b = np.argmax(cum > rank[:, None], axis=1)
        frac = (rank - (cum[at, b] - h[at, b]) + 0.5) / h[at, b]
        return np.exp2((b + self.LOW * self.R + frac) / self.R)

    def add_refine(self, genes: np.ndarray, values: np.ndarray) -> None:
        """The second pass: the same values again (any chunking); only those in the middle bins are kept."""
        genes = np.asarray(genes, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        w = self._win[genes]
        sel = w[:, 0] >= 0
        b = self.bins(values[sel])
        inside = (b >= w[sel, 0]) & (b <= w[sel, 1])
        self._hold(genes[sel][inside], values[sel][inside])

    def result(self) -> np.ndarray:
        """[n_genes] medians (NaN for genes without values); call after `finish_pass` (and the refine pass)."""
        if self._refining:
            g, v = self._take()
            refined = np.flatnonzero(self._win[:, 0] >= 0)
            h = self.hist[self.row[refined]]
            cum = np.cumsum(h, axis=1)
            at = np.arange(len(refined))
            first, last = self._win[refined, 0], self._win[refined, 1]
            expected = cum[at, last] - (cum[at, first] - h[at, first])  # the middle bins' counts
            if (np.bincount(g, minlength=self.n_genes)[refined] != expected).any():
                raise BiofmError("the input files changed while the dataset was being built; build again")
            _exact_medians(self.median, self.exact, g, v, self._below, self._ranks)
            self._refining = False
        return self.median


def _exact_medians(out: np.ndarray, exact: np.ndarray, g: np.ndarray, v: np.ndarray, below: np.ndarray,
                   ranks: np.ndarray) -> None:
    """Write the median of each gene present in (g, v): its middle values, as `vocab.gene_medians`
    computes them. `ranks` [G, 2] (-1: the middle of what is present) are ranks among all of a gene's
    values, of which `below` lie under the values present."""
    if not len(g):
        return
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    n = np.bincount(g, minlength=len(out))
    start = np.cumsum(n) - n
    has = np.flatnonzero(n > 0)
    lo = np.where(ranks[has, 0] >= 0, ranks[has, 0] - below[has], (n[has] - 1) // 2)
    hi = np.where(ranks[has, 1] >= 0, ranks[has, 1] - below[has], n[has] // 2)
    out[has] = (v[start[has] + lo] + v[start[has] + hi]) / 2
    exact[has] = True


# ------------------------------------------------------------------------------------------ the dataset


@dataclass
class CellDataset:
    train: ColumnView
    val: ColumnView
    vocab: GeneVocab
    stats: CellStats
    meta: dict[str, Any]
    path: Path
    tokenizer: CellTokenizer | None = None


def _quiet() -> bool:
    return os.environ.get("BIOFM_QUIET") == "1"


def _say(lines: list[str]) -> None:
    if _quiet():
        return
    from rich.console import Console

    console = Console(stderr=True, markup=False, highlight=False)
    for line in lines:
        console.print(line, soft_wrap=True)


def summary_lines(meta: dict[str, Any]) -> list[str]:
    g = meta["genes"]
    why = ""
    if not g["vocab_reused"] and g["in_vocab"] < g["in_data"]:
        why = (f" (the other {g['in_data'] - g['in_vocab']} are expressed in fewer than tokenizer.min_cells="
               f"{g['min_cells']} training cells)")
    return [
        f"genes: {g['in_data']} in data, {g['in_vocab']} ({100 * g['coverage']:.1f}%) in vocabulary{why}",
        f"duplicated gene names merged: {meta['duplicated_genes_merged']}",
        f"cells: {meta['cells']['train']} train, {meta['cells']['val']} validation"
        + (f" ({meta['cells']['empty_dropped']} with no counts dropped)" if meta["cells"]["empty_dropped"] else ""),
    ]


def _check_inputs(paths: list[str]) -> None:
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise BiofmError(f"{p}: file not found")
        if path.is_dir():
            raise BiofmError(f"{p}: is a folder (a .zarr store?); expected an .h5ad file")


def _split(n_cells: list[int], keep: list[np.ndarray], val_fraction: float, seed: int) -> np.ndarray:
    """A boolean per cell of the concatenated files: True = validation. Seeded, by cell."""
    cells = np.concatenate([np.flatnonzero(k) + off for k, off in zip(keep, np.cumsum([0, *n_cells[:-1]]),
                                                                       strict=True)])
    n = len(cells)
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    is_val = np.zeros(sum(n_cells), dtype=bool)
    perm = np.random.default_rng(seed).permutation(n)
    is_val[cells[perm[:n_val]]] = True
    return is_val


def build_cell_dataset(data_cfg: CellDataConfig, tok_cfg: CellTokenizerConfig, seed: int, *,
                       vocab: GeneVocab | None = None) -> CellDataset:
    """Tokenise into `<cache>/cells-<hash>/` unless an identical build is already there (module docstring).
    `dataset:NAME` entries in `h5ad` are registered datasets, fetched or taken from the mirror."""
    data_cfg = data_cfg.model_copy(update={"h5ad": resolve_all(data_cfg.h5ad)})
    _check_inputs(data_cfg.h5ad)
    if vocab is None and tok_cfg.vocab_path:
        vocab = GeneVocab.load(tok_cfg.vocab_path)
    key = cache_key({
        "kind": "cell-tokens", "format": FORMAT_VERSION,
        "inputs": [file_fingerprint(p) for p in data_cfg.h5ad],
        "data": data_cfg.model_dump(exclude={"cache_dir", "h5ad", "chunk_cells"}),
        "tokenizer": tok_cfg.model_dump(exclude={"vocab_path"}),
        "vocab": vocab.fingerprint() if vocab is not None else None,
        "seed": seed,
    })
    dest = cache_root(data_cfg.cache_dir) / f"cells-{key}"
    if not (dest / "meta.json").exists():
        with atomic_path(dest, is_dir=True) as tmp:
            _build(data_cfg, tok_cfg, seed, vocab, tmp)
    meta = json.loads((dest / "meta.json").read_text())
    try:
        train, val = open_columns(dest / "train.arrow"), open_columns(dest / "val.arrow")
        vocab_out = GeneVocab.load(dest / "vocab")
        stats = CellStats.load(dest / "stats")
    except Exception:  # a damaged cache entry: rebuild it next time
        shutil.rmtree(dest, ignore_errors=True)
        raise
    _say(summary_lines(meta))
    tok = CellTokenizer(vocab_out, tok_cfg, stats.median_total)
    return CellDataset(train=train, val=val, vocab=vocab_out, stats=stats, meta=meta, path=dest, tokenizer=tok)


@dataclass
class _Input:
    """What the first pass learns about one file: small, but for one total per cell."""

    path: str
    genes: np.ndarray
    n_duplicated: int
    n_unnamed: int
    is_counts: bool
    totals: np.ndarray  # [cells] float64, over the file's named genes

    @property
    def n_cells(self) -> int:
        return len(self.totals)


def _reader(path: str, data_cfg: CellDataConfig) -> CountReader:
    return CountReader(path, data_cfg.layer, data_cfg.gene_column, data_cfg.allow_non_counts)


def _scan(data_cfg: CellDataConfig) -> list[_Input]:
    """Pass 1: check every cell and record its total."""
    inputs: list[_Input] = []
    for path in data_cfg.h5ad:
        with _reader(path, data_cfg) as r:
            totals = np.zeros(r.n_cells)
            for start, x in r.chunks(data_cfg.chunk_cells):
                totals[start:start + x.shape[0]] = np.asarray(x.sum(axis=1, dtype=np.float64)).ravel()
            inputs.append(_Input(str(path), r.genes, r.n_duplicated, r.n_unnamed, r.is_counts, totals))
    return inputs


def _cells(inp: _Input, data_cfg: CellDataConfig, select: np.ndarray) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """(row numbers in the file, their counts) for the selected cells of a file, one chunk at a time;
    chunks without a selected cell are not read."""
    step = data_cfg.chunk_cells
    with _reader(inp.path, data_cfg) as r:
        if r.n_cells != inp.n_cells or len(r.genes) != len(inp.genes):
            raise BiofmError(f"{inp.path}: the file changed while the dataset was being built; build again")
        for start in range(0, r.n_cells, step):
            local = np.flatnonzero(select[start:start + step])
            if len(local):
                yield start + local, r.read(start, start + step)[local]


def _normalised(x: sp.csr_matrix, totals: np.ndarray) -> np.ndarray:
    """count / cell total * 10,000 of each stored value (as `vocab.gene_medians` computes it)."""
    scale = np.divide(NORM_TOTAL, totals, out=np.zeros_like(totals), where=totals > 0)
    return x.data.astype(np.float64) * np.repeat(scale, np.diff(x.indptr))


def _train_vocab(inputs: list[_Input], train: list[np.ndarray], data_cfg: CellDataConfig,
                 min_cells: int) -> tuple[GeneVocab, dict[str, int]]:
    """Pass 2: `vocab.build_vocab` over the training cells, streamed (same genes, counts and medians),
    and how the medians were found (for meta.json)."""
    genes = pd.Index(np.unique(np.concatenate([inp.genes for inp in inputs])).astype(object))
    n_cells = np.zeros(len(genes), dtype=np.int64)
    medians = GeneMedians(len(genes), data_cfg.median_exact_values)
    cols = [genes.get_indexer(pd.Index(inp.genes.astype(object))) for inp in inputs]

    def values() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for inp, rows, col in zip(inputs, train, cols, strict=True):
            for idx, x in _cells(inp, data_cfg, rows):
                yield col[x.indices], _normalised(x, inp.totals[idx])

    for g, v in values():
        n_cells += np.bincount(g, minlength=len(genes))
        medians.add(g, v)
    keep = n_cells >= min_cells
    if not keep.any():
        raise BiofmError(f"no gene is expressed in at least {min_cells} training cells (tokenizer.min_cells); "
                         "lower it or check that the data holds counts")
    if medians.finish_pass(keep):
        for g, v in values():
            medians.add_refine(g, v)
    med = medians.result()
    order = sorted(np.flatnonzero(keep).tolist(), key=lambda i: str(genes[i]))
    vocab = GeneVocab([str(genes[i]) for i in order], n_cells=n_cells[order])
    vocab.gene_median = med[order]
    info = {"median_histogram_genes": medians.spilled, "medians_estimated": int((~medians.exact[order]).sum())}
    return vocab, info


def _build(data_cfg: CellDataConfig, tok_cfg: CellTokenizerConfig, seed: int, vocab: GeneVocab | None,
           tmp: Path) -> None:
    inputs = _scan(data_cfg)
    keep = [inp.totals > 0 for inp in inputs]
    n_cells = [inp.n_cells for inp in inputs]
    offsets = np.cumsum([0, *n_cells[:-1]])
    if not any(k.any() for k in keep):
        raise BiofmError(f"{', '.join(data_cfg.h5ad)}: every cell has zero counts")
    is_val = _split(n_cells, keep, data_cfg.val_fraction, seed)
    train = [k & ~is_val[off:off + n] for k, off, n in zip(keep, offsets, n_cells, strict=True)]
    n_train = sum(int(t.sum()) for t in train)
    if n_train == 0:
        raise BiofmError(f"{', '.join(data_cfg.h5ad)}: no training cells left; lower data.val_fraction")

    reused_vocab = vocab is not None
    median_info = {"median_histogram_genes": 0, "medians_estimated": 0}
    if vocab is None:
        vocab, median_info = _train_vocab(inputs, train, data_cfg, tok_cfg.min_cells)
    data_genes = np.unique(np.concatenate([inp.genes for inp in inputs]))
    found = vocab.ids(data_genes)[1]
    if not found.any():
        raise BiofmError(
            f"{', '.join(data_cfg.h5ad)}: none of the data's {len(data_genes)} genes is in the gene vocabulary "
            f"(data genes look like {data_genes[0]!r}, vocabulary genes like {vocab.genes[0]!r}); "
            "pick the matching identifiers with data.gene_column"
        )
    train_totals = np.concatenate([inp.totals[t] for inp, t in zip(inputs, train, strict=True)])
    median_total = float(np.median(train_totals))
    del train_totals
    if reused_vocab and vocab.settings.get("median_total"):  # size factors keep the model's meaning
        median_total = float(vocab.settings["median_total"])
    tok = CellTokenizer(vocab, tok_cfg, median_total)
    vocab = GeneVocab(vocab.genes, vocab.gene_median, n_cells=vocab.gene_n_cells, settings=tok.settings())

    # pass 3: tokenise; each chunk's training rows go to train.arrow, its validation rows to val.arrow,
    # so each file keeps its cell order within a split, as when the splits were written one by one
    n_bins = n_value_bins(tok_cfg)
    L = tok.seq_len
    columns = {"gene_ids": (L, "int32"), "values": (L, "int16"), "counts": (L, "float32"),
               "size_factor": (None, "float32"), "cell": (None, "int64")}
    acc = StatsAccumulator(vocab.vocab_size, n_bins, vocab.gene_offset)
    splits = ("train", "val")
    writers = {split: ColumnWriter(tmp / f"{split}.arrow", columns) for split in splits}
    lengths: dict[str, list[np.ndarray]] = {split: [] for split in splits}
    zeros = dict.fromkeys(splits, 0)
    for inp, k, off in zip(inputs, keep, offsets, strict=True):
        for idx, x in _cells(inp, data_cfg, k):
            in_val = is_val[idx + off]
            for split, sel in (("train", ~in_val), ("val", in_val)):
                if not sel.any():
                    continue
                rows = idx[sel]
                batch = tok.tokenize(x[np.flatnonzero(sel)], inp.genes, rows + off, seed=seed,
                                     totals=inp.totals[rows])
                batch["cell"] = rows + off
                writers[split].write(batch)
                real = batch["gene_ids"] >= vocab.gene_offset
                lengths[split].append(real.sum(axis=1).astype(np.int32))
                zeros[split] += int((real & (batch["counts"] == 0)).sum())
                if split == "train":
                    acc.add(batch)
    split_meta: dict[str, Any] = {}
    for split in splits:
        writers[split].close()
        ln = np.concatenate(lengths[split]).astype(np.int64) if lengths[split] else np.zeros(0, dtype=np.int64)
        split_meta[split] = {
            "cells": int(writers[split].rows),
            "positions_mean": float(ln.mean()) if len(ln) else 0.0,
            "positions_p99": float(np.percentile(ln, 99)) if len(ln) else 0.0,
            "full_rows_fraction": float((ln >= tok_cfg.max_genes).mean()) if len(ln) else 0.0,
            "zero_positions_fraction": zeros[split] / max(1, int(ln.sum())),
        }
    stats = acc.finish(median_total)
    stats.save(tmp / "stats")
    vocab.save(tmp / "vocab")

    genes_in_vocab = int(found.sum())
    meta = {
        "inputs": [
            {"path": str(p), "cells": inp.n_cells, "genes": len(inp.genes), "duplicated_genes_merged": inp.n_duplicated,
             "unnamed_genes_dropped": inp.n_unnamed, "empty_cells_dropped": int((~k).sum()),
             "layer": data_cfg.layer, "integer_counts": inp.is_counts, "coverage": vocab.coverage(inp.genes)}
            for p, inp, k in zip(data_cfg.h5ad, inputs, keep, strict=True)
        ],
        "genes": {"in_data": len(data_genes), "in_vocab": genes_in_vocab,
                  "coverage": genes_in_vocab / len(data_genes), "vocab_genes": vocab.n_genes,
                  "vocab_size": vocab.vocab_size, "vocab_reused": reused_vocab, "min_cells": tok_cfg.min_cells,
                  **median_info},
        "duplicated_genes_merged": sum(inp.n_duplicated for inp in inputs),
        "cells": {"train": split_meta["train"]["cells"], "val": split_meta["val"]["cells"],
                  "empty_dropped": int(sum((~k).sum() for k in keep))},
        "train": split_meta["train"], "val": split_meta["val"],
        "tokenizer": tok.settings(), "seq_len": L, "n_value_bins": n_bins,
        "median_total": median_total, "seed": seed,
        "columns": {name: [length or 0, dtype] for name, (length, dtype) in columns.items()},
    }
    write_json(tmp / "meta.json", meta)
