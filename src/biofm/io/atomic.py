"""Atomic writes: a crash never leaves a half-written file or folder that looks complete.

Everything is written next to its destination under a temporary name and renamed into place;
rename is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest`, on error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)  # mkstemp/mkdtemp make owner-only entries
    try:
        yield tmp
        if is_dir:
            for f in tmp.rglob("*"):  # libraries write some files owner-only (e.g. safetensors via mkstemp)
                if f.is_file():
                    os.chmod(f, 0o666 & ~umask)
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_bytes(dest: str | Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def json_safe(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(dest: str | Path, obj: Any) -> None:
    write_text(dest, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def write_files_into(dest: str | Path, write: Any, prefix: str = ".biofm-files-") -> Path:
    """Call `write(folder)` and put what it wrote into folder `dest`.

    Like `save_pretrained`, an existing folder (e.g. a model's) is added to, each file renamed into
    place so none is ever half-written; a new folder appears all at once."""
    dest = Path(dest)
    if dest.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest))
        try:
            write(tmp)
            for file in sorted(tmp.iterdir()):
                file.chmod(0o644)  # mkstemp-style owner-only modes would make a shared model unreadable
                file.replace(dest / file.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        with atomic_path(dest, is_dir=True) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes the folder owner-only; a saved folder is meant to be shared
            write(tmp)
    return dest
