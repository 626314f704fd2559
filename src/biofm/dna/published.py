"""Published DNA checkpoints, tokenised as their authors tokenise: Nucleotide Transformer v1 and DNABERT.

Both publish a `vocab.txt` of k-mers (read through the verbs `published_family` and
`published_tokenizer` that `biofm.models.load` calls):

- Nucleotide Transformer v1 (`EsmForMaskedLM`): `<unk> <pad> <mask> <cls>`, the 4**6 6-mers, the single
  nucleotides `A T C G N`, then `<eos> <bos>` beyond the model's embeddings (vocab_size 4105 of 4107
  tokens; its tokenizer_config.json sets `eos_token: null`, so neither is ever emitted). transformers'
  EsmTokenizer splits a sequence at the longest vocabulary token from the left: non-overlapping 6-mers
  with single-nucleotide fallback at an N or a tail shorter than 6, exactly NT's rule (and biofm's
  `KmerTokenizer`'s), with its own ids.
- DNABERT (`BertForMaskedLM`): `[PAD] [UNK] [CLS] [SEP] [MASK]` then the 4**k k-mers (k = 3..6).
  DNABERT's own pipeline (`seq2kmer`) writes a sequence as its overlapping k-mers separated by spaces
  before BertTokenizer; `DnabertTokenizer` does that inside the tokenizer, so every biofm caller that
  passes raw sequences (embeddings, fine-tuning, fill-mask) gets DNABERT's tokens. A k-mer holding an N
  is `[UNK]`, as in DNABERT.

`VariantKmers` gives `biofm.dna.variants` the same view of either vocabulary that it has of biofm's
`KmerTokenizer` (ids as numpy arrays, each token's first base), so `score-variants` masks the tokens
that cover a variant: one 6-mer (or two) for NT, the k overlapping k-mers for DNABERT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import BertTokenizer, EsmTokenizer

from biofm.dna.tokenizer import CONFIG_KEY, KmerTokenizer, _all_kmers, _to_codes
from biofm.errors import BiofmError

VOCAB_FILE = "vocab.txt"
NT, DNABERT = "nt-v1", "dnabert"
_BASES = frozenset("ACGT")


def _vocab(folder: Path) -> list[str] | None:
    """The tokens of `folder/vocab.txt` in id order (one per line), or None without one."""
    path = folder / VOCAB_FILE
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BiofmError(f"{path}: cannot be read as a vocabulary ({exc})") from None


def _kmer_size(tokens: list[str]) -> int | None:
    """k when the vocabulary holds all 4**k ACGT k-mers (k >= 2) and no other multi-base token."""
    multi = [t for t in tokens if len(t) > 1 and set(t) <= _BASES]
    sizes = {len(t) for t in multi}
    if len(sizes) != 1:
        return None
    k = sizes.pop()
    return k if len(set(multi)) == 4**k else None


def _layout(folder: Path, cfg: dict[str, Any]) -> tuple[str, int] | None:
    """(NT or DNABERT, k) of a published k-mer layout; None for biofm's own checkpoints and anything else."""
    if cfg.get("biofm_modality") or cfg.get("biofm_preset") or cfg.get("model_type") not in ("esm", "bert"):
        return None
    tokens = _vocab(folder)
    k = _kmer_size(tokens) if tokens else None
    if k is None:
        return None
    return (NT if cfg["model_type"] == "esm" else DNABERT), k


def _biofm_kmer_folder(folder: Path) -> bool:
    """biofm's own k-mer tokenizer beside the model (or in ../tokenizer), e.g. in a folder another tool rewrote."""
    for tok_dir in (folder, folder.parent / "tokenizer"):
        try:
            if CONFIG_KEY in json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8")):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def published_family(folder: Path, cfg: dict[str, Any]) -> str | None:
    """The DNA family a model folder is laid out as (None: not a DNA layout). Verb `published_family`."""
    layout = _layout(folder, cfg)
    if layout is not None:
        kind, k = layout
        return f"Nucleotide Transformer v1 ({k}-mer EsmTokenizer)" if kind == NT else f"DNABERT (overlapping {k}-mers)"
    return "biofm k-mer tokenizer" if _biofm_kmer_folder(folder) else None


