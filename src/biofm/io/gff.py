"""A small, strict GFF3 reader: one `Feature` per data line, gzipped or plain.

It lives in the neutral `biofm.io` layer, not in `biofm.dna`, because the dataset conversions
(`biofm.datasets.convert`, a shared layer that may not import a modality package) build task tables
from an annotation, and `biofm analyze` will read annotations too. It reads what NCBI, Ensembl and
WormBase publish: nine tab-separated columns, `##` directives and `#` comments skipped, an embedded
`##FASTA` section ending the features, attribute values percent-decoded and split on commas (so a
`%2C` inside a product name stays one value). It does not resolve Parent/child trees or merge
multi-line features (a CDS split over several lines shares its `ID`): callers group what they need,
because the right grouping depends on the question asked.

Every malformed line is one `BiofmError` naming the file, the line and what is wrong, since a wrong
coordinate read silently would move every window a conversion draws from it.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from biofm.errors import BiofmError, where

__all__ = ["Feature", "read_gff3"]

_GZIP_MAGIC = b"\x1f\x8b"
_STRANDS = frozenset("+-.?")


@dataclass(frozen=True)
class Feature:
    """One GFF3 line. Coordinates are GFF's own: 1-based, both ends inclusive (`start <= end`)."""

    seqid: str
    source: str
    type: str
    start: int
    end: int
    score: float | None  # None for "."
    strand: str  # "+", "-", "." (unstranded) or "?" (unknown)
    phase: int | None  # 0, 1, 2 for CDS; None for "."
    attributes: dict[str, tuple[str, ...]] = field(compare=False)  # decoded; multi-valued keys keep every value
    line: int = field(compare=False)

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def get(self, key: str, default: str | None = None) -> str | None:
        """The attribute's value as written (several values joined by commas), or `default`."""
        values = self.attributes.get(key)
        return ",".join(values) if values is not None else default

    def flag(self, key: str) -> bool:
        """True for a boolean attribute set to `true` (GFF3's `pseudo=true`, `partial=true`)."""
        return (self.get(key) or "").lower() == "true"


def read_gff3(path: str | Path) -> Iterator[Feature]:
    """Every feature line of a GFF3 file, in file order (gzip recognised by its magic bytes, not the name)."""
    p = Path(path)
    if not p.is_file():
        raise BiofmError(f"{p}: GFF3 file not found")
    n = 0
    try:
        with _open(p) as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise BiofmError(f"{where(p, n)}: not UTF-8 text (is this a GFF3 file?)") from None
                if text.startswith("##FASTA"):
                    return  # the rest of the file is sequence, not features
                if not text.strip() or text.startswith("#"):
                    continue
                yield _parse(p, n, text)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise BiofmError(f"{where(p, n + 1)}: truncated or corrupt gzip file") from None


def _open(p: Path) -> IO[bytes]:
    fh = open(p, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if fh.read(2) == _GZIP_MAGIC:
        fh.close()
        return gzip.open(p, "rb")
    fh.seek(0)
    return fh


def _parse(p: Path, n: int, text: str) -> Feature:
    cols = text.split("\t")
    if len(cols) != 9:
        raise BiofmError(f"{where(p, n)}: {len(cols)} tab-separated column(s), GFF3 has 9 "
                         "(seqid source type start end score strand phase attributes)")
    seqid, source, kind, start_s, end_s, score_s, strand, phase_s, attrs = cols
    if not seqid or not kind:
        raise BiofmError(f"{where(p, n)}: empty seqid or type column")
    try:
        start, end = int(start_s), int(end_s)
    except ValueError:
        raise BiofmError(f"{where(p, n)}: start {start_s!r} / end {end_s!r} are not whole numbers") from None
    if start < 1 or end < start:
        raise BiofmError(f"{where(p, n)}: coordinates {start}..{end} are not 1 <= start <= end")
    if strand not in _STRANDS:
        raise BiofmError(f"{where(p, n)}: strand {strand!r} is not one of + - . ?")
    score: float | None = None
    if score_s != ".":
        try:
            score = float(score_s)
        except ValueError:
            raise BiofmError(f"{where(p, n)}: score {score_s!r} is neither a number nor '.'") from None
    phase: int | None = None
    if phase_s != ".":
        if phase_s not in ("0", "1", "2"):
            raise BiofmError(f"{where(p, n)}: phase {phase_s!r} is not 0, 1, 2 or '.'")
        phase = int(phase_s)
    return Feature(seqid, source, kind, start, end, score, strand, phase, _attributes(p, n, attrs), n)


def _attributes(p: Path, n: int, text: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if text in ("", "."):
        return out
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue  # a trailing ';' is common and harmless
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise BiofmError(f"{where(p, n)}: attribute {part!r} is not key=value")
        if key in out:
            raise BiofmError(f"{where(p, n)}: attribute {key!r} given twice")
        # split before decoding: an encoded comma (%2C) is part of a value, a bare comma separates values
        out[key] = tuple(unquote(v) for v in value.split(","))
    return out
