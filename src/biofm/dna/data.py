"""DNA → fixed-length token blocks for masked-LM pretraining.

Records are split into train and validation *before* windowing (by record or by region), so no
window overlaps both splits. Each window becomes `<cls>` + its k-mer tokens; by default (`pack`)
these run end to end and are cut into full blocks, so short windows (BED intervals, record ends)
cost no padding and N-rich windows (N tokenises base by base, so they have more tokens) are not
truncated; only the very last block of a split is padded. With `pack: false` each window is one
block, padded or truncated. The window length defaults to (block - 1) * k bases, so a genome
window without N fills exactly one block either way.

Genomes can be larger than memory, so the build streams: a first pass over the files (`scan_fasta`)
validates them and measures every record, which is all the split needs; a second pass reads the
sequences in pieces of a few megabases, cuts windows, tokenises them in batches and appends them to
sharded Arrow files, counting tokens as it goes. Memory is bounded by a piece, a batch of windows and
the writers' buffers, whatever the size of the input.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biofm.data.blocks import (
    BlockView,
    BlockWriter,
    cache_key,
    cache_root,
    file_fingerprint,
    id_dtype,
    open_blocks,
)
from biofm.datasets import resolve_all
from biofm.dna.config import DnaDataConfig
from biofm.dna.fasta import RecordInfo, bed_records, read_fasta_chunks, scan_fasta
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.windows import Window, WindowStats, plan_split, stream_windows
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json

BATCH_WINDOWS = 2048
# A batch is also flushed at this many bases, so very long windows cannot make a batch large.
BATCH_BASES = 8 << 20


@dataclass
class DnaBlocks:
    train: BlockView
    val: BlockView
    counts: np.ndarray  # token frequencies in the training blocks
    meta: dict[str, Any]
    path: Path


def window_bp(cfg: DnaDataConfig, tok: KmerTokenizer, block: int) -> int:
    return cfg.window_bp or (block - 1) * tok.k


def _sources(cfg: DnaDataConfig) -> tuple[list[RecordInfo], Iterable[tuple[RecordInfo, str]]]:
    """Every record's name and length (first pass), and a way to stream their sequences (second pass).

    BED intervals are cut from a reference held in memory, as `bed_records` does; they are small, so
    they are simply kept and handed on whole.
    """
    if cfg.bed:
        recs = list(bed_records(cfg.bed, cfg.fasta[0]))
        infos = [RecordInfo(r.name, r.description, r.path, r.line, len(r.seq)) for r in recs if r.seq]
        return infos, list(zip(infos, (r.seq for r in recs if r.seq), strict=True))
    infos = [info for path in cfg.fasta for info in scan_fasta(path)]
    return infos, _fasta_pieces(cfg.fasta)


def _fasta_pieces(paths: list[str]) -> Iterator[tuple[RecordInfo, str]]:
    for path in paths:
        yield from read_fasta_chunks(path)


def encode_windows(windows: list[Window], tok: KmerTokenizer, block: int) -> np.ndarray:
    out = np.full((len(windows), block), tok.pad_id, dtype=np.int32)
    out[:, 0] = tok.cls_id
    for row, ids in enumerate(tok.encode_batch([w.seq for w in windows])):
        n = min(len(ids), block - 1)
        out[row, 1:1 + n] = ids[:n]
    return out


def pack_windows(windows: list[Window], tok: KmerTokenizer, block: int,
                 carry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(full blocks, leftover tokens): `carry`, then `<cls>` + the tokens of each window, end to end,
    cut into blocks of `block` tokens. No padding; a window may continue into the next block."""
    cls = np.asarray([tok.cls_id], dtype=np.int32)
    parts = [carry]
    for ids in tok.encode_batch([w.seq for w in windows]):
        parts += [cls, np.asarray(ids, dtype=np.int32)]
    flat = np.concatenate(parts)
    n = len(flat) // block
    return flat[: n * block].reshape(n, block), flat[n * block:]


