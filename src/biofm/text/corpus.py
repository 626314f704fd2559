"""Reading a text corpus lazily and cleaning it, one document at a time.

Inputs are `.txt` files (one document per line; blank lines are skipped), `.jsonl` files (one JSON
object per line, the document in its `text` field -- the field name is configurable), the `.gz`
variants of both, and folders of them (searched recursively in sorted order; hidden entries and
other file types are ignored). Files are opened only when reached and read line by line, so a
folder of many large files is never held in memory.

Cleaning is a fixed sequence of small pure steps, each returning the new text and how many things
it removed, so the report's counts are exact:

1. control characters -- C0 controls other than tab/newline/CR/VT/FF, DEL and C1 controls; the ones
   Python counts as whitespace (information separators, NEL) become a space, the rest are deleted;
2. citation markers -- bracketed *numeric* citation lists such as `[1]`, `[1,2]`, `[3-5]`,
   `[12, 14–16]` (with the whitespace before them); any bracket holding something else (`[Ca2+]`,
   `[3H]`, `[see text]`) is left alone, and so is a numeric bracket glued to the word after it
   (`[1,4]benzodiazepine`) or following a number (`6-12 [1-216]`, a range after an IQR);
3. non-ASCII characters (off by default) -- deleted;
4. whitespace -- every run of whitespace, newlines included, becomes one space and the ends are
   stripped, so a document is a single line;
5. documents shorter than `min_chars` are dropped;
6. exact duplicates (same SHA-1 of the cleaned text as an earlier document) are dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biofm.datasets import resolve
from biofm.errors import BiofmError, where
from biofm.eval.tables import json_objects, text_lines
from biofm.io.atomic import write_json
from biofm.text.config import CleaningConfig

__all__ = [
    "CleanDocument",
    "Cleaner",
    "CleaningReport",
    "Document",
    "clean_documents",
    "iter_documents",
    "list_files",
    "normalise_whitespace",
    "read_file",
    "remove_citations",
    "remove_control_chars",
    "remove_non_ascii",
]

FORMATS = (".txt", ".jsonl")
_SUPPORTED = ".txt or .jsonl (optionally .gz)"


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # the file it came from
    line: int  # its line in that file (1-based)


def _format(path: Path) -> str | None:
    """`.txt` or `.jsonl` for a supported file name (a trailing `.gz` allowed), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes and suffixes[-1] in FORMATS else None


def list_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named by `paths` (`dataset:NAME` for a registered dataset), folders expanded (recursively,
    sorted); each file once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in paths:
        p = resolve(item).expanduser()
        if not p.exists():
            raise BiofmError(f"{p}: file or folder not found")
        if p.is_dir():
            found = sorted(
                (f for f in p.rglob("*") if f.is_file() and _format(f)
                 and not any(part.startswith(".") for part in f.relative_to(p).parts)),
                key=lambda f: f.relative_to(p).as_posix(),
            )
            if not found:
                raise BiofmError(f"{p}: no {_SUPPORTED} files in this folder")
        elif _format(p) is None:
            raise BiofmError(f"{p}: unsupported file type; expected {_SUPPORTED}, or a folder of them")
        else:
            found = [p]
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def read_file(path: str | Path, text_field: str = "text") -> Iterator[Document]:
    """The documents of one file, lazily; BiofmError naming the file and line for a bad record."""
    path = Path(path)
    kind = _format(path)
    if kind is None:
        raise BiofmError(f"{path}: unsupported file type; expected {_SUPPORTED}")
    src = str(path)
    if kind == ".txt":
        for n, line in text_lines(path):
            if line.strip():
                yield Document(line, src, n)
        return
    for n, obj in json_objects(path):
        if text_field not in obj or obj[text_field] is None:
            raise BiofmError(f"{where(path, n)}: no {text_field!r} field")
        text = obj[text_field]
        if not isinstance(text, str):
            raise BiofmError(f"{where(path, n)}: field {text_field!r} is a {type(text).__name__}, expected a string")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BiofmError(
                f"{where(path, n)}: field {text_field!r} holds an unpaired surrogate escape (not valid Unicode)"
            ) from None
        yield Document(text, src, n)


def iter_documents(paths: Iterable[str | Path], text_field: str = "text") -> Iterator[Document]:
    """Every document of every input, in order, reading one file at a time."""
    for f in list_files(paths):
        yield from read_file(f, text_field)


# ----------------------------------------------------------------------------------------- cleaning

_NUM = r"[0-9]{1,4}(?:\s*[-‐‑–—]\s*[0-9]{1,4})?"  # 3, 3-5, 3–5 (hyphen, en/em dash)
# Not followed by a letter or digit: `[1,4]benzodiazepine` is chemical nomenclature, not a citation.
_CITATION = re.compile(rf"[ \t]*\[\s*{_NUM}(?:\s*[,;]\s*{_NUM})*\s*\](?!\w)")
# C0 except \t \n \v \f \r, then DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")


