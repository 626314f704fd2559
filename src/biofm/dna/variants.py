"""Zero-shot variant effect scores from a masked DNA language model.

For an SNV or MNV the score is the masked-LM log-likelihood ratio: the reference window is tokenised,
every token overlapping the variant is masked (all at once, one forward pass), and the model's
log-probabilities of the alt and ref tokens at those positions are compared,
`llr = log p(alt tokens) - log p(ref tokens)` in nats. Negative means the model finds the alt allele
less likely than the reference in this context. k-mer tokens span several bases, so the tokens scored
are whole k-mers: the ref k-mer(s) versus the same k-mer(s) with the alt base(s) substituted, which is
only meaningful when ref and alt windows cut into tokens at the same boundaries. That holds for
equal-length ACGT alleles (the N layout of the window, which alone decides boundaries, is unchanged);
anything else gets `llr = NaN` and a `note` rather than a number computed over misaligned tokens.

Decisions:
- Indels (len(ref) != len(alt)) are scored, not rejected: `llr`, `ref_logp` and `alt_logp` are NaN with
  a note, while `embedding_cosine_distance` is still computed (it needs no token alignment). A
  mixed file therefore scores all its SNVs instead of failing on its first indel.
- Alleles containing N get NaN likelihoods with a note: the likelihood of an unknown base is not a
  variant effect.
- The window is centred on the variant and shifted (not shrunk) at chromosome ends, so a variant near
  an end still sees `window_bp` of context when the chromosome is long enough. Tokenised windows
  longer than the model context (N-rich windows tokenise into more tokens) are cropped at token
  boundaries around the variant, which leaves every remaining token unchanged.
- The embedding distance uses the last entry of `layer_embeddings` (mean over all tokens, `<cls>`
  included), the same vectors `biofm embed` writes, so the two commands agree.
- Input columns named like an output column are replaced, so a scored file can be scored again.
- Variants come from a VCF (`biofm.dna.vcf`: multi-allelic records split, symbolic alleles skipped and
  counted, indels kept) or a TSV/CSV table; `read_variants` decides by name or a `##fileformat=VCF` line.
- The reference is read through a pyfaidx index over a normalised copy in the cache (`IndexedReference`
  says why a copy), one window per variant: memory no longer grows with chromosome length, and the
  windows, hence the scores, are the same as cutting them from whole chromosome strings.
- Published checkpoints score with their own vocabulary (`biofm.dna.published.VariantKmers`): NT-v1 as
  biofm's k-mers; DNABERT's overlapping k-mers mask the k tokens that cover an SNV (each k-mer holding the
  base), and a masked k-mer that holds an N is `[UNK]`, so that variant gets NaN with a note.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyfaidx
import torch
from torch.nn import functional as F
from transformers import PreTrainedModel

from biofm.dna.fasta import RecordInfo, read_fasta_chunks
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.vcf import is_vcf, read_vcf
from biofm.errors import BiofmError, where
from biofm.io.atomic import atomic_path
from biofm.io.files import cache_root
from biofm.models.device import current_device, resolve_device
from biofm.models.load import load_masked_lm, resolve_model_dir
from biofm.models.mlm import layer_embeddings, masked_logits
from biofm.models.published import context_length
from biofm.progress import tracked

REQUIRED_COLUMNS = ("chrom", "pos", "ref", "alt")
OUTPUT_COLUMNS = ("llr", "ref_logp", "alt_logp", "embedding_cosine_distance", "note")
MAX_DEFAULT_WINDOW_BP = 1200  # beyond ~1 kb the ratio barely changes and cost grows quadratically
MAX_LISTED_MISMATCHES = 5
_ALLELE_CHARS = frozenset("ACGTN")

NOTE_INDEL = "indel: the likelihood ratio needs equal-length ref and alt"
NOTE_N_ALLELE = "allele contains N: no likelihood ratio"
NOTE_BOUNDARIES = "ref and alt windows tokenise with different token boundaries: no likelihood ratio"
NOTE_UNKNOWN = "a token covering the variant is unknown to the model (an N in its k-mer): no likelihood ratio"


@dataclass
class Variant:
    line: int
    chrom: str
    pos: int  # 1-based
    ref: str
    alt: str
    row: dict[str, str]


@dataclass
class _Prepared:
    """Token ids (with `<cls>`) of one variant's ref and alt windows, and what to mask."""

    ref_ids: np.ndarray
    alt_ids: np.ndarray
    masked: np.ndarray | None = None  # positions (in ref_ids) of the tokens covering the variant
    note: str = ""
    scores: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- inputs