class _SplitOut:
    """Batches one split's windows, tokenises them and appends the blocks, counting tokens if asked."""

    def __init__(self, dest: Path, tok: KmerTokenizer, block: int, count: bool, pack: bool):
        self.tok = tok
        self.block = block
        self.pack = pack
        self.carry = np.zeros(0, dtype=np.int32)  # packed tokens not yet filling a block
        self.writer = BlockWriter(dest, block, id_dtype(tok.vocab_size))
        self.counts = np.zeros(tok.vocab_size, dtype=np.int64) if count else None
        self.batch: list[Window] = []
        self.bases = 0

    def add(self, w: Window) -> None:
        self.batch.append(w)
        self.bases += len(w.seq)
        if len(self.batch) >= BATCH_WINDOWS or self.bases >= BATCH_BASES:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        if self.pack:
            blocks, self.carry = pack_windows(self.batch, self.tok, self.block, self.carry)
        else:
            blocks = encode_windows(self.batch, self.tok, self.block)
        self.batch, self.bases = [], 0
        self._write(blocks)

    def _write(self, blocks: np.ndarray) -> None:
        self.writer.write(blocks)
        if self.counts is not None and len(blocks):
            self.counts += np.bincount(blocks.ravel(), minlength=len(self.counts))[: len(self.counts)]
            self.counts[self.tok.pad_id] = 0  # padding is never a token of the data

    def close(self) -> None:
        self.flush()
        if len(self.carry):  # the packed tail: the dataset's only padding
            last = np.full((1, self.block), self.tok.pad_id, dtype=np.int32)
            last[0, : len(self.carry)] = self.carry
            self._write(last)
        self.writer.close()


def _write_splits(cfg: DnaDataConfig, tok: KmerTokenizer, block: int, seed: int, tmp: Path) -> dict[str, Any]:
    """One streaming pass writing both splits; returns the meta fields and leaves the token counts."""
    infos, pieces = _sources(cfg)
    plan = plan_split([i for i in infos if i.length], cfg.split, cfg.val_fraction, cfg.region_bp, seed)
    wbp = window_bp(cfg, tok, block)
    stats = (WindowStats(), WindowStats())
    outs = (_SplitOut(tmp / "train.arrow", tok, block, count=True, pack=cfg.pack),
            _SplitOut(tmp / "val.arrow", tok, block, count=False, pack=cfg.pack))
    for is_val, w in stream_windows(pieces, plan, wbp, cfg.stride_bp or wbp, cfg.max_n_fraction,
                                    reverse_complement=(cfg.reverse_complement, False), stats=stats):
        outs[is_val].add(w)
    for out in outs:
        out.close()
    train, val = outs
    if train.writer.rows == 0:
        raise BiofmError(
            f"{', '.join(cfg.fasta)}: no training windows of {wbp} bp "
            f"(sequences too short, or too many N: max_n_fraction={cfg.max_n_fraction})"
        )
    assert train.counts is not None
    np.save(tmp / "train_token_counts.npy", train.counts)
    train_bp, val_bp = plan.split_bp()
    return {
        "train_bp": train_bp, "val_bp": val_bp,
        "train": {"blocks": train.writer.rows, **vars(stats[0])},
        "val": {"blocks": val.writer.rows, **vars(stats[1])},
        "shards": {"train": train.writer.shards, "val": val.writer.shards},
    }


def build_blocks(cfg: DnaDataConfig, tok: KmerTokenizer, block: int, seed: int) -> DnaBlocks:
    """Tokenise into `.cache/biofm/dna-<hash>/` unless an identical build is already there.

    `dataset:NAME` entries in `fasta`/`bed` are registered datasets, fetched or taken from the mirror."""
    bed = resolve_all([cfg.bed])[0] if cfg.bed else None
    cfg = cfg.model_copy(update={"fasta": resolve_all(cfg.fasta), "bed": bed})
    inputs = list(cfg.fasta) + ([cfg.bed] if cfg.bed else [])
    for path in inputs:
        if not Path(path).exists():
            raise BiofmError(f"{path}: file not found")
        if Path(path).is_dir():
            raise BiofmError(f"{path}: is a folder, expected a FASTA file")
    settings = cfg.model_dump(exclude={"cache_dir", "fasta", "bed"})
    key = cache_key({
        "kind": "dna-mlm-blocks",
        "inputs": [file_fingerprint(p) for p in inputs],
        "bed": bool(cfg.bed),
        "settings": settings,
        "tokenizer": {"kind": "kmer", "k": tok.k, "vocab": tok.vocab_size},
        "block": block,
        "seed": seed,
    })
    dest = cache_root(cfg.cache_dir) / f"dna-{key}"
    if not (dest / "meta.json").exists():
        with atomic_path(dest, is_dir=True) as tmp:
            fields = _write_splits(cfg, tok, block, seed, tmp)
            write_json(tmp / "meta.json", {"inputs": inputs, "block": block, "k": tok.k, "seed": seed, **fields})
    meta = json.loads((dest / "meta.json").read_text())
    try:
        train, val = open_blocks(dest / "train.arrow"), open_blocks(dest / "val.arrow")
    except Exception:  # a damaged cache entry: rebuild it next time
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return DnaBlocks(train=train, val=val, counts=np.load(dest / "train_token_counts.npy"), meta=meta, path=dest)
