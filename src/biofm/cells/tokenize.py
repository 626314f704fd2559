"""Cells → fixed-length rows of (gene id, value bin, raw count); the rules are in `CellTokenizerConfig`.

A row has `max_genes + 1` positions: position 0 is `<cls>`, then the selected genes, then padding.
Columns of `CellTokenizer.tokenize`:
- `gene_ids` [n, L] int32: `<cls>`, gene token ids, `<pad>`;
- `values` [n, L] int16: the value bin of each gene position (0 = zero count, bins 1.. for non-zero);
  -1 at `<cls>` and padding, and everywhere in rank_value mode (no values there);
- `counts` [n, L] float32: the raw count at each gene position (0 at `<cls>`, padding, zero genes);
- `size_factor` [n] float32: the cell's total count / the median total over the training cells.

Only genes in the vocabulary are seen; "non-zero genes", the quantile-bin edges and the zero genes
that may be sampled are all among them. The cell total (for size factors) is over all genes of the
file. Sampling is seeded by (seed, cell key), so a cell tokenises the same way whatever batch it is in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from biofm.cells.config import CellTokenizerConfig
from biofm.cells.vocab import GeneVocab
from biofm.errors import BiofmError

SETTINGS_KEYS = ("mode", "binning", "cap", "n_bins", "max_genes", "selection", "zero_fraction")
_MAX_ROWS = 4096  # cells per vectorised pass
_DIGITIZE_CHUNK = 1 << 20  # (values x edges) comparisons per pass of the quantile binning


def n_value_bins(cfg: CellTokenizerConfig) -> int:
    """Number of value classes: cap + 1 (fixed), n_bins (quantile), 0 in rank_value mode (no values)."""
    if cfg.mode == "rank_value":
        return 0
    return cfg.cap + 1 if cfg.binning == "fixed" else cfg.n_bins


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """scGPT's per-cell binning of ONE cell's non-zero values (reference implementation, for tests).

    edges = np.quantile(values, linspace(0, 1, n_bins - 1)); bin = np.digitize(value, edges) clipped
    into 1..n_bins-1 (deterministic: scGPT breaks ties between equal edges at random).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(values, np.linspace(0, 1, n_bins - 1))
    return np.clip(np.digitize(values, edges), 1, n_bins - 1)


