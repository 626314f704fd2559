"""DNA → fixed-length token blocks for masked-LM pretraining.

Records are split into train and validation *before* windowing (by record or by region), so no
window overlaps both splits. Each window becomes `<cls>` + its k-mer tokens; by default (`pack`)
these run end to end and are cut into full blocks, so short windows (BED intervals, record ends)
cost no padding and N-rich windows (N tokenises base by base, so they have more tokens) are not
truncated; only the very last block of a split is padded. With `pack: false` each window is one
block, padded or truncated. The window length defaults to (block - 1) * k bases, so a genome
window without N fills exactly one block either way.

A genome can hold the same sequence twice (a duplicated record, repeats longer than a window), and
no split of records or regions keeps such copies apart, so the build drops every VALIDATION window
whose sequence is identical to a training window (training keeps all its windows); the count is
`val_duplicates_removed` in meta.json and a note on stderr. Validation windows wait in a spill file
until the last training window is known; training windows are remembered as 8-byte digests.

Genomes can be larger than memory, so the build streams: a first pass over the files (`scan_fasta`)
validates them and measures every record, which is all the split needs; a second pass reads the
sequences in pieces of a few megabases, cuts windows, tokenises them in batches and appends them to
sharded Arrow files, counting tokens as it goes. Memory is bounded by a piece, a batch of windows and
the writers' buffers, whatever the size of the input.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biofm.data.blocks import (
    BlockView,
    BlockWriter,
    cache_key,
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
from biofm.io.files import cache_root, file_fingerprint

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
    return cfg.window_bp if cfg.window_bp is not None else (block - 1) * tok.k


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


def _digest(seq: str) -> bytes:
    """8 bytes standing for a window's sequence (a false match needs ~4e9 windows to become likely)."""
    return hashlib.blake2b(seq.encode("ascii"), digest_size=8).digest()


class _ValHoldback:
    """Holds validation windows back until every training window has been seen, then gives back those
    whose sequence no training window has (module docstring).

    Validation windows wait in a text file, one a line, so memory does not grow with them; training
    windows are kept as digests in a bytearray (8 bytes each), sorted once at the end.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "w", encoding="ascii")  # noqa: SIM115 - closed by `_write_splits`
        self.train = bytearray()
        self.held = 0  # validation windows held back
        self.removed = 0  # of those, identical to a training window
        self.removed_forward = 0  # the removed ones on the + strand, and their bases: for WindowStats
        self.removed_bases = 0

    def add_train(self, w: Window) -> None:
        self.train += _digest(w.seq)

    def add_val(self, w: Window) -> None:
        # the sequence is ACGTN and strand/coordinates hold no tab, so splitting from the right is safe
        self.file.write(f"{w.record}\t{w.start}\t{w.end}\t{w.strand}\t{w.seq}\n")
        self.held += 1

    def release(self) -> Iterator[Window]:
        """The held validation windows, in their order, less those identical to a training window."""
        train = np.unique(np.frombuffer(self.train, dtype="<u8"))
        self.train = bytearray()
        with open(self.path, encoding="ascii") as fh:
            for line in fh:
                record, start, end, strand, seq = line.rstrip("\n").rsplit("\t", 4)
                d = np.frombuffer(_digest(seq), dtype="<u8")[0]
                i = int(np.searchsorted(train, d))
                if i < len(train) and train[i] == d:
                    self.removed += 1
                    if strand == "+":
                        self.removed_forward += 1
                        self.removed_bases += len(seq)
                    continue
                yield Window(record, int(start), int(end), strand, seq)
        self.path.unlink()


def _write_splits(cfg: DnaDataConfig, tok: KmerTokenizer, block: int, seed: int, tmp: Path) -> dict[str, Any]:
    """One streaming pass writing both splits; returns the meta fields and leaves the token counts.

    Training blocks are written as the windows arrive; validation windows are written after the pass,
    less those identical to a training window (`_ValHoldback`)."""
    infos, pieces = _sources(cfg)
    plan = plan_split([i for i in infos if i.length], cfg.split, cfg.val_fraction, cfg.region_bp, seed)
    wbp = window_bp(cfg, tok, block)
    stride = cfg.stride_bp if cfg.stride_bp is not None else wbp
    stats = (WindowStats(), WindowStats())
    outs = (_SplitOut(tmp / "train.arrow", tok, block, count=True, pack=cfg.pack),
            _SplitOut(tmp / "val.arrow", tok, block, count=False, pack=cfg.pack))
    held = _ValHoldback(tmp / "val_windows.txt")
    try:
        for is_val, w in stream_windows(pieces, plan, wbp, stride, cfg.max_n_fraction,
                                        reverse_complement=(cfg.reverse_complement, False), stats=stats):
            if is_val:
                held.add_val(w)
            else:
                held.add_train(w)
                outs[0].add(w)
    finally:
        held.file.close()  # also on bad input, so the build's temporary folder can go
    for w in held.release():
        outs[1].add(w)
    for out in outs:
        out.close()
    train, val = outs
    if train.writer.rows == 0:
        raise BiofmError(
            f"{', '.join(cfg.fasta)}: no training windows of {wbp} bp "
            f"(sequences too short, or too many N: max_n_fraction={cfg.max_n_fraction})"
        )
    removed = held.removed
    if held.held and removed == held.held:
        raise BiofmError(
            f"{', '.join(cfg.fasta)}: all {removed} validation windows are identical to training windows "
            f"(the input repeats the same sequences), so nothing is left to validate on; remove the copies"
        )
    stats[1].kept -= held.removed_forward  # `kept` counts what went into validation
    stats[1].bases -= held.removed_bases
    assert train.counts is not None
    np.save(tmp / "train_token_counts.npy", train.counts)
    train_bp, val_bp = plan.split_bp()
    return {
        "train_bp": train_bp, "val_bp": val_bp,
        "train": {"blocks": train.writer.rows, **vars(stats[0])},
        "val": {"blocks": val.writer.rows, **vars(stats[1])},
        "val_duplicates_removed": removed,
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
        "dedup": 1,  # validation windows identical to training windows are dropped (not a setting)
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
    if meta.get("val_duplicates_removed"):  # said on every run, cached or not: it changes what val measures
        print(f"note: {', '.join(inputs)}: dropped {meta['val_duplicates_removed']} validation window(s) whose "
              f"sequence is identical to a training window (val_duplicates_removed in {dest / 'meta.json'})",
              file=sys.stderr)
    return DnaBlocks(train=train, val=val, counts=np.load(dest / "train_token_counts.npy"), meta=meta, path=dest)
