"""scATAC-seq cell-type tasks: a cell x peak `.h5ad` and the `obs` column that holds each cell's label.

A task is a shipped name (`granja-celltypes`, `granja-celltypes-600`), a small YAML file

    name: granja-celltypes
    modality: atac                       # says how to read it (an h5ad of peaks is recognised anyway)
    h5ad: dataset:granja2019-bmmc-14k    # or a path relative to the YAML's folder
    label_column: cell_type
    batch_column: batch                  # optional: enables the batch-mixing metrics
    layer: null                          # counts in a layer instead of X
    peak_column: null                    # peak names in this var column instead of var_names
    min_cells_per_class: 0               # drop (and report) classes with fewer cells

or a bare `file.h5ad:label_column` / `dataset:NAME:label_column` whose var names are peaks.

Labels, batches, missing labels and rare classes follow exactly the single-cell RNA rules: the
labels are read by `biofm.cells.tasks.load_cell_task`, which reads only `obs` (never the counts), and
the result is relabelled as an atac task. The counts are read (and checked, see
`biofm.atac.peaks.read_peaks`) by whoever needs them. Inputs are the cells' row numbers in the file.

Recognition: an h5ad is atac when its var names parse as peaks (`chr_start_end`, `chr:start-end`),
a registered dataset when the registry files it under atac, and a YAML when it says `modality: atac`
or (saying nothing) names such an h5ad. `biofm.cells.tasks.is_cell_task` defers to `is_atac_task`,
so the two never both claim a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from biofm.atac.peaks import is_peak_h5ad
from biofm.cells.tasks import load_cell_task, split_label_suffix
from biofm.config import Schema, build, read_yaml
from biofm.datasets import REFERENCE_PREFIX, get, is_reference, resolve
from biofm.errors import BiofmError
from biofm.eval.tables import resolve_file
from biofm.eval.types import SHIPPED_TASKS_DIR, Task

__all__ = ["SHIPPED_ATAC_TASKS", "AtacTaskSpec", "is_atac_task", "load_atac_task"]

SHIPPED_ATAC_TASKS: dict[str, str] = {
    "granja-celltypes": "granja_celltypes.yaml",
    "granja-celltypes-600": "granja_celltypes_600.yaml",
}


class AtacTaskSpec(Schema):
    """The keys of an atac-task YAML; unknown keys are errors so a typo is never silently ignored."""

    name: str = Field(min_length=1)
    description: str = ""
    modality: Literal["atac"] = "atac"
    h5ad: str = Field(description="AnnData file of cells x peaks, relative to the YAML's folder, or dataset:NAME")
    label_column: str = Field(min_length=1, description="obs column with each cell's class (cell type)")
    batch_column: str | None = Field(None, description="obs column with each cell's batch; enables batch metrics")
    layer: str | None = Field(None, description="read counts from this layer instead of X")
    peak_column: str | None = Field(None, description="var column with peak names; default var_names")
    min_cells_per_class: int = Field(0, ge=0, description="drop classes with fewer cells (reported)")


# ------------------------------------------------------------------------------------------ recognition


def _dataset_name(text: str) -> str:
    """`dataset:granja2019-bmmc-600:cell_type` -> `granja2019-bmmc-600`."""
    return text[len(REFERENCE_PREFIX):].partition(":")[0]


def _names_peaks(h5ad: str, base: Path | None = None) -> bool:
    """Whether an h5ad reference (a registered dataset or a file, relative to `base`) holds peaks; no
    download and no error: an unknown or missing file is simply not recognised."""
    if is_reference(h5ad):
        try:
            return get(_dataset_name(h5ad)).modality == "atac"
        except BiofmError:
            return False
    p = Path(h5ad).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    return p.is_file() and is_peak_h5ad(p)


def is_atac_task(text: str | Path) -> bool:
    """Whether `text` names an atac task: a shipped name, an h5ad (or `dataset:NAME`) of peaks with an
    optional `:label`, or a YAML saying `modality: atac` or naming such an h5ad without saying."""
    text = str(text)
    if text in SHIPPED_ATAC_TASKS:
        return True
    if is_reference(text):
        return _names_peaks(REFERENCE_PREFIX + _dataset_name(text))
    path, _ = split_label_suffix(text)
    if path.lower().endswith(".h5ad"):
        return _names_peaks(path)
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
        try:
            data = read_yaml(p)
        except BiofmError:
            return False
        if "modality" in data:
            return data["modality"] == "atac"
        return isinstance(data.get("h5ad"), str) and _names_peaks(data["h5ad"], p.parent)
    return False


# ------------------------------------------------------------------------------------------ loading


def load_atac_task(
    path_or_yaml: str | Path,
    label_column: str | None = None,
    batch_column: str | None = None,
    *,
    min_cells_per_class: int | None = None,
) -> Task:
    """Read an atac task (a shipped name, a YAML, `file.h5ad` with `label_column`, `file.h5ad:label`, or
    `dataset:NAME[:label]`) into a `Task` whose inputs are row numbers of the h5ad.

    Arguments given here override the YAML's keys. The file must be a cell x peak matrix (its peak
    names parse as coordinates); missing labels and rare classes are handled as for cells.
    """
    text = str(path_or_yaml)
    if text in SHIPPED_ATAC_TASKS and not Path(text).exists():
        text = str(SHIPPED_TASKS_DIR / SHIPPED_ATAC_TASKS[text])
    elif is_reference(text):
        name, _, label = text[len(REFERENCE_PREFIX):].partition(":")
        text = str(resolve(REFERENCE_PREFIX + name)) + (f":{label}" if label else "")
    path, suffix_label = split_label_suffix(text)
    if path.lower().endswith(".h5ad"):
        h5ad = Path(path).expanduser()
        source, layer, peak_column = h5ad, None, None
        if h5ad.is_file():
            _check_peaks(h5ad, str(source))
        task = load_cell_task(h5ad, label_column or suffix_label, batch_column,
                              min_cells_per_class=min_cells_per_class)
        description = ""
    else:
        yaml_path = Path(path)
        data = read_yaml(yaml_path)
        if label_column:
            data["label_column"] = label_column
        if batch_column:
            data["batch_column"] = batch_column
        spec = build(AtacTaskSpec, data, str(yaml_path))
        if min_cells_per_class is not None:
            spec.min_cells_per_class = min_cells_per_class
        h5ad = resolve_file(yaml_path, spec.h5ad, "h5ad", expected="an .h5ad file")
        source, layer, peak_column, description = yaml_path, spec.layer, spec.peak_column, spec.description
        _check_peaks(h5ad, str(source), {"label_column": spec.label_column, "batch_column": spec.batch_column},
                     layer, peak_column)
        task = load_cell_task(h5ad, spec.label_column, spec.batch_column,
                              min_cells_per_class=spec.min_cells_per_class)
        task.name = spec.name
    task.source = str(source)
    meta: dict[str, Any] = task.meta
    meta.pop("gene_column", None)
    meta["n_peaks"] = meta.pop("n_genes")
    meta.update({"modality": "atac", "layer": layer, "peak_column": peak_column})
    if description:
        meta["description"] = description
    return task


def _file_keys(h5ad: Path) -> tuple[list[str], list[str], list[str]] | None:
    """(obs columns, var columns, layers) from the h5ad's group attributes, or None when the layout does
    not record them (then the cells loader's own checks apply)."""
    import h5py

    def names(group: Any) -> list[str]:
        return [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["column-order"]]

    try:
        with h5py.File(h5ad, "r") as f:
            return names(f["obs"]), names(f["var"]), sorted(f["layers"].keys()) if "layers" in f else []
    except Exception:
        return None


def _check_peaks(h5ad: Path, source: str, columns: dict[str, str | None] | None = None, layer: str | None = None,
                 peak_column: str | None = None) -> None:
    """A task YAML's obs `columns` ({key: column}), layer and peak column exist, and the file's peak names
    are coordinates: one line each, saying which key to change, before anything else reads the file."""
    keys = _file_keys(h5ad)
    where = Path(source).name
    if keys is not None:
        obs, var, layers = keys
        for key, column in (columns or {}).items():
            if column is not None and column not in obs:
                raise BiofmError(f"{h5ad}: no obs column {column!r} (obs columns: {', '.join(obs) or 'none'}); "
                                 f"set {key}: in {where}")
        if layer is not None and layer not in layers:
            raise BiofmError(f"{source}: no layer {layer!r} in {h5ad.name} (layers: {', '.join(layers) or 'none'})")
        if peak_column is not None and peak_column not in var:
            raise BiofmError(f"{source}: no var column {peak_column!r} in {h5ad.name} "
                             f"(var columns: {', '.join(var) or 'none'})")
    if not is_peak_h5ad(h5ad, peak_column):
        what = "var names" if peak_column is None else f"var column {peak_column!r}"
        hint = "set peak_column: to a var column of peak names, or " if columns is not None else ""
        raise BiofmError(f"{h5ad}: its {what} are not peaks (chr_start_end or chr:start-end), so it is not a "
                         f"cell x peak matrix; {hint}read it as a cells (RNA) task")
