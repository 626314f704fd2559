"""Read raw counts from an AnnData `.h5ad` file, read-only, with one-line errors for what is wrong.

`read_counts` reads a whole file; `CountReader` reads it a chunk of cells at a time (what a streamed
dataset build uses, so corpora larger than memory can be tokenised). Both do, in order:
- open the file with h5py in read-only mode ("r") and read the var table of the chosen matrix (X, a
  layer, or `.raw.X` with `layer="raw"`), then the matrix rows straight from the HDF5 datasets; a file
  in an old layout that h5py cannot walk is read whole with `anndata.read_h5ad` instead, also
  read-only. The file is never written.
- check that the matrix holds raw counts: finite, non-negative and integer. Negative values are
  always an error (scaled data cannot be read as expression). Non-integers (log-normalised data) are
  an error unless `allow_non_counts=True`. The message names a layer (or `.raw`) of the same file
  that does hold integers, when there is one. A chunked read checks each chunk as it comes, so of
  several kinds of bad value the first chunk holding any decides the message.
- gene identifiers come from the var names, or the var column `gene_column` (e.g. Ensembl ids in
  `gene_ids`); Ensembl ids lose their version suffix (`ENSG00000141510.17` -> `ENSG00000141510`);
  genes with an empty name are dropped.
- a matrix with no cells, no genes, or no gene with a name is an error, each with its own message.
- duplicated gene identifiers (e.g. one symbol for two Ensembl genes) are merged by SUMMING their
  columns: a cell's count for the symbol is the total over its copies. `n_duplicated` is the number
  of columns folded into an earlier one.
- return CSR float32 (dense and CSC input are converted; explicit zeros are removed).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from biofm.errors import BiofmError

_ENSEMBL_VERSION = r"^(ENS[A-Z]*G\d+)\.\d+$"
_SAMPLE_VALUES = 1 << 18  # values looked at when checking whether another layer holds counts
_DENSE_VALUES = 1 << 22  # values per read of a dense matrix: a chunk of a wide dense matrix stays small
_SCAN_VALUES = 1 << 22  # stored entries per read while scanning a CSC matrix for one chunk's cells


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
                allow_non_counts: bool = False, adata: Any = None) -> CellMatrix:
    """Raw counts of an `.h5ad` file, or of an in-memory AnnData `adata` (`path` then names it in
    messages), see the module docstring; BiofmError naming the file if unusable.

    The whole matrix is one chunk of a `CountReader`, so it passes exactly the checks a streamed build
    applies chunk by chunk.
    """
    with CountReader(path, layer, gene_column, allow_non_counts, adata=adata) as reader:
        x = reader.read(0, reader.n_cells)
        obs = reader.obs()
        is_counts = reader.is_counts
        genes, n_dup, n_unnamed = reader.genes, reader.n_duplicated, reader.n_unnamed
    obs = obs if len(obs) == x.shape[0] else pd.DataFrame(index=[str(i) for i in range(x.shape[0])])
    return CellMatrix(X=x, genes=genes, obs=obs, n_duplicated=n_dup, source=str(Path(path)), layer=layer,
                      is_counts=is_counts, n_unnamed=n_unnamed)


class CountReader:
    """One `.h5ad` opened read-only, whose raw counts are read a range of cells at a time.

    Only the var table (one row per gene) is read when opening; `read(start, stop)` reads those rows of
    the matrix from disk (CSR: the rows' slice of data/indices; dense: blocks of rows; CSC: a scan of
    the stored entries, so each chunk of a CSC matrix costs one read of the whole matrix), checks them
    as `read_counts` does (the one-line errors name the file, the matrix and the first bad cell) and
    returns them as CSR float32 with the merged gene columns of `genes`. `is_counts` turns False once a
    read has seen non-integers (only possible with `allow_non_counts`). Files that h5py cannot walk (the
    pre-0.7 layout, unknown encodings) are read whole by anndata, as before, and then sliced.
    """

    def __init__(self, path: str | Path, layer: str | None = None, gene_column: str | None = None,
                 allow_non_counts: bool = False, adata: Any = None):
        """`adata`: an AnnData already in memory (a notebook's), read with the same checks; `path` then
        only names it in messages."""
        import h5py

        p = Path(path)
        self.path, self.layer, self.allow_non_counts = p, layer, allow_non_counts
        self.is_counts = True
        self._file: Any = None
        if adata is not None:
            self._open(gene_column, _AnnStore(p, adata))
            return
        _check_file(p)
        try:
            self._file = h5py.File(p, "r")
        except OSError as exc:
            raise BiofmError(f"{p}: unreadable h5ad file ({str(exc).splitlines()[0]})") from None
        try:
            self._open(gene_column)
        except BaseException:
            self.close()
            raise

    def _open(self, gene_column: str | None, in_memory: _AnnStore | None = None) -> None:
        import h5py

        p, f, layer = self.path, self._file, self.layer
        if in_memory is not None:
            store: _Store = in_memory
            try:
                rows, var = store.load(p, layer)
            except _NotAMatrix as exc:
                raise BiofmError(f"{p}: {_what(store, layer)} is not a numeric cells x genes matrix ({exc})") from None
            self._set_matrix(store, rows, var, gene_column)
            return
        try:
            if not ("obs" in f and "var" in f and ("X" in f or "layers" in f)):
                raise BiofmError(f"{p}: not an AnnData .h5ad file (an HDF5 file without obs/var/X)")
            legacy = not isinstance(f["obs"], h5py.Group)  # the pre-0.7 layout (obs a compound dataset)
            store: _Store = _AnnStore(p) if legacy else _H5Store(f)
            try:
                rows, var = store.load(p, layer)
            except (BiofmError, _NotAMatrix):
                raise
            except Exception:  # a layout that h5py / read_elem does not know: let anndata read it
                if legacy:
                    raise
                store = _AnnStore(p)
                rows, var = store.load(p, layer)
        except _NotAMatrix as exc:
            raise BiofmError(f"{p}: {_what(store, layer)} is not a numeric cells x genes matrix ({exc})") from None
        except OSError as exc:
            raise BiofmError(f"{p}: unreadable h5ad file ({str(exc).splitlines()[0]})") from None
        self._set_matrix(store, rows, var, gene_column)

    def _set_matrix(self, store: _Store, rows: _Rows, var: pd.DataFrame, gene_column: str | None) -> None:
        p, layer = self.path, self.layer
        self._store, self._rows, self._what = store, rows, _what(store, layer)
        self.n_cells: int = int(rows.shape[0])
        self._raw_genes = _gene_ids(p, var, gene_column, layer)
        if len(self._raw_genes) != rows.shape[1]:
            raise BiofmError(f"{p}: the matrix has {rows.shape[1]} genes but var has {len(self._raw_genes)} rows")
        _check_not_empty(p, self._what, rows.shape, self._raw_genes, var, gene_column)
        named = self._raw_genes != ""
        self.n_unnamed = int((~named).sum())
        self._named: np.ndarray | None = np.flatnonzero(named) if self.n_unnamed else None
        codes, uniques = pd.factorize(self._raw_genes[named])
        self.n_duplicated = int(len(codes) - len(uniques))
        self._merge: sp.csr_matrix | None = None
        if self.n_duplicated:  # summing columns by a product keeps read_counts' order of additions
            self._merge = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
                                        shape=(len(codes), len(uniques)))
        self.genes: np.ndarray = np.asarray(uniques, dtype=str)

    # ------------------------------------------------------------------ reading
    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        """Cells start..stop-1, checked, as CSR float32 over `genes` (sorted indices, no explicit zeros)."""
        start, stop = max(0, int(start)), min(self.n_cells, int(stop))
        stop = max(start, stop)
        try:
            try:
                raw = self._rows.read(start, stop)
            except (TypeError, ValueError) as exc:
                raise BiofmError(f"{self.path}: {self._what} is not a numeric cells x genes matrix ({exc})") from None
            x = self._checked(raw, start)
        except OSError as exc:
            raise BiofmError(f"{self.path}: unreadable h5ad file ({str(exc).splitlines()[0]})") from None
        if self._named is not None:
            x = x[:, self._named].tocsr()
        if self._merge is not None:
            x = (x @ self._merge).tocsr()
        x.sort_indices()
        return x

    def chunks(self, chunk_cells: int) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first cell, `read` of the next `chunk_cells` cells) over the whole file, in order."""
        step = max(1, int(chunk_cells))
        for start in range(0, self.n_cells, step):
            yield start, self.read(start, start + step)

    def obs(self) -> pd.DataFrame:
        """The obs table (read whole, so not part of a streamed build)."""
        try:
            return self._store.obs()
        except BiofmError:
            raise
        except Exception:
            if isinstance(self._store, _AnnStore):
                raise
            return _AnnStore(self.path).obs()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> CountReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checks
    def _checked(self, x: sp.csr_matrix, start: int) -> sp.csr_matrix:
        """The count checks of one chunk: raw counts are finite, non-negative integers."""
        p, what, store, layer = self.path, self._what, self._store, self.layer
        if x.dtype.kind not in "biuf":
            raise BiofmError(f"{p}: {what} holds {x.dtype} values; expected numeric raw counts")
        data = x.data

        def at(k: int) -> str:
            row = start + int(np.searchsorted(x.indptr, k, side="right") - 1)
            col = int(x.indices[k])
            return f"e.g. {float(data[k]):.4g} at cell {store.cell_name(row)!r}, gene {str(self._raw_genes[col])!r}"

        if data.dtype.kind == "f":
            bad = ~np.isfinite(data)
            if bad.any():
                raise BiofmError(f"{p}: {what} holds NaN or infinite values ({at(int(np.argmax(bad)))}); "
                                 f"biofm needs raw counts; {_integer_alternative(store, layer)}")
        neg = data < 0
        if neg.any():
            raise BiofmError(f"{p}: {what} holds negative values ({at(int(np.argmax(neg)))}), so it is scaled, "
                             f"not counts: biofm needs raw counts; {_integer_alternative(store, layer)}")
        if data.dtype.kind == "f":
            frac = data != np.floor(data)
            if frac.any():
                if not self.allow_non_counts:
                    raise BiofmError(f"{p}: {what} holds non-integer values ({at(int(np.argmax(frac)))}): biofm "
                                     f"needs raw counts; {_integer_alternative(store, layer)} "
                                     f"(or data.allow_non_counts=true to accept these values)")
                self.is_counts = False
        return x.astype(np.float32)


def _check_not_empty(p: Path, what: str, shape: tuple[int, int], genes: np.ndarray, var: pd.DataFrame,
                     gene_column: str | None) -> None:
    """Refuse a matrix with nothing to read, each case by name: all three used to surface later as
    "every cell has zero counts", which points at the values rather than at the file's shape or names."""
    if shape[0] == 0:
        raise BiofmError(f"{p}: no cells ({what} has 0 rows)")
    if shape[1] == 0:
        raise BiofmError(f"{p}: no genes ({what} has 0 columns)")
    if not (genes != "").any():
        cols = ", ".join(repr(str(c)) for c in var.columns if str(c) != gene_column) or "none"
        if gene_column is None:
            raise BiofmError(f"{p}: every gene name is empty (var_names); set data.gene_column to a var column "
                             f"holding gene ids (var columns: {cols})")
        raise BiofmError(f"{p}: every gene name is empty (var column {gene_column!r}); set data.gene_column to "
                         f"another var column holding gene ids (others: {cols}), or leave it unset to use the "
                         f"var names")


def _check_file(p: Path) -> None:
    import h5py

    if not p.exists():
        raise BiofmError(f"{p}: file not found")
    if p.is_dir():
        raise BiofmError(f"{p}: is a folder (a .zarr store?); expected an .h5ad file")
    if not h5py.is_hdf5(p):
        raise BiofmError(f"{p}: not an HDF5 file; expected an AnnData .h5ad (convert other formats with anndata)")


# ------------------------------------------------------------------------------------------ row access


class _NotAMatrix(ValueError):
    """The chosen element cannot be a cells x genes matrix (e.g. a 1-d array)."""


class _Rows:
    """Ranges of rows of one stored matrix, as CSR in the stored dtype with duplicates summed and zeros
    removed (`_to_csr`), so that reading in pieces gives what reading the whole matrix gives."""

    shape: tuple[int, int]

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        raise NotImplementedError


class _MemoryRows(_Rows):
    """A matrix anndata has already loaded."""

    def __init__(self, x: Any):
        if sp.issparse(x):
            self.x: Any = sp.csr_matrix(x)
        else:
            self.x = np.asarray(x)
            if self.x.ndim != 2:
                raise _NotAMatrix(f"expected a 2-d matrix, got shape {self.x.shape}")
        self.shape = (int(self.x.shape[0]), int(self.x.shape[1]))

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        return _to_csr(self.x[start:stop])


class _DenseRows(_Rows):
    """A dense HDF5 dataset, read in blocks of rows so that a chunk of a wide matrix stays small."""

    def __init__(self, ds: Any):
        if ds.ndim != 2:
            raise _NotAMatrix(f"expected a 2-d matrix, got shape {ds.shape}")
        self.ds = ds
        self.shape = (int(ds.shape[0]), int(ds.shape[1]))

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        step = max(1, _DENSE_VALUES // max(1, self.shape[1]))
        parts = [_to_csr(self.ds[i:min(stop, i + step)]) for i in range(start, stop, step)]
        if not parts:
            return _to_csr(self.ds[start:start])
        return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


class _SparseRows(_Rows):
    """An AnnData sparse group (data / indices / indptr) in CSR or CSC layout."""

    def __init__(self, group: Any, csr: bool, shape: tuple[int, int]):
        self.csr = csr
        self.shape = shape
        self.data, self.indices, self.indptr = group["data"], group["indices"], group["indptr"]
        # CSC: one pointer per gene, kept to find each stored entry's column
        self._colptr = None if csr else np.asarray(self.indptr[:], dtype=np.int64)

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        shape = (stop - start, self.shape[1])
        if self.csr:
            ptr = np.asarray(self.indptr[start:stop + 1], dtype=np.int64)
            if len(ptr) < 2:
                return _to_csr(sp.csr_matrix(shape, dtype=self.data.dtype))
            a, b = int(ptr[0]), int(ptr[-1])
            return _to_csr(sp.csr_matrix((self.data[a:b], self.indices[a:b], ptr - a), shape=shape))
        assert self._colptr is not None
        whole = start == 0 and stop == self.shape[0]
        rows, cols, vals = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [self.data[0:0]]
        nnz = int(self._colptr[-1])
        for a in range(0, nnz, _SCAN_VALUES):
            b = min(nnz, a + _SCAN_VALUES)
            r = np.asarray(self.indices[a:b], dtype=np.int64)
            sel = np.arange(b - a) if whole else np.flatnonzero((r >= start) & (r < stop))
            if len(sel) == 0:
                continue
            rows.append(r[sel] - start)
            cols.append(np.searchsorted(self._colptr, a + sel, side="right") - 1)
            vals.append(np.asarray(self.data[a:b])[sel])
        x = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
        return _to_csr(x)


def _sparse_layout(group: Any) -> tuple[bool, tuple[int, int]]:
    """(is CSR, shape) of an AnnData sparse group; an unknown encoding raises (anndata reads it then)."""
    attrs = group.attrs
    kind = attrs.get("encoding-type", attrs.get("h5sparse_format"))
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind not in ("csr_matrix", "csc_matrix", "csr", "csc"):
        raise KeyError(f"unknown sparse encoding {kind!r}")
    shape = attrs.get("shape", attrs.get("h5sparse_shape"))
    if shape is None or len(shape) != 2:
        raise KeyError("sparse group without a 2-d shape")
    return kind.startswith("csr"), (int(shape[0]), int(shape[1]))


# ------------------------------------------------------------------------------------------ stores


class _Store:
    """One open h5ad: its obs, the available matrices and their var tables."""

    def layers(self) -> list[str]:
        raise NotImplementedError

    def has_raw(self) -> bool:
        raise NotImplementedError

    def has_x(self) -> bool:
        raise NotImplementedError

    def rows(self, layer: str | None) -> _Rows:
        raise NotImplementedError

    def var(self, layer: str | None) -> pd.DataFrame:
        raise NotImplementedError

    def obs(self) -> pd.DataFrame:
        raise NotImplementedError

    def cell_name(self, row: int) -> str:
        """The obs name of a cell (for error messages), or its row number."""
        try:
            index = self.obs().index
            return str(index[row]) if row < len(index) else str(row)
        except Exception:
            return str(row)

    def sample(self, layer: str | None) -> np.ndarray:
        """Some stored values of a matrix (for a cheap "does it hold counts" check)."""
        raise NotImplementedError

    def load(self, p: Path, layer: str | None) -> tuple[_Rows, pd.DataFrame]:
        is_layer = layer is not None and layer in self.layers()
        if layer is not None and not is_layer and not (layer == "raw" and self.has_raw()):
            names = [repr(n) for n in self.layers()] + (["'raw' (.raw.X)"] if self.has_raw() else [])
            have = f"layers: {', '.join(names)}" if names else "the file has no layers and no .raw"
            raise BiofmError(f"{p}: no layer {layer!r} ({have}); leave data.layer unset to use X")
        if layer is None and not self.has_x():
            names = ", ".join(self.layers()) or "none"
            raise BiofmError(f"{p}: X is empty; name the layer with the raw counts with data.layer (layers: {names})")
        return self.rows(layer), self.var(layer)


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

    def rows(self, layer: str | None) -> _Rows:
        import h5py

        elem = self._elem(layer)
        if isinstance(elem, h5py.Group):
            return _SparseRows(elem, *_sparse_layout(elem))
        return _DenseRows(elem)

    def var(self, layer: str | None) -> pd.DataFrame:
        from anndata.io import read_elem

        return _frame(read_elem(self.f["raw"]["var"] if _is_raw(self, layer) else self.f["var"]))

    def obs(self) -> pd.DataFrame:
        from anndata.io import read_elem

        return _frame(read_elem(self.f["obs"]))

    def cell_name(self, row: int) -> str:
        """Reads one name of the obs index, not the whole obs table (which may be large)."""
        try:
            obs = self.f["obs"]
            names = obs[obs.attrs["_index"]]
            if row >= len(names):
                return str(row)
            name = names[row]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:
            return super().cell_name(row)

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
    def __init__(self, p: Path, adata: Any = None):
        import anndata as ad

        if adata is not None:
            self.adata = adata
            return
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

    def rows(self, layer: str | None) -> _Rows:
        return _MemoryRows(self.matrix(layer))

    def sample(self, layer: str | None) -> np.ndarray:
        x = self.matrix(layer)
        data = x.data if sp.issparse(x) else np.asarray(x).ravel()
        return np.asarray(data[:_SAMPLE_VALUES])

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
