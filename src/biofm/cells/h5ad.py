"""Read raw counts from an AnnData `.h5ad` file, read-only, with one-line errors for what is wrong.

What `read_counts` does, in order:
- opens the file with h5py in read-only mode ("r") and reads only obs, the var table of the chosen
  matrix and the matrix itself (X, a layer, or `.raw.X` with `layer="raw"`); a file in an old layout
  that this cannot read is read with `anndata.read_h5ad` instead, also read-only. The file is never
  written.
- checks that the matrix holds raw counts: finite, non-negative and integer. Negative values are
  always an error (scaled data cannot be read as expression). Non-integers (log-normalised data) are
  an error unless `allow_non_counts=True`. The message names a layer (or `.raw`) of the same file
  that does hold integers, when there is one.
- gene identifiers come from the var names, or the var column `gene_column` (e.g. Ensembl ids in
  `gene_ids`); Ensembl ids lose their version suffix (`ENSG00000141510.17` -> `ENSG00000141510`);
  genes with an empty name are dropped.
- duplicated gene identifiers (e.g. one symbol for two Ensembl genes) are merged by SUMMING their
  columns: a cell's count for the symbol is the total over its copies. `n_duplicated` is the number
  of columns folded into an earlier one.
- returns CSR float32 (dense and CSC input are converted; explicit zeros are removed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from biofm.errors import BiofmError

CELL_DATA = Path(__file__).resolve().parent.parent / "cell_data"
SHIPPED = {"pbmc700": "pbmc68k_700cells_counts.h5ad", "mouse10k": "mouse_10k_raw_counts.h5ad"}
_ENSEMBL_VERSION = r"^(ENS[A-Z]*G\d+)\.\d+$"
_SAMPLE_VALUES = 1 << 18  # values looked at when checking whether another layer holds counts


def shipped_h5ad(name: str) -> Path:
    """Path of a data set shipped with biofm: "pbmc700" (700 PBMCs, 765 genes, obs.bulk_labels) or
    "mouse10k" (10,000 unlabelled mouse cells, 1,000 genes, Ensembl ids in var.gene_ids)."""
    if name not in SHIPPED:
        raise BiofmError(f"no shipped cell data set {name!r}; known: {', '.join(SHIPPED)}")
    return CELL_DATA / SHIPPED[name]


@dataclass
class CellMatrix:
    """Raw counts of one file: cells x genes, CSR float32, with merged, version-free gene ids."""

    X: sp.csr_matrix
    genes: np.ndarray  # str, unique, one per column
    obs: pd.DataFrame
    n_duplicated: int  # columns merged into an earlier column with the same gene id
    source: str
    layer: str | None = None
    is_counts: bool = True  # False only when non-integers were accepted with allow_non_counts
    n_unnamed: int = 0  # columns dropped because their gene id was empty
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_genes(self) -> int:
        return int(self.X.shape[1])

    def totals(self) -> np.ndarray:
        """Each cell's total count over all of its genes (float64)."""
        return np.asarray(self.X.sum(axis=1, dtype=np.float64)).ravel()

    def rows(self, idx: np.ndarray) -> CellMatrix:
        """The same matrix restricted to some cells (in the given order)."""
        idx = np.asarray(idx, dtype=np.int64)
        return CellMatrix(self.X[idx], self.genes, self.obs.iloc[idx], self.n_duplicated, self.source,
                          self.layer, self.is_counts, self.n_unnamed, dict(self.meta))


# ------------------------------------------------------------------------------------------ reading


def read_counts(path: str | Path, layer: str | None = None, gene_column: str | None = None,
                allow_non_counts: bool = False) -> CellMatrix:
    """Raw counts of an `.h5ad` file (see the module docstring); BiofmError naming the file if unusable."""
    p = Path(path)
    _check_file(p)
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if not ("obs" in f and "var" in f and ("X" in f or "layers" in f)):
                raise BiofmError(f"{p}: not an AnnData .h5ad file (an HDF5 file without obs/var/X)")
            legacy = not isinstance(f["obs"], h5py.Group)  # the pre-0.7 layout (obs a compound dataset)
            store: _Store = _AnnStore(p) if legacy else _H5Store(f)
            try:
                matrix, var, obs = store.load(p, layer)
            except BiofmError:
                raise
            except Exception:  # a layout that read_elem does not know: let anndata read it
                if legacy:
                    raise
                store = _AnnStore(p)
                matrix, var, obs = store.load(p, layer)
            x, is_counts = _check_values(p, store, layer, matrix, obs, var, gene_column, allow_non_counts)
    except OSError as exc:
        raise BiofmError(f"{p}: unreadable h5ad file ({str(exc).splitlines()[0]})") from None
    genes_raw = _gene_ids(p, var, gene_column, layer)
    if len(genes_raw) != x.shape[1]:
        raise BiofmError(f"{p}: the matrix has {x.shape[1]} genes but var has {len(genes_raw)} rows")
    named = genes_raw != ""
    n_unnamed = int((~named).sum())
    if n_unnamed:
        x, genes_raw = x[:, np.flatnonzero(named)].tocsr(), genes_raw[named]
    codes, uniques = pd.factorize(genes_raw)
    n_dup = len(genes_raw) - len(uniques)
    if n_dup:
        merge = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
                              shape=(len(codes), len(uniques)))
        x = (x @ merge).tocsr()
    x.sort_indices()
    genes = np.asarray(uniques, dtype=str)
    obs = obs if len(obs) == x.shape[0] else pd.DataFrame(index=[str(i) for i in range(x.shape[0])])
    return CellMatrix(X=x, genes=genes, obs=obs, n_duplicated=int(n_dup), source=str(p), layer=layer,
                      is_counts=is_counts, n_unnamed=n_unnamed)


