"""Where biofm caches things, and a file's content hash: light helpers (no data libraries) that the
dataset registry, run folders and the token caches share."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get("BIOFM_CACHE") or ".cache/biofm")


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file (so a renamed copy hits the cache and an edited file misses it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