class CellTokenizer:
    """Turns rows of a cells x genes count matrix into the columns above."""

    def __init__(self, vocab: GeneVocab, cfg: CellTokenizerConfig, median_total: float | None = None):
        self.vocab = vocab
        self.cfg = cfg
        self.median_total = float(median_total) if median_total else None
        self.seq_len = cfg.max_genes + 1
        n_zero = round(cfg.zero_fraction * cfg.max_genes) if cfg.mode == "gene_value" else 0
        self.zero_slots = int(min(n_zero, cfg.max_genes))
        self.nonzero_slots = cfg.max_genes - self.zero_slots if cfg.selection == "sample" else cfg.max_genes
        if cfg.mode == "rank_value":
            self.nonzero_slots = cfg.max_genes
        self._median = vocab.median

    @property
    def n_value_bins(self) -> int:
        return n_value_bins(self.cfg)

    def settings(self) -> dict[str, Any]:
        """What `cell_tokenizer.json` records, so the same cells tokenise the same way later."""
        return {"format": "biofm-cell-tokenizer", **{k: getattr(self.cfg, k) for k in SETTINGS_KEYS},
                "seq_len": self.seq_len, "n_value_bins": self.n_value_bins, "median_total": self.median_total}

    @classmethod
    def load(cls, path: str | Path) -> CellTokenizer:
        """Rebuild the tokenizer saved with a model (its gene vocabulary and `cell_tokenizer.json`)."""
        vocab = GeneVocab.load(path)
        settings = {k: vocab.settings[k] for k in SETTINGS_KEYS if k in vocab.settings}
        if "mode" not in settings:
            raise BiofmError(f"{path}: no cell tokenisation settings (cell_tokenizer.json) next to the vocabulary")
        return cls(vocab, CellTokenizerConfig(**settings), vocab.settings.get("median_total"))

    # ------------------------------------------------------------------ tokenising
    def tokenize_matrix(self, matrix: Any, keys: np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """`tokenize` for a whole `CellMatrix` (keys default to the row numbers)."""
        keys = np.arange(matrix.n_cells) if keys is None else keys
        return self.tokenize(matrix.X, matrix.genes, keys, seed=seed)

    def tokenize(self, X: sp.spmatrix, genes: np.ndarray, keys: np.ndarray, seed: int = 0,
                 totals: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Tokenise a batch of cells.

        X: [n, G] counts (CSR preferred); genes: the G column gene ids; keys: [n] non-negative ints
        naming each cell (they seed its sampling); totals: each cell's total count (default X's row
        sums) for the size factor.
        """
        cfg = self.cfg
        X = sp.csr_matrix(X)
        n = X.shape[0]
        keys = np.asarray(keys, dtype=np.int64)
        if keys.shape != (n,):
            raise ValueError(f"need one key per cell ({n}), got {keys.shape}")
        if len(keys) and keys.min() < 0:
            raise ValueError("cell keys must be non-negative")
        if totals is None:
            totals = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
        if n > _MAX_ROWS:  # bounded batches keep the sort keys within int64 and memory flat
            parts = [self.tokenize(X[i:i + _MAX_ROWS], genes, keys[i:i + _MAX_ROWS], seed, totals[i:i + _MAX_ROWS])
                     for i in range(0, n, _MAX_ROWS)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        col_ids, found = self.vocab.ids(np.asarray(genes))
        if len(col_ids) != X.shape[1]:
            raise ValueError(f"{X.shape[1]} columns but {len(col_ids)} gene ids")
        n_vocab_cols = int(found.sum())
        vpos_of_col = np.cumsum(found) - 1  # column -> position among the in-vocabulary columns
        vocab_col_ids = col_ids[found].astype(np.int64)

        per_row = np.diff(X.indptr)
        row = np.repeat(np.arange(n, dtype=np.int64), per_row)
        keep = found[X.indices] & (X.data != 0)
        row, cols, data = row[keep], X.indices[keep], X.data[keep].astype(np.float64)
        gid = col_ids[cols].astype(np.int64)
        vpos = vpos_of_col[cols]
        n_nz = np.bincount(row, minlength=n)

        # value bins of every non-zero entry (before selection: quantiles see the whole cell)
        if cfg.mode == "rank_value":
            bins = np.full(len(data), -1, dtype=np.int64)
        elif cfg.binning == "fixed":
            bins = np.minimum(np.ceil(data), cfg.cap).astype(np.int64)
        else:
            bins = self._quantile_bins(row, data, n_nz)

        # which non-zero entries enter: the first `nonzero_slots` of each cell in this order
        if cfg.mode == "rank_value":
            order = np.lexsort((gid, -(data / self._median[gid]), row))
        elif cfg.selection == "top":
            order = np.lexsort((gid, -data, row))
        else:  # a uniform random subset: the smallest random priorities
            order = np.argsort((row << 31) | _priority(seed, keys[row], _STREAM_NONZERO, gid), kind="stable")
        rank = np.arange(len(order)) - (np.cumsum(n_nz) - n_nz)[row[order]]
        chosen = order[rank < self.nonzero_slots]

        zero_rows = np.zeros(0, dtype=np.int64)
        zero_ids = np.zeros(0, dtype=np.int64)
        if cfg.mode == "gene_value" and self.zero_slots:
            n_free = n_vocab_cols - n_nz
            n_taken = np.minimum(n_nz, self.nonzero_slots)
            # "sample": zero_slots zeros; "top": only the slots the non-zero genes left free
            want = np.minimum(self.zero_slots, np.minimum(n_free, cfg.max_genes - n_taken))
            zero_rows, zero_pos = _sample_free(row, vpos, want, n_vocab_cols, keys, seed)
            zero_ids = vocab_col_ids[zero_pos]

        out_row = np.concatenate([row[chosen], zero_rows])
        out_gid = np.concatenate([gid[chosen], zero_ids])
        out_bin = np.concatenate([bins[chosen], np.zeros(len(zero_ids), dtype=np.int64)])
        out_cnt = np.concatenate([data[chosen], np.zeros(len(zero_ids))])
        # rank_value keeps the rank order (`chosen` is sorted by row, then rank); gene_value orders by gene id
        place = np.argsort(out_row if cfg.mode == "rank_value" else out_row * self.vocab.vocab_size + out_gid,
                           kind="stable")
        out_row, out_gid, out_bin, out_cnt = out_row[place], out_gid[place], out_bin[place], out_cnt[place]
        per = np.bincount(out_row, minlength=n)
        pos = np.arange(len(out_row)) - (np.cumsum(per) - per)[out_row] + 1

        L = self.seq_len
        gene_ids = np.full((n, L), self.vocab.pad_id, dtype=np.int32)
        gene_ids[:, 0] = self.vocab.cls_id
        values = np.full((n, L), -1, dtype=np.int16)
        counts = np.zeros((n, L), dtype=np.float32)
        gene_ids[out_row, pos] = out_gid
        if cfg.mode == "gene_value":
            values[out_row, pos] = out_bin
        counts[out_row, pos] = out_cnt
        mt = self.median_total or 0.0
        size_factor = (np.asarray(totals, dtype=np.float64) / mt) if mt > 0 else np.ones(n)
        return {"gene_ids": gene_ids, "values": values, "counts": counts,
                "size_factor": size_factor.astype(np.float32)}

    def _quantile_bins(self, row: np.ndarray, data: np.ndarray, n_nz: np.ndarray) -> np.ndarray:
        """`quantile_bins` for every cell at once: cells with the same number of non-zero values are
        stacked and binned with one np.quantile / comparison pass, so results equal the per-cell rule."""
        nb = self.cfg.n_bins
        qs = np.linspace(0, 1, nb - 1)
        order = np.lexsort((data, row))
        sorted_vals = data[order]
        start = np.cumsum(n_nz) - n_nz
        bins_sorted = np.zeros(len(data), dtype=np.int64)
        for m in np.unique(n_nz[n_nz > 0]).tolist():
            rows_m = np.flatnonzero(n_nz == m)
            step = max(1, _DIGITIZE_CHUNK // (m * (nb - 1)))
            offs = np.arange(m)
            for i in range(0, len(rows_m), step):
                idx = start[rows_m[i:i + step], None] + offs  # [k, m] positions in sorted order
                vals = sorted_vals[idx]
                edges = np.quantile(vals, qs, axis=1).T  # [k, nb-1]
                b = (edges[:, None, :] <= vals[:, :, None]).sum(-1)
                bins_sorted[idx] = np.clip(b, 1, nb - 1)
        out = np.empty_like(bins_sorted)
        out[order] = bins_sorted
        return out


# Random numbers come from a counter-based hash (splitmix64) of (seed, cell key, stream, counter): each
# cell has its own reproducible random stream, whatever batch it is tokenised in, without a per-cell
# Python loop.
_STREAM_NONZERO, _STREAM_ZERO_DRAW, _STREAM_ZERO_ALL = 1, 2, 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def _hash(seed: int, keys: np.ndarray, stream: int, counter: np.ndarray) -> np.ndarray:
    """64 random bits per (key, counter) pair, for this seed and stream."""
    keys = np.asarray(keys, dtype=np.int64).view(np.uint64)
    counter = np.asarray(counter, dtype=np.int64).view(np.uint64)
    base = _mix(np.full(1, (int(seed) & (2**64 - 1)) ^ (stream << 56), dtype=np.uint64))
    return _mix(_mix(base ^ keys) ^ counter)


def _uniform(seed: int, keys: np.ndarray, stream: int, counter: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per (key, counter) pair."""
    return (_hash(seed, keys, stream, counter) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _priority(seed: int, keys: np.ndarray, stream: int, counter: np.ndarray) -> np.ndarray:
    """Random 31-bit integer priorities (for sorting), one per (key, counter) pair."""
    return (_hash(seed, keys, stream, counter) >> np.uint64(33)).astype(np.int64)


def _first_per_row(rows: np.ndarray, priority: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Indices of the `want[row]` entries of each row with the smallest priority (ints < 2**31; ties
    by position)."""
    order = np.argsort((rows.astype(np.int64) << 31) | priority, kind="stable")
    per = np.bincount(rows, minlength=len(want))
    rank = np.arange(len(order)) - (np.cumsum(per) - per)[rows[order]]
    return order[rank < want[rows[order]]]


def _sample_free(nz_rows: np.ndarray, nz_pos: np.ndarray, want: np.ndarray, size: int, keys: np.ndarray,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each cell r, `want[r]` distinct positions of range(size) not in its non-zero positions,
    uniformly at random. Returns (rows, positions).

    Cells whose free positions are few (at most twice what is wanted) rank all of them by a random
    priority; the others draw uniform positions and keep the first distinct free ones (sequential
    sampling without replacement, so the subset is uniform), drawing again until they have enough.
    """
    n = len(want)
    want = np.asarray(want, dtype=np.int64)
    nz_key = np.sort(nz_rows * size + nz_pos)

    def is_free(rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
        k = rows * size + pos
        if len(nz_key) == 0:
            return np.ones(len(k), dtype=bool)
        at = np.minimum(np.searchsorted(nz_key, k), len(nz_key) - 1)
        return nz_key[at] != k

    n_free = size - np.bincount(nz_rows, minlength=n)
    out_rows: list[np.ndarray] = []
    out_pos: list[np.ndarray] = []
    dense = np.flatnonzero((want > 0) & (n_free <= 2 * want))
    if len(dense):
        rows = np.repeat(dense, size)
        pos = np.tile(np.arange(size, dtype=np.int64), len(dense))
        free = is_free(rows, pos)
        rows, pos = rows[free], pos[free]
        keep = _first_per_row(rows, _priority(seed, keys[rows], _STREAM_ZERO_ALL, pos), want)
        out_rows.append(rows[keep])
        out_pos.append(pos[keep])
    pending = np.flatnonzero((want > 0) & (n_free > 2 * want))
    drawn = np.zeros(n, dtype=np.int64)
    d_rows: list[np.ndarray] = []
    d_ctr: list[np.ndarray] = []
    d_pos: list[np.ndarray] = []
    while len(pending):
        # draws expected to give `want` distinct free positions, with a margin (short cells draw again)
        f, w = n_free[pending].astype(np.float64), want[pending].astype(np.float64)
        c = np.ceil(1.25 * size / f * (-f * np.log1p(-w / f))).astype(np.int64) + 8
        rows = np.repeat(pending, c)
        ctr = np.arange(len(rows)) - np.repeat(np.cumsum(c) - c, c) + drawn[rows]
        drawn[pending] += c
        pos = np.minimum((_uniform(seed, keys[rows], _STREAM_ZERO_DRAW, ctr) * size).astype(np.int64), size - 1)
        ok = is_free(rows, pos)
        d_rows.append(rows[ok])
        d_ctr.append(ctr[ok])
        d_pos.append(pos[ok])
        all_rows, all_ctr, all_pos = np.concatenate(d_rows), np.concatenate(d_ctr), np.concatenate(d_pos)
        # keep the first draw (smallest counter) of each (row, position)
        o = np.argsort(((all_rows * size + all_pos) << 31) | all_ctr)
        k = (all_rows * size + all_pos)[o]
        first = np.ones(len(o), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        o = o[first]
        d_rows, d_ctr, d_pos = [all_rows[o]], [all_ctr[o]], [all_pos[o]]
        have = np.bincount(d_rows[0], minlength=n)
        pending = pending[have[pending] < want[pending]]
    if d_rows:
        rows, ctr, pos = d_rows[0], d_ctr[0], d_pos[0]
        keep = _first_per_row(rows, ctr, want)
        out_rows.append(rows[keep])
        out_pos.append(pos[keep])
    if not out_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_rows), np.concatenate(out_pos)
