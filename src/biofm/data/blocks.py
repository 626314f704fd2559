"""Fixed-length token blocks on disk: Arrow files written once, memory-mapped for training.

Shared by every modality. A dataset folder is keyed by a hash of the inputs' contents, the tokenizer
and the settings, so a rerun finds it and does not tokenise again; the folder is written under a
temporary name and renamed, so an interrupted build is never mistaken for a finished one.

Datasets may be far larger than memory, so a writer rolls over to a new file every `SHARD_BYTES` or so:
`train.arrow` stays one file when it is small, and becomes `train-00000.arrow`, `train-00001.arrow`,
... when it is not. Many moderate files rather than one huge one keep each file easy to copy, check and
rewrite. Readers open all shards of a split, memory-mapped, as one view; rows are never loaded whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from collections.abc import Sequence as SequenceOf
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Sequence, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter

CACHE_VERSION = 1
# Target size of one Arrow file. Writers take a `shard_bytes` argument; None means this value, read
# when the writer is made (so tests can lower it).
SHARD_BYTES = 256 << 20
WRITER_BATCH_ROWS = 4096


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def id_dtype(vocab_size: int) -> str:
    return "int16" if vocab_size < 2**15 else "int32"


def shard_path(path: str | Path, index: int) -> Path:
    """Name of shard `index` of the dataset written at `path` (`train.arrow` -> `train-00003.arrow`)."""
    p = Path(path)
    return p.with_name(f"{p.stem}-{index:05d}{p.suffix}")


def shard_paths(path: str | Path) -> list[Path]:
    """The files holding the dataset written at `path`, in row order.

    `path` may be a single Arrow file, a folder of `.arrow` files, or the name a sharded writer was
    given (`train.arrow` when only `train-00000.arrow`, ... exist). A file is preferred over shards of
    the same name, so caches written before sharding existed open as they always did.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    files = sorted(p.glob("*.arrow"), key=lambda f: _natural_key(f.name)) if p.is_dir() else _shards_of(p)
    if not files:
        raise FileNotFoundError(f"{path}: no Arrow file, folder or shards of that name")
    return files


def _shards_of(p: Path) -> list[Path]:
    """Existing `stem-NNNNN.suffix` files beside `p`, by shard number."""
    if not p.parent.is_dir():
        return []
    pattern = re.compile(re.escape(p.stem) + r"-(\d+)" + re.escape(p.suffix))
    found = [(int(m.group(1)), f) for f in p.parent.iterdir() if (m := pattern.fullmatch(f.name))]
    return [f for _, f in sorted(found)]


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class _ShardedWriter:
    """Rolls Arrow files over every `rows_per_shard` rows; see the module doc for the naming.

    The first shard is written at `path` itself and renamed to `...-00000` only if a second one is
    needed, so small datasets keep their one-file layout.
    """

    def __init__(self, path: Path, features: Features, row_bytes: int, shard_bytes: int | None):
        self.path = Path(path)
        self.features = features
        budget = SHARD_BYTES if shard_bytes is None else shard_bytes
        self.rows_per_shard = max(1, budget // max(1, row_bytes))
        self.rows = 0
        self.shards = 1
        self._shard_rows = 0
        for stale in _shards_of(self.path):
            stale.unlink()  # shards of an earlier write would otherwise be read as part of this one
        self._writer = self._open(self.path)

    def _open(self, path: Path) -> ArrowWriter:
        return ArrowWriter(features=self.features, path=str(path), writer_batch_size=WRITER_BATCH_ROWS)

    def write(self, table: pa.Table) -> None:
        start = 0
        while start < table.num_rows:
            if self._shard_rows == self.rows_per_shard:
                self._roll()
            take = min(table.num_rows - start, self.rows_per_shard - self._shard_rows)
            self._writer.write_table(table.slice(start, take))
            self._shard_rows += take
            self.rows += take
            start += take

    def _roll(self) -> None:
        self._finish()
        if self.shards == 1:
            os.replace(self.path, shard_path(self.path, 0))
        self._writer = self._open(shard_path(self.path, self.shards))
        self.shards += 1
        self._shard_rows = 0

    def _finish(self) -> None:
        self._writer.finalize()
        self._writer.close()

    def close(self) -> None:
        self._finish()


class BlockWriter:
    """Streams [n, L] token-id arrays into Arrow files, a new one every ~`shard_bytes`."""

    def __init__(self, path: Path, length: int, dtype: str, shard_bytes: int | None = None):
        self.length = length
        self.dtype = dtype
        features = Features({"input_ids": Sequence(Value(dtype), length=length)})
        self._out = _ShardedWriter(path, features, length * np.dtype(dtype).itemsize, shard_bytes)

    @property
    def rows(self) -> int:
        return self._out.rows

    @property
    def shards(self) -> int:
        return self._out.shards

    def write(self, blocks: np.ndarray) -> None:
        if len(blocks) == 0:
            return
        assert blocks.ndim == 2 and blocks.shape[1] == self.length, blocks.shape
        flat = np.ascontiguousarray(blocks, dtype=self.dtype).reshape(-1)
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat), self.length)
        self._out.write(pa.table({"input_ids": column}))

    def close(self) -> None:
        self._out.close()


