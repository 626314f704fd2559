"""User-facing errors.

A `BiofmError` is a problem with what the user gave us (a file, a record, a config key). The CLI
prints its message as one line and exits non-zero without a traceback; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class BiofmError(Exception):
    """Bad input: the message names the file/record/line and what is wrong."""

    exit_code = 2


def where(path: str | Path, line: int | None = None, record: str | None = None) -> str:
    """Format a location prefix such as `genome.fa, line 12 (record chr1)`."""
    out = str(path)
    if line is not None:
        out += f", line {line}"
    if record is not None:
        out += f" (record {record!r})"
    return out
