"""A run folder biofm owns: made with a marker, locked while a process uses it, deleted only when safe.

Why each rule exists (all were reached by users):
- `--overwrite` deletes a folder only if biofm made it as a run (the `.biofm-run` marker is written
  first) and it holds none of the run's inputs, no other run, and is neither the working directory
  nor one of its parents. `run_dir: .` with `--overwrite` once deleted a user's whole folder.
- One process at a time: a second `biofm pretrain` on the same folder (say two `--resume`s) exits
  with one line instead of interleaving `metrics.jsonl` rows.
- The marker also records a content fingerprint of every input file, so `--resume` can refuse a
  changed FASTA that has kept its name.
- Temporary files of writes that a killed process left behind (`.NAME.tmp-*`, `.NAME.old-*`, see
  `biofm.io.atomic`) are removed at the next start, under the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from biofm.errors import BiofmError
from biofm.io.atomic import write_json
from biofm.io.files import file_fingerprint

MARKER = ".biofm-run"
LOCK = ".lock"
_STALE = (".*.tmp-*", ".*.old-*", ".biofm-files-*")


def input_paths(settings: Any) -> list[Path]:
    """Every existing file or folder named by a string in `settings` (a config dumped to plain data).

    `dataset:NAME` references are not paths here: they live in the cache or a mirror, never in a run.
    """
    found: list[Path] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value and not value.startswith("dataset:") and len(value) < 4096:
            with contextlib.suppress(OSError):
                p = Path(value).expanduser()
                if p.exists():
                    found.append(p)

    walk(settings)
    return found


def fingerprints(paths: list[Path]) -> dict[str, str]:
    """Content hash of each input file (folders: of each file below them), by absolute path."""
    out: dict[str, str] = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            out[str(f.resolve())] = file_fingerprint(f)
    return out


class RunFolder:
    def __init__(self, path: Path):
        self.path = path
        self._lock_fd: int | None = None

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def is_ours(self) -> bool:
        return self.marker.is_file()

    def recorded_inputs(self) -> dict[str, str]:
        with contextlib.suppress(OSError, ValueError, TypeError):
            return dict(json.loads(self.marker.read_text()).get("inputs", {}))
        return {}

    def refuse_delete(self, inputs: list[Path]) -> str | None:
        """Why this folder must not be deleted by `--overwrite`, or None when it safely can be."""
        here = self.path.resolve()
        cwd = Path.cwd().resolve()
        if here == cwd or here in cwd.parents:
            return "it is the working directory or one of its parents"
        if here == Path.home().resolve() or here == Path(here.anchor):
            return "it is the home or root folder"
        if not self.is_ours():
            return (f"biofm did not create it as a run (no {MARKER} marker); delete it yourself or choose another "
                    "run_dir")
        for p in inputs:
            q = p.resolve()
            if q == here or here in q.parents:
                return f"it holds the run's input {p}"
        others = [m.parent for m in here.glob(f"*/**/{MARKER}")]
        if others:
            return f"it holds other runs ({others[0].relative_to(here)})"
        return None

    def create(self, inputs: dict[str, str]) -> None:
        """Make the folder (rank 0) and write the marker first, before anything else goes in."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.record(inputs)

    def record(self, inputs: dict[str, str]) -> None:
        write_json(self.marker, {"biofm_run": 1, "inputs": inputs, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def clear(self) -> None:
        """Delete everything in the run but its lock (held by this process while it starts over)."""
        for p in self.path.iterdir():
            if p.name == LOCK:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the run for the duration (released by the OS if the process dies)."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one process at a time is then the user's care
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BiofmError(f"{self.path}: another biofm process (pid {holder}) is using this run; wait for it to "
                             "finish or stop it first") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete what killed atomic writes left behind (only call under the lock)."""
        gone = []
        for folder in (self.path, self.path / "checkpoints"):
            if not folder.is_dir():
                continue
            for pattern in _STALE:
                for p in folder.glob(pattern):
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            p.unlink()
                    gone.append(p)
        return gone


def config_changes(stored: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dumps."""
    keys = sorted(set(stored) | set(new))
    out = []
    for k in keys:
        a, b = stored.get(k), new.get(k)
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


# Changing these under a resume gives a run that is neither the old one nor a fresh one.
FIXED_ON_RESUME = ("modality", "seed", "data", "tokenizer", "model", "objectives")
# ... except where a setting only says where or how fast, not what.
NEUTRAL_ON_RESUME = ("data.cache_dir", "data.chunk_cells")


def refused_changes(changes: list[str], allowed: list[str]) -> list[str]:
    """The changed keys that a resume may not take without `--allow-changes` naming them (or a parent)."""
    def fixed(key: str) -> bool:
        return key.split(".")[0] in FIXED_ON_RESUME and key not in NEUTRAL_ON_RESUME

    def permitted(key: str) -> bool:
        return any(key == a or key.startswith(a + ".") for a in allowed)

    return [c for c in changes if fixed(c) and not permitted(c)]