def _open_datasets(path: str | Path) -> list[Dataset]:
    return [Dataset.from_file(str(f)) for f in shard_paths(path)]


def _as_list(dataset: Dataset | SequenceOf[Dataset]) -> list[Dataset]:
    return [dataset] if isinstance(dataset, Dataset) else list(dataset)


class BlockView:
    """Read-only [N, L] view over the Arrow chunks of memory-mapped datasets (shards), without copying.

    Rows are numbered across shards in order; indexing gathers only the requested rows.
    """

    def __init__(self, dataset: Dataset | SequenceOf[Dataset]):
        self.datasets = _as_list(dataset)
        self._chunks: list[np.ndarray] = []
        width = 0
        for ds in self.datasets:
            column = ds.data.column("input_ids")
            width = width or column.type.list_size
            for chunk in column.chunks:
                if len(chunk):
                    values = chunk.flatten().to_numpy(zero_copy_only=True)
                    self._chunks.append(values.reshape(len(chunk), -1))
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])
        self.shape = (int(self._starts[-1]), width if self._chunks else 0)

    @property
    def dataset(self) -> Dataset:
        """All shards as one `datasets.Dataset` (still memory-mapped)."""
        return self.datasets[0] if len(self.datasets) == 1 else concatenate_datasets(self.datasets)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if len(self._chunks) == 1:
            return self._chunks[0][idx]
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        which = np.searchsorted(self._starts, idx, side="right") - 1
        out = np.empty((len(idx), self.shape[1]), dtype=self._chunks[0].dtype if self._chunks else np.int32)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self._chunks[c][idx[sel] - self._starts[c]]
        return out

    def iter_chunks(self) -> Iterator[np.ndarray]:
        yield from self._chunks


def open_blocks(path: str | Path) -> BlockView:
    """Open a split written by `BlockWriter` (one file or its shards; see `shard_paths`)."""
    return BlockView(_open_datasets(path))


def token_counts(view: BlockView, vocab_size: int) -> np.ndarray:
    counts = np.zeros(vocab_size, dtype=np.int64)
    for chunk in view.iter_chunks():
        counts += np.bincount(chunk.ravel().astype(np.int64), minlength=vocab_size)[:vocab_size]
    return counts


def unigram_logp(counts: np.ndarray, real_ids: np.ndarray) -> np.ndarray:
    """Add-one smoothed log-frequencies over the tokens that can be targets (specials excluded)."""
    logp = np.full(len(counts), -30.0, dtype=np.float64)
    c = counts[real_ids].astype(np.float64) + 1.0
    logp[real_ids] = np.log(c / c.sum())
    return logp


# ------------------------------------------------------------------------------------------ multi-column rows
# Rows with several named columns (e.g. a cell's gene ids, value bins and counts, plus per-cell scalars).
# Each column is either a fixed-length sequence (`length` > 0) or one scalar per row (`length` None / 0).


