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