def _check_file(p: Path) -> None:
    import h5py

    if not p.exists():
        raise BiofmError(f"{p}: file not found")
    if p.is_dir():
        raise BiofmError(f"{p}: is a folder (a .zarr store?); expected an .h5ad file")
    if not h5py.is_hdf5(p):
        raise BiofmError(f"{p}: not an HDF5 file; expected an AnnData .h5ad (convert other formats with anndata)")


class _Store:
    """One open h5ad: its obs, the available matrices and their var tables."""

    def layers(self) -> list[str]:
        raise NotImplementedError

    def has_raw(self) -> bool:
        raise NotImplementedError

    def has_x(self) -> bool:
        raise NotImplementedError

    def matrix(self, layer: str | None) -> Any:
        raise NotImplementedError

    def var(self, layer: str | None) -> pd.DataFrame:
        raise NotImplementedError

    def obs(self) -> pd.DataFrame:
        raise NotImplementedError

    def sample(self, layer: str | None) -> np.ndarray:
        """Some stored values of a matrix (for a cheap "does it hold counts" check)."""
        x = self.matrix(layer)
        data = x.data if sp.issparse(x) else np.asarray(x).ravel()
        return np.asarray(data[:_SAMPLE_VALUES])

    def load(self, p: Path, layer: str | None) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
        is_layer = layer is not None and layer in self.layers()
        if layer is not None and not is_layer and not (layer == "raw" and self.has_raw()):
            names = [repr(n) for n in self.layers()] + (["'raw' (.raw.X)"] if self.has_raw() else [])
            have = f"layers: {', '.join(names)}" if names else "the file has no layers and no .raw"
            raise BiofmError(f"{p}: no layer {layer!r} ({have}); leave data.layer unset to use X")
        if layer is None and not self.has_x():
            names = ", ".join(self.layers()) or "none"
            raise BiofmError(f"{p}: X is empty; name the layer with the raw counts with data.layer (layers: {names})")
        return self.matrix(layer), self.var(layer), self.obs()


def _is_raw(store: _Store, layer: str | None) -> bool:
    return layer == "raw" and "raw" not in store.layers()


def _frame(x: Any) -> pd.DataFrame:
    if not isinstance(x, pd.DataFrame):  # e.g. the pre-0.7 layout (a compound dataset): anndata reads it
        raise TypeError("not a dataframe")
    return x


