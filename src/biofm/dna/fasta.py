"""Reading DNA from FASTA and BED files.

Genomes arrive in many shapes: soft-masked lower case, RNA alphabets, IUPAC ambiguity codes, CRLF
line endings, NCBI headers full of brackets and pipes, gzip with or without a `.gz` suffix. Every
consumer downstream (tokenizer, windowing, evaluation) wants one thing: an upper-case string over
`ACGTN`. Normalising once here keeps the rest of the toolkit free of alphabet special cases.

Speed matters because genomes are large: each record's bytes are normalised and validated in a
single `bytes.translate` call, and Python-level work is per line, never per base. Only one record
is held in memory at a time.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from biofm.errors import BiofmError, where

__all__ = ["Interval", "Record", "bed_records", "read_bed", "read_fasta", "reverse_complement"]

_GZIP_MAGIC = b"\x1f\x8b"
_ALLOWED = "allowed: A C G T U, IUPAC codes R Y S W K M B D H V N, any case"
# Sequence lines may carry stray whitespace (including the '\r' of CRLF files); it is not sequence.
_WHITESPACE = b" \t\r\n\v\f"
# Any byte that is not a valid base maps to NUL, so one `find` locates the first bad character.
_SENTINEL = 0


def _build_table() -> bytes:
    table = bytearray([_SENTINEL]) * 256
    for base in b"ACGT":
        table[base] = base
        table[base + 32] = base  # lower case: soft-masked repeats are still sequence
    table[ord("U")] = table[ord("u")] = ord("T")
    for code in b"RYSWKMBDHVN":
        table[code] = table[code + 32] = ord("N")
    return bytes(table)


_TABLE = _build_table()
# For locating a bad byte in the raw (undeleted) data, whitespace must not look like the sentinel.
_LOCATE_TABLE = bytes(ord(" ") if i in _WHITESPACE else _TABLE[i] for i in range(256))
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


@dataclass(frozen=True)
class Record:
    """One FASTA record with its sequence normalised to upper-case ACGTN.

    `path` and `line` travel with the record so that later stages (windowing, tokenising) can
    still point the user at the header that produced a problem.
    """

    name: str
    description: str
    seq: str
    path: str
    line: int


@dataclass(frozen=True)
class Interval:
    """One BED interval (0-based, half-open) with the BED line it came from, for error messages."""

    chrom: str
    start: int
    end: int
    name: str | None
    strand: str
    line: int


def reverse_complement(seq: str) -> str:
    """Reverse complement of a normalised sequence (N stays N)."""
    return seq.translate(_COMPLEMENT)[::-1]


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BiofmError(f"{path}: file not found")
    if p.is_dir():
        raise BiofmError(f"{path}: is a directory, expected a file")
    if p.stat().st_size == 0:
        raise BiofmError(f"{path}: empty file (0 bytes)")
    return p


def _open(p: Path) -> BinaryIO:
    """Open plain or gzip data, deciding by content rather than by the (often wrong) file suffix."""
    with p.open("rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return p.open("rb")


def _corrupt_gzip(path: str | Path) -> BiofmError:
    return BiofmError(f"{path}: truncated or corrupt gzip file")


def _is_binary(line: bytes) -> bool:
    if b"\x00" in line:
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _describe_byte(b: int) -> str:
    if 0x20 < b < 0x7F:
        return repr(chr(b))
    return f"byte 0x{b:02X}"


def _finish(path: str | Path, name: str, description: str, header_line: int, raw: bytearray) -> Record | None:
    """Normalise one record's raw sequence bytes; None for an empty record (skipped by the caller)."""
    seq = raw.translate(_TABLE, _WHITESPACE)
    if seq.find(_SENTINEL) != -1:
        located = raw.translate(_LOCATE_TABLE)
        pos = located.find(_SENTINEL)
        line = header_line + 1 + raw.count(b"\n", 0, pos)
        column = pos - (raw.rfind(b"\n", 0, pos) + 1) + 1
        bad = raw[pos]
        loc = where(path, line, name)
        if bad == 0:
            raise BiofmError(f"{loc}: not a FASTA file (binary data)")
        raise BiofmError(f"{loc}: invalid character {_describe_byte(bad)} (column {column}); {_ALLOWED}")
    if not seq:
        return None
    return Record(
        name=name, description=description, seq=seq.decode("ascii"), path=str(path), line=header_line
    )


def read_fasta(path: str | Path) -> Iterator[Record]:
    """Stream the records of a FASTA file (plain or gzip), sequences normalised to ACGTN.

    Path problems are raised immediately rather than on the first `next()`, so a caller that builds
    a pipeline lazily still fails before doing any other work.
    """
    p = _check_path(path)
    return _read_fasta(path, p)


def _read_fasta(path: str | Path, p: Path) -> Iterator[Record]:
    name = description = ""
    header_line = 0
    raw = bytearray()
    n_records = 0
    n_yielded = 0
    n_lines = 0
    try:
        with _open(p) as fh:
            for n_lines, line in enumerate(fh, start=1):
                if line[:1] == b">":
                    if n_records:
                        rec = _finish(path, name, description, header_line, raw)
                        if rec is not None:
                            n_yielded += 1
                            yield rec
                    raw = bytearray()
                    n_records += 1
                    header_line = n_lines
                    name, description = _parse_header(path, n_lines, line)
                elif n_records:
                    raw += line
                else:
                    if n_lines == 1 and line.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                        line = line[3:]
                        if line[:1] == b">":
                            n_records += 1
                            header_line = n_lines
                            name, description = _parse_header(path, n_lines, line)
                            continue
                    if not line.strip():
                        continue
                    if _is_binary(line):
                        raise BiofmError(f"{where(path, n_lines)}: not a FASTA file (binary data)")
                    raise BiofmError(
                        f"{where(path, n_lines)}: not a FASTA file: sequence data before the first "
                        f"'>' header line"
                    )
            if n_records:
                rec = _finish(path, name, description, header_line, raw)
                if rec is not None:
                    n_yielded += 1
                    yield rec
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _corrupt_gzip(path) from exc
    if n_lines == 0:
        raise BiofmError(f"{path}: empty file (no data after decompression)")
    if n_records == 0:
        raise BiofmError(f"{path}: no FASTA records (no line starts with '>')")
    if n_yielded == 0:
        raise BiofmError(f"{path}: all {n_records} record(s) have an empty sequence")