def remove_citations(text: str) -> tuple[str, int]:
    """Drop bracketed numeric citation markers (and the spaces before them); returns (text, markers).

    A bracket right after a number is kept: `7 (6-12 [1-216]) h` is a median, IQR and range.
    """
    n = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal n
        if m.start() > 0 and text[m.start() - 1].isdigit():
            return m.group()
        n += 1
        return ""

    return _CITATION.sub(repl, text), n


def remove_control_chars(text: str) -> tuple[str, int]:
    """Drop control characters (those Python calls whitespace become a space); returns (text, removed)."""
    return _CONTROL.subn(lambda m: " " if m.group().isspace() else "", text)


def remove_non_ascii(text: str) -> tuple[str, int]:
    """Drop every non-ASCII character; returns (text, characters dropped)."""
    out = text.encode("ascii", "ignore").decode("ascii")
    return out, len(text) - len(out)


def normalise_whitespace(text: str) -> tuple[str, int]:
    """Collapse each whitespace run to one space and strip the ends; returns (text, runs changed).

    A run counts when it was anything but a single inner space: several characters, a newline or
    tab, a non-breaking space, or any run at the start or end (which is removed).
    """
    n = 0
    end = len(text)

    def repl(m: re.Match[str]) -> str:
        nonlocal n
        if m.start() == 0 or m.end() == end:
            n += 1
            return ""
        if m.group() != " ":
            n += 1
        return " "

    return _WHITESPACE.sub(repl, text), n


@dataclass
class CleaningReport:
    """What each cleaning step did, summed over the corpus."""

    files: int = 0
    documents_read: int = 0
    characters_read: int = 0
    control_chars_removed: int = 0
    citation_markers_removed: int = 0
    non_ascii_removed: int = 0
    whitespace_runs_collapsed: int = 0
    too_short_removed: int = 0
    duplicates_removed: int = 0
    documents_kept: int = 0
    characters_kept: int = 0
    steps: dict[str, Any] = field(default_factory=dict)  # the CleaningConfig used

    _ROWS = (
        ("files", "files", None),
        ("documents_read", "documents read", None),
        ("characters_read", "characters read", None),
        ("control_chars_removed", "control characters removed", "control_chars"),
        ("citation_markers_removed", "citation markers removed", "citations"),
        ("non_ascii_removed", "non-ASCII characters removed", "ascii_only"),
        ("whitespace_runs_collapsed", "whitespace runs collapsed", "whitespace"),
        ("too_short_removed", "too-short documents removed", None),
        ("duplicates_removed", "duplicate documents removed", "dedup"),
        ("documents_kept", "documents kept", None),
        ("characters_kept", "characters kept", None),
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleaningReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def table(self) -> str:
        """A small two-column table; a step that was switched off shows `off`."""
        rows = []
        for key, label, step in self._ROWS:
            if key == "too_short_removed":
                label += f" (< {self.steps.get('min_chars', 1)} chars)"
            off = step is not None and self.steps and not self.steps.get(step, True)
            rows.append((label, "off" if off else f"{getattr(self, key):,}"))
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        return "\n".join(f"{label:<{width}}  {value:>{vwidth}}" for label, value in rows)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


@dataclass(frozen=True)
class CleanDocument:
    text: str
    digest: bytes  # SHA-1 of the cleaned text: the duplicate key, also used to split by document
    source: str
    line: int


class Cleaner:
    """Applies the configured steps to documents one at a time, counting into `report`."""

    def __init__(self, cfg: CleaningConfig | None = None, report: CleaningReport | None = None):
        self.cfg = cfg or CleaningConfig()
        self.report = report or CleaningReport()
        self.report.steps = self.cfg.model_dump()
        self._seen: set[bytes] = set()

    def clean_text(self, text: str) -> str:
        """The text after the character-level steps (counted); no dropping here."""
        cfg, r = self.cfg, self.report
        if cfg.control_chars:
            text, n = remove_control_chars(text)
            r.control_chars_removed += n
        if cfg.citations:
            text, n = remove_citations(text)
            r.citation_markers_removed += n
        if cfg.ascii_only:
            text, n = remove_non_ascii(text)
            r.non_ascii_removed += n
        if cfg.whitespace:
            text, n = normalise_whitespace(text)
            r.whitespace_runs_collapsed += n
        return text

    def __call__(self, doc: Document) -> CleanDocument | None:
        r = self.report
        r.documents_read += 1
        r.characters_read += len(doc.text)
        text = self.clean_text(doc.text)
        if len(text) < self.cfg.min_chars:
            r.too_short_removed += 1
            return None
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if self.cfg.dedup:
            if digest in self._seen:
                r.duplicates_removed += 1
                return None
            self._seen.add(digest)
        r.documents_kept += 1
        r.characters_kept += len(text)
        return CleanDocument(text, digest, doc.source, doc.line)


def clean_documents(
    docs: Iterable[Document], cfg: CleaningConfig | None = None, report: CleaningReport | None = None
) -> Iterator[CleanDocument]:
    """The documents that survive cleaning, lazily; counts go into `report`."""
    cleaner = Cleaner(cfg, report)
    for doc in docs:
        out = cleaner(doc)
        if out is not None:
            yield out