class _H5Store(_Store):
    def __init__(self, f: Any):
        self.f = f

    def layers(self) -> list[str]:
        return sorted(self.f["layers"].keys()) if "layers" in self.f else []

    def has_raw(self) -> bool:
        return "raw" in self.f and "X" in self.f["raw"]

    def has_x(self) -> bool:
        import h5py

        x = self.f.get("X")
        return x is not None and (isinstance(x, h5py.Group) or x.shape != ())

    def _elem(self, layer: str | None) -> Any:
        if layer is None:
            return self.f["X"]
        if _is_raw(self, layer):
            return self.f["raw"]["X"]
        return self.f["layers"][layer]

    def matrix(self, layer: str | None) -> Any:
        from anndata.io import read_elem

        return read_elem(self._elem(layer))

    def var(self, layer: str | None) -> pd.DataFrame:
        from anndata.io import read_elem

        return _frame(read_elem(self.f["raw"]["var"] if _is_raw(self, layer) else self.f["var"]))

    def obs(self) -> pd.DataFrame:
        from anndata.io import read_elem

        return _frame(read_elem(self.f["obs"]))

    def sample(self, layer: str | None) -> np.ndarray:
        import h5py

        elem = self._elem(layer)
        if isinstance(elem, h5py.Group):
            return np.asarray(elem["data"][:_SAMPLE_VALUES])
        if elem.ndim != 2:
            return np.asarray(elem[()]).ravel()[:_SAMPLE_VALUES]
        rows = max(1, _SAMPLE_VALUES // max(1, elem.shape[1]))
        return np.asarray(elem[:rows]).ravel()


class _AnnStore(_Store):
    def __init__(self, p: Path):
        import anndata as ad

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.adata = ad.read_h5ad(p)
            except Exception as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise BiofmError(f"{p}: not a readable AnnData .h5ad file ({msg})") from None

    def layers(self) -> list[str]:
        return sorted(self.adata.layers.keys())

    def has_raw(self) -> bool:
        return self.adata.raw is not None

    def has_x(self) -> bool:
        return self.adata.X is not None

    def matrix(self, layer: str | None) -> Any:
        if layer is None:
            return self.adata.X
        if _is_raw(self, layer):
            return self.adata.raw.X
        return self.adata.layers[layer]

    def var(self, layer: str | None) -> pd.DataFrame:
        return self.adata.raw.var if _is_raw(self, layer) else self.adata.var

    def obs(self) -> pd.DataFrame:
        return self.adata.obs


# ------------------------------------------------------------------------------------------ checks


def _to_csr(x: Any) -> sp.csr_matrix:
    if sp.issparse(x):
        out = sp.csr_matrix(x)
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-d matrix, got shape {arr.shape}")
        out = sp.csr_matrix(arr)
    if out.dtype == np.bool_:
        out = out.astype(np.int64)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def _what(store: _Store, layer: str | None) -> str:
    if layer is None:
        return "X"
    return ".raw.X" if _is_raw(store, layer) else f"layer {layer!r}"


def _looks_like_counts(values: np.ndarray) -> bool:
    values = np.asarray(values)
    if values.size == 0 or values.dtype.kind not in "biuf":
        return False
    if values.dtype.kind in "biu":
        return bool((values >= 0).all())
    finite = np.isfinite(values).all()
    return bool(finite and (values >= 0).all() and (values == np.round(values)).all() and (values > 0).any())


def _integer_alternative(store: _Store, layer: str | None) -> str:
    """How to point biofm at a matrix of the same file that holds integer counts, or why there is none."""
    candidates: list[str | None] = [n for n in store.layers() if n != layer]
    if store.has_raw() and not _is_raw(store, layer) and "raw" not in store.layers():
        candidates.append("raw")
    if layer is not None and store.has_x():
        candidates.append(None)
    for cand in candidates:
        try:
            ok = _looks_like_counts(store.sample(cand))
        except Exception:
            ok = False
        if ok:
            if cand is None:
                return "X holds integers — leave data.layer unset"
            if _is_raw(store, cand):
                return ".raw.X holds integers — pass data.layer=raw"
            return f"layer {cand!r} holds integers — pass data.layer={cand}"
    return "no matrix in this file (X, layers, .raw) holds integer counts; re-export the raw counts"


def _check_values(p: Path, store: _Store, layer: str | None, matrix: Any, obs: pd.DataFrame, var: pd.DataFrame,
                  gene_column: str | None, allow_non_counts: bool) -> tuple[sp.csr_matrix, bool]:
    what = _what(store, layer)
    try:
        x = _to_csr(matrix)
    except (TypeError, ValueError) as exc:
        raise BiofmError(f"{p}: {what} is not a numeric cells x genes matrix ({exc})") from None
    if x.dtype.kind not in "biuf":
        raise BiofmError(f"{p}: {what} holds {x.dtype} values; expected numeric raw counts")
    data = x.data

    def at(k: int) -> str:
        row = int(np.searchsorted(x.indptr, k, side="right") - 1)
        col = int(x.indices[k])
        cell = str(obs.index[row]) if row < len(obs) else str(row)
        try:
            gene = str(_gene_ids(p, var, gene_column, layer)[col])
        except BiofmError:
            gene = str(col)
        return f"e.g. {float(data[k]):.4g} at cell {cell!r}, gene {gene!r}"

    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            raise BiofmError(f"{p}: {what} holds NaN or infinite values ({at(int(np.argmax(bad)))}); "
                             f"biofm needs raw counts; {_integer_alternative(store, layer)}")
    neg = data < 0
    if neg.any():
        raise BiofmError(f"{p}: {what} holds negative values ({at(int(np.argmax(neg)))}), so it is scaled, not "
                         f"counts: biofm needs raw counts; {_integer_alternative(store, layer)}")
    is_counts = True
    if data.dtype.kind == "f":
        frac = data != np.floor(data)
        if frac.any():
            if not allow_non_counts:
                raise BiofmError(f"{p}: {what} holds non-integer values ({at(int(np.argmax(frac)))}): biofm needs "
                                 f"raw counts; {_integer_alternative(store, layer)} "
                                 f"(or data.allow_non_counts=true to accept these values)")
            is_counts = False
    return x.astype(np.float32), is_counts


def _gene_ids(p: Path, var: pd.DataFrame, gene_column: str | None, layer: str | None) -> np.ndarray:
    if gene_column is None:
        values = pd.Series(var.index, dtype=object)
    else:
        if gene_column not in var.columns:
            cols = ", ".join(repr(str(c)) for c in var.columns) or "none"
            raise BiofmError(f"{p}: no var column {gene_column!r} (var columns: {cols}); "
                             f"leave data.gene_column unset to use the var names")
        values = pd.Series(var[gene_column].to_numpy(), dtype=object)
    text = values.where(values.notna(), "").astype(str).str.strip()
    text = text.str.replace(_ENSEMBL_VERSION, r"\1", regex=True)
    return text.to_numpy(dtype=str)
