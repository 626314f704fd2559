"""DNA → fixed-length token blocks for masked-LM pretraining.

Records are split into train and validation *before* windowing (by record or by region), so no
window overlaps both splits. Each window becomes one block: `<cls>` + its k-mer tokens, truncated or
padded to the block length (the window length defaults to (block - 1) * k bases, so blocks are full
unless a window holds N, which tokenises base by base).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
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
    token_counts,
)
from biofm.dna.config import DnaDataConfig
from biofm.dna.fasta import Record, bed_records, read_fasta
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.windows import Window, WindowStats, iter_windows, split_segments
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json

BATCH_WINDOWS = 2048


@dataclass
class DnaBlocks:
    train: BlockView
    val: BlockView
    counts: np.ndarray  # token frequencies in the training blocks
    meta: dict[str, Any]
    path: Path


def window_bp(cfg: DnaDataConfig, tok: KmerTokenizer, block: int) -> int:
    return cfg.window_bp or (block - 1) * tok.k


def _records(cfg: DnaDataConfig) -> Iterable[Record]:
    if cfg.bed:
        yield from bed_records(cfg.bed, cfg.fasta[0])
        return
    for path in cfg.fasta:
        yield from read_fasta(path)


def encode_windows(windows: list[Window], tok: KmerTokenizer, block: int) -> np.ndarray:
    out = np.full((len(windows), block), tok.pad_id, dtype=np.int32)
    out[:, 0] = tok.cls_id
    for row, ids in enumerate(tok.encode_batch([w.seq for w in windows])):
        n = min(len(ids), block - 1)
        out[row, 1:1 + n] = ids[:n]
    return out


def _write_split(segments, cfg: DnaDataConfig, tok: KmerTokenizer, block: int, dest: Path,
                 reverse_complement: bool) -> dict[str, Any]:
    stats = WindowStats()
    writer = BlockWriter(dest, block, id_dtype(tok.vocab_size))
    batch: list[Window] = []
    wbp = window_bp(cfg, tok, block)
    for w in iter_windows(segments, wbp, cfg.stride_bp or wbp, cfg.max_n_fraction,
                          reverse_complement=reverse_complement, stats=stats):
        batch.append(w)
        if len(batch) == BATCH_WINDOWS:
            writer.write(encode_windows(batch, tok, block))
            batch = []
    writer.write(encode_windows(batch, tok, block))
    writer.close()
    return {"blocks": writer.rows, **vars(stats)}


def build_blocks(cfg: DnaDataConfig, tok: KmerTokenizer, block: int, seed: int) -> DnaBlocks:
    """Tokenise into `.cache/biofm/dna-<hash>/` unless an identical build is already there."""
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
        train_seg, val_seg = split_segments(_records(cfg), cfg.split, cfg.val_fraction, cfg.region_bp, seed)
        with atomic_path(dest, is_dir=True) as tmp:
            train_stats = _write_split(train_seg, cfg, tok, block, tmp / "train.arrow", cfg.reverse_complement)
            val_stats = _write_split(val_seg, cfg, tok, block, tmp / "val.arrow", False)
            if train_stats["blocks"] == 0:
                raise BiofmError(
                    f"{', '.join(cfg.fasta)}: no training windows of {window_bp(cfg, tok, block)} bp "
                    f"(sequences too short, or too many N: max_n_fraction={cfg.max_n_fraction})"
                )
            counts = token_counts(open_blocks(tmp / "train.arrow"), tok.vocab_size)
            np.save(tmp / "train_token_counts.npy", counts)
            write_json(tmp / "meta.json", {
                "inputs": inputs, "block": block, "k": tok.k, "seed": seed,
                "train_bp": sum(len(s.seq) for s in train_seg), "val_bp": sum(len(s.seq) for s in val_seg),
                "train": train_stats, "val": val_stats,
            })
    import json

    meta = json.loads((dest / "meta.json").read_text())
    try:
        train, val = open_blocks(dest / "train.arrow"), open_blocks(dest / "val.arrow")
    except Exception:  # a damaged cache entry: rebuild it next time
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return DnaBlocks(train=train, val=val, counts=np.load(dest / "train_token_counts.npy"), meta=meta, path=dest)
