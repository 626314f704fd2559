"""Reading DNA from FASTA and BED files.

Genomes arrive in many shapes: soft-masked lower case, RNA alphabets, IUPAC ambiguity codes, CRLF
line endings, NCBI headers full of brackets and pipes, gzip with or without a `.gz` suffix. Every
consumer downstream (tokenizer, windowing, evaluation) wants one thing: an upper-case string over
`ACGTN`. Normalising once here keeps the rest of the toolkit free of alphabet special cases.

Genomes are also large, larger than memory: a single human chromosome is hundreds of megabases and
a pretraining corpus may be many genomes. So the file is read in blocks of a few megabytes, and each
block is normalised and validated with one `bytes.translate` call; Python-level work is per block and
per record, never per line or per base. `read_fasta_chunks` hands sequences on in those bounded
pieces (what dataset building uses, so memory does not grow with record length); `read_fasta` joins
them into whole records for callers that want one string per record; `scan_fasta` only measures.
All three share one parser, so they accept and reject exactly the same input with the same messages.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from biofm.errors import BiofmError, where

__all__ = [
    "CHUNK_BYTES",
    "Interval",
    "Record",
    "RecordInfo",
    "bed_records",
    "read_bed",
    "read_fasta",
    "read_fasta_chunks",
    "reverse_complement",
    "scan_fasta",
]

# Bytes read per block: big enough that per-block Python work is negligible next to `translate`,
# small enough that a block and its normalised copy are a rounding error in memory.
CHUNK_BYTES = 4 << 20

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
class RecordInfo:
    """A record without its sequence: what a streaming consumer needs to plan before reading bases.

    `length` is the normalised sequence length when known (from `scan_fasta`), else 0. Pieces from
    `read_fasta_chunks` that belong to one record share one `RecordInfo` object, so a consumer can
    tell where a record ends by identity, even when two records have the same name.
    """

    name: str
    description: str
    path: str
    line: int
    length: int = 0


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


def _is_binary(line: bytes, decoder: codecs.IncrementalDecoder, final: bool = False) -> bool:
    """NUL bytes or invalid UTF-8; `decoder` carries a character cut between two pieces of a line."""
    if b"\x00" in line:
        return True
    try:
        decoder.decode(line, final=final)
    except UnicodeDecodeError:
        return True
    return False


def _describe_byte(b: int) -> str:
    if 0x20 < b < 0x7F:
        return repr(chr(b))
    return f"byte 0x{b:02X}"


def _bad_bytes(path: str | Path, name: str, first_line: int, col0: int, raw: bytes) -> BiofmError:
    """The error for the first invalid byte in `raw`, a piece of a record starting at `first_line`.

    `col0` is how many bytes of `first_line` came before `raw`, so the column is that of the line
    even when the line was split across two blocks.
    """
    pos = raw.translate(_LOCATE_TABLE).find(_SENTINEL)
    line = first_line + raw.count(b"\n", 0, pos)
    last_nl = raw.rfind(b"\n", 0, pos)
    column = pos - last_nl if last_nl != -1 else col0 + pos + 1
    bad = raw[pos]
    loc = where(path, line, name)
    if bad == 0:
        return BiofmError(f"{loc}: not a FASTA file (binary data)")
    return BiofmError(f"{loc}: invalid character {_describe_byte(bad)} (column {column}); {_ALLOWED}")


def read_fasta(path: str | Path) -> Iterator[Record]:
    """Stream the records of a FASTA file (plain or gzip), sequences normalised to ACGTN.

    Each record is held whole; for records that may not fit in memory use `read_fasta_chunks`.
    Path problems are raised immediately rather than on the first `next()`, so a caller that builds
    a pipeline lazily still fails before doing any other work.
    """
    p = _check_path(path)
    return _read_fasta(path, p)


def _read_fasta(path: str | Path, p: Path) -> Iterator[Record]:
    info: RecordInfo | None = None
    parts: list[bytes] = []
    for rec_info, piece in _pieces(path, p, CHUNK_BYTES):
        if rec_info is not info:
            if info is not None:
                yield _record(info, parts)
            info, parts = rec_info, []
        parts.append(piece)
    if info is not None:
        yield _record(info, parts)


def _record(info: RecordInfo, parts: list[bytes]) -> Record:
    seq = parts[0].decode("ascii") if len(parts) == 1 else b"".join(parts).decode("ascii")
    return Record(name=info.name, description=info.description, seq=seq, path=info.path, line=info.line)


def read_fasta_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[RecordInfo, str]]:
    """Stream `(record, piece)` pairs: each record's normalised sequence in pieces of bounded size.

    A piece holds at most about `chunk_bytes` bases, so memory stays bounded however long a record
    is. Pieces of one record are consecutive and share one `RecordInfo` (its `length` is 0: unknown
    until the record has been read). Records with an empty sequence yield nothing, as in
    `read_fasta`, and the same errors are raised at the same places in the file.
    """
    p = _check_path(path)
    return ((info, piece.decode("ascii")) for info, piece in _pieces(path, p, chunk_bytes))


def scan_fasta(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> list[RecordInfo]:
    """Names and normalised lengths of a file's non-empty records, with bounded memory.

    This is the cheap first pass of a streaming build: it validates the whole file (so bad input
    fails before any expensive work) and tells a split how large each record is before its bases
    are read again.
    """
    p = _check_path(path)
    out: list[RecordInfo] = []
    info: RecordInfo | None = None
    length = 0
    for rec_info, piece in _pieces(path, p, chunk_bytes):
        if rec_info is not info:
            if info is not None:
                out.append(_with_length(info, length))
            info, length = rec_info, 0
        length += len(piece)
    if info is not None:
        out.append(_with_length(info, length))
    return out


def _with_length(info: RecordInfo, length: int) -> RecordInfo:
    return RecordInfo(info.name, info.description, info.path, info.line, length)


class _Reader:
    """Block reads over a binary stream, tracking the line number and column of the read position.

    `buf[pos:]` is what has been read but not consumed; `line` and `col` locate `buf[pos]` in the
    file, so errors can name a line and column without the parser ever splitting the data into lines.
    """

    def __init__(self, fh: BinaryIO, chunk_bytes: int):
        self.fh = fh
        self.chunk_bytes = chunk_bytes
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.line = 1
        self.col = 0  # bytes of the current line before buf[pos]
        self.total = 0  # bytes read so far, to tell an empty file from one without records

    def fill(self) -> bool:
        """Read one more block, dropping what was consumed; False at end of file."""
        if self.eof:
            return False
        data = self.fh.read(self.chunk_bytes)
        if not data:
            self.eof = True
            return False
        self.total += len(data)
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def take(self, end: int) -> bytes:
        """Consume `buf[pos:end]`, advancing the line and column."""
        data = self.buf[self.pos : end]
        n_lines = data.count(b"\n")
        if n_lines:
            self.line += n_lines
            self.col = len(data) - data.rfind(b"\n") - 1
        else:
            self.col += len(data)
        self.pos = end
        return data

    def take_line(self) -> bytes | None:
        """Consume one whole line (with its newline, if any); None at end of file.

        A line longer than a block is returned in pieces of at least a block, so memory stays
        bounded; it is used only for the blank or invalid lines before the first header.
        """
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl != -1:
                return self.take(nl + 1)
            if len(self.buf) - self.pos >= self.chunk_bytes or not self.fill():
                if self.pos == len(self.buf):
                    return None
                return self.take(len(self.buf))


def _pieces(path: str | Path, p: Path, chunk_bytes: int) -> Iterator[tuple[RecordInfo, bytes]]:
    """The one FASTA parser: `(record, normalised non-empty piece)` pairs, in file order.

    Within a record, the block is searched for the next `\n>` (a header at the start of a line); the
    bytes before it are normalised in one `translate` and handed on. A trailing newline is kept back
    so that a header starting exactly at the next block is still seen at a line start.
    """
    n_records = 0
    n_nonempty = 0
    try:
        with _open(p) as fh:
            r = _Reader(fh, chunk_bytes)
            info = _first_header(path, r)
            while info is not None:
                n_records += 1
                yielded = False
                next_info: RecordInfo | None = None
                while True:
                    hdr = r.buf.find(b"\n>", r.pos)
                    if hdr != -1:
                        end = hdr + 1
                    elif r.eof:
                        end = len(r.buf)
                    else:
                        end = len(r.buf) - 1 if r.buf.endswith(b"\n") else len(r.buf)
                    first_line, col0 = r.line, r.col
                    raw = r.take(max(end, r.pos))
                    if raw:
                        piece = raw.translate(_TABLE, _WHITESPACE)
                        if piece.find(_SENTINEL) != -1:
                            raise _bad_bytes(path, info.name, first_line, col0, raw)
                        if piece:
                            yielded = True
                            yield info, piece
                    if hdr != -1:
                        next_info = _header(path, r)
                        break
                    if not r.fill() and r.pos == len(r.buf):
                        break  # end of file, everything consumed
                if yielded:
                    n_nonempty += 1
                info = next_info
            total = r.total
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _corrupt_gzip(path) from exc
    if total == 0:
        raise BiofmError(f"{path}: empty file (no data after decompression)")
    if n_records == 0:
        raise BiofmError(f"{path}: no FASTA records (no line starts with '>')")
    if n_nonempty == 0:
        raise BiofmError(f"{path}: all {n_records} record(s) have an empty sequence")


def _header(path: str | Path, r: _Reader) -> RecordInfo:
    """Parse the header line at the read position (known to start with '>').

    Its newline is left unconsumed, so a header on the very next line is still found by the search
    for `\\n>` that the record loop does.
    """
    line_no = r.line
    while (nl := r.buf.find(b"\n", r.pos)) == -1 and r.fill():
        pass
    line = r.take(nl if nl != -1 else len(r.buf))
    name, description = _parse_header(path, line_no, line)
    return RecordInfo(name=name, description=description, path=str(path), line=line_no)


def _first_header(path: str | Path, r: _Reader) -> RecordInfo | None:
    """Skip blank lines up to the first header; anything else there means this is not FASTA."""
    line_start = 0  # column at which the current line's content starts (past a byte-order mark)
    while True:
        if r.pos == len(r.buf) and not r.fill():
            return None
        while r.line == 1 and r.col == 0 and len(r.buf) - r.pos < 3 and r.fill():
            pass  # a byte-order mark cut by a tiny block size
        if r.line == 1 and r.col == 0 and r.buf.startswith(b"\xef\xbb\xbf", r.pos):  # UTF-8 byte-order mark
            r.take(r.pos + 3)
            line_start = 3
            continue
        if (r.col == 0 or (r.line == 1 and r.col == line_start)) and r.buf[r.pos : r.pos + 1] == b">":
            return _header(path, r)
        line_no = r.line
        line = r.take_line()
        if line is None:
            return None
        if not line.strip():
            continue
        # Binary or text decides the message, so look at the whole line, a block at a time.
        decoder = codecs.getincrementaldecoder("utf-8")()
        piece: bytes | None = line
        binary = False
        while piece is not None and not (binary := _is_binary(piece, decoder)) and not piece.endswith(b"\n"):
            piece = r.take_line()
        if binary or _is_binary(b"", decoder, final=True):  # final: a character cut at the end is invalid
            raise BiofmError(f"{where(path, line_no)}: not a FASTA file (binary data)")
        raise BiofmError(
            f"{where(path, line_no)}: not a FASTA file: sequence data before the first '>' header line"
        )


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