class ColumnWriter:
    """Streams rows of several named fixed-shape columns into Arrow files, a new one every ~`shard_bytes`.

    `columns` maps a name to `(length, dtype)`: `length` > 0 gives an [n, length] column, None or 0 a
    scalar [n] column. `write` takes a dict of arrays with the same number of rows for every column.
    """

    def __init__(self, path: Path, columns: dict[str, tuple[int | None, str]], shard_bytes: int | None = None):
        if not columns:
            raise ValueError("ColumnWriter needs at least one column")
        self.columns = {name: (int(length or 0), str(dtype)) for name, (length, dtype) in columns.items()}
        features = Features({
            name: Sequence(Value(dtype), length=length) if length else Value(dtype)
            for name, (length, dtype) in self.columns.items()
        })
        row_bytes = sum(max(1, length) * np.dtype(dtype).itemsize for length, dtype in self.columns.values())
        self._out = _ShardedWriter(path, features, row_bytes, shard_bytes)

    @property
    def rows(self) -> int:
        return self._out.rows

    @property
    def shards(self) -> int:
        return self._out.shards

    def write(self, batch: dict[str, np.ndarray]) -> None:
        if set(batch) != set(self.columns):
            raise ValueError(f"expected columns {sorted(self.columns)}, got {sorted(batch)}")
        n = {len(v) for v in batch.values()}
        assert len(n) == 1, "every column needs the same number of rows"
        rows = n.pop()
        if rows == 0:
            return
        out: dict[str, pa.Array] = {}
        for name, (length, dtype) in self.columns.items():
            arr = np.ascontiguousarray(batch[name], dtype=dtype)
            expected = (rows, length) if length else (rows,)
            assert arr.shape == expected, (name, arr.shape, expected)
            out[name] = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), length) if length else (
                pa.array(arr))
        self._out.write(pa.table(out))

    def close(self) -> None:
        self._out.close()


class ColumnView:
    """Read-only view of multi-column Arrow files (shards), memory-mapped; `view[idx]` gathers rows into a dict.

    Each column's Arrow chunks are exposed as numpy arrays without copying ([rows, length] for sequence
    columns, [rows] for scalars); only the gathered rows are copied.
    """

    def __init__(self, dataset: Dataset | SequenceOf[Dataset]):
        self.datasets = _as_list(dataset)
        first = self.datasets[0].data
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in first.column_names}
        self.columns: dict[str, tuple[int, str]] = {}
        for name in first.column_names:
            ctype = first.column(name).type
            length = ctype.list_size if pa.types.is_fixed_size_list(ctype) else 0
            value_type = ctype.value_type if length else ctype
            self.columns[name] = (length, str(np.dtype(value_type.to_pandas_dtype())))
        for ds in self.datasets:
            table = ds.data
            for name, (length, _) in self.columns.items():
                for chunk in table.column(name).chunks:
                    if not len(chunk):
                        continue
                    if length:
                        values = chunk.flatten().to_numpy(zero_copy_only=True)
                        self._chunks[name].append(values.reshape(len(chunk), length))
                    else:
                        self._chunks[name].append(chunk.to_numpy(zero_copy_only=True))
        for name, (length, dtype) in self.columns.items():
            if not self._chunks[name]:  # no rows at all: one empty array keeps indexing uniform
                self._chunks[name].append(np.zeros((0, length) if length else (0,), dtype=dtype))
        self._starts = {n: np.cumsum([0] + [len(a) for a in c]) for n, c in self._chunks.items()}
        self._n = sum(int(ds.data.num_rows) for ds in self.datasets)
        self.seq_len = max((length for length, _ in self.columns.values()), default=0)

    @property
    def dataset(self) -> Dataset:
        """All shards as one `datasets.Dataset` (still memory-mapped)."""
        return self.datasets[0] if len(self.datasets) == 1 else concatenate_datasets(self.datasets)

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> Iterator[np.ndarray]:
        """The zero-copy chunks of one column, in row order."""
        yield from self._chunks[name]

    def __getitem__(self, idx: Any) -> dict[str, np.ndarray]:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if len(idx) and (idx.min() < -self._n or idx.max() >= self._n):
            raise IndexError(f"row index out of range for {self._n} rows")
        idx = np.where(idx < 0, idx + self._n, idx)
        out: dict[str, np.ndarray] = {}
        for name, chunks in self._chunks.items():
            length, dtype = self.columns[name]
            if len(chunks) == 1:
                out[name] = chunks[0][idx]
                continue
            starts = self._starts[name]
            which = np.searchsorted(starts, idx, side="right") - 1
            res = np.empty((len(idx), length) if length else (len(idx),), dtype=dtype)
            for c in np.unique(which):
                sel = which == c
                res[sel] = chunks[c][idx[sel] - starts[c]]
            out[name] = res
        return out


def open_columns(path: str | Path) -> ColumnView:
    """Open rows written by `ColumnWriter` (one file or its shards; see `shard_paths`)."""
    return ColumnView(_open_datasets(path))
