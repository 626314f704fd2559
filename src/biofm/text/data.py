"""Text corpus → fixed-length token blocks for language-model pretraining.

Documents are read lazily, cleaned (`biofm.text.corpus`) and assigned to train or validation *by
document* before anything is tokenised: a document goes to validation when a hash of its cleaned
text and the seed falls below `val_fraction`. The split is therefore deterministic, independent of
file order, and no document (nor an exact copy of one) is in both splits.

Each split is tokenised in batches of documents; every document is followed by `<|endoftext|>` and
the token stream is cut into blocks of exactly `block` tokens, so a block may hold the end of one
document and the start of the next (GPT-style packing, no padding between documents). For masked
models (`add_cls=True`) each block is `<cls>` followed by `block - 1` text tokens. The last partial
block of each split is dropped or padded with `<pad>` (`tail`). Nothing is ever one giant padded
example, and the corpus is never held as one string: memory is one batch of documents plus one
block's worth of leftover tokens.

Blocks are cached like DNA's in `.cache/biofm/text-<hash>/` (the hash covers the files' contents,
the cleaning settings, the tokenizer's full definition, block length, seed and `add_cls`), written
under a temporary name and renamed, so a rerun reuses them and an interrupted build is never used.
`prepare_tokenizer` trains the BPE tokenizer on the cleaned *training* documents only (validation
text never shapes the vocabulary) and caches it the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biofm.data.blocks import (
    BlockView,
    BlockWriter,
    cache_key,
    id_dtype,
    open_blocks,
    token_counts,
)
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json
from biofm.io.files import cache_root, file_fingerprint
from biofm.text.config import TextDataConfig, TextTokenizerConfig
from biofm.text.corpus import CleanDocument, Cleaner, CleaningReport, list_files, read_file
from biofm.text.tokenizer import TextTokenizer, train_bpe

__all__ = ["TextBlocks", "build_text_blocks", "is_val", "iter_split_documents", "prepare_tokenizer"]

# Documents are tokenised in batches of about this many characters (or documents, whichever first).
BATCH_CHARS = 1 << 22
BATCH_DOCS = 4096


@dataclass
class TextBlocks:
    train: BlockView
    val: BlockView
    counts: np.ndarray  # token frequencies in the training blocks
    meta: dict[str, Any]
    path: Path
    cleaning: dict[str, Any] = field(default_factory=dict)  # CleaningReport.to_dict()


def is_val(digest: bytes, seed: int, fraction: float) -> bool:
    """Whether the document with this text digest is held out (a pure function of digest and seed)."""
    if fraction <= 0:
        return False
    h = hashlib.sha256(int(seed).to_bytes(8, "little", signed=True) + digest).digest()
    return int.from_bytes(h[:8], "little") / 2.0**64 < fraction


def _files(cfg: TextDataConfig) -> list[Path]:
    return list_files(cfg.paths)


def iter_split_documents(
    cfg: TextDataConfig, seed: int, report: CleaningReport | None = None, files: list[Path] | None = None
) -> Iterator[tuple[bool, CleanDocument]]:
    """(is_validation, document) for every document that survives cleaning, lazily."""
    files = _files(cfg) if files is None else files
    cleaner = Cleaner(cfg.cleaning, report)
    cleaner.report.files = len(files)
    for f in files:
        for doc in read_file(f, cfg.text_field):
            out = cleaner(doc)
            if out is not None:
                yield is_val(out.digest, seed, cfg.val_fraction), out


def _no_documents(cfg: TextDataConfig, report: CleaningReport) -> BiofmError:
    return BiofmError(
        f"{', '.join(cfg.paths)}: no documents left after cleaning ({report.documents_read} read, "
        f"{report.too_short_removed} shorter than min_chars={cfg.cleaning.min_chars}, "
        f"{report.duplicates_removed} duplicates)"
    )


def _quiet() -> bool:
    return os.environ.get("BIOFM_QUIET") == "1"


# ---------------------------------------------------------------------------------------- tokenizer


def prepare_tokenizer(cfg_data: TextDataConfig, cfg_tok: TextTokenizerConfig, seed: int) -> TextTokenizer:
    """The tokenizer folder `cfg_tok.path`, or byte-level BPE trained on the cleaned training documents.

    A trained tokenizer is cached in `.cache/biofm/texttok-<hash>/` (hash of the inputs' contents,
    cleaning, split and BPE settings), so a rerun loads it instead of training again.
    """
    if cfg_tok.path:
        return TextTokenizer.load(cfg_tok.path)
    import tokenizers

    files = _files(cfg_data)
    key = cache_key({
        "kind": "text-bpe",
        "inputs": [file_fingerprint(p) for p in files],
        "text_field": cfg_data.text_field,
        "cleaning": cfg_data.cleaning.model_dump(),
        "val_fraction": cfg_data.val_fraction,
        "seed": seed,
        "vocab_size": cfg_tok.vocab_size,
        "min_frequency": cfg_tok.min_frequency,
        "tokenizers": tokenizers.__version__,
    })
    dest = cache_root(cfg_data.cache_dir) / f"texttok-{key}"
    if not (dest / "meta.json").exists():
        report = CleaningReport()
        n_train = 0

        def train_texts() -> Iterator[str]:
            nonlocal n_train
            for held_out, doc in iter_split_documents(cfg_data, seed, report, files):
                if not held_out:
                    n_train += 1
                    yield doc.text

        tok = train_bpe(train_texts(), cfg_tok.vocab_size, cfg_tok.min_frequency)
        if report.documents_kept == 0:
            raise _no_documents(cfg_data, report)
        if n_train == 0:
            raise BiofmError(f"{', '.join(cfg_data.paths)}: no training documents to train the tokenizer on "
                             f"(all {report.documents_kept} went to validation; lower data.val_fraction)")
        with atomic_path(dest, is_dir=True) as tmp:
            tok.save(tmp)
            write_json(tmp / "meta.json", {
                "inputs": [str(p) for p in files], "train_documents": n_train, "seed": seed,
                "vocab_size": tok.vocab_size, "requested_vocab_size": cfg_tok.vocab_size,
                "min_frequency": cfg_tok.min_frequency, "cleaning": report.to_dict(),
            })
    return TextTokenizer.load(dest)


# ------------------------------------------------------------------------------------------- blocks


class _Packer:
    """Concatenates documents (each followed by eos) and writes full blocks as they fill up."""

    def __init__(self, writer: BlockWriter, block: int, tok: TextTokenizer, add_cls: bool):
        self.writer = writer
        self.tok = tok
        self.block = block
        self.cls_id = tok.cls_id if add_cls else None
        self.body = block - 1 if add_cls else block
        self.eos_id, self.pad_id = tok.eos_id, tok.pad_id
        self.left = np.empty(0, dtype=np.int64)
        self.documents = self.characters = self.tokens = 0

    def _rows(self, body: np.ndarray) -> np.ndarray:
        rows = body.reshape(-1, self.body)
        if self.cls_id is None:
            return rows
        return np.concatenate([np.full((len(rows), 1), self.cls_id, dtype=rows.dtype), rows], axis=1)

    def add(self, texts: list[str]) -> None:
        if not texts:
            return
        encoded = self.tok.encode_batch(texts)
        n = sum(len(ids) for ids in encoded) + len(encoded)
        stream = np.fromiter(
            itertools.chain.from_iterable(itertools.chain(ids, (self.eos_id,)) for ids in encoded),
            dtype=np.int64, count=n,
        )
        self.documents += len(texts)
        self.characters += sum(len(t) for t in texts)
        self.tokens += n
        if len(self.left):
            stream = np.concatenate([self.left, stream])
        full = len(stream) // self.body * self.body
        self.writer.write(self._rows(stream[:full]))
        self.left = stream[full:].copy()

    def finish(self, tail: str) -> dict[str, Any]:
        dropped = padded = 0
        if len(self.left):
            if tail == "pad":
                padded = self.body - len(self.left)
                last = np.concatenate([self.left, np.full(padded, self.pad_id, dtype=self.left.dtype)])
                self.writer.write(self._rows(last))
            else:
                dropped = len(self.left)
        self.writer.close()
        return {"documents": self.documents, "characters": self.characters, "tokens": self.tokens,
                "blocks": self.writer.rows, "tail_tokens_dropped": dropped, "pad_tokens": padded}


def build_text_blocks(
    cfg: TextDataConfig, tok: TextTokenizer, block: int, seed: int, *, add_cls: bool
) -> TextBlocks:
    """Tokenise into `.cache/biofm/text-<hash>/` unless an identical build is already there."""
    if block < (2 if add_cls else 1):
        raise BiofmError(f"block length {block} is too short for text blocks")
    files = _files(cfg)
    key = cache_key({
        "kind": "text-lm-blocks",
        "inputs": [file_fingerprint(p) for p in files],
        "settings": cfg.model_dump(exclude={"cache_dir", "paths"}),
        "tokenizer": tok.identity,
        "block": block,
        "seed": seed,
        "add_cls": add_cls,
    })
    dest = cache_root(cfg.cache_dir) / f"text-{key}"
    if not (dest / "meta.json").exists():
        report = CleaningReport()
        with atomic_path(dest, is_dir=True) as tmp:
            dtype = id_dtype(tok.vocab_size)
            packers = {
                False: _Packer(BlockWriter(tmp / "train.arrow", block, dtype), block, tok, add_cls),
                True: _Packer(BlockWriter(tmp / "val.arrow", block, dtype), block, tok, add_cls),
            }
            batches: dict[bool, list[str]] = {False: [], True: []}
            sizes = {False: 0, True: 0}
            for held_out, doc in iter_split_documents(cfg, seed, report, files):
                batches[held_out].append(doc.text)
                sizes[held_out] += len(doc.text)
                if sizes[held_out] >= BATCH_CHARS or len(batches[held_out]) >= BATCH_DOCS:
                    packers[held_out].add(batches[held_out])
                    batches[held_out], sizes[held_out] = [], 0
            for held_out in (False, True):
                packers[held_out].add(batches[held_out])
            train_stats, val_stats = packers[False].finish(cfg.tail), packers[True].finish(cfg.tail)
            if report.documents_kept == 0:
                raise _no_documents(cfg, report)
            if train_stats["blocks"] == 0:
                raise BiofmError(
                    f"{', '.join(cfg.paths)}: no training block of {block} tokens: the {train_stats['documents']} "
                    f"training documents hold {train_stats['tokens']} tokens; add text, lower the block length, "
                    "or set data.tail: pad"
                )
            counts = token_counts(open_blocks(tmp / "train.arrow"), tok.vocab_size)
            np.save(tmp / "train_token_counts.npy", counts)
            report.save(tmp / "cleaning.json")
            write_json(tmp / "meta.json", {
                "inputs": [str(p) for p in files], "block": block, "seed": seed, "add_cls": add_cls,
                "tail": cfg.tail, "val_fraction": cfg.val_fraction, "tokenizer": tok.identity,
                "vocab_size": tok.vocab_size, "train": train_stats, "val": val_stats, "cleaning": report.to_dict(),
            })
        if not _quiet():
            print(f"text cleaning ({len(files)} file(s)):\n{report.table()}", file=sys.stderr)
    meta = json.loads((dest / "meta.json").read_text())
    try:
        train, val = open_blocks(dest / "train.arrow"), open_blocks(dest / "val.arrow")
    except Exception:  # a damaged cache entry: rebuild it next time
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return TextBlocks(train=train, val=val, counts=np.load(dest / "train_token_counts.npy"), meta=meta,
                      path=dest, cleaning=meta["cleaning"])
