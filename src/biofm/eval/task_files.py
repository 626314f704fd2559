"""Peeking at a task file, so each modality can say whether a task is its own without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biofm.config import read_yaml
from biofm.errors import BiofmError

YAML_SUFFIXES = (".yaml", ".yml")


def task_yaml(spec: str) -> dict[str, Any] | None:
    """The keys of a task YAML, or None when `spec` is not a readable YAML file."""
    p = Path(spec)
    if p.suffix.lower() not in YAML_SUFFIXES or not p.is_file():
        return None
    try:
        data = read_yaml(p)
    except BiofmError:
        return None
    return data if isinstance(data, dict) else None


def table_columns(spec: str) -> list[str]:
    """The header names of a CSV/TSV/JSONL table (gzipped or not); [] when unreadable or not a table."""
    import json

    from biofm.eval.tables import text_lines

    p = Path(spec)
    if not p.is_file() or p.suffix.lower() in YAML_SUFFIXES:
        return []
    try:
        head = next((line for _, line in text_lines(p)), "")
    except BiofmError:  # not text: not a table either
        return []
    if head.lstrip().startswith("{"):
        try:
            return list(json.loads(head))
        except ValueError:
            return []
    return [c.strip().strip('"') for c in head.replace(",", "\t").strip().split("\t")]
