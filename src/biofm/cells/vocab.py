"""Gene vocabulary: token ids for genes, saved with the model as plain Hugging Face tokenizer files.

Layout: specials `<pad>`=0, `<mask>`=1, `<cls>`=2, `<unk>`=3, `<eos>`=4 (`<eos>` is never placed in a
cell; it exists so every biofm tokenizer has the same interface), then the genes in the order given
(`build_vocab` sorts them).

A saved folder holds
- `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`: a `tokenizers` WordLevel model
  with a whitespace-split pre-tokenizer and `<cls>` prepended, so
  `AutoTokenizer.from_pretrained(folder)("CD3E HLA-A MS4A1")` gives `[<cls>, CD3E, HLA-A, MS4A1]` ids
  without biofm (unknown genes become `<unk>`);
- `gene_vocab.json`: the gene list, and for each gene its corpus median (Geneformer's rank_value
  normaliser: median over training cells of the gene's non-zero count / cell total * 10,000) and the
  number of training cells expressing it;
- `cell_tokenizer.json`: how cells were turned into tokens (mode, binning, caps, selection, the median
  cell total used for size factors), so embedding new cells later tokenises them identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from biofm.errors import BiofmError
from biofm.io.atomic import json_safe, write_files_into

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from biofm.cells.h5ad import CellMatrix

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<unk>", "<eos>")
VOCAB_FILE = "gene_vocab.json"
SETTINGS_FILE = "cell_tokenizer.json"
FORMAT = "biofm-gene-vocab"
NORM_TOTAL = 10_000.0  # Geneformer: counts per 10,000 before dividing by the gene's median


class GeneVocab:
    """Gene ↔ token id, plus per-gene corpus medians and the cell tokenisation settings."""

    pad_id, mask_id, cls_id, unk_id, eos_id = range(len(SPECIAL_TOKENS))
    special_ids: tuple[int, ...] = tuple(range(len(SPECIAL_TOKENS)))
    gene_offset = len(SPECIAL_TOKENS)

    def __init__(self, genes: Sequence[str], medians: np.ndarray | None = None, *,
                 n_cells: np.ndarray | None = None, settings: dict[str, Any] | None = None):
        genes_arr = np.asarray([str(g) for g in genes], dtype=object)
        if len(genes_arr) == 0:
            raise BiofmError("the gene vocabulary is empty: no gene is expressed in enough training cells")
        idx = pd.Index(genes_arr)
        if not idx.is_unique:
            dup = idx[idx.duplicated()][0]
            raise BiofmError(f"gene vocabulary: gene {dup!r} appears twice")
        clash = set(SPECIAL_TOKENS) & set(genes_arr.tolist())
        if clash:
            raise BiofmError(f"gene vocabulary: {sorted(clash)[0]!r} is a special token name, not a gene")
        bad = [g for g in genes_arr.tolist() if not g or any(ch.isspace() for ch in g)]
        if bad:
            raise BiofmError(f"gene vocabulary: gene id {bad[0]!r} is empty or contains whitespace")
        self.genes: np.ndarray = genes_arr
        self._index = idx
        n = len(genes_arr)
        self.gene_median: np.ndarray = (np.ones(n) if medians is None else np.asarray(medians, dtype=np.float64))
        self.gene_n_cells: np.ndarray = (np.zeros(n, dtype=np.int64) if n_cells is None
                                         else np.asarray(n_cells, dtype=np.int64))
        if self.gene_median.shape != (n,) or self.gene_n_cells.shape != (n,):
            raise ValueError("medians / n_cells need one value per gene")
        self.settings: dict[str, Any] = dict(settings or {})

    # ------------------------------------------------------------------ lookups
    @property
    def vocab_size(self) -> int:
        return self.gene_offset + len(self.genes)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def tokens(self) -> list[str]:
        return [*SPECIAL_TOKENS, *self.genes.tolist()]

    @property
    def median(self) -> np.ndarray:
        """Corpus median per token id ([vocab_size]; 1.0 for specials and genes without one)."""
        out = np.ones(self.vocab_size, dtype=np.float64)
        med = self.gene_median
        out[self.gene_offset:] = np.where(np.isfinite(med) & (med > 0), med, 1.0)
        return out

    def __repr__(self) -> str:
        return f"GeneVocab(n_genes={self.n_genes}, vocab_size={self.vocab_size})"

    def ids(self, genes: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (int32) of gene identifiers, `<unk>` for the unknown ones, and a found mask."""
        pos = self._index.get_indexer(pd.Index(np.asarray(genes, dtype=object)))
        found = pos >= 0
        ids = np.where(found, pos + self.gene_offset, self.unk_id).astype(np.int32)
        return ids, found

    def coverage(self, genes: Sequence[str] | np.ndarray) -> float:
        """Fraction of the (distinct) given genes that are in the vocabulary."""
        uniq = pd.unique(np.asarray(genes, dtype=object))
        if len(uniq) == 0:
            return 0.0
        return float(self.ids(uniq)[1].mean())

    def fingerprint(self) -> str:
        """Content hash (genes, medians, settings) — part of a dataset's cache key."""
        import hashlib

        h = hashlib.sha256()
        h.update("\n".join(self.genes.tolist()).encode())
        h.update(np.ascontiguousarray(self.gene_median, dtype=np.float64).tobytes())
        h.update(json.dumps(json_safe(self.settings), sort_keys=True, default=str).encode())
        return h.hexdigest()[:20]

    # ------------------------------------------------------------------ Hugging Face export
    def to_hf(self) -> PreTrainedTokenizerFast:
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {tok: i for i, tok in enumerate(self.tokens)}
        backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        # split on whitespace only: gene ids such as HLA-A or RP11-34P13.7 must stay one token
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A", pair="<cls> $A <eos> $B",
            special_tokens=[("<cls>", self.cls_id), ("<eos>", self.eos_id)],
        )
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        max_len = int(self.settings.get("max_genes", 1000)) + 1
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
            cls_token="<cls>", eos_token="<eos>", bos_token="<cls>", model_max_length=max_len,
            clean_up_tokenization_spaces=False,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the tokenizer files into folder `path` (see the module docstring).

        An existing folder (e.g. a model's) is added to; each file is renamed into place. A new folder
        appears all at once.
        """
        return write_files_into(path, self._write, prefix=".biofm-genevocab-")

    def _write(self, folder: Path) -> None:
        self.to_hf().save_pretrained(str(folder))
        payload = {
            "format": FORMAT, "version": 1, "special_tokens": list(SPECIAL_TOKENS),
            "genes": self.genes.tolist(), "median": [float(m) for m in self.gene_median],
            "n_cells": [int(c) for c in self.gene_n_cells],
        }
        (folder / VOCAB_FILE).write_text(json.dumps(json_safe(payload)) + "\n")
        (folder / SETTINGS_FILE).write_text(json.dumps(json_safe(self.settings), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> GeneVocab:
        """Read a folder written by `save` (a tokenizer folder or a model folder)."""
        folder = Path(path)
        vocab_path = folder / VOCAB_FILE
        if not vocab_path.is_file():
            raise BiofmError(f"{folder}: not a biofm gene vocabulary (no {VOCAB_FILE}); "
                             "give the tokenizer or model folder of a biofm cell model")
        try:
            data = json.loads(vocab_path.read_text())
            genes = data["genes"]
            medians = np.array([np.nan if m is None else m for m in data.get("median", [])], dtype=np.float64)
            n_cells = np.asarray(data.get("n_cells", [0] * len(genes)), dtype=np.int64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BiofmError(f"{vocab_path}: unreadable gene vocabulary ({exc})") from None
        if data.get("format") != FORMAT or list(data.get("special_tokens", [])) != list(SPECIAL_TOKENS):
            raise BiofmError(f"{vocab_path}: not a biofm gene vocabulary of this version")
        if len(medians) != len(genes):
            medians = np.ones(len(genes))
        settings: dict[str, Any] = {}
        settings_path = folder / SETTINGS_FILE
        if settings_path.is_file():
            try:
                settings = json.loads(settings_path.read_text()) or {}
            except ValueError as exc:
                raise BiofmError(f"{settings_path}: unreadable ({exc})") from None
        return cls(genes, medians, n_cells=n_cells, settings=settings)


# ------------------------------------------------------------------------------------------ building


def build_vocab(matrices: Sequence[CellMatrix], min_cells: int = 1) -> GeneVocab:
    """Vocabulary of the genes expressed (count > 0) in at least `min_cells` of the given cells.

    Pass the TRAINING cells only. Genes are pooled by identifier across the matrices and sorted; each
    gets its corpus median for rank_value tokenisation (`gene_medians`).
    """
    names: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for m in matrices:
        names.append(np.asarray(m.genes, dtype=object))
        counts.append(np.bincount(m.X.indices, minlength=m.n_genes)[: m.n_genes])
    if not names:
        raise BiofmError("no training cells to build a gene vocabulary from")
    per_gene = pd.Series(np.concatenate(counts)).groupby(np.concatenate(names)).sum()
    keep = per_gene[per_gene >= min_cells]
    if keep.empty:
        raise BiofmError(f"no gene is expressed in at least {min_cells} training cells (tokenizer.min_cells); "
                         "lower it or check that the data holds counts")
    genes = sorted(str(g) for g in keep.index)
    vocab = GeneVocab(genes, n_cells=keep.loc[genes].to_numpy(dtype=np.int64))
    vocab.gene_median = gene_medians(matrices, vocab)
    return vocab


def gene_medians(matrices: Sequence[CellMatrix], vocab: GeneVocab) -> np.ndarray:
    """Per vocabulary gene: median over the cells of (count / cell total * 10,000), non-zero counts only.

    The cell total is the cell's count summed over all genes of its file. Genes never expressed get NaN.
    """
    ids_all: list[np.ndarray] = []
    vals_all: list[np.ndarray] = []
    for m in matrices:
        col_ids, found = vocab.ids(m.genes)
        x = m.X
        totals = m.totals()
        per_row = np.diff(x.indptr)
        scale = np.divide(NORM_TOTAL, totals, out=np.zeros_like(totals), where=totals > 0)
        vals = x.data.astype(np.float64) * np.repeat(scale, per_row)
        ok = found[x.indices]
        ids_all.append(col_ids[x.indices][ok] - vocab.gene_offset)
        vals_all.append(vals[ok])
    ids = np.concatenate(ids_all) if ids_all else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(vals_all) if vals_all else np.zeros(0)
    out = np.full(vocab.n_genes, np.nan)
    if len(ids) == 0:
        return out
    order = np.lexsort((vals, ids))
    ids, vals = ids[order], vals[order]
    n = np.bincount(ids, minlength=vocab.n_genes)
    start = np.cumsum(n) - n
    has = n > 0
    lo = start[has] + (n[has] - 1) // 2
    hi = start[has] + n[has] // 2
    out[has] = (vals[lo] + vals[hi]) / 2
    return out
