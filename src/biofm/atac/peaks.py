"""Read a cell x peak count matrix from an `.h5ad`, read-only, checked, with its peaks in genome order.

Binarisation policy: a peak is ACCESSIBLE in a cell when its count is > 0. Fragment counts per peak
in scATAC-seq are 0, 1 or 2 for almost every entry (a diploid cell has two copies of each locus), so
the count beyond "seen" says little; Signac, ArchR and SnapATAC2 binarise the same way. The counts
themselves are kept (`PeakMatrix.counts`) because TF-IDF (the LSI baseline) weights by them;
`PeakMatrix.binary()` is the binarised matrix the models and the spectral baseline see.

What `read_peaks` does, in order:
- reads the matrix (X, a layer, or `.raw.X` with `layer="raw"`) through `biofm.cells.h5ad.read_counts`:
  the same read-only opening, layouts and count checks as single-cell RNA (finite, non-negative; the
  messages name the file, the cell and the peak). Non-integer values are refused here by name as
  well: fractional "counts" are normalised data, and binarising them would hide that.
- takes the peak names from the var names, or the var column `peak_column`, and parses each as
  `chr_start_end` (e.g. `chr5_180470204_180470704`, split from the right) or `chr:start-end` (the
  only form whose chromosome may contain `_`, e.g. `chrUn_gl000220:100-600`). Coordinates are
  0-based half-open as in BED; start must be < end. An unparseable name is an error naming its var
  row; so is a peak that occurs twice (same chromosome, start and end, whatever its name's form).
- refuses cells without any accessible peak (they carry nothing to embed and make TF-IDF divide by
  zero), naming the first and how many, and an empty matrix.
- sorts the peaks by genomic position: natural chromosome order (1..22 numerically, X, Y, M/MT, then
  any other chromosome alphabetically; a `chr` prefix is ignored for the order), then start, then
  end. Files often store peaks in another order (the Granja 2019 BMMC files do); positional models and
  the patch CNN need neighbours to be neighbours. `order` maps back: sorted = original[:, order].
The file is never written.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from biofm.cells.h5ad import read_counts
from biofm.errors import BiofmError

__all__ = ["PeakMatrix", "chrom_sort_key", "is_peak_h5ad", "parse_peak_name", "peak_order", "read_peaks"]

_UNDERSCORE = re.compile(r"^(?P<chrom>.+)_(?P<start>\d+)_(?P<end>\d+)$")
_COLON = re.compile(r"^(?P<chrom>[^:]+):(?P<start>\d+)-(?P<end>\d+)$")
_RECOGNISE_PEAKS = 200  # var names looked at to decide whether a file is a peak matrix


@dataclass
class PeakMatrix:
    """Counts of one file, cells x peaks (CSR, integer), peaks sorted by genomic position."""

    path: Path
    counts: sp.csr_matrix  # [n_cells, n_peaks] int32, sorted indices, no explicit zeros
    chrom: np.ndarray  # str [n_peaks]
    start: np.ndarray  # int64 [n_peaks], 0-based
    end: np.ndarray  # int64 [n_peaks], exclusive
    peak_names: np.ndarray  # str [n_peaks]: the file's names, in sorted order
    order: np.ndarray  # int64 [n_peaks]: sorted = original[:, order]
    cell_names: np.ndarray  # str [n_cells]
    obs: pd.DataFrame

    @property
    def n_cells(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_peaks(self) -> int:
        return int(self.counts.shape[1])

    def binary(self) -> sp.csr_matrix:
        """Accessibility: 1.0 where the count is > 0 (the module's binarisation policy), float32 CSR."""
        out = self.counts.copy().astype(np.float32)
        out.data[:] = 1.0  # no explicit zeros are stored, so every stored entry is a count > 0
        return out


# ------------------------------------------------------------------------------------------ names


def parse_peak_name(name: str) -> tuple[str, int, int]:
    """`chr5_180470204_180470704` or `chr5:180470204-180470704` -> ("chr5", 180470204, 180470704).

    The `_` form is split from the right (the last two fields are start and end); BiofmError naming the
    name for anything else, or for start >= end.
    """
    text = str(name).strip()
    m = _COLON.match(text) if ":" in text else _UNDERSCORE.match(text)
    if m is None:
        raise BiofmError(f"peak name {text!r} is not a genomic interval; expected chr_start_end or chr:start-end")
    start, end = int(m["start"]), int(m["end"])
    if start >= end:
        raise BiofmError(f"peak {text!r} has start {start} >= end {end}")
    return m["chrom"], start, end


def chrom_sort_key(chrom: str) -> tuple[int, int, str]:
    """Natural chromosome order: 1..22 (any number, numerically), X, Y, M/MT, then others by name."""
    core = chrom[3:] if chrom[:3].lower() == "chr" else chrom
    if core.isdigit():
        return 0, int(core), chrom
    rank = {"X": 1, "Y": 2, "M": 3, "MT": 3}.get(core.upper())
    return (rank, 0, chrom) if rank is not None else (4, 0, chrom)


def peak_order(chrom: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The permutation that sorts peaks by (chromosome in natural order, start, end); stable."""
    uniques, codes = np.unique(np.asarray(chrom, dtype=str), return_inverse=True)
    rank = np.empty(len(uniques), dtype=np.int64)
    by_key = sorted(range(len(uniques)), key=lambda i: chrom_sort_key(str(uniques[i])))
    rank[by_key] = np.arange(len(uniques))  # rank[code] = the chromosome's place in natural order
    return np.lexsort((np.asarray(end), np.asarray(start), rank[codes])).astype(np.int64)


def _parse_all(p: Path, names: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of every peak; the first bad name is an error naming its var row."""
    chrom = np.empty(len(names), dtype=object)
    start = np.empty(len(names), dtype=np.int64)
    end = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names.tolist()):
        try:
            chrom[i], start[i], end[i] = parse_peak_name(name)
        except BiofmError as exc:
            raise BiofmError(f"{p}: var row {i} ({what}): {exc}") from None
    return chrom.astype(str), start, end


def _var_names(p: Path, layer: str | None, peak_column: str | None) -> np.ndarray:
    """The file's peak names exactly as stored (before `read_counts` drops empty and merges repeated ones),
    for naming the offending var row. anndata in backed mode reads obs/var only, read-only."""
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Variable names are not unique": the very thing being reported
        adata = ad.read_h5ad(p, backed="r")
    try:
        var = adata.raw.var if layer == "raw" and adata.raw is not None and "raw" not in adata.layers else adata.var
        values = pd.Series(var.index if peak_column is None else var[peak_column].to_numpy(), dtype=object)
    finally:
        adata.file.close()
    return values.where(values.notna(), "").astype(str).str.strip().to_numpy(dtype=str)


def _as_peaks(message: str) -> str:
    """`read_counts` words its messages for genes; the checks are the same for peaks."""
    message = message.replace("gene_column", "peak_column").replace("gene ids", "peak names")
    return re.sub(r"\bgene(s?)\b", r"peak\1", message)


# ------------------------------------------------------------------------------------------ reading


def read_peaks(path: str | Path, layer: str | None = None, peak_column: str | None = None) -> PeakMatrix:
    """The checked, position-sorted counts of an `.h5ad` (see the module docstring); BiofmError naming the
    file and the record when it cannot be used."""
    p = Path(path)
    what = "var names" if peak_column is None else f"var column {peak_column!r}"
    try:
        m = read_counts(p, layer, peak_column, allow_non_counts=True)  # non-integers are refused below, by name
    except BiofmError as exc:
        raise BiofmError(_as_peaks(str(exc))) from None
    if m.n_unnamed or m.n_duplicated:  # read_counts dropped or merged columns: name the row from the file
        raw = _var_names(p, layer, peak_column)
        if m.n_unnamed:
            i = int(np.flatnonzero(raw == "")[0])
            raise BiofmError(f"{p}: var row {i} ({what}): empty peak name ({m.n_unnamed} peak(s) have none)")
        first = pd.Series(raw).duplicated().to_numpy()
        i = int(np.argmax(first))
        j = int(np.flatnonzero(raw == raw[i])[0])
        raise BiofmError(f"{p}: duplicate peak {str(raw[i])!r} at var rows {j} and {i} "
                         f"({m.n_duplicated} repeated name(s)); each peak must occur once")
    names = np.asarray(m.genes, dtype=str)
    chrom, start, end = _parse_all(p, names, what)

    # the same interval under two names (e.g. chr1_10_20 and chr1:10-20) is one peak counted twice
    coords = pd.DataFrame({"c": chrom, "s": start, "e": end})
    dup = coords.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        j = int(np.flatnonzero((chrom == chrom[i]) & (start == start[i]) & (end == end[i]))[0])
        raise BiofmError(f"{p}: duplicate peak {chrom[i]}:{start[i]}-{end[i]} at var rows {j} ({str(names[j])!r}) and "
                         f"{i} ({str(names[i])!r}); each peak must occur once")

    x = m.X  # [n_cells, n_peaks] float32 CSR, checked finite and non-negative
    cell_names = np.asarray(m.obs.index, dtype=str)
    frac = x.data != np.floor(x.data)
    if frac.any():
        k = int(np.argmax(frac))
        row = int(np.searchsorted(x.indptr, k, side="right") - 1)
        where = f"cell {str(cell_names[row])!r}, peak {str(names[x.indices[k]])!r}"
        raise BiofmError(f"{p}: {'X' if layer is None else f'layer {layer!r}'} holds non-integer values (e.g. "
                         f"{float(x.data[k]):.4g} at {where}): biofm needs raw fragment counts, not normalised values")
    empty = np.diff(x.indptr) == 0
    if empty.any():
        first = int(np.argmax(empty))
        raise BiofmError(f"{p}: cell {str(cell_names[first])!r} (row {first}) has no accessible peak, nor do "
                         f"{int(empty.sum()) - 1} other cell(s); filter cells without counts out before use")

    order = peak_order(chrom, start, end)
    counts = x[:, order].astype(np.int32).tocsr()  # [n_cells, n_peaks] columns in genome order
    counts.sort_indices()
    return PeakMatrix(path=p, counts=counts, chrom=chrom[order], start=start[order], end=end[order],
                      peak_names=names[order], order=order, cell_names=cell_names, obs=m.obs)


def is_peak_h5ad(path: str | Path, peak_column: str | None = None) -> bool:
    """Whether an existing `.h5ad` holds a peak matrix: its first var names all parse as genomic intervals.

    Cheap (reads part of the var table, not X) and never raises: it decides which modality reads a file.
    """
    import h5py
    from anndata.io import read_elem

    p = Path(path)
    try:
        with h5py.File(p, "r") as f:
            var = f["var"]
            key = peak_column if peak_column is not None else var.attrs["_index"]
            elem = var[key]
            head = elem[:_RECOGNISE_PEAKS] if isinstance(elem, h5py.Dataset) else read_elem(elem)[:_RECOGNISE_PEAKS]
    except Exception:  # not HDF5, legacy layout, no var: not recognisable as peaks
        return False
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(head).tolist()]
    if not names:
        return False
    try:
        for n in names:
            parse_peak_name(n)
    except BiofmError:
        return False
    return True
