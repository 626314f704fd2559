"""Read paired modalities of the same cells, checked, and turn them into what the model and baselines use.

Reading (`read_paired`): a `.h5mu` is opened with `mudata` (read-only: `read_h5mu` loads it into memory,
the file is never written); two `.h5ad` files are read by the single-cell RNA reader. Every modality's
matrix passes `biofm.cells.h5ad.read_counts`' checks (finite, non-negative, integer; one-line errors
naming the file, the modality, the cell and the feature). Cells are matched by obs name: those in one
modality only are reported (how many, and the first) and dropped; no common cell is an error. Peaks'
names are parsed and sorted by `biofm.atac.peaks` (genome order), binarised (count > 0).

Values (per cell, nothing fitted): RNA log1p(count / cell total * 1e4) (the total over every gene of the
file); protein CLR, log1p(count) minus the cell's mean log1p over its proteins (Seurat's ADT
normalisation); ATAC 0/1.

Features and value classes are fitted on the TRAINING cells only (`Features.fit`): RNA the highly
variable genes (`biofm.cells.baselines.highly_variable_genes`), ATAC the most often accessible peaks,
protein all. RNA class 0 = not detected, classes 1..n_bins-1 the quantiles of the detected values;
protein classes 0..n_bins-1 its value quantiles. Each class's centre (the mean training value in it) turns
class probabilities back into an expected value for the Pearson scores.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from biofm.errors import BiofmError

WORD = {"rna": "gene", "atac": "peak", "protein": "protein"}


@dataclass
class Paired:
    """Counts of the cells present in every modality, rows in the same order in each."""

    source: str
    counts: dict[str, sp.csr_matrix]  # role -> [n_cells, n_features] float32 counts (columns as in the file)
    features: dict[str, np.ndarray]  # role -> feature names
    cells: np.ndarray  # str [n_cells]
    obs: pd.DataFrame  # the joint obs of those cells (MuData's global obs, else the first file's)
    dropped: dict[str, int] = field(default_factory=dict)  # role -> cells present only in that modality

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def rows(self, idx: np.ndarray) -> Paired:
        idx = np.asarray(idx, dtype=np.int64)
        return Paired(self.source, {r: m[idx] for r, m in self.counts.items()}, self.features, self.cells[idx],
                      self.obs.iloc[idx], dict(self.dropped))


def _reword(message: str, role: str) -> str:
    """`read_counts` words its messages for genes; say peak / protein where that is what they are."""
    w = WORD[role]
    return re.sub(r"\bgene(s?)\b", rf"{w}\1", message) if w != "gene" else message


def _counts(label: str, role: str, adata: Any = None, path: Path | None = None) -> tuple[sp.csr_matrix, np.ndarray,
                                                                                       np.ndarray, pd.DataFrame]:
    from biofm.cells.h5ad import read_counts

    try:
        m = read_counts(path if path is not None else label, adata=adata)
    except BiofmError as exc:
        raise BiofmError(_reword(str(exc), role)) from None
    if m.n_duplicated or m.n_unnamed:
        raise BiofmError(f"{label}: {m.n_duplicated + m.n_unnamed} {WORD[role]}(s) with an empty or repeated name; "
                         f"each {WORD[role]} must occur once under its own name")
    return m.X, np.asarray(m.genes, dtype=str), np.asarray(m.obs.index, dtype=str), m.obs


def read_paired(h5mu: str | None, h5ad: dict[str, str] | None, modalities: dict[str, str], roles: list[str],
                *, say: bool = True) -> Paired:
    """The checked counts of the cells present in both modalities (see the module docstring)."""
    from biofm.datasets import resolve

    mats: dict[str, sp.csr_matrix] = {}
    feats: dict[str, np.ndarray] = {}
    names: dict[str, np.ndarray] = {}
    obs_frames: dict[str, pd.DataFrame] = {}
    joint_obs: pd.DataFrame | None = None
    if h5mu is not None:
        import h5py
        import mudata

        p = resolve(h5mu)
        if not p.is_file():
            raise BiofmError(f"{p}: file not found")
        if not h5py.is_hdf5(p):
            raise BiofmError(f"{p}: not an HDF5 file; expected a MuData .h5mu")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                md = mudata.read_h5mu(p)
        except Exception as exc:  # mudata raises KeyError / OSError / ValueError for broken layouts
            raise BiofmError(f"{p}: unreadable .h5mu ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             ) from None
        for role in roles:
            mod = modalities.get(role, role)
            if mod not in md.mod:
                raise BiofmError(f"{p}: no modality {mod!r} (for {role}; modalities: {', '.join(md.mod)}); set "
                                 f"data.modalities.{role}")
            mats[role], feats[role], names[role], obs_frames[role] = _counts(f"{p} modality {mod}", role,
                                                                            adata=md.mod[mod])
        joint_obs = md.obs
        source = str(p)
    else:
        assert h5ad is not None
        for role in roles:
            p = resolve(h5ad[role])
            mats[role], feats[role], names[role], obs_frames[role] = _counts(str(p), role, path=p)
        source = " + ".join(str(resolve(h5ad[r])) for r in roles)
    for role in roles:
        dup = pd.Index(names[role]).duplicated()
        if dup.any():
            cell = str(names[role][int(np.argmax(dup))])
            raise BiofmError(f"{source}: {role} cell {cell!r} occurs twice; cell names must be unique to pair the "
                             "modalities")
    common = names[roles[0]]
    for role in roles[1:]:
        common = common[np.isin(common, names[role])]
    dropped = {r: int((~np.isin(names[r], common)).sum()) for r in roles}
    if not len(common):
        raise BiofmError(f"{source}: no cell is in both {roles[0]} and {roles[1]} (cell names like "
                         f"{str(names[roles[0]][0])!r} vs {str(names[roles[1]][0])!r})")
    for r, n in dropped.items():
        if n and say:
            first = str(names[r][~np.isin(names[r], common)][0])
            print(f"{source}: {n} cell(s) only in {r} (e.g. {first!r}) dropped; {len(common)} paired cells kept",
                  file=sys.stderr)
    counts = {}
    for r in roles:
        pos = pd.Index(names[r]).get_indexer(common)
        counts[r] = sp.csr_matrix(mats[r][pos])
    obs = (joint_obs if joint_obs is not None else obs_frames[roles[0]]).reindex(common)
    for r in roles:
        empty = np.asarray(counts[r].sum(axis=1)).ravel() == 0
        if empty.any() and r != "protein":
            i = int(np.argmax(empty))
            raise BiofmError(f"{source}: cell {common[i]!r} has no {WORD[r]} counts in {r} ({int(empty.sum())} such "
                             "cells); filter them out before use")
    if "atac" in roles:
        from biofm.atac.peaks import parse_peak_name, peak_order

        coords = []
        for i, name in enumerate(feats["atac"].tolist()):
            try:
                coords.append(parse_peak_name(name))
            except BiofmError as exc:
                raise BiofmError(f"{source}: atac var row {i}: {exc}") from None
        chrom, start, end = (np.array(x) for x in zip(*coords, strict=True))
        order = peak_order(chrom, start, end)
        counts["atac"] = sp.csr_matrix(counts["atac"][:, order])
        feats["atac"] = feats["atac"][order]
    for m in counts.values():
        m.sort_indices()
    return Paired(source, counts, feats, np.asarray(common, dtype=str), obs, dropped)


# ------------------------------------------------------------------------------------------ values


def rna_values(counts: sp.csr_matrix) -> sp.csr_matrix:
    """log1p(count / the cell's total over every gene * 1e4), CSR float32 (scanpy's normalise + log1p)."""
    from biofm.cells.baselines import log_normalise

    return log_normalise(counts)


def protein_values(counts: sp.csr_matrix) -> np.ndarray:
    """CLR per cell: log1p(count) - mean over the cell's proteins of log1p(count); dense float32 [n, P]."""
    x = np.log1p(np.asarray(counts.toarray(), dtype=np.float64))
    return (x - x.mean(axis=1, keepdims=True)).astype(np.float32)