def _parse_header(path: str | Path, line_no: int, line: bytes) -> tuple[str, str]:
    if b"\x00" in line:
        raise BiofmError(f"{where(path, line_no)}: not a FASTA file (binary data)")
    description = line[1:].decode("utf-8", errors="replace").strip()
    if not description:
        raise BiofmError(f"{where(path, line_no)}: header '>' has no record name")
    return description.split(None, 1)[0], description


def read_bed(path: str | Path) -> list[Interval]:
    """Parse a BED3+ file (plain or gzip); columns 4 and 6, when present, give name and strand."""
    p = _check_path(path)
    out: list[Interval] = []
    try:
        with _open(p) as fh:
            for line_no, raw_line in enumerate(fh, start=1):
                if b"\x00" in raw_line:
                    raise BiofmError(f"{where(path, line_no)}: not a BED file (binary data)")
                text = raw_line.decode("utf-8", errors="replace").strip()
                if not text or text.startswith(("#", "track", "browser")):
                    continue
                out.append(_parse_bed_line(path, line_no, text))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _corrupt_gzip(path) from exc
    if not out:
        raise BiofmError(f"{path}: no BED intervals (only blank, comment, track or browser lines)")
    return out


def _parse_bed_line(path: str | Path, line_no: int, text: str) -> Interval:
    # Tab-separated is the standard; names may then contain spaces. Fall back to any whitespace.
    cols = [c.strip() for c in text.split("\t")] if "\t" in text else text.split()
    loc = where(path, line_no)
    if len(cols) < 3:
        raise BiofmError(f"{loc}: expected at least 3 columns (chrom, start, end), found {len(cols)}")
    chrom = cols[0]
    try:
        start = int(cols[1])
    except ValueError:
        raise BiofmError(f"{loc}: start {cols[1]!r} is not an integer") from None
    try:
        end = int(cols[2])
    except ValueError:
        raise BiofmError(f"{loc}: end {cols[2]!r} is not an integer") from None
    if start < 0:
        raise BiofmError(f"{loc}: start {start} is negative (BED is 0-based)")
    if end <= start:
        raise BiofmError(f"{loc}: end {end} must be greater than start {start}")
    name = cols[3] if len(cols) > 3 and cols[3] not in ("", ".") else None
    strand = cols[5] if len(cols) > 5 and cols[5] else "."
    if strand not in ("+", "-", "."):
        raise BiofmError(f"{loc}: strand {strand!r} must be '+', '-' or '.'")
    return Interval(chrom=chrom, start=start, end=end, name=name, strand=strand, line=line_no)


def bed_records(bed_path: str | Path, reference_path: str | Path) -> Iterator[Record]:
    """Sequences of the BED intervals cut from a reference FASTA; '-' strand is reverse-complemented.

    Both files are parsed and every interval is checked against the reference before the first
    record is returned, so a bad line near the end of the BED fails fast instead of mid-pipeline.
    """
    intervals = read_bed(bed_path)
    reference: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for rec in read_fasta(reference_path):
        if rec.name in reference:
            raise BiofmError(
                f"{where(reference_path, rec.line, rec.name)}: duplicate record name "
                f"(first seen at line {first_line[rec.name]})"
            )
        reference[rec.name] = rec.seq
        first_line[rec.name] = rec.line
    for iv in intervals:
        seq = reference.get(iv.chrom)
        loc = where(bed_path, iv.line)
        if seq is None:
            known = list(reference)[:5]
            more = ", ..." if len(reference) > 5 else ""
            raise BiofmError(
                f"{loc}: chromosome {iv.chrom!r} not in {reference_path} (known: {', '.join(known)}{more})"
            )
        if iv.end > len(seq):
            raise BiofmError(f"{loc}: end {iv.end} is beyond the end of {iv.chrom!r} (length {len(seq)} bp)")
    return _bed_records(bed_path, intervals, reference)


def _bed_records(
    bed_path: str | Path, intervals: list[Interval], reference: dict[str, str]
) -> Iterator[Record]:
    for iv in intervals:
        seq = reference[iv.chrom][iv.start : iv.end]
        if iv.strand == "-":
            seq = reverse_complement(seq)
        coords = f"{iv.chrom}:{iv.start}-{iv.end}({iv.strand})"
        name = iv.name if iv.name is not None else coords
        description = coords if iv.name is None else f"{iv.name} {coords}"
        yield Record(name=name, description=description, seq=seq, path=str(bed_path), line=iv.line)


def normalise_sequence(seq: str, source: str = "sequence") -> str:
    """Normalise a sequence typed by a user or read from a table, as FASTA records are."""
    raw = seq.encode("ascii", errors="replace")
    out = raw.translate(_TABLE, _WHITESPACE)
    if out.find(_SENTINEL) != -1:
        pos = raw.translate(_LOCATE_TABLE).find(_SENTINEL)
        raise BiofmError(f"{source}: invalid character {seq[pos]!r} at position {pos + 1}; {_ALLOWED}")
    return out.decode("ascii")