class DnabertTokenizer(BertTokenizer):
    """BertTokenizer over DNABERT's k-mer vocabulary that first writes each sequence as its overlapping k-mers
    (DNABERT's seq2kmer), so callers pass raw sequences. Offsets (`return_offsets_mapping`) are in bases of
    the sequence: k-mer j covers [j, j + k). Sequences are upper-cased (biofm reads soft-masked bases as bases)."""

    k: int = 6

    def kmers(self, seq: str) -> str:
        seq = seq.strip().upper()
        if 0 < len(seq) < self.k:
            raise BiofmError(f"sequence {seq!r}: {len(seq)} bases, but DNABERT reads overlapping {self.k}-mers, so an "
                             f"input needs at least {self.k}")
        return " ".join(seq[i:i + self.k] for i in range(len(seq) - self.k + 1))

    def _encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("is_split_into_words"):  # already tokens: nothing to rewrite
            return super()._encode_plus(text, text_pair, **kwargs)

        def rewrite(t: Any) -> Any:
            return self.kmers(t) if isinstance(t, str) else [self.kmers(x) for x in t] if t is not None else None

        enc = super()._encode_plus(rewrite(text), rewrite(text_pair), **kwargs)
        if kwargs.get("return_offsets_mapping") and "offset_mapping" in enc:
            step = self.k + 1  # k-mer j starts at character j * (k + 1) of the spaced string

            def bases(pairs: Any) -> list[tuple[int, int]]:
                return [(int(a) // step, int(a) // step + self.k) if b > a else (int(a), int(b)) for a, b in pairs]

            spans = enc["offset_mapping"]
            batched = len(spans) > 0 and isinstance(spans[0], list)
            enc["offset_mapping"] = [bases(s) for s in spans] if batched else bases(spans)
        return enc


def published_tokenizer(folder: Path, cfg: dict[str, Any], allow_pickle: bool = False) -> Any:
    """NT-v1's EsmTokenizer or DNABERT's k-mer BertTokenizer for a layout `published_family` claims, else None
    (biofm's own tokenizer.json is read by the loader). Verb `published_tokenizer`."""
    layout = _layout(folder, cfg)
    if layout is None:
        return None
    kind, k = layout
    try:
        if kind == NT:
            tok = EsmTokenizer.from_pretrained(str(folder))
        else:
            # DNABERT's vocabulary is upper-case k-mers: never lower-case them (its DNATokenizer does not)
            tok = DnabertTokenizer.from_pretrained(str(folder), do_lower_case=False)
            tok.k = k
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BiofmError(f"{folder / VOCAB_FILE}: cannot be read as a {kind} tokenizer ({exc})") from None
    for name in ("cls_token_id", "mask_token_id", "pad_token_id"):
        if getattr(tok, name) is None:
            raise BiofmError(f"{folder / VOCAB_FILE}: the {kind} vocabulary has no {name.removesuffix('_id')}")
    return tok


# ---------------------------------------------------------------------------------------- variant scores


class VariantKmers:
    """The part of `KmerTokenizer`'s interface that `biofm.dna.variants` uses, over a published vocabulary.

    Real tokens (k-mers, and NT's single nucleotides) must be one contiguous block of ids
    [kmer_offset, len(self)): log-probabilities are normalised over that block, as for biofm's models.
    """

    def __init__(self, vocab: list[str], k: int, overlapping: bool, source: Path, model_max_length: int) -> None:
        self.k, self.overlap = k, (k - 1 if overlapping else 0)
        self.bases_per_token = 1 if overlapping else k  # what sizes the default window
        self.model_max_length = model_max_length
        ids = {t: i for i, t in enumerate(vocab)}
        specials = ("[CLS]", "[MASK]", "[PAD]", "[UNK]") if overlapping else ("<cls>", "<mask>", "<pad>", "<unk>")
        missing = [s for s in specials if s not in ids]
        if missing:
            raise BiofmError(f"{source}: no {missing[0]} token, so variants cannot be scored with this vocabulary")
        self.cls_id, self.mask_id, self.pad_id, self.unk_id = (ids[s] for s in specials)
        kmers = _all_kmers(k)  # biofm's order: base-4 value with A=0 C=1 G=2 T=3
        real = kmers + ([] if overlapping else list("ACGTN"))
        absent = [t for t in real if t not in ids]
        if absent:
            raise BiofmError(f"{source}: token {absent[0]!r} is missing from the vocabulary")
        real_ids = sorted(ids[t] for t in real)
        if real_ids != list(range(real_ids[0], real_ids[0] + len(real_ids))):
            raise BiofmError(f"{source}: the k-mer tokens are not one contiguous block of ids; biofm's variant "
                             f"scores normalise over that block")
        self.kmer_offset, self._end = real_ids[0], real_ids[-1] + 1
        self._kmer_ids = np.array([ids[t] for t in kmers], dtype=np.int32)  # biofm k-mer index -> published id
        if not overlapping:
            biofm = KmerTokenizer(k)
            self._biofm = biofm
            self._lut = np.zeros(biofm.vocab_size, dtype=np.int32)  # biofm id -> published id
            for token, i in biofm.vocab.items():
                self._lut[i] = ids.get(token, self.unk_id)
        self.token_bases = np.zeros(len(vocab), dtype=np.int64)
        self.token_bases[self._kmer_ids] = 1 if overlapping else k
        if not overlapping:
            self.token_bases[[ids[b] for b in "ACGTN"]] = 1

    def __len__(self) -> int:
        return self._end

    def encode(self, seq: str) -> np.ndarray:
        """Published ids (int32, no specials) of an upper-case ACGTN sequence; BiofmError on other characters."""
        if not self.overlap:
            return self._lut[self._biofm.encode(seq)]
        codes, has_n = _to_codes(seq, None)
        if len(codes) < self.k:
            return np.zeros(0, dtype=np.int32)
        windows = np.lib.stride_tricks.sliding_window_view(codes, self.k)  # [n - k + 1, k]
        value = (windows.astype(np.int64) & 3) @ (4 ** np.arange(self.k - 1, -1, -1, dtype=np.int64))
        out = self._kmer_ids[value]
        if has_n:
            out = np.where((windows == 4).any(1), self.unk_id, out).astype(np.int32)
        return out

    def token_starts(self, ids: np.ndarray) -> np.ndarray:
        """Window offset of each token's first base, then the window length (len(ids) + 1 values)."""
        out = np.zeros(len(ids) + 1, dtype=np.int64)
        if self.overlap:
            out[:-1] = np.arange(len(ids))
            out[-1] = len(ids) + self.overlap if len(ids) else 0
        else:
            np.cumsum(self.token_bases[ids], out=out[1:])
        return out


def variant_tokenizer(folder: Path) -> VariantKmers | None:
    """The variant-scoring view of a published NT-v1 / DNABERT folder; None for any other folder."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    layout = _layout(folder, cfg) if isinstance(cfg, dict) else None
    if layout is None:
        return None
    kind, k = layout
    vocab = _vocab(folder) or []
    max_len = int(cfg.get("max_position_embeddings") or 512)
    return VariantKmers(vocab, k, kind == DNABERT, folder / VOCAB_FILE, max_len)
