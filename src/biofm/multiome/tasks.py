"""Multiome cell-type tasks: paired cells (one `.h5mu`, or role -> `.h5ad`) and the obs column of labels.

A task is a shipped name (`snareseq-celltypes`, `snareseq-celltypes-2000`, `teaseq-celltypes`), a YAML

    name: snareseq-celltypes
    modality: multiome
    h5mu: dataset:snareseq-mouse-cortex      # or a path relative to the YAML's folder; or h5ad: {rna: .., atac: ..}
    modalities: {rna: rna, atac: atac}       # role -> modality name in the file (default: guessed from the names)
    label_column: cell_type
    batch_column: batch                      # optional
    max_cells: null                          # a seeded random subset of the labelled cells
    min_cells_per_class: 0                   # classes with fewer cells (after the subset) are dropped

or a bare `file.h5mu:label` / `dataset:NAME:label` of a multiome dataset. Labels come from the MuData's
joint obs (else the first modality's); cells without a label are dropped and reported. Inputs are the
paired cells' row numbers, so the model's embeddings, the baselines and cross-modal prediction all read
the same cells in the same order.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from biofm.config import Schema, build, read_yaml
from biofm.datasets import REFERENCE_PREFIX, get, is_reference, resolve
from biofm.errors import BiofmError
from biofm.eval.tables import class_codes, resolve_file
from biofm.eval.types import Task

SHIPPED: dict[str, dict[str, Any]] = {
    "snareseq-celltypes": {"name": "snareseq-celltypes", "h5mu": "dataset:snareseq-mouse-cortex",
                           "label_column": "cell_type", "batch_column": "batch", "min_cells_per_class": 10},
    "snareseq-celltypes-2000": {"name": "snareseq-celltypes-2000", "h5mu": "dataset:snareseq-mouse-cortex",
                                "label_column": "cell_type", "batch_column": "batch", "max_cells": 2000,
                                "min_cells_per_class": 10},
    "teaseq-celltypes": {"name": "teaseq-celltypes", "h5mu": "dataset:teaseq-pbmc", "label_column": "cell_type",
                         "modalities": {"rna": "rna", "protein": "adt"}, "min_cells_per_class": 10},
}
GUESS = {"rna": "rna", "gex": "rna", "atac": "atac", "peaks": "atac", "adt": "protein", "prot": "protein",
         "protein": "protein", "cite": "protein"}


class MultiomeTaskSpec(Schema):
    name: str = Field(min_length=1)
    description: str = ""
    modality: Literal["multiome"] = "multiome"
    h5mu: str | None = None
    h5ad: dict[str, str] | None = None
    modalities: dict[str, str] | None = Field(None, description="role -> modality name in the .h5mu")
    label_column: str = Field(min_length=1)
    batch_column: str | None = None
    max_cells: PositiveInt | None = None
    min_cells_per_class: int = Field(0, ge=0)


def _multiome_dataset(ref: str) -> bool:
    try:
        return get(ref[len(REFERENCE_PREFIX):].partition(":")[0]).modality == "multiome"
    except BiofmError:
        return False


def is_multiome_task(text: str | Path) -> bool:
    text = str(text)
    if text in SHIPPED:
        return True
    if is_reference(text):
        return _multiome_dataset(text)
    path = text.rsplit(":", 1)[0] if ":" in text and not text.lower().endswith(".h5mu") else text
    if path.lower().endswith(".h5mu"):
        return True
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
        try:
            return read_yaml(p).get("modality") == "multiome"
        except BiofmError:
            return False
    return False


def guess_modalities(h5mu: Path) -> dict[str, str]:
    """role -> modality name, from the file's modality names (rna/gex, atac/peaks, adt/prot/protein)."""
    import h5py

    with h5py.File(h5mu, "r") as f:
        mods = list(f["mod"].keys()) if "mod" in f else []
    found = {GUESS[m.lower()]: m for m in mods if m.lower() in GUESS}
    if len(found) != 2:
        raise BiofmError(f"{h5mu}: cannot tell which modalities to pair (modalities: {', '.join(mods) or 'none'}); "
                         "name them with modalities: {rna: ..., atac|protein: ...} in a task YAML")
    return found


