"""Peaks → model inputs: the peak vocabulary, the token budget, masked-peak queries and contrastive views.

Peak vocabulary (`PeakVocab`): specials `<pad>`=0, `<mask>`=1, `<cls>`=2, `<unk>`=3, `<eos>`=4 (the same
interface as every biofm tokenizer), then one token per peak in genome order, so token order = genome
order. It is saved beside the model as a Hugging Face WordLevel tokenizer over the peak names
(`chr1_9980_10480`) plus `peak_vocab.json` (coordinates, training accessibility counts, settings), so a
new file's peaks map onto the model's by coordinates, whatever their column order or name style.

Masked-peak queries (`sample_queries`), per cell, from an RNG keyed by (seed, example key):
- each kept accessible peak is hidden with probability `r_pos` (train.mask_prob): a positive query;
- each inaccessible peak is drawn with probability `r_neg`: a negative query. Budget-dropped accessible
  peaks are never negatives (they are accessible).
Queries are selected independently of everything but their own state, so for peak j
  P(accessible | j is a query) = p_j r_pos / (p_j r_pos + (1 - q_j) r_neg)
with p_j the rate at which j is a kept accessible peak and q_j the rate at which it is accessible in
the training cells: the context-free baseline the objective scores beside the model (see objectives).
Hidden positives and negatives enter the input alike (peak id, token type "query"): nothing but
context says which is which, in training and evaluation the same (no 80/10/10 rule is needed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from biofm.atac.peaks import chrom_sort_key
from biofm.errors import BiofmError
from biofm.io.atomic import json_safe, write_files_into

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<unk>", "<eos>")
VOCAB_FILE = "peak_vocab.json"
FORMAT = "biofm-peak-vocab"
# token types of the peak-token design
NO_STATE, ACCESSIBLE, QUERY = 0, 1, 2
N_TOKEN_TYPES = 3


class PeakVocab:
    """Peak ↔ token id, the genomic position id of each peak, and the tokenisation settings.

    Peaks are kept in the order given, which is the peak reader's genome order (`biofm.atac.peaks`)."""

    pad_id, mask_id, cls_id, unk_id, eos_id = range(len(SPECIAL_TOKENS))
    special_ids: tuple[int, ...] = tuple(range(len(SPECIAL_TOKENS)))
    offset = len(SPECIAL_TOKENS)

    def __init__(self, chrom: Sequence[str], start: np.ndarray, end: np.ndarray, *,
                 n_cells: np.ndarray | None = None, settings: dict[str, Any] | None = None):
        self.chrom = np.asarray([str(c) for c in chrom], dtype=object)
        self.start = np.asarray(start, dtype=np.int64)
        self.end = np.asarray(end, dtype=np.int64)
        n = len(self.chrom)
        if n == 0:
            raise BiofmError("peak vocabulary: no peaks")
        if self.start.shape != (n,) or self.end.shape != (n,):
            raise ValueError("chrom, start and end need one value per peak")
        self.names = np.asarray([f"{c}_{s}_{e}" for c, s, e in zip(self.chrom, self.start, self.end, strict=True)],
                                dtype=object)
        uniq, counts = np.unique(self.names.astype(str), return_counts=True)
        if (counts > 1).any():
            raise BiofmError(f"peak vocabulary: peak {uniq[counts > 1][0]} appears twice")
        self.n_cells = np.zeros(n, dtype=np.int64) if n_cells is None else np.asarray(n_cells, dtype=np.int64)
        self.settings: dict[str, Any] = dict(settings or {})
        self._index = {name: i for i, name in enumerate(self.names.tolist())}

    # ------------------------------------------------------------------ lookups
    @property
    def n_peaks(self) -> int:
        return len(self.names)

    @property
    def vocab_size(self) -> int:
        return self.offset + self.n_peaks

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"PeakVocab(n_peaks={self.n_peaks}, vocab_size={self.vocab_size})"

    def align(self, chrom: Sequence[str], start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For peaks given by coordinates: their index in this vocabulary (-1 when absent) and a found mask."""
        idx = np.array([self._index.get(f"{c}_{int(s)}_{int(e)}", -1) for c, s, e in zip(chrom, start, end,
                                                                                          strict=True)],
                       dtype=np.int64)
        return idx, idx >= 0

    def positions(self) -> tuple[np.ndarray, int]:
        """Genomic position id of every peak ([n_peaks], >= 1) and the number of position ids (incl. 0 for
        `<cls>`); see AtacTokenizerConfig. The chromosome slots and bins are those saved in the settings."""
        bin_bp = int(self.settings["position_bin_bp"])
        slots = {c: i for i, c in enumerate(self.settings["chromosomes"])}
        bins = int(self.settings["bins_per_chromosome"])
        mid = (self.start + self.end) // 2
        slot = np.array([slots[c] for c in self.chrom.tolist()], dtype=np.int64)
        pos = 1 + slot * bins + np.minimum(mid // bin_bp, bins - 1)
        return pos.astype(np.int64), 1 + len(slots) * bins

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256("\n".join(self.names.tolist()).encode())
        h.update(json.dumps(json_safe(self.settings), sort_keys=True, default=str).encode())
        return h.hexdigest()[:20]

    @staticmethod
    def layout(chrom: np.ndarray, end: np.ndarray, position_bin_bp: int) -> dict[str, Any]:
        """The position-id layout for these peaks: chromosome slots (natural order) and bins per chromosome."""
        chromosomes = sorted({str(c) for c in chrom}, key=chrom_sort_key)
        bins = int(np.max(end) // position_bin_bp) + 1
        return {"position_bin_bp": int(position_bin_bp), "chromosomes": chromosomes, "bins_per_chromosome": bins}

    # ------------------------------------------------------------------ Hugging Face export
    def to_hf(self) -> PreTrainedTokenizerFast:
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *self.names.tolist()])}
        backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A", pair="<cls> $A <eos> $B",
            special_tokens=[("<cls>", self.cls_id), ("<eos>", self.eos_id)],
        )
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
            cls_token="<cls>", eos_token="<eos>", bos_token="<cls>",
            model_max_length=int(self.settings.get("max_peaks", 512)) + 1, clean_up_tokenization_spaces=False,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Tokenizer files plus `peak_vocab.json` into folder `path` (added to an existing model folder)."""
        return write_files_into(path, self._write, prefix=".biofm-peakvocab-")

    def _write(self, folder: Path) -> None:
        self.to_hf().save_pretrained(str(folder))
        payload = {"format": FORMAT, "version": 1, "special_tokens": list(SPECIAL_TOKENS),
                   "chrom": self.chrom.tolist(), "start": self.start.tolist(), "end": self.end.tolist(),
                   "n_cells": self.n_cells.tolist(), "settings": self.settings}
        (folder / VOCAB_FILE).write_text(json.dumps(json_safe(payload)) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PeakVocab:
        file = Path(path) / VOCAB_FILE
        if not file.is_file():
            raise BiofmError(f"{path}: not a biofm ATAC model or tokenizer (no {VOCAB_FILE})")
        try:
            data = json.loads(file.read_text())
            if data.get("format") != FORMAT or list(data.get("special_tokens", [])) != list(SPECIAL_TOKENS):
                raise ValueError("not a biofm peak vocabulary of this version")
            return cls(data["chrom"], np.asarray(data["start"]), np.asarray(data["end"]),
                       n_cells=np.asarray(data["n_cells"]), settings=data["settings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BiofmError(f"{file}: unreadable peak vocabulary ({exc})") from None


# ------------------------------------------------------------------------------------------ cells


def budget(X: sp.csr_matrix, keys: np.ndarray, max_peaks: int, seed: int) -> sp.csr_matrix:
    """The kept accessible peaks of each cell (rows of binary CSR `X`, column indices sorted): all of them,
    or for a cell with more than `max_peaks` a uniform random subset of `max_peaks` (RNG keyed by
    (seed, the cell's key)), still in genome order. Returns a binary CSR of the same shape."""
    X = sp.csr_matrix(X)
    X.sort_indices()
    per = np.diff(X.indptr)
    over = np.flatnonzero(per > max_peaks)
    if not len(over):
        return X
    keep = np.ones(X.nnz, dtype=bool)
    for r in over.tolist():  # few cells: a per-cell RNG is cheap and reproducible
        lo, n = X.indptr[r], per[r]
        rng = np.random.default_rng([seed, int(keys[r]), 11])
        drop = np.ones(n, dtype=bool)
        drop[rng.choice(n, max_peaks, replace=False)] = False
        keep[lo:lo + n][drop] = False
    rows = np.repeat(np.arange(X.shape[0]), per)[keep]
    out = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows, X.indices[keep])), shape=X.shape)
    out.sort_indices()
    return out


def free_peaks(accessible: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The k-th inaccessible peak (0-based) for each k, given the cell's sorted accessible peaks.

    With b_j = a_j - j (inaccessible peaks before a_j), the k-th free peak is k + #{j : b_j <= k}."""
    b = accessible - np.arange(len(accessible))
    return k + np.searchsorted(b, k, side="right")


@dataclass
class Queries:
    """One cell's masked-peak queries (peak indices, sorted), and what stays visible."""

    observed: np.ndarray  # kept accessible peaks left in the input
    positives: np.ndarray  # hidden kept accessible peaks
    negatives: np.ndarray  # sampled inaccessible peaks


def sample_queries(kept: np.ndarray, accessible: np.ndarray, n_peaks: int, r_pos: float, r_neg: float,
                   rng: np.random.Generator) -> Queries:
    """Hide each kept peak with probability r_pos; draw each inaccessible peak with probability r_neg."""
    hide = rng.random(len(kept)) < r_pos
    n_free = n_peaks - len(accessible)
    k = int(rng.binomial(n_free, r_neg)) if n_free > 0 and r_neg > 0 else 0
    picks = np.sort(rng.choice(n_free, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    return Queries(kept[~hide], kept[hide], free_peaks(accessible, picks.astype(np.int64)))


def dropout_view(peaks: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """A random peak-dropout view: each peak kept with probability 1 - drop, at least one kept."""
    keep = rng.random(len(peaks)) >= drop
    if len(peaks) and not keep.any():
        keep[rng.integers(len(peaks))] = True
    return peaks[keep]


def pack_rows(cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]], positions: np.ndarray, pad_id: int,
              cls_id: int, offset: int) -> dict[str, np.ndarray]:
    """`<cls>` + each cell's tokens, padded only to the longest cell of the batch.

    cells: per cell (peak indices in genome order, their token types, their labels: 1 / 0 for a query
    that is / is not accessible, -1 for no target). Returns input_ids, token_type_ids, position_ids,
    attention_mask and labels, each [B, 1 + longest cell]."""
    width = 1 + max((len(p) for p, _, _ in cells), default=0)
    b = len(cells)
    ids = np.full((b, width), pad_id, dtype=np.int64)
    types = np.zeros((b, width), dtype=np.int64)
    pos = np.zeros((b, width), dtype=np.int64)
    labels = np.full((b, width), -1, dtype=np.int64)
    ids[:, 0] = cls_id
    for r, (peaks, t, lab) in enumerate(cells):
        n = len(peaks)
        ids[r, 1:n + 1] = peaks + offset
        types[r, 1:n + 1] = t
        pos[r, 1:n + 1] = positions[peaks]
        labels[r, 1:n + 1] = lab
    return {"input_ids": ids, "token_type_ids": types, "position_ids": pos, "attention_mask": ids != pad_id,
            "labels": labels}


def merge_sorted(groups: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of several groups (peaks, token type, label) merged into genome order: (peaks, types, labels)."""
    peaks = np.concatenate([np.asarray(p, dtype=np.int64) for p, _, _ in groups])
    types = np.concatenate([np.full(len(p), t, dtype=np.int64) for p, t, _ in groups])
    labels = np.concatenate([np.full(len(p), lab, dtype=np.int64) for p, _, lab in groups])
    order = np.argsort(peaks, kind="stable")
    return peaks[order], types[order], labels[order]


def aligned_binary(matrix: Any, vocab: PeakVocab, source: str) -> tuple[sp.csr_matrix, float]:
    """A `PeakMatrix`'s binarised counts with the columns of `vocab` (peaks matched by coordinates; the
    file's other peaks dropped, the vocabulary's missing ones left 0), and the fraction of the file's peaks
    the vocabulary has. BiofmError when none matches."""
    idx, found = vocab.align(matrix.chrom, matrix.start, matrix.end)
    if not found.any():
        raise BiofmError(f"{source}: none of its {matrix.n_peaks} peaks is in the model's peak set (the file's look "
                         f"like {matrix.peak_names[0]}, the model's like {vocab.names[0]}); same genome build?")
    X = sp.csr_matrix(matrix.binary())
    cols = np.flatnonzero(found)
    X = X[:, cols]
    # re-label the kept columns with their vocabulary index: [cells, n_peaks of the vocabulary]
    X = sp.csr_matrix((X.data, idx[cols][X.indices], X.indptr), shape=(X.shape[0], vocab.n_peaks))
    X.sort_indices()
    return X, float(found.mean())
