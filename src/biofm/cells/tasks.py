"""Cell-type tasks: an h5ad file and the `obs` column that holds each cell's label.

A cell task is either a small YAML file

    name: pbmc-celltype
    h5ad: pbmc68k_700cells_counts.h5ad   # relative to the YAML's folder
    label_column: bulk_labels
    batch_column: null                   # optional: enables the batch-mixing metrics
    layer: null                          # counts in a layer instead of X
    gene_column: null                    # gene symbols/ids in this var column instead of var_names
    min_cells_per_class: 0               # drop (and report) classes with fewer cells
    split_column: null                   # optional: a fixed split, train / dev / test per cell
    seeds: null                          # fixed split: repeats (default 3), mean ± s.d. over seeds

or a bare h5ad path with the label column given separately (`--label-column bulk_labels`) or glued
on after a colon: `pbmc68k_700cells_counts.h5ad:bulk_labels`.

The file is opened read-only and only `obs` (and `var`'s column names, and the list of layers) are
read here; the counts are read later by whoever needs them. The `Task`'s inputs are the cells' row
numbers in the file, so cells dropped for a missing label keep pointing at the right rows. Every
mistake a user can make with the file -- a missing column, labels that are all missing, a single
class -- is one line naming the file and what to change.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PositiveInt
from rich.console import Console

from biofm.config import Schema, build, read_yaml
from biofm.datasets import REFERENCE_PREFIX, get, is_reference, resolve
from biofm.errors import BiofmError
from biofm.eval.folds import with_fixed_split
from biofm.eval.tables import (
    MIN_EXAMPLES,
    MIN_PER_CLASS,
    check_fixed_only,
    class_codes,
    label_text,
    resolve_file,
    split_name,
)
from biofm.eval.types import SHIPPED_TASKS_DIR, Task

__all__ = ["MIN_CELLS", "CellTaskSpec", "is_cell_task", "load_cell_task", "split_label_suffix"]

# Fewer cells than this cannot give a cross-validated score that means anything (every modality's rule).
MIN_CELLS = MIN_EXAMPLES

SHIPPED_CELL_TASKS: dict[str, str] = {"pbmc-celltypes": "pbmc_celltypes.yaml"}
_SUFFIXED = re.compile(r"^(?P<path>.+\.h5ad):(?P<label>[^:/\\]+)$", re.IGNORECASE)
console = Console(stderr=True, markup=False, highlight=False)


class CellTaskSpec(Schema):
    """The keys of a cell-task YAML; unknown keys are errors so a typo is never silently ignored."""

    name: str = Field(min_length=1)
    description: str = ""
    h5ad: str = Field(description="AnnData file, relative to the YAML's folder")
    label_column: str = Field(min_length=1, description="obs column with each cell's class (cell type)")
    batch_column: str | None = Field(None, description="obs column with each cell's batch; enables batch metrics")
    layer: str | None = Field(None, description="read counts from this layer instead of X")
    gene_column: str | None = Field(None, description="var column with gene names; default var_names")
    min_cells_per_class: int = Field(0, ge=0, description="drop classes with fewer cells (reported)")
    split_column: str | None = Field(None, description="obs column with each cell's part of a fixed split: "
                                     "train / dev (validation) / test; default: cross-validation")
    seeds: PositiveInt | None = Field(None, description="fixed split: repeats, mean ± s.d. over seeds (default 3)")


def split_label_suffix(text: str) -> tuple[str, str | None]:
    """`pbmc.h5ad:bulk_labels` -> (`pbmc.h5ad`, `bulk_labels`); anything else -> (text, None).

    A file that really exists under the full name wins, so a path containing a colon still works.
    """
    m = _SUFFIXED.match(str(text))
    if m is None or Path(text).exists():
        return str(text), None
    return m["path"], m["label"]


def is_cell_task(text: str | Path) -> bool:
    """Whether `text` names a cell task: a shipped name, an .h5ad path or registered h5ad dataset
    (`dataset:NAME`), optionally `:label`, or a YAML with an `h5ad:` key; not a cell x peak matrix (atac's)."""
    if str(text) in SHIPPED_CELL_TASKS:
        return True
    from biofm.atac.tasks import is_atac_task  # imported here: biofm.atac imports this module

    if is_atac_task(text):
        return False
    if is_reference(text):
        return get(_reference_parts(str(text))[0]).reads.startswith("h5ad")
    path, _ = split_label_suffix(str(text))
    if path.lower().endswith(".h5ad"):
        return True
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
        try:
            data = read_yaml(p)
        except BiofmError:
            return False
        return "h5ad" in data
    return False


def load_cell_task(
    path_or_yaml: str | Path,
    label_column: str | None = None,
    batch_column: str | None = None,
    *,
    min_cells_per_class: int | None = None,
) -> Task:
    """Read a cell task (a shipped name, a YAML, `file.h5ad` with `label_column`, or `file.h5ad:label`;
    `dataset:NAME[:label]` for a registered h5ad) into a `Task`.

    Arguments given here override the YAML's keys. Cells whose label is missing (NaN or empty) are
    dropped with a note on stderr; so are classes under `min_cells_per_class`.
    """
    text = str(path_or_yaml)
    if text in SHIPPED_CELL_TASKS and not Path(text).exists():
        text = str(SHIPPED_TASKS_DIR / SHIPPED_CELL_TASKS[text])
    elif is_reference(text):
        name, label = _reference_parts(text)
        text = str(resolve(REFERENCE_PREFIX + name)) + (f":{label}" if label else "")
    path, suffix_label = split_label_suffix(text)
    if path.lower().endswith(".h5ad"):
        label = label_column or suffix_label
        h5ad = Path(path).expanduser()
        if not label:
            raise BiofmError(
                f"{h5ad}: which obs column holds the cell labels? pass --label-column NAME or write {h5ad.name}:NAME"
            )
        spec = CellTaskSpec(name=f"{h5ad.stem}:{label}", h5ad=str(h5ad), label_column=label,
                            batch_column=batch_column)
        source = h5ad
        if not h5ad.exists():
            raise BiofmError(f"{h5ad}: file not found")
        if h5ad.is_dir():
            raise BiofmError(f"{h5ad}: is a folder, expected an .h5ad file")
    else:
        yaml_path = Path(path)
        data = read_yaml(yaml_path)
        if label_column:
            data["label_column"] = label_column
        if batch_column:
            data["batch_column"] = batch_column
        spec = build(CellTaskSpec, data, str(yaml_path))
        h5ad = resolve_file(yaml_path, spec.h5ad, "h5ad", expected="an .h5ad file")
        source = yaml_path
    if min_cells_per_class is not None:
        spec.min_cells_per_class = min_cells_per_class
    return _task_from_file(spec, h5ad.resolve(), str(source))


# ------------------------------------------------------------------------------------------ helpers


def _reference_parts(text: str) -> tuple[str, str | None]:
    """`dataset:pbmc700:bulk_labels` -> ("pbmc700", "bulk_labels")."""
    name, _, label = text[len(REFERENCE_PREFIX):].partition(":")
    return name, label or None


def _read_annotations(h5ad: Path) -> tuple[Any, list[str], list[str], tuple[int, int]]:
    """obs (a DataFrame), var's column names, the layer names and X's shape, read without loading X."""
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(h5ad, "r") as f:
            if "obs" not in f or "X" not in f:
                raise BiofmError(f"{h5ad}: not an AnnData file (no obs/X groups)")
            obs = read_elem(f["obs"])
            var = read_elem(f["var"]) if "var" in f else None
            layers = sorted(f["layers"].keys()) if "layers" in f else []
            x = f["X"]
            # sparse X is a group with a "shape" attribute; dense X is a dataset with a shape
            raw_shape = x.shape if isinstance(x, h5py.Dataset) else x.attrs["shape"]
            shape = tuple(int(s) for s in raw_shape)
    except OSError as exc:
        raise BiofmError(f"{h5ad}: unreadable h5ad file ({str(exc).splitlines()[0]})") from None
    var_cols = [str(c) for c in var.columns] if var is not None else []
    return obs, var_cols, layers, (shape[0], shape[1])


def _texts(obs: Any, column: str) -> np.ndarray:
    import pandas as pd

    values = obs[column]
    missing = pd.isna(values).to_numpy()
    texts = np.array([label_text(v) for v in values.astype(object).tolist()], dtype=object)
    texts[missing] = ""
    return texts


def _missing_column(h5ad: Path, source: str, key: str, column: str, obs: Any) -> BiofmError:
    cols = ", ".join(str(c) for c in obs.columns) or "none"
    where = f"set {key}: in {Path(source).name}" if source != str(h5ad) else f"pass --{key.replace('_', '-')}"
    return BiofmError(f"{h5ad}: no obs column {column!r} (obs columns: {cols}); {where}")


def _task_from_file(spec: CellTaskSpec, h5ad: Path, source: str) -> Task:
    obs, var_cols, layers, (n_obs, n_vars) = _read_annotations(h5ad)
    if len(obs) != n_obs:
        raise BiofmError(f"{h5ad}: obs has {len(obs)} rows but X has {n_obs}")
    if spec.label_column not in obs.columns:
        raise _missing_column(h5ad, source, "label_column", spec.label_column, obs)
    if spec.batch_column is not None and spec.batch_column not in obs.columns:
        raise _missing_column(h5ad, source, "batch_column", spec.batch_column, obs)
    if spec.split_column is not None and spec.split_column not in obs.columns:
        raise _missing_column(h5ad, source, "split_column", spec.split_column, obs)
    check_fixed_only(source, spec.split_column is not None, seeds=spec.seeds)
    if spec.layer is not None and spec.layer not in layers:
        raise BiofmError(f"{source}: no layer {spec.layer!r} in {h5ad.name} (layers: {', '.join(layers) or 'none'})")
    if spec.gene_column is not None and spec.gene_column not in var_cols:
        listed = ", ".join(var_cols) or "none"
        raise BiofmError(f"{source}: no var column {spec.gene_column!r} in {h5ad.name} (var columns: {listed})")
    if n_vars == 0:
        raise BiofmError(f"{h5ad}: no genes (X has 0 columns)")

    what = f"obs column {spec.label_column!r}"
    texts = _texts(obs, spec.label_column)
    keep = texts != ""
    n_missing = int((~keep).sum())
    if n_missing == n_obs:
        raise BiofmError(f"{h5ad}: {what} is empty (missing) for all {n_obs} cells")
    if n_missing:
        console.print(f"note: {h5ad.name}: dropped {n_missing} of {n_obs} cells with a missing label in {what}")
    rare: dict[str, int] = {}
    if spec.min_cells_per_class:
        names, counts = np.unique(texts[keep], return_counts=True)
        rare = {str(c): int(n) for c, n in zip(names, counts, strict=True) if n < spec.min_cells_per_class}
        if rare:
            listed = ", ".join(f"{c!r} ({n})" for c, n in sorted(rare.items(), key=lambda kv: kv[1]))
            console.print(f"note: {h5ad.name}: dropped {len(rare)} class(es) with fewer than "
                          f"{spec.min_cells_per_class} cells: {listed}")
            keep &= ~np.isin(texts, list(rare))
    rows = np.flatnonzero(keep)
    if len(rows) < MIN_CELLS:
        raise BiofmError(f"{h5ad}: only {len(rows)} labelled cell(s) in {what}; a task needs at least {MIN_CELLS}")

    labels, unique = class_codes(texts[rows].tolist(), h5ad, what)
    counts = np.bincount(labels, minlength=len(unique))
    if counts.min() < MIN_PER_CLASS:
        small = [f"{unique[i]!r}" for i in np.flatnonzero(counts < MIN_PER_CLASS)]
        raise BiofmError(
            f"{h5ad}: class(es) {', '.join(small)} in {what} have a single cell; each class needs at least "
            f"{MIN_PER_CLASS} (set min_cells_per_class: in a task YAML to drop rare classes)"
        )

    batch, batch_names = None, []
    if spec.batch_column is not None:
        btexts = _texts(obs, spec.batch_column)[rows]
        n_bmiss = int((btexts == "").sum())
        if n_bmiss:
            raise BiofmError(f"{h5ad}: obs column {spec.batch_column!r} (batch) is missing for {n_bmiss} "
                             f"labelled cell(s); fill it in or drop those cells")
        batch_names = sorted(set(btexts.tolist()))
        if len(batch_names) < 2:
            console.print(f"note: {h5ad.name}: batch column {spec.batch_column!r} has a single value "
                          f"({batch_names[0]!r}); batch-mixing metrics are skipped")
            batch, batch_names = None, []
        else:
            bcode = {b: i for i, b in enumerate(batch_names)}
            batch = np.array([bcode[b] for b in btexts.tolist()], dtype=np.int64)

    meta: dict[str, Any] = {
        "h5ad": str(h5ad),
        "layer": spec.layer,
        "gene_column": spec.gene_column,
        "label_column": spec.label_column,
        "batch_column": spec.batch_column if batch is not None else None,
        "batch": batch,
        "batch_names": batch_names,
        "cell_ids": [str(c) for c in np.asarray(obs.index)[rows]],
        "n_cells_file": n_obs,
        "n_genes": n_vars,
        "dropped_missing_label": n_missing,
        "dropped_classes": rare,
        "modality": "cells",
    }
    if spec.description:
        meta["description"] = spec.description
    task = Task(name=spec.name, type="classification", inputs=[int(r) for r in rows], labels=labels,
                classes=unique, source=source, meta=meta)
    if spec.split_column is not None:
        # cells are rows of one matrix, not comparable content: no duplicate check (meta says None)
        task = with_fixed_split(task, _split_of(obs, spec.split_column, rows, h5ad), seeds=spec.seeds)
    return task


def _split_of(obs: Any, column: str, rows: np.ndarray, h5ad: Path) -> np.ndarray:
    """Each kept cell's part of the fixed split, from obs `column`; an unknown value names its cell."""
    texts = _texts(obs, column)[rows]
    out = np.array([split_name(t) for t in texts.tolist()], dtype=object)
    bad = [i for i, s in enumerate(out.tolist()) if s is None]
    if bad:
        cell = str(np.asarray(obs.index)[rows[bad[0]]])
        raise BiofmError(f"{h5ad}: obs column {column!r}: cell {cell!r} has split {texts[bad[0]]!r}, not train, "
                         f"dev / validation / valid / val or test ({len(bad)} such cell(s))")
    return out
