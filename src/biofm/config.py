"""Typed configs loaded from YAML and overridden on the command line.

Each command has one pydantic schema. Unknown keys and wrong types are user errors reported as one
line naming the file and the key. The resolved config (every default written out) is saved in the
run folder so the run can be reproduced with `biofm pretrain RUN/config.yaml`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from biofm.errors import BiofmError
from biofm.io.atomic import write_text


class Schema(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


S = TypeVar("S", bound=Schema)


_FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".ffn", ".fas")
_FASTA_HINT = "put it under data.fasta in a config (see examples/configs/dna_tiny.yaml)"
_H5AD_HINT = "put it under data.h5ad in a config (see examples/configs/cells_recommended.yaml)"
_SNIFF_BYTES = 4096


def _starts_like_fasta(head: bytes) -> bool:
    first = next((line for line in head.splitlines() if line.strip()), b"")
    return first.lstrip().startswith(b">")


def _data_file_kind(path: Path) -> str | None:
    """What a data file given where a YAML config belongs is, with what to do instead; None for others.

    Decided from the first bytes (gzip and HDF5 magic, a first line starting with '>') as well as the
    name, reading only the file's head: a genome passed by mistake is not loaded whole to fail in YAML.
    """
    name = path.name.lower()
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(b"\x1f\x8b") or name.endswith(".gz"):
        inner = b""
        if head.startswith(b"\x1f\x8b"):
            try:
                with gzip.open(path, "rb") as fh:
                    inner = fh.read(_SNIFF_BYTES)
            except (OSError, EOFError, zlib.error):
                pass  # a damaged archive: still not a config
        if name.removesuffix(".gz").endswith(_FASTA_SUFFIXES) or _starts_like_fasta(inner):
            return f"this is a gzip-compressed FASTA file, not a YAML config; {_FASTA_HINT}"
        return "this is a gzip-compressed file, not a YAML config; give the path of a YAML config instead"
    if head.startswith(b"\x89HDF") or name.endswith((".h5ad", ".h5", ".hdf5")):
        what = "an AnnData .h5ad file" if name.endswith(".h5ad") else "an HDF5 file (an AnnData .h5ad?)"
        return f"this is {what}, not a YAML config; {_H5AD_HINT}"
    if name.endswith(_FASTA_SUFFIXES) or _starts_like_fasta(head):
        return f"this is a FASTA file, not a YAML config; {_FASTA_HINT}"
    return None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise BiofmError(f"{path}: config file not found")
    if path.is_dir():
        raise BiofmError(f"{path}: is a folder, expected a YAML config file")
    kind = _data_file_kind(path)
    if kind is not None:
        raise BiofmError(f"{path}: {kind}")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise BiofmError(f"{path}: not a text file, expected a YAML config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BiofmError(f"{path}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BiofmError(f"{path}: expected a mapping of config keys at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; the value is parsed as YAML (so 3, 1e-3, true, [1,2] work)."""
    for item in overrides:
        if "=" not in item:
            raise BiofmError(f"{source} {item!r}: expected key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise BiofmError(f"{source} {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc!r}"
    if kind == "missing":
        return f"missing required key {loc!r}"
    got = err.get("input")
    got_s = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"key {loc!r}: {err['msg'].lower()} (got {got_s})"


def build(schema: type[S], data: dict[str, Any], source: str) -> S:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise BiofmError(f"{source}: {_describe(errors[0])}{more}") from None


def load(schema: type[S], path: str | Path | None, overrides: list[str] | None = None) -> S:
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return build(schema, data, str(path) if path is not None else "config")


def dump(cfg: Schema) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save(cfg: Schema, dest: str | Path) -> None:
    write_text(dest, dump(cfg))
