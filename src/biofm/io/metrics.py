"""metrics.jsonl: one JSON object per logged step, appended as training goes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from biofm.errors import BiofmError


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl. A half-written LAST line (the process died mid-write) is dropped with a
    note; a bad line anywhere else is an error naming it."""
    lines = path.read_text().splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                print(f"{path}, line {n}: half-written last line ignored", file=sys.stderr)
                continue
            raise BiofmError(f"{path}, line {n}: not valid JSON") from None
    return rows
