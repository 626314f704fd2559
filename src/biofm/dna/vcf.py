"""Variants from a VCF file, as rows `biofm.dna.variants` scores.

Only the five fixed columns that say what a variant is are read: CHROM POS ID REF ALT. QUAL, FILTER,
INFO and genotype columns are ignored (a population VCF may carry thousands of sample columns, and
none of them changes the sequence that is scored).

Decisions:
- `##` meta lines are skipped. A `#CHROM` header is checked when present (its first five names must be
  the VCF ones) but not required: headerless five-column files such as the registry's
  `celegans-slice-vcf` are common in course and tool output, and their columns are read by position.
- A multi-allelic record becomes one variant per ALT allele. Each keeps the record's line number (so
  errors and ref mismatches point at the line in the file) and gets the ID `ID/n`, n being the
  allele's number in the record (1-based, as in a genotype), so the row can be joined back to the
  VCF; an ID of `.` stays `.` (the `alt` column tells the rows apart). Bi-allelic IDs are unchanged.
- Symbolic alleles (`<DEL>`, `<*>`), the spanning deletion `*`, breakends (`G]17:198982]`, `.A`) and a
  missing ALT (`.`) have no sequence to score: they are skipped and counted in one summary line, never
  dropped silently. Indels (REF and ALT of different lengths) are kept; the scorer gives them an
  embedding distance and a NaN likelihood ratio with a note, and the summary line counts them.
- The ID, REF and ALT are written out as they appear in the file (case included); scoring uses the
  upper-cased alleles.
- Gzip and bgzip (a series of gzip members) are read transparently, decided by the file's first bytes.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from biofm.errors import BiofmError, where

if TYPE_CHECKING:
    from biofm.dna.variants import Variant

VCF_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT")
OUT_COLUMNS = ("chrom", "pos", "id", "ref", "alt")  # output header of a scored VCF, in VCF order
_BASES = frozenset("ACGTN")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class VcfSummary:
    """What reading a VCF did beyond one-variant-per-line, for the one summary line."""

    records: int = 0
    variants: int = 0
    multiallelic: int = 0  # records split into one variant per ALT allele
    indels: int = 0  # variants whose REF and ALT lengths differ
    symbolic: int = 0  # alleles skipped: <...>, '*', breakends
    no_alt: int = 0  # records whose ALT is '.'

    def counts(self) -> str:
        """The counts in words; those that are zero are left out."""
        parts = [f"{self.records} VCF record(s) -> {self.variants} variant(s)"]
        if self.multiallelic:
            parts.append(f"{self.multiallelic} multi-allelic record(s) split into one row per ALT allele")
        if self.indels:
            parts.append(f"{self.indels} indel(s) kept (embedding distance only; likelihood ratio NaN)")
        if self.symbolic:
            parts.append(f"{self.symbolic} symbolic/breakend/'*' allele(s) skipped (no sequence to score)")
        if self.no_alt:
            parts.append(f"{self.no_alt} record(s) with ALT '.' skipped")
        return "; ".join(parts)

    def line(self, path: str | Path) -> str:
        """The one summary line for stderr."""
        return f"note: {path}: {self.counts()}"


def is_vcf(path: str | Path) -> bool:
    """A `.vcf`/`.vcf.gz`/`.vcf.bgz` name, or any file whose first line is `##fileformat=VCF...`."""
    name = Path(path).name.lower()
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
        return True
    try:
        with _open_text(Path(path)) as fh:
            return fh.readline(64).startswith("##fileformat=VCF")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return False  # the table reader reports the problem in its own words


def _open_text(p: Path) -> io.TextIOBase:
    """Plain, gzip or bgzip text, decided by content (a `.vcf` that is really gzip still reads)."""
    with p.open("rb") as fh:
        magic = fh.read(2)
    raw = gzip.open(p, "rb") if magic == _GZIP_MAGIC else p.open("rb")  # noqa: SIM115 - the wrapper closes it
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]


def _lines(path: str | Path, p: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(p) as fh:
            for n, text in enumerate(fh, start=1):
                yield n, text.rstrip("\r\n")
    except UnicodeDecodeError:
        raise BiofmError(f"{path}: not a text VCF (binary or non-UTF-8 data)") from None
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise BiofmError(f"{path}: truncated or corrupt gzip file") from None


def _skip_reason(allele: str) -> str | None:
    """'symbolic' for alleles with no literal sequence, 'no_alt' for '.', None for a literal allele."""
    if allele == ".":
        return "no_alt"
    if allele == "*" or allele.startswith("<") or "[" in allele or "]" in allele:
        return "symbolic"
    if len(allele) > 1 and (allele.startswith(".") or allele.endswith(".")):  # single breakend
        return "symbolic"
    return None


def _check_allele(loc: str, name: str, allele: str) -> str:
    if not allele:
        raise BiofmError(f"{loc}: empty {name} allele")
    upper = allele.upper()
    bad = sorted(set(upper) - _BASES)
    if bad:
        raise BiofmError(
            f"{loc}: {name} {allele!r} has character(s) {', '.join(map(repr, bad))}; VCF alleles must be "
            "A, C, G, T or N (symbolic alleles such as <DEL> and breakends are skipped, not scored)"
        )
    return upper


def read_vcf(path: str | Path) -> tuple[list[str], list[Variant], VcfSummary]:
    """(output header, variants, summary) of a VCF; BiofmError at the first malformed record.

    Checks that need the reference (chromosome names, positions, REF bases) are done by the caller.
    """
    from biofm.dna.variants import Variant  # variants imports this module to dispatch

    p = Path(path)
    if not p.exists():
        raise BiofmError(f"{path}: file not found")
    if p.is_dir():
        raise BiofmError(f"{path}: is a directory, expected a VCF file")
    if p.stat().st_size == 0:
        raise BiofmError(f"{path}: empty file (0 bytes); expected VCF records (CHROM POS ID REF ALT ...)")
    variants: list[Variant] = []
    summary = VcfSummary()
    header_seen = False
    for n, text in _lines(path, p):
        if not text.strip():
            continue
        loc = where(path, n)
        if "\x00" in text:
            raise BiofmError(f"{loc}: not a text VCF (binary data)")
        if text.startswith("##"):
            if summary.records:
                raise BiofmError(f"{loc}: '##' meta line after the first record; meta lines come first")
            continue
        if text.startswith("#"):
            if header_seen or summary.records:
                raise BiofmError(f"{loc}: a second '#' header line; the '#CHROM' header comes once, before records")
            names = text[1:].split("\t")
            if [c.strip().upper() for c in names[:5]] != list(VCF_COLUMNS):
                raise BiofmError(
                    f"{loc}: header must start with #{chr(9).join(VCF_COLUMNS)} (tab-separated); "
                    f"found {text[:80]!r}"
                )
            header_seen = True
            continue
        cols = text.split("\t")
        if len(cols) < 5:
            hint = " (the line is space-separated; VCF columns are separated by tabs)" if len(text.split()) >= 5 else ""
            raise BiofmError(
                f"{loc}: expected at least 5 tab-separated columns (CHROM POS ID REF ALT), found {len(cols)}{hint}"
            )
        chrom, pos_text, vid, ref_text, alt_text = (c.strip() for c in cols[:5])
        if not chrom:
            raise BiofmError(f"{loc}: empty CHROM")
        try:
            pos = int(pos_text)
        except ValueError:
            hint = "" if header_seen else " (no '#CHROM' header line, so columns are read as CHROM POS ID REF ALT)"
            raise BiofmError(f"{loc}: POS {pos_text!r} is not an integer{hint}") from None
        if pos < 1:
            raise BiofmError(f"{loc}: POS {pos} must be at least 1 (VCF positions are 1-based)")
        ref = _check_allele(loc, "REF", ref_text)
        summary.records += 1
        alts = alt_text.split(",")
        if len(alts) > 1:
            summary.multiallelic += 1
        for number, allele in enumerate(alts, start=1):
            allele = allele.strip()
            reason = _skip_reason(allele)
            if reason == "no_alt":
                if len(alts) > 1:
                    raise BiofmError(f"{loc}: ALT {alt_text!r} has '.' among several alleles")
                summary.no_alt += 1
                continue
            if reason == "symbolic":
                summary.symbolic += 1
                continue
            alt = _check_allele(loc, "ALT", allele)
            if len(alt) != len(ref):
                summary.indels += 1
            row_id = f"{vid}/{number}" if len(alts) > 1 and vid != "." else vid
            row = {"chrom": chrom, "pos": pos_text, "id": row_id, "ref": ref_text, "alt": allele}
            variants.append(Variant(n, chrom, pos, ref, alt, row))
    summary.variants = len(variants)
    if not summary.records:
        raise BiofmError(f"{path}: no VCF records (only meta or header lines)")
    if not variants:
        raise BiofmError(f"{path}: no scorable variants ({summary.counts()})")
    return list(OUT_COLUMNS), variants, summary