def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
    return path.open(encoding="utf-8-sig", newline="")  # -sig: spreadsheet exports often start with a BOM


def _delimiter(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def read_variants(path: str | Path, log: Callable[[str], None] | None = None) -> tuple[list[str], list[Variant]]:
    """(header, variants) of a VCF or a TSV/CSV table; BiofmError at the first malformed line.

    A VCF is recognised by its name (`.vcf`, `.vcf.gz`, `.vcf.bgz`) or a `##fileformat=VCF` first line
    and read by `biofm.dna.vcf.read_vcf`, whose one summary line (records split, indels kept, symbolic
    alleles skipped) goes to `log` (default stderr). Anything else is a TSV (CSV by a `.csv` name).
    Checks that need the reference (chromosome names, positions, ref bases) are done by the caller.
    A leading `#` on a table's header is accepted, as BED/VCF-style tables often have one.
    """
    p = Path(path)
    if not p.exists():
        raise BiofmError(f"{path}: file not found")
    if p.is_dir():
        raise BiofmError(f"{path}: is a directory, expected a variants table")
    if p.stat().st_size == 0:
        raise BiofmError(f"{path}: empty file (0 bytes); expected a header with columns chrom, pos, ref, alt")
    if is_vcf(p):
        header, variants, summary = read_vcf(path)
        (log or _stderr)(summary.line(path))
        return header, variants
    try:
        with _open_text(p) as fh:
            return _parse_variants(path, csv.reader(fh, delimiter=_delimiter(p)))
    except UnicodeDecodeError:
        raise BiofmError(f"{path}: not a text table (binary or non-UTF-8 data)") from None
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise BiofmError(f"{path}: unreadable ({exc})") from None
    except csv.Error as exc:
        raise BiofmError(f"{path}: malformed table ({exc})") from None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_variants(path: str | Path, reader: Any) -> tuple[list[str], list[Variant]]:
    header: list[str] | None = None
    variants: list[Variant] = []
    index: dict[str, int] = {}
    line = 0
    for cols in reader:
        line = reader.line_num
        if not cols or all(not c.strip() for c in cols):
            continue
        if header is None:
            cols = [c.strip() for c in cols]
            cols[0] = cols[0].lstrip("#").strip()
            if "\x00" in "".join(cols):
                raise BiofmError(f"{where(path, line)}: not a text table (binary data)")
            lower = [c.lower() for c in cols]
            missing = [c for c in REQUIRED_COLUMNS if c not in lower]
            if missing:
                delim = "comma" if _delimiter(Path(path)) == "," else "tab"
                raise BiofmError(
                    f"{where(path, line)}: missing column(s) {', '.join(missing)} in the header "
                    f"(found: {', '.join(cols) or 'nothing'}); expected {delim}-separated columns "
                    f"{', '.join(REQUIRED_COLUMNS)}"
                )
            dups = sorted({c for c in lower if lower.count(c) > 1})
            if dups:
                raise BiofmError(f"{where(path, line)}: duplicate column(s) {', '.join(dups)} in the header")
            header = cols
            index = {c: lower.index(c) for c in REQUIRED_COLUMNS}
            continue
        loc = where(path, line)
        if len(cols) != len(header):
            raise BiofmError(f"{loc}: expected {len(header)} columns as in the header, found {len(cols)}")
        chrom = cols[index["chrom"]].strip()
        if not chrom:
            raise BiofmError(f"{loc}: empty chrom")
        pos_text = cols[index["pos"]].strip()
        try:
            pos = int(pos_text)
        except ValueError:
            raise BiofmError(f"{loc}: pos {pos_text!r} is not an integer") from None
        if pos < 1:
            raise BiofmError(f"{loc}: pos {pos} must be at least 1 (positions are 1-based)")
        alleles = []
        for name in ("ref", "alt"):
            allele = cols[index[name]].strip().upper()
            if not allele:
                raise BiofmError(f"{loc}: empty {name} allele")
            bad = sorted(set(allele) - _ALLELE_CHARS)
            if bad:
                raise BiofmError(
                    f"{loc}: {name} {cols[index[name]].strip()!r} has character(s) {', '.join(map(repr, bad))}; "
                    "alleles must be A, C, G, T or N (indels are written as full alleles, not '-' or '.')"
                )
            alleles.append(allele)
        row = dict(zip(header, cols, strict=True))
        variants.append(Variant(line, chrom, pos, alleles[0], alleles[1], row))
    if header is None:
        raise BiofmError(f"{path}: no header line; expected columns {', '.join(REQUIRED_COLUMNS)}")
    if not variants:
        raise BiofmError(f"{path}: no variants (only a header)")
    return header, variants


# ---------------------------------------------------------------------------------------------- reference
class _IndexedChrom:
    """One reference record seen through the index: `len()` and `[start:end]` as on a `str`, so
    `prepare` takes either; a slice reads only those bases from disk."""

    def __init__(self, record: Any, length: int):
        self._record = record  # pyfaidx.FastaRecord over the normalised cache copy (as_raw: slices are str)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key: slice) -> str:
        start, stop, step = key.indices(self._length)
        if step != 1:
            raise ValueError("only contiguous slices of a reference record")
        return self._record[start:stop] if stop > start else ""


class IndexedReference:
    """A reference FASTA read through a pyfaidx index: record lengths up front, bases per window.

    Policy (inputs are never modified, nothing is written next to them): the reference is streamed
    once through `read_fasta_chunks` (the parser every biofm command uses, so the same validation,
    the same errors with line numbers, and the same normalisation to ACGTN: lower case, U, IUPAC codes)
    into a normalised copy, one line per record, with its `.fai`, in `<cache>/reference-index/<key>/`,
    where `<cache>` is `cache_dir`, else $BIOFM_CACHE, else `.cache/biofm`. The key hashes the file's
    resolved path, size and modification time, so an edited or replaced file gets a new copy. The entry
    is written atomically (`biofm.io.atomic`), so an interrupted build never leaves a copy that looks
    complete. Later runs open the index without reading the reference again.
    Why a copy rather than indexing the user's file in place: plain gzip cannot be indexed at all,
    pyfaidx reads bgzip only through Biopython (not a dependency) and refuses FASTA whose lines vary in
    length; and a window read from the raw file would skip the validation and normalisation above,
    so scores could differ from a whole-record read. The cost is one pass and a copy of the reference's
    bases on disk (about 1 byte per base; old entries are not pruned).
    Duplicate record names are an error, as everywhere else in biofm.
    """

    SUBDIR = "reference-index"

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None):
        self.path = str(path)
        entry = self._entry(Path(path), cache_dir)
        fasta = entry / "reference.fa"
        self._fasta = pyfaidx.Fasta(str(fasta), as_raw=True, build_index=False, rebuild=False)
        self.lengths: dict[str, int] = {name: len(rec) for name, rec in self._fasta.records.items()}

    @classmethod
    def _entry(cls, p: Path, cache_dir: str | Path | None) -> Path:
        src = _check_fasta_path(p)
        st = src.stat()
        key = hashlib.sha256(f"{src.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
        entry = cache_root(str(cache_dir) if cache_dir is not None else None) / cls.SUBDIR / key
        if not ((entry / "reference.fa").is_file() and (entry / "reference.fa.fai").is_file()):
            with atomic_path(entry, is_dir=True) as tmp:
                _write_normalised(p, tmp / "reference.fa")
        return entry

    def __getitem__(self, chrom: str) -> _IndexedChrom:
        return _IndexedChrom(self._fasta[chrom], self.lengths[chrom])

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Bases [start, end) (0-based) of `chrom`, normalised to ACGTN."""
        return self[chrom][start:end]

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> IndexedReference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_fasta_path(p: Path) -> Path:
    if not p.exists():
        raise BiofmError(f"{p}: file not found")
    if p.is_dir():
        raise BiofmError(f"{p}: is a directory, expected a reference FASTA file")
    return p


def _write_normalised(src: Path, dest: Path) -> None:
    """Stream `src` into `dest` (one line per record, normalised bases) and write `dest.fai` beside it."""
    index: list[str] = []
    first_line: dict[str, int] = {}
    with dest.open("wb") as out:
        info: RecordInfo | None = None
        offset = length = 0
        for rec_info, piece in read_fasta_chunks(src):
            if rec_info is not info:
                if info is not None:
                    out.write(b"\n")
                    index.append(f"{info.name}\t{length}\t{offset}\t{length}\t{length + 1}\n")
                if rec_info.name in first_line:
                    raise BiofmError(
                        f"{where(src, rec_info.line, rec_info.name)}: duplicate record name "
                        f"(first seen at line {first_line[rec_info.name]})"
                    )
                first_line[rec_info.name] = rec_info.line
                info, length = rec_info, 0
                out.write(f">{info.name}\n".encode())
                offset = out.tell()
            out.write(piece.encode("ascii"))
            length += len(piece)
        if info is not None:
            out.write(b"\n")
            index.append(f"{info.name}\t{length}\t{offset}\t{length}\t{length + 1}\n")
    # written after the FASTA, so its modification time is not older (pyfaidx would call it stale)
    (dest.parent / f"{dest.name}.fai").write_text("".join(index))


def check_against_reference(
    variants_path: str | Path,
    reference_path: str | Path,
    variants: list[Variant],
    reference: IndexedReference,
    ref_mismatch: str = "error",
) -> list[Variant]:
    """The variants to score. Unknown chromosomes and out-of-range positions fail at once; ref mismatches
    are all collected into one error or, with `ref_mismatch="skip"`, dropped and counted in one note.

    Mismatches usually come from a wrong genome build or a 0-based/1-based mix-up, which affects many
    rows; listing them together shows the pattern in one run instead of one row per run. REF is read
    through the index, a few bases per variant. The split alleles of one VCF record share a line and
    are listed once.
    """
    lengths = reference.lengths
    mismatches: list[str] = []
    listed: set[int] = set()
    for v in variants:
        loc = where(variants_path, v.line)
        if v.chrom not in lengths:
            known = list(lengths)[:5]
            more = ", ..." if len(lengths) > 5 else ""
            alias = v.chrom[3:] if v.chrom.startswith("chr") else f"chr{v.chrom}"
            hint = f"; did you mean {alias!r}?" if alias in lengths else ""
            raise BiofmError(
                f"{loc}: chromosome {v.chrom!r} not in {reference_path} (known: {', '.join(known)}{more}){hint}"
            )
        end = v.pos + len(v.ref) - 1
        if end > lengths[v.chrom]:
            span = f"pos {v.pos}" if len(v.ref) == 1 else f"ref {v.ref!r} at pos {v.pos} (ends at {end})"
            raise BiofmError(f"{loc}: {span} is past the end of {v.chrom!r} (length {lengths[v.chrom]} bp)")
        actual = reference.fetch(v.chrom, v.pos - 1, end)
        if actual != v.ref and v.line not in listed:
            listed.add(v.line)
            mismatches.append(f"line {v.line} ({v.chrom}:{v.pos} ref {v.ref}, reference has {actual})")
    if not mismatches:
        return variants
    shown = ", ".join(mismatches[:MAX_LISTED_MISMATCHES])
    more = len(mismatches) - MAX_LISTED_MISMATCHES
    tail = f", and {more} more" if more > 0 else ""
    if ref_mismatch != "skip":
        raise BiofmError(
            f"{variants_path}: {len(mismatches)} row(s) whose ref does not match the reference "
            f"{reference_path}: {shown}{tail}; --ref-mismatch skip scores the others"
        )
    kept = [v for v in variants if v.line not in listed]
    _stderr(f"note: {variants_path}: skipped {len(variants) - len(kept)} variant(s) on {len(mismatches)} row(s) "
            f"whose ref does not match {reference_path}: {shown}{tail}")
    return kept


# ---------------------------------------------------------------------------------------------- windows
def window_bounds(pos0: int, ref_len: int, chrom_len: int, window_bp: int) -> tuple[int, int]:
    """[start, end) of a `window_bp` window centred on the variant, shifted inside the chromosome."""
    width = max(window_bp, ref_len)
    centre = pos0 + ref_len // 2
    start = max(0, min(centre - width // 2, chrom_len - width))
    return start, min(chrom_len, start + width)


def _token_starts(tok: KmerTokenizer, ids: np.ndarray) -> np.ndarray:
    """Window offset of each token's first base, plus the window length at the end."""
    if hasattr(tok, "token_starts"):  # a published vocabulary (DNABERT's tokens overlap)
        return tok.token_starts(ids)
    out = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(tok.token_bases[ids], out=out[1:])
    return out


def _crop(n_tokens: int, first: int, last: int, limit: int) -> tuple[int, int]:
    """[lo, hi) of at most `limit` tokens around tokens first..last (inclusive), as centred as possible.

    Cutting a k-mer tokenisation at token boundaries leaves every kept token unchanged (the greedy
    left-to-right rule has no state beyond the position), so cropping tokens equals cropping bases.
    """
    if n_tokens <= limit:
        return 0, n_tokens
    span = last - first + 1
    if span >= limit:
        return first, first + limit
    lo = first - (limit - span) // 2
    lo = max(0, min(lo, n_tokens - limit))
    return lo, lo + limit


def prepare(
    tok: KmerTokenizer, v: Variant, chrom_seq: str | _IndexedChrom, window_bp: int, context_tokens: int
) -> _Prepared:
    """Tokenised ref and alt windows (with `<cls>`) and the ref positions to mask for one variant.

    `chrom_seq` is the variant's chromosome as a string or through the index (`IndexedReference[chrom]`):
    only `len()` and one `[start:end]` window are taken, so both give the same windows and scores.
    """
    pos0 = v.pos - 1
    start, end = window_bounds(pos0, len(v.ref), len(chrom_seq), window_bp)
    ref_window = chrom_seq[start:end]
    v0, v1 = pos0 - start, pos0 - start + len(v.ref)
    alt_window = ref_window[:v0] + v.alt + ref_window[v1:]
    ref_ids, alt_ids = tok.encode(ref_window), tok.encode(alt_window)
    ref_starts, alt_starts = _token_starts(tok, ref_ids), _token_starts(tok, alt_ids)
    # Tokens overlapping [v0, v1): the first starting at or before v0 through the last starting before v1
    # (overlapping k-mers: the first starting at or before v0 - (k - 1), since each spans k bases).
    overlap = getattr(tok, "overlap", 0)
    first = max(0, int(np.searchsorted(ref_starts, v0 - overlap, side="right")) - 1)
    last = int(np.searchsorted(ref_starts, v1, side="left")) - 1
    v1_alt = v0 + len(v.alt)
    alt_first = max(0, int(np.searchsorted(alt_starts, v0 - overlap, side="right")) - 1)
    alt_last = int(np.searchsorted(alt_starts, max(v1_alt, v0 + 1), side="left")) - 1
    alt_last = max(alt_last, alt_first)  # a deletion to an empty alt is rejected on input; be safe anyway

    limit = context_tokens
    cls = np.array([tok.cls_id], dtype=np.int64)
    note = ""
    if len(v.ref) != len(v.alt):
        note = NOTE_INDEL
    elif "N" in v.ref or "N" in v.alt:
        note = NOTE_N_ALLELE
    elif not np.array_equal(ref_starts, alt_starts):
        note = NOTE_BOUNDARIES
    elif not all(tok.kmer_offset <= int(i) < len(tok) for i in (*ref_ids[first:last + 1], *alt_ids[first:last + 1])):
        note = NOTE_UNKNOWN
    if note:
        # No alignment between the two tokenisations is needed: crop each around its own variant.
        lo, hi = _crop(len(ref_ids), first, last, limit)
        alo, ahi = _crop(len(alt_ids), alt_first, alt_last, limit)
        return _Prepared(np.concatenate([cls, ref_ids[lo:hi]]), np.concatenate([cls, alt_ids[alo:ahi]]), None, note)
    lo, hi = _crop(len(ref_ids), first, last, limit)
    masked = np.arange(first, last + 1) - lo + 1  # +1 for <cls>
    masked = masked[(masked >= 1) & (masked <= hi - lo)]
    return _Prepared(np.concatenate([cls, ref_ids[lo:hi]]), np.concatenate([cls, alt_ids[lo:hi]]), masked, "")


# ---------------------------------------------------------------------------------------------- scoring
def _pad(seqs: list[np.ndarray], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def score_batch(model: PreTrainedModel, tok: KmerTokenizer, batch: list[_Prepared], device: torch.device) -> None:
    """Fill each item's `scores`: one masked pass over the ratio-scorable items, one embedding pass. In fp32
    on every device (no bf16 autocast): a ratio of two near-equal likelihoods needs the precision."""
    real_lo, real_hi = tok.kmer_offset, len(tok)  # real tokens: no specials, no vocabulary padding rows
    scorable = [p for p in batch if p.masked is not None]
    if scorable:
        inputs = []
        selected_cols = []
        for p in scorable:
            ids = p.ref_ids.copy()
            ids[p.masked] = tok.mask_id
            inputs.append(ids)
            selected_cols.append(p.masked)
        input_ids, attention = _pad(inputs, tok.pad_id, device)
        selected = torch.zeros_like(input_ids, dtype=torch.bool)
        for i, cols in enumerate(selected_cols):
            selected[i, torch.from_numpy(cols)] = True
        logits = masked_logits(model, input_ids, attention, selected).float()  # [n_masked, V], row-major order
        logp = F.log_softmax(logits[:, real_lo:real_hi], dim=-1).cpu()
        row = 0
        for p in scorable:
            n = len(p.masked)  # type: ignore[arg-type]
            rows = torch.arange(row, row + n)
            ref_tok = torch.from_numpy(p.ref_ids[p.masked].astype(np.int64)) - real_lo
            alt_tok = torch.from_numpy(p.alt_ids[p.masked].astype(np.int64)) - real_lo
            ref_lp, alt_lp = float(logp[rows, ref_tok].sum()), float(logp[rows, alt_tok].sum())
            p.scores.update(llr=alt_lp - ref_lp, ref_logp=ref_lp, alt_logp=alt_lp)
            row += n
    nan = math.nan
    for p in batch:
        if p.masked is None:
            p.scores.update(llr=nan, ref_logp=nan, alt_logp=nan)
    input_ids, attention = _pad([s for p in batch for s in (p.ref_ids, p.alt_ids)], tok.pad_id, device)
    last = layer_embeddings(model, input_ids, attention)[:, -1].float()  # [2B, H]
    cos = F.cosine_similarity(last[0::2], last[1::2], dim=-1).cpu()
    for p, c in zip(batch, cos.tolist(), strict=True):
        p.scores["embedding_cosine_distance"] = 1.0 - c


# ---------------------------------------------------------------------------------------------- output
def _format(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_scores(out_path: Path, header: list[str], rows: list[dict]) -> None:
    delim = "," if out_path.name.lower().endswith(".csv") else "\t"
    with atomic_path(out_path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delim, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_format(row[c]) for c in header])


def _load_kmer_tokenizer(model_path: str | Path) -> KmerTokenizer:
    from biofm.dna.published import variant_tokenizer

    model_dir = resolve_model_dir(model_path)
    published = variant_tokenizer(model_dir)  # NT-v1 / DNABERT: their own vocabulary
    if published is not None:
        return published  # type: ignore[return-value]
    tok_dir = model_dir if (model_dir / "tokenizer.json").exists() else model_dir.parent / "tokenizer"
    return KmerTokenizer.load(tok_dir)


def default_window_bp(max_position_embeddings: int, k: int) -> int:
    return max(1, min((max_position_embeddings - 2) * k, MAX_DEFAULT_WINDOW_BP))


def score_variants(
    model_path: str | Path,
    reference_path: str | Path,
    variants_path: str | Path,
    out_path: str | Path,
    *,
    window_bp: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    ref_mismatch: str = "error",
) -> list[dict]:
    """Score every variant and write the input columns plus `OUTPUT_COLUMNS` to `out_path`.

    `variants_path` is a VCF or a TSV/CSV (see `read_variants`); a VCF's output columns are chrom,
    pos, id, ref, alt as written in the file. The reference is read through an index, one window per
    variant (`IndexedReference`, whose cache goes under `cache_dir`). Either path may be `dataset:NAME`.
    All input is checked before the model runs, so a bad row near the end of a long file fails in
    seconds rather than after scoring the rows above it. Returns the output rows (input values as the
    strings read, scores as floats). `device` (a `--device` value) defaults to the current one
    (biofm.models.device). `ref_mismatch`: "error" (default) or "skip" rows whose REF differs from the
    reference (counted in one note).
    """
    if ref_mismatch not in ("error", "skip"):
        raise BiofmError(f"ref_mismatch {ref_mismatch!r}: expected error or skip")
    from biofm.datasets import resolve

    variants_path, reference_path = resolve(variants_path), resolve(reference_path)  # `dataset:NAME` too
    out = Path(out_path)
    for src in (variants_path, reference_path):
        if Path(src).exists() and out.exists() and out.resolve() == Path(src).resolve():
            raise BiofmError(f"{out}: output would overwrite the input file {src}")
    if window_bp is not None and window_bp < 1:
        raise BiofmError(f"window_bp must be at least 1, got {window_bp}")
    if batch_size < 1:
        raise BiofmError(f"batch_size must be at least 1, got {batch_size}")

    header, variants = read_variants(variants_path)
    with IndexedReference(reference_path, cache_dir) as reference:
        variants = check_against_reference(variants_path, reference_path, variants, reference, ref_mismatch)
        return _score(model_path, reference, header, variants, out, window_bp, batch_size, device)


def _score(
    model_path: str | Path,
    reference: IndexedReference,
    header: list[str],
    variants: list[Variant],
    out: Path,
    window_bp: int | None,
    batch_size: int,
    device: str | None,
) -> list[dict]:
    tok = _load_kmer_tokenizer(model_path)
    model, _ = load_masked_lm(model_path, modality="dna")
    if model.config.vocab_size < len(tok):
        raise BiofmError(
            f"{model_path}: model vocabulary ({model.config.vocab_size}) is smaller than the tokenizer's ({len(tok)})"
        )
    dev = resolve_device(device) if device is not None else current_device()
    model.to(dev)
    max_pos = int(getattr(model.config, "max_position_embeddings", tok.model_max_length))
    # room for <cls> (and one spare); ESM numbers positions from pad_token_id + 1, so NT-v1 holds 1,000 tokens
    context_tokens = max(1, min(max_pos - 2, context_length(model.config) - 1))
    window = window_bp if window_bp is not None else default_window_bp(max_pos, getattr(tok, "bases_per_token", tok.k))

    out_header = [c for c in header if c.lower() not in OUTPUT_COLUMNS] + list(OUTPUT_COLUMNS)
    rows: list[dict] = []
    for i in tracked(range(0, len(variants), batch_size), f"scoring {len(variants):,} variants", unit="batches"):
        chunk = variants[i : i + batch_size]
        batch = [prepare(tok, v, reference[v.chrom], window, context_tokens) for v in chunk]
        score_batch(model, tok, batch, dev)
        for v, p in zip(chunk, batch, strict=True):
            row = {c: v.row[c] for c in header if c.lower() not in OUTPUT_COLUMNS}
            row.update(p.scores)
            row["note"] = p.note
            rows.append({c: row[c] for c in out_header})
    write_scores(out, out_header, rows)
    return rows
