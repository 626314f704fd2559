"""h5ad files → tokenised cells on disk (train / validation) + the context-free baseline statistics.

`build_cell_dataset` reads every file (`read_counts`, read-only), drops cells with no counts, splits
the cells at random (seeded) into train and validation, builds the gene vocabulary from the TRAINING
cells (unless one is given), tokenises both splits (`CellTokenizer`) and writes them as Arrow files in
`<cache>/cells-<hash>/`, keyed by the files' contents, the settings, the vocabulary and the seed, so a
rerun reuses them. The folder is written under a temporary name and renamed when complete.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.h5ad import read_counts
from biofm.cells.tokenize import CellTokenizer, n_value_bins
from biofm.cells.vocab import GeneVocab, build_vocab
from biofm.data.blocks import ColumnView, ColumnWriter, cache_key, cache_root, file_fingerprint, open_columns
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json

BATCH_CELLS = 2048
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
    """Tokenise into `<cache>/cells-<hash>/` unless an identical build is already there (module docstring)."""
    _check_inputs(data_cfg.h5ad)
    if vocab is None and tok_cfg.vocab_path:
        vocab = GeneVocab.load(tok_cfg.vocab_path)
    key = cache_key({
        "kind": "cell-tokens", "format": FORMAT_VERSION,
        "inputs": [file_fingerprint(p) for p in data_cfg.h5ad],
        "data": data_cfg.model_dump(exclude={"cache_dir", "h5ad"}),
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


def _build(data_cfg: CellDataConfig, tok_cfg: CellTokenizerConfig, seed: int, vocab: GeneVocab | None,
           tmp: Path) -> None:
    matrices = [read_counts(p, data_cfg.layer, data_cfg.gene_column, data_cfg.allow_non_counts)
                for p in data_cfg.h5ad]
    totals = [m.totals() for m in matrices]
    keep = [t > 0 for t in totals]
    n_cells = [m.n_cells for m in matrices]
    offsets = np.cumsum([0, *n_cells[:-1]])
    if not any(k.any() for k in keep):
        raise BiofmError(f"{', '.join(data_cfg.h5ad)}: every cell has zero counts")
    is_val = _split(n_cells, keep, data_cfg.val_fraction, seed)
    rows = {
        split: [np.flatnonzero(k & (is_val[off:off + n] == (split == "val")))
                for k, off, n in zip(keep, offsets, n_cells, strict=True)]
        for split in ("train", "val")
    }
    n_train = sum(len(r) for r in rows["train"])
    if n_train == 0:
        raise BiofmError(f"{', '.join(data_cfg.h5ad)}: no training cells left; lower data.val_fraction")

    reused_vocab = vocab is not None
    if vocab is None:
        vocab = build_vocab([m.rows(r) for m, r in zip(matrices, rows["train"], strict=True)], tok_cfg.min_cells)
    data_genes = np.unique(np.concatenate([m.genes for m in matrices]))
    found = vocab.ids(data_genes)[1]
    if not found.any():
        raise BiofmError(
            f"{', '.join(data_cfg.h5ad)}: none of the data's {len(data_genes)} genes is in the gene vocabulary "
            f"(data genes look like {data_genes[0]!r}, vocabulary genes like {vocab.genes[0]!r}); "
            "pick the matching identifiers with data.gene_column"
        )
    train_totals = np.concatenate([t[r] for t, r in zip(totals, rows["train"], strict=True)])
    median_total = float(np.median(train_totals))
    if reused_vocab and vocab.settings.get("median_total"):  # size factors keep the model's meaning
        median_total = float(vocab.settings["median_total"])
    tok = CellTokenizer(vocab, tok_cfg, median_total)
    vocab = GeneVocab(vocab.genes, vocab.gene_median, n_cells=vocab.gene_n_cells, settings=tok.settings())

    n_bins = n_value_bins(tok_cfg)
    L = tok.seq_len
    columns = {"gene_ids": (L, "int32"), "values": (L, "int16"), "counts": (L, "float32"),
               "size_factor": (None, "float32"), "cell": (None, "int64")}
    acc = StatsAccumulator(vocab.vocab_size, n_bins, vocab.gene_offset)
    split_meta: dict[str, Any] = {}
    for split in ("train", "val"):
        writer = ColumnWriter(tmp / f"{split}.arrow", columns)
        lengths: list[np.ndarray] = []
        zeros = 0
        for m, r, t, off in zip(matrices, rows[split], totals, offsets, strict=True):
            for i in range(0, len(r), BATCH_CELLS):
                idx = r[i:i + BATCH_CELLS]
                batch = tok.tokenize(m.X[idx], m.genes, idx + off, seed=seed, totals=t[idx])
                batch["cell"] = idx + off
                writer.write(batch)
                real = batch["gene_ids"] >= vocab.gene_offset
                lengths.append(real.sum(axis=1))
                zeros += int((real & (batch["counts"] == 0)).sum())
                if split == "train":
                    acc.add(batch)
        writer.close()
        ln = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        split_meta[split] = {
            "cells": int(writer.rows),
            "positions_mean": float(ln.mean()) if len(ln) else 0.0,
            "positions_p99": float(np.percentile(ln, 99)) if len(ln) else 0.0,
            "full_rows_fraction": float((ln >= tok_cfg.max_genes).mean()) if len(ln) else 0.0,
            "zero_positions_fraction": zeros / max(1, int(ln.sum())),
        }
    stats = acc.finish(median_total)
    stats.save(tmp / "stats")
    vocab.save(tmp / "vocab")

    genes_in_vocab = int(found.sum())
    meta = {
        "inputs": [
            {"path": str(p), "cells": m.n_cells, "genes": m.n_genes, "duplicated_genes_merged": m.n_duplicated,
             "unnamed_genes_dropped": m.n_unnamed, "empty_cells_dropped": int((~k).sum()),
             "layer": m.layer, "integer_counts": m.is_counts, "coverage": vocab.coverage(m.genes)}
            for p, m, k in zip(data_cfg.h5ad, matrices, keep, strict=True)
        ],
        "genes": {"in_data": len(data_genes), "in_vocab": genes_in_vocab,
                  "coverage": genes_in_vocab / len(data_genes), "vocab_genes": vocab.n_genes,
                  "vocab_size": vocab.vocab_size, "vocab_reused": reused_vocab, "min_cells": tok_cfg.min_cells},
        "duplicated_genes_merged": sum(m.n_duplicated for m in matrices),
        "cells": {"train": split_meta["train"]["cells"], "val": split_meta["val"]["cells"],
                  "empty_dropped": int(sum((~k).sum() for k in keep))},
        "train": split_meta["train"], "val": split_meta["val"],
        "tokenizer": tok.settings(), "seq_len": L, "n_value_bins": n_bins,
        "median_total": median_total, "seed": seed,
        "columns": {name: [length or 0, dtype] for name, (length, dtype) in columns.items()},
    }
    write_json(tmp / "meta.json", meta)