def binary(counts: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    out.data[:] = 1.0  # stored entries are counts > 0
    return out


def values(role: str, counts: sp.csr_matrix) -> sp.csr_matrix | np.ndarray:
    return {"rna": rna_values, "protein": protein_values, "atac": binary}[role](counts)


# ------------------------------------------------------------------------------------------ features


@dataclass
class RoleFeatures:
    """One role's chosen features (columns of the file, in order) and its value classes."""

    role: str
    columns: np.ndarray  # int64 indices into the file's features
    names: np.ndarray  # str
    edges: np.ndarray  # float64 class boundaries (empty for atac)
    centres: np.ndarray  # float64 [n_classes] mean training value per class (atac: [0, 1])

    @property
    def n(self) -> int:
        return len(self.columns)

    def classes(self, vals: sp.csr_matrix | np.ndarray) -> sp.csr_matrix | np.ndarray:
        """Value classes of a values matrix over these features: RNA CSR of classes 1.. at detected genes (0
        implicit), protein dense [n, P] int, atac the binary CSR itself."""
        if self.role == "protein":
            return np.searchsorted(self.edges, np.asarray(vals), side="right").astype(np.int64)
        if self.role == "rna":
            out = sp.csr_matrix(vals, copy=True)
            out.data = (1 + np.searchsorted(self.edges, out.data, side="right")).astype(np.float32)
            return out
        return vals

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "columns": self.columns.tolist(), "names": self.names.tolist(),
                "edges": self.edges.tolist(), "centres": self.centres.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RoleFeatures:
        return cls(d["role"], np.asarray(d["columns"], dtype=np.int64), np.asarray(d["names"], dtype=str),
                   np.asarray(d["edges"], dtype=np.float64), np.asarray(d["centres"], dtype=np.float64))


def fit_features(role: str, vals: sp.csr_matrix | np.ndarray, names: np.ndarray, train: np.ndarray, n_bins: int,
                 max_genes: int, max_peaks: int) -> RoleFeatures:
    """Choose features and value classes from the training cells' values (module docstring)."""
    if role == "rna":
        from biofm.cells.baselines import highly_variable_genes

        x = sp.csr_matrix(vals)[train]
        cols = np.sort(highly_variable_genes(x, max_genes))[:max_genes] if x.shape[1] > max_genes \
            else np.arange(x.shape[1])
        nz = x[:, cols].data.astype(np.float64)
        if not len(nz):
            raise BiofmError("rna: no detected gene among the training cells' chosen genes")
        edges = np.quantile(nz, np.linspace(0, 1, n_bins)[1:-1])  # n_bins - 2 edges -> classes 1..n_bins-1
        cls = 1 + np.searchsorted(edges, nz, side="right")
        centres = np.zeros(n_bins)
        for c in range(1, n_bins):
            centres[c] = nz[cls == c].mean() if (cls == c).any() else (edges[min(c - 1, len(edges) - 1)])
        return RoleFeatures(role, cols.astype(np.int64), names[cols], edges, centres)
    if role == "atac":
        x = sp.csr_matrix(vals)[train]
        rate = np.bincount(x.indices, minlength=x.shape[1])
        cols = np.sort(np.argsort(-rate, kind="stable")[:max_peaks])  # genome order kept
        return RoleFeatures(role, cols.astype(np.int64), names[cols], np.zeros(0), np.array([0.0, 1.0]))
    x = np.asarray(vals)[train].ravel().astype(np.float64)
    edges = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])  # n_bins - 1 edges -> classes 0..n_bins-1
    cls = np.searchsorted(edges, x, side="right")
    centres = np.array([x[cls == c].mean() if (cls == c).any() else np.nan for c in range(n_bins)])
    centres = np.where(np.isfinite(centres), centres, np.nanmean(centres))
    cols = np.arange(np.asarray(vals).shape[1])
    return RoleFeatures(role, cols.astype(np.int64), names[cols], edges, centres)


__all__ = ["Paired", "RoleFeatures", "binary", "fit_features", "protein_values", "read_paired", "rna_values",
           "values"]
