"""Nucleotide-Transformer-style non-overlapping k-mer tokenizer.

Tokenisation rule (the one NT's tokenizer applies): the sequence is split at every `N`; each ACGT run
is cut from its own start into non-overlapping k-mers; the run's leftover tail (fewer than k bases)
becomes single-nucleotide tokens and each `N` is a single `N` token. So a k-mer that would contain an
`N` is emitted as single nucleotides up to the `N`, and k-mers restart right after the `N`. This is
exactly the greedy regex `[ACGT]{k}|[ACGTN]` applied left to right, which is how the Hugging Face
export (`to_hf`) implements it, so both paths give identical ids.

Vocabulary, in this fixed order: specials `<unk> <pad> <mask> <cls> <eos>` (ids 0-4); the 4**k
k-mers over ACGT in lexicographic order (id = 5 + the k-mer read as a base-4 number with A=0 C=1 G=2
T=3); then the single nucleotides `A C G T N`. For k == 1 the single nucleotides are the k-mers, so
the vocabulary is the specials plus `A C G T N` with no duplicates. Because the order is arithmetic,
`encode` never looks tokens up in a dict: it computes ids with numpy, which is what makes tokenising a
genome cheap compared with a per-token string pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from biofm.errors import BiofmError
from biofm.io.atomic import write_files_into

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>")
NUCLEOTIDES = "ACGTN"
MIN_K, MAX_K = 1, 8
# Key written into tokenizer_config.json: transformers keeps unknown keys as init kwargs, so the
# folder stays loadable by plain `AutoTokenizer` while still telling biofm which k built it.
CONFIG_KEY = "biofm_kmer_k"
DEFAULT_MODEL_MAX_LENGTH = 2048
# encode_batch tokenises about this many bases per vectorised pass: large enough to amortise numpy's
# per-call overhead, small enough that the handful of temporary arrays stay in cache (measured ~2x).
_BATCH_BASES = 1 << 20
# Bases per block for the elementwise passes over long single sequences (fits in L2 with temporaries).
_BLOCK = 1 << 18

_A, _C, _G, _T, _N = (ord(ch) for ch in NUCLEOTIDES)


class KmerTokenizer:
    """Non-overlapping k-mer tokenizer with NT's vocabulary layout and N handling (see module doc)."""

    def __init__(self, k: int = 6, *, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not MIN_K <= int(k) <= MAX_K:
            raise BiofmError(f"k-mer size k must be an integer from {MIN_K} to {MAX_K}, got {k!r}")
        if model_max_length < 1:
            raise BiofmError(f"model_max_length must be positive, got {model_max_length}")
        self.k = int(k)
        self.model_max_length = int(model_max_length)
        self.unk_id, self.pad_id, self.mask_id, self.cls_id, self.eos_id = range(len(SPECIAL_TOKENS))
        self.special_ids: tuple[int, ...] = tuple(range(len(SPECIAL_TOKENS)))
        self.kmer_offset = len(SPECIAL_TOKENS)
        n_kmers = 4**self.k
        # Id of single `A`; the singles follow in ACGTN order. With k == 1 the 1-mers are the singles.
        self.single_offset = self.kmer_offset + (0 if self.k == 1 else n_kmers)

        kmers = _all_kmers(self.k)
        tokens = [*SPECIAL_TOKENS, *kmers]
        tokens += ["N"] if self.k == 1 else list(NUCLEOTIDES)
        self.tokens: list[str] = tokens
        self.vocab: dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
        bases = np.ones(len(tokens), dtype=np.int32)
        bases[: self.kmer_offset] = 0
        bases[self.kmer_offset : self.kmer_offset + n_kmers] = self.k
        # Bases covered by each id: summing it over a batch turns a per-token loss into bits per base.
        self.token_bases: np.ndarray = bases
        self._token_array = np.array(tokens, dtype=object)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"KmerTokenizer(k={self.k}, vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------ encoding
    def encode(self, seq: str) -> np.ndarray:
        """Token ids (int32, no special tokens) of an upper-case ACGTN string.

        Raises BiofmError naming the first character outside ACGTN.
        """
        codes, has_n = _to_codes(seq, None)
        n = len(codes)
        if not has_n:
            # Common case (a window with no N): one run, so k-mers are a plain reshape of the codes.
            n_kmers = n // self.k
            out = np.empty(n_kmers + n - n_kmers * self.k, dtype=np.int32)
            out[:n_kmers] = _kmer_values(codes[: n_kmers * self.k].reshape(n_kmers, self.k))
            out[:n_kmers] += self.kmer_offset
            out[n_kmers:] = codes[n_kmers * self.k :]
            out[n_kmers:] += self.single_offset
            return out
        ids, _ = self._tokenize(codes, np.array([0, n], dtype=np.int64))
        return ids

    def encode_batch(self, seqs: Sequence[str]) -> list[np.ndarray]:
        """`encode` for many sequences at once; each result is as if encoded alone.

        The sequences are joined and tokenised in one vectorised pass with their boundaries acting as
        run breaks (like an N that emits no token), which avoids per-call numpy overhead on the short
        windows a dataset is built from. Groups of about a megabase keep the passes in CPU cache.
        Results are views into one array per group.
        """
        out: list[np.ndarray] = []
        group: list[str] = []
        size = 0
        for seq in seqs:
            group.append(seq)
            size += len(seq)
            if size >= _BATCH_BASES:
                out += self._encode_group(group, len(out))
                group, size = [], 0
        if group:
            out += self._encode_group(group, len(out))
        return out

    def _encode_group(self, seqs: list[str], first_index: int) -> list[np.ndarray]:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        bounds = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        codes, _ = _to_codes("".join(seqs), bounds, first_index)
        ids, per_seq = self._tokenize(codes, bounds)
        ends = np.cumsum(per_seq)
        starts = ends - per_seq
        return [ids[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def _tokenize(self, codes: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids for `codes` (0-4, 4 = N) split into sequences at `bounds`; also tokens per sequence.

        A run is a maximal ACGT stretch ended by an N (which then emits an N token) or by a sequence
        boundary (which emits nothing). Run r yields nk[r] k-mers then rem[r] singles (then its N).
        Singles are few (tails and Ns), so they are placed individually; the k-mer bases of all runs,
        concatenated, are a multiple of k long and get their values from one reshape, as in the N-free
        fast path. No array is built per base beyond the codes themselves (and, for N-dense input, one
        boolean mask).
        """
        k = self.k
        n_pos = np.flatnonzero(codes == 4)
        inner = bounds[1:]  # includes the total length, which ends the last run
        ev_pos = np.concatenate([n_pos, inner])
        ev_is_n = np.concatenate([np.ones(len(n_pos), np.int64), np.zeros(len(inner), np.int64)])
        # A boundary sorts before an N at the same position: the N belongs to the next sequence.
        order = np.lexsort((ev_is_n, ev_pos))
        run_end, ev_is_n = ev_pos[order], ev_is_n[order]
        run_start = np.empty_like(run_end)
        run_start[0] = 0
        run_start[1:] = run_end[:-1] + ev_is_n[:-1]
        lens = run_end - run_start
        nk = lens // k
        n_single = lens - nk * k + ev_is_n
        ntok = nk + n_single
        # Sequence of each run = number of boundary events before it.
        is_bound = 1 - ev_is_n
        seq_of_run = np.cumsum(is_bound) - is_bound
        per_seq = np.bincount(seq_of_run, weights=ntok, minlength=len(bounds) - 1).astype(np.int64)

        first_tok = np.cumsum(ntok) - ntok
        total = int(first_tok[-1] + ntok[-1])
        kmer_end = run_start + nk * k
        # Singles of run r sit at bases kmer_end[r], kmer_end[r]+1, ... and at output slots
        # first_tok[r]+nk[r], ...: two "concatenated ranges" built with one repeat each.
        n_sing_total = int(n_single.sum())
        sing_first = np.cumsum(n_single) - n_single
        within = np.arange(n_sing_total, dtype=np.int64)
        single_pos = within + np.repeat(kmer_end - sing_first, n_single)
        single_slot = within + np.repeat(first_tok + nk - sing_first, n_single)

        if len(run_start) * 512 < len(codes):  # few long runs: slicing beats a per-base mask
            kmer_bases = np.concatenate(
                [codes[a:b] for a, b in zip(run_start.tolist(), kmer_end.tolist(), strict=True)]
            )
        else:
            covered = np.ones(len(codes), dtype=bool)
            covered[single_pos] = False
            kmer_bases = codes[covered]
        ids = np.empty(total, dtype=np.int32)
        ids[single_slot] = codes[single_pos]
        ids[single_slot] += self.single_offset
        kmer_slot = np.ones(total, dtype=bool)
        kmer_slot[single_slot] = False
        ids[kmer_slot] = _kmer_values(kmer_bases.reshape(-1, k)) + self.kmer_offset
        return ids, per_seq

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Any, *, skip_special_tokens: bool = True) -> str:
        """Concatenate the tokens' bases; specials are dropped, or rendered as e.g. `<mask>` if asked.

        For ids without specials, `decode(encode(s)) == s` exactly.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(arr) and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = arr[(arr < 0) | (arr >= self.vocab_size)][0]
            raise BiofmError(f"token id {int(bad)} is outside the vocabulary (size {self.vocab_size})")
        if skip_special_tokens:
            arr = arr[arr >= self.kmer_offset]
        return "".join(self._token_array[arr].tolist())

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        return [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1)]

    # ------------------------------------------------------------------ Hugging Face export
    def to_hf(self) -> PreTrainedTokenizerFast:
        """The same tokenizer as a `transformers` fast tokenizer, loadable without biofm.

        A normalizer upper-cases a/c/g/t/n and maps U/u to T, so soft-masked or RNA input does not
        silently become `<unk>`; it leaves upper-case ACGTN untouched, so ids and the decode round
        trip match `encode` there. Other characters become `<unk>` (biofm's `encode` raises instead).
        """
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        backend = Tokenizer(models.WordLevel(dict(self.vocab), unk_token="<unk>"))
        backend.normalizer = normalizers.Sequence(
            [normalizers.Replace(ch.lower(), ch) for ch in NUCLEOTIDES]
            + [normalizers.Replace("U", "T"), normalizers.Replace("u", "T")]
        )
        # "isolated" keeps every regex match as its own piece (and any unmatched text as a piece that
        # maps to <unk>); leftmost-first alternation tries the k-mer before the single base.
        backend.pre_tokenizer = pre_tokenizers.Split(
            Regex(f"[ACGT]{{{self.k}}}|[ACGTN]"), behavior="isolated", invert=False
        )
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A",
            pair="<cls> $A <eos> $B",
            special_tokens=[("<cls>", self.cls_id), ("<eos>", self.eos_id)],
        )
        backend.decoder = decoders.Fuse()  # concatenate tokens: bases, no spaces
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            cls_token="<cls>",
            eos_token="<eos>",
            bos_token="<cls>",
            model_max_length=self.model_max_length,
            clean_up_tokenization_spaces=False,
            **{CONFIG_KEY: self.k},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the Hugging Face tokenizer files into folder `path` (loadable by `AutoTokenizer` alone).

        Like `save_pretrained`, an existing folder is added to, not replaced, so the tokenizer can sit
        beside a model's weights; each file is renamed into place, so none is ever half-written. A
        new folder appears all at once.
        """
        return write_files_into(path, self._write_hf, prefix=".biofm-tokenizer-")

    def _write_hf(self, folder: Path) -> None:
        self.to_hf().save_pretrained(str(folder))
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        if cfg.get(CONFIG_KEY) != self.k:  # transformers keeps extra init kwargs; be sure anyway
            cfg[CONFIG_KEY] = self.k
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> KmerTokenizer:
        """Rebuild from a folder written by `save`; BiofmError if it is not one."""
        folder = Path(path)
        cfg_path, tok_path = folder / "tokenizer_config.json", folder / "tokenizer.json"
        if not cfg_path.is_file() or not tok_path.is_file():
            raise BiofmError(
                f"{folder}: not a biofm k-mer tokenizer folder "
                "(expected tokenizer_config.json and tokenizer.json)"
            )
        try:
            cfg = json.loads(cfg_path.read_text())
            vocab = json.loads(tok_path.read_text())["model"]["vocab"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BiofmError(f"{folder}: unreadable tokenizer files ({exc})") from exc
        k = cfg.get(CONFIG_KEY) if isinstance(cfg, dict) else None
        if not isinstance(k, int) or isinstance(k, bool):
            raise BiofmError(f"{cfg_path}: not a biofm k-mer tokenizer (no integer {CONFIG_KEY!r} key)")
        max_len = cfg.get("model_max_length", DEFAULT_MODEL_MAX_LENGTH)
        if not isinstance(max_len, int) or max_len < 1 or max_len > 1 << 40:
            max_len = DEFAULT_MODEL_MAX_LENGTH
        tok = cls(k, model_max_length=max_len)
        if vocab != tok.vocab:
            raise BiofmError(f"{tok_path}: vocabulary does not match a biofm k={k} k-mer tokenizer")
        return tok


def _all_kmers(k: int) -> list[str]:
    """All ACGT k-mers in lexicographic order, i.e. by base-4 value (A=0 C=1 G=2 T=3)."""
    idx = np.arange(4**k, dtype=np.int64)
    digits = (idx[:, None] >> (2 * np.arange(k - 1, -1, -1))) & 3
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[digits]
    return [row.tobytes().decode("ascii") for row in letters]


def _kmer_values(mat: np.ndarray) -> np.ndarray:
    """Base-4 value of each row of 0-3 codes (column 0 most significant), as int32.

    Done in row blocks so the k shift/or passes run in cache rather than streaming a whole
    chromosome's worth of int32 from memory k times.
    """
    out = np.empty(len(mat), dtype=np.int32)
    step = _BLOCK // mat.shape[1] + 1
    for lo in range(0, len(mat), step):
        block = mat[lo : lo + step]
        val = out[lo : lo + step]
        val[:] = block[:, 0]
        for j in range(1, mat.shape[1]):
            val <<= 2
            val |= block[:, j]
    return out


def _to_codes(seq: str, bounds: np.ndarray | None, first_index: int = 0) -> tuple[np.ndarray, bool]:
    """Codes A0 C1 G2 T3 N4 (uint8) and whether any N occurs; BiofmError on any other character.

    Uses bit arithmetic on the ASCII bytes rather than a lookup table: ((b>>1) ^ (b>>2)) & 3 is
    0, 1, 2, 3 for A, C, G, T, and a 256-entry gather costs several times more per base. Long input
    is processed in cache-sized blocks. `bounds` (sequence start offsets) and `first_index` only
    serve to name the offending sequence in the error.
    """
    try:
        raw = seq.encode("ascii")
    except UnicodeEncodeError as exc:
        _raise_bad_char(seq[exc.start], exc.start, bounds, first_index)
    x_all = np.frombuffer(raw, dtype=np.uint8)
    codes_all = np.empty(len(x_all), dtype=np.uint8)
    has_n = raw.find(b"N") >= 0
    for lo in range(0, len(x_all), _BLOCK):
        x = x_all[lo : lo + _BLOCK]
        codes = codes_all[lo : lo + _BLOCK]
        np.right_shift(x, 1, out=codes)
        codes ^= x >> 2
        codes &= 3
        is_n = x == _N
        ok = is_n | (x == _A)
        ok |= x == _C
        ok |= x == _G
        ok |= x == _T
        if not ok.all():
            pos = lo + int(np.argmin(ok))
            _raise_bad_char(seq[pos], pos, bounds, first_index)
        if has_n:
            codes[is_n] = 4
    return codes_all, has_n


def _raise_bad_char(ch: str, pos: int, bounds: np.ndarray | None, first_index: int) -> NoReturn:
    where = f"position {pos}"
    if bounds is not None:
        i = int(np.searchsorted(bounds, pos, side="right")) - 1
        where = f"sequence {first_index + i}, position {pos - int(bounds[i])}"
    raise BiofmError(f"invalid character {ch!r} at {where}: sequences must be upper-case A, C, G, T or N")


def train_command(out: Path, k: int) -> str:
    """`biofm tokenizer train`: write the k-mer tokenizer; returns the line to print."""
    tok = KmerTokenizer(k)
    tok.save(out)
    return f"wrote {out} ({tok.vocab_size} tokens)"


def encode_command(folder: Path, sequence: str) -> list[str]:
    """`biofm tokenizer encode`: the sequence's tokens and their ids, one line each."""
    from biofm.dna.fasta import normalise_sequence

    tok = KmerTokenizer.load(folder)
    ids = tok.encode(normalise_sequence(sequence))
    inv = {v: k for k, v in tok.vocab.items()}
    return [" ".join(inv[int(i)] for i in ids), " ".join(str(int(i)) for i in ids)]
