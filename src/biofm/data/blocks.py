"""Fixed-length token blocks on disk: Arrow files written once, memory-mapped for training.

Shared by every modality. A dataset folder is keyed by a hash of the inputs' contents, the tokenizer
and the settings, so a rerun finds it and does not tokenise again; the folder is written under a
temporary name and renamed, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, Sequence, Value
from datasets.arrow_writer import ArrowWriter

CACHE_VERSION = 1


def cache_root(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get("BIOFM_CACHE") or ".cache/biofm")


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file (so a renamed copy hits the cache and an edited file misses it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def id_dtype(vocab_size: int) -> str:
    return "int16" if vocab_size < 2**15 else "int32"


class BlockWriter:
    """Streams [n, L] token-id arrays into one Arrow file."""

    def __init__(self, path: Path, length: int, dtype: str):
        self.length = length
        self.dtype = dtype
        self.rows = 0
        features = Features({"input_ids": Sequence(Value(dtype), length=length)})
        self._writer = ArrowWriter(features=features, path=str(path), writer_batch_size=4096)

    def write(self, blocks: np.ndarray) -> None:
        if len(blocks) == 0:
            return
        assert blocks.ndim == 2 and blocks.shape[1] == self.length, blocks.shape
        self._writer.write_batch({"input_ids": list(blocks.astype(self.dtype, copy=False))})
        self.rows += len(blocks)

    def close(self) -> None:
        self._writer.finalize()
        self._writer.close()


class BlockView:
    """Read-only [N, L] view over the Arrow chunks of a memory-mapped dataset, without copying."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self._chunks: list[np.ndarray] = []
        for chunk in dataset.data.column("input_ids").chunks:
            values = chunk.values.to_numpy(zero_copy_only=True)
            self._chunks.append(values.reshape(len(chunk), -1))
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])
        width = self._chunks[0].shape[1] if self._chunks else 0
        self.shape = (int(self._starts[-1]), width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if len(self._chunks) == 1:
            return self._chunks[0][idx]
        which = np.searchsorted(self._starts, idx, side="right") - 1
        out = np.empty((len(idx), self.shape[1]), dtype=self._chunks[0].dtype)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self._chunks[c][idx[sel] - self._starts[c]]
        return out

    def iter_chunks(self) -> Iterator[np.ndarray]:
        yield from self._chunks


def open_blocks(path: str | Path) -> BlockView:
    return BlockView(Dataset.from_file(str(path)))


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
    """Streams rows of several named fixed-shape columns into one Arrow file.

    `columns` maps a name to `(length, dtype)`: `length` > 0 gives an [n, length] column, None or 0 a
    scalar [n] column. `write` takes a dict of arrays with the same number of rows for every column.
    """

    def __init__(self, path: Path, columns: dict[str, tuple[int | None, str]]):
        if not columns:
            raise ValueError("ColumnWriter needs at least one column")
        self.columns = {name: (int(length or 0), str(dtype)) for name, (length, dtype) in columns.items()}
        self.rows = 0
        features = Features({
            name: Sequence(Value(dtype), length=length) if length else Value(dtype)
            for name, (length, dtype) in self.columns.items()
        })
        self._writer = ArrowWriter(features=features, path=str(path), writer_batch_size=4096)

    def write(self, batch: dict[str, np.ndarray]) -> None:
        if set(batch) != set(self.columns):
            raise ValueError(f"expected columns {sorted(self.columns)}, got {sorted(batch)}")
        n = {len(v) for v in batch.values()}
        assert len(n) == 1, "every column needs the same number of rows"
        rows = n.pop()
        if rows == 0:
            return
        out: dict[str, Any] = {}
        for name, (length, dtype) in self.columns.items():
            arr = np.asarray(batch[name]).astype(dtype, copy=False)
            expected = (rows, length) if length else (rows,)
            assert arr.shape == expected, (name, arr.shape, expected)
            out[name] = list(arr) if length else arr
        self._writer.write_batch(out)
        self.rows += rows

    def close(self) -> None:
        self._writer.finalize()
        self._writer.close()


class ColumnView:
    """Read-only view of a multi-column Arrow file, memory-mapped; `view[idx]` gathers rows into a dict.

    Each column's Arrow chunks are exposed as numpy arrays without copying ([rows, length] for sequence
    columns, [rows] for scalars); only the gathered rows are copied.
    """

    def __init__(self, dataset: Dataset):
        import pyarrow as pa

        self.dataset = dataset
        table = dataset.data
        self._chunks: dict[str, list[np.ndarray]] = {}
        self.columns: dict[str, tuple[int, str]] = {}
        for name in table.column_names:
            column = table.column(name)
            arrays: list[np.ndarray] = []
            length = column.type.list_size if pa.types.is_fixed_size_list(column.type) else 0
            for chunk in column.chunks:
                if length:
                    values = chunk.flatten().to_numpy(zero_copy_only=True)
                    arrays.append(values.reshape(len(chunk), length))
                else:
                    arrays.append(chunk.to_numpy(zero_copy_only=True))
            self._chunks[name] = arrays
            value_type = column.type.value_type if length else column.type
            self.columns[name] = (length, str(np.dtype(value_type.to_pandas_dtype())))
        self._starts = {n: np.cumsum([0] + [len(a) for a in c]) for n, c in self._chunks.items()}
        self._n = int(table.num_rows)
        self.seq_len = max((length for length, _ in self.columns.values()), default=0)

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
    return ColumnView(Dataset.from_file(str(path)))