def load_multiome_task(spec_text: str | Path) -> Task:
    text = str(spec_text)
    base = Path(".")
    if text in SHIPPED and not Path(text).exists():
        data = dict(SHIPPED[text])
    elif is_reference(text) or text.lower().endswith(".h5mu") or ".h5mu:" in text:
        path, _, label = text.rpartition(":") if text.count(":") >= (2 if is_reference(text) else 1) else (text, "", "")
        if not label:
            raise BiofmError(f"{text}: name the label column, e.g. {text}:cell_type")
        data = {"name": Path(str(path)).stem.replace("dataset:", ""), "h5mu": path, "label_column": label}
    else:
        p = Path(text)
        data = read_yaml(p)
        base = p.parent
    spec = build(MultiomeTaskSpec, data, text)
    if (spec.h5mu is None) == (spec.h5ad is None):
        raise BiofmError(f"{text}: give h5mu or h5ad (role -> file), not both")
    h5mu = None
    h5ad = None
    if spec.h5mu is not None:
        h5mu = str(resolve(spec.h5mu)) if is_reference(spec.h5mu) else str(resolve_file(base / "x.yaml", spec.h5mu,
                                                                                           "h5mu"))
        modalities = spec.modalities or guess_modalities(Path(h5mu))
        roles = [r for r in ("rna", "atac", "protein") if r in modalities]
    else:
        assert spec.h5ad is not None
        h5ad = {r: str(resolve(f)) for r, f in spec.h5ad.items()}
        modalities = {r: r for r in h5ad}
        roles = [r for r in ("rna", "atac", "protein") if r in h5ad]
    from biofm.multiome.baselines import _paired

    files = [h5mu] if h5mu else list((h5ad or {}).values())
    stamp = tuple(x for f in files for x in (Path(f).stat().st_mtime_ns, Path(f).stat().st_size))
    paired = _paired(h5mu, tuple(sorted(h5ad.items())) if h5ad else None, tuple(sorted(modalities.items())),
                     tuple(roles), stamp)
    obs = paired.obs
    if spec.label_column not in obs.columns:
        raise BiofmError(f"{h5mu or files[0]}: no obs column {spec.label_column!r} (obs columns: "
                         f"{', '.join(map(str, obs.columns))}); set label_column")
    labels = obs[spec.label_column]
    keep = labels.notna().to_numpy()
    if (~keep).any():
        print(f"[{spec.name}] {int((~keep).sum())} cell(s) without a {spec.label_column} dropped", file=sys.stderr)
    rows = np.flatnonzero(keep)
    texts = labels.astype(str).to_numpy()
    if spec.max_cells is not None and spec.max_cells < len(rows):
        rows = np.sort(np.random.default_rng(0).choice(rows, spec.max_cells, replace=False))
    if spec.min_cells_per_class:  # after the subset: the classes too rare to score in what is evaluated
        names, counts = np.unique(texts[rows], return_counts=True)
        rare = set(names[counts < spec.min_cells_per_class].tolist())
        if rare:
            print(f"[{spec.name}] classes under {spec.min_cells_per_class} cells dropped: {', '.join(sorted(rare))}",
                  file=sys.stderr)
            rows = rows[~np.isin(texts[rows], list(rare))]
    codes, classes = class_codes(texts[rows].tolist(), text, f"obs column {spec.label_column!r}")
    meta: dict[str, Any] = {"modality": "multiome", "h5mu": h5mu, "h5ad": h5ad, "modalities": modalities,
                            "roles": roles, "label_column": spec.label_column, "n_cells": len(rows)}
    if spec.batch_column:
        if spec.batch_column not in obs.columns:
            raise BiofmError(f"{h5mu or files[0]}: no obs column {spec.batch_column!r}; set batch_column")
        meta["batch"] = obs[spec.batch_column].astype(str).to_numpy()[rows]
    if spec.description:
        meta["description"] = spec.description
    return Task(name=spec.name, type="classification", inputs=rows.tolist(), labels=codes, classes=classes,
                source=text, meta=meta)


__all__ = ["SHIPPED", "MultiomeTaskSpec", "guess_modalities", "is_multiome_task", "load_multiome_task"]
