from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.cells.tasks import is_cell_task, load_cell_task, split_label_suffix
from biofm.errors import BiofmError


def write_h5ad(path: Path, labels: list, batch: list | None = None, n_genes: int = 20, layer: bool = False,
               extra: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    n = len(labels)
    obs = pd.DataFrame({"cell_type": labels}, index=[f"cell{i}" for i in range(n)])
    if batch is not None:
        obs["batch"] = batch
    for k, v in (extra or {}).items():
        obs[k] = v
    x = sp.csr_matrix(rng.poisson(1.0, size=(n, n_genes)).astype(np.float32))
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame({"symbol": [f"G{j}" for j in range(n_genes)]},
                                                    index=[f"g{j}" for j in range(n_genes)]))
    if layer:
        adata.layers["counts"] = x.copy()
    adata.write_h5ad(path)
    return path


def labels_3x10() -> list[str]:
    return ["T"] * 10 + ["B"] * 10 + ["NK"] * 10


def test_yaml_task(tmp_path: Path) -> None:
    write_h5ad(tmp_path / "toy.h5ad", labels_3x10(), batch=["b1", "b2"] * 15, layer=True)
    (tmp_path / "task.yaml").write_text(
        "name: toy\nh5ad: toy.h5ad\nlabel_column: cell_type\nbatch_column: batch\nlayer: counts\n"
        "gene_column: symbol\n"
    )
    task = load_cell_task(tmp_path / "task.yaml")
    assert task.name == "toy" and task.type == "classification"
    assert task.inputs == list(range(30)) and all(isinstance(i, int) for i in task.inputs)
    assert task.classes == ["B", "NK", "T"]
    assert task.labels.tolist() == [2] * 10 + [0] * 10 + [1] * 10
    assert task.meta["h5ad"] == str((tmp_path / "toy.h5ad").resolve())
    assert task.meta["layer"] == "counts" and task.meta["gene_column"] == "symbol"
    assert task.meta["batch"].tolist() == [0, 1] * 15 and task.meta["batch_names"] == ["b1", "b2"]
    assert task.meta["cell_ids"][:2] == ["cell0", "cell1"]
    assert is_cell_task(tmp_path / "task.yaml") and is_cell_task("x.h5ad:label") and not is_cell_task("splice")


def test_bare_path_and_suffix_syntax(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", labels_3x10())
    a = load_cell_task(path, label_column="cell_type")
    b = load_cell_task(f"{path}:cell_type")
    assert a.name == b.name == "toy:cell_type"
    assert a.labels.tolist() == b.labels.tolist() and a.meta["batch"] is None
    assert split_label_suffix("data/pbmc.h5ad:bulk_labels") == ("data/pbmc.h5ad", "bulk_labels")
    assert split_label_suffix("task.yaml") == ("task.yaml", None)
    with pytest.raises(BiofmError, match="--label-column"):
        load_cell_task(path)


def test_missing_label_column_lists_obs_columns(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", labels_3x10(), batch=["a"] * 30)
    with pytest.raises(BiofmError, match=r"no obs column 'celltype' \(obs columns: cell_type, batch\)"):
        load_cell_task(f"{path}:celltype")
    with pytest.raises(BiofmError, match="no obs column 'donor'"):
        load_cell_task(path, "cell_type", batch_column="donor")
    (tmp_path / "t.yaml").write_text("name: t\nh5ad: toy.h5ad\nlabel_column: nope\n")
    with pytest.raises(BiofmError, match=r"set label_column: in t\.yaml"):
        load_cell_task(tmp_path / "t.yaml")


def test_nan_labels_dropped_with_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels: list = labels_3x10()
    labels[3] = np.nan
    labels[15] = None
    path = write_h5ad(tmp_path / "toy.h5ad", labels)
    task = load_cell_task(path, "cell_type")
    assert len(task.inputs) == 28 and 3 not in task.inputs and 15 not in task.inputs
    assert task.meta["cell_ids"][3] == "cell4" and task.meta["dropped_missing_label"] == 2
    assert "dropped 2 of 30 cells with a missing label" in capsys.readouterr().err


def test_too_few_labelled_cells(tmp_path: Path) -> None:
    labels = ["A"] * 4 + ["B"] * 4 + [np.nan] * 22
    path = write_h5ad(tmp_path / "toy.h5ad", labels)
    with pytest.raises(BiofmError, match="only 8 labelled cell"):
        load_cell_task(path, "cell_type")


def test_single_class_and_singleton_class(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "one.h5ad", ["T"] * 20)
    with pytest.raises(BiofmError, match=r"only one class \('T'\)"):
        load_cell_task(path, "cell_type")
    path = write_h5ad(tmp_path / "single.h5ad", ["T"] * 15 + ["B"] * 14 + ["rare"])
    with pytest.raises(BiofmError, match=r"'rare'.*single cell.*min_cells_per_class"):
        load_cell_task(path, "cell_type")


def test_min_cells_per_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_h5ad(tmp_path / "toy.h5ad", ["T"] * 15 + ["B"] * 12 + ["rare"] * 3)
    (tmp_path / "t.yaml").write_text("name: t\nh5ad: toy.h5ad\nlabel_column: cell_type\nmin_cells_per_class: 5\n")
    task = load_cell_task(tmp_path / "t.yaml")
    assert task.classes == ["B", "T"] and len(task.inputs) == 27
    assert task.meta["dropped_classes"] == {"rare": 3}
    assert "'rare' (3)" in capsys.readouterr().err


def test_numeric_labels_sorted_numerically(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", [10] * 10 + [2] * 10 + [1] * 10)
    assert load_cell_task(path, "cell_type").classes == ["1", "2", "10"]


def test_layer_and_gene_column_checked(tmp_path: Path) -> None:
    write_h5ad(tmp_path / "toy.h5ad", labels_3x10())
    (tmp_path / "l.yaml").write_text("name: t\nh5ad: toy.h5ad\nlabel_column: cell_type\nlayer: counts\n")
    with pytest.raises(BiofmError, match=r"no layer 'counts' .*\(layers: none\)"):
        load_cell_task(tmp_path / "l.yaml")
    (tmp_path / "g.yaml").write_text("name: t\nh5ad: toy.h5ad\nlabel_column: cell_type\ngene_column: gene\n")
    with pytest.raises(BiofmError, match=r"no var column 'gene' .*\(var columns: symbol\)"):
        load_cell_task(tmp_path / "g.yaml")


def test_yaml_errors(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("name: t\nh5ad: missing.h5ad\nlabel_column: x\n")
    with pytest.raises(BiofmError, match=r"h5ad file 'missing\.h5ad' not found"):
        load_cell_task(tmp_path / "t.yaml")
    (tmp_path / "u.yaml").write_text("name: t\nh5ad: x.h5ad\nlabel_column: x\nlabels: y\n")
    with pytest.raises(BiofmError, match="unknown key 'labels'"):
        load_cell_task(tmp_path / "u.yaml")
    with pytest.raises(BiofmError, match="file not found"):
        load_cell_task(tmp_path / "nothere.h5ad:x")
    (tmp_path / "bad.h5ad").write_text("not hdf5")
    with pytest.raises(BiofmError, match="unreadable h5ad"):
        load_cell_task(tmp_path / "bad.h5ad:x")


def test_batch_missing_values_and_single_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", labels_3x10(), batch=["a"] * 29 + [np.nan])
    with pytest.raises(BiofmError, match="missing for 1 labelled cell"):
        load_cell_task(path, "cell_type", batch_column="batch")
    path = write_h5ad(tmp_path / "one.h5ad", labels_3x10(), batch=["a"] * 30)
    task = load_cell_task(path, "cell_type", batch_column="batch")
    assert task.meta["batch"] is None and "single value" in capsys.readouterr().err


def test_input_file_untouched(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", labels_3x10(), batch=["a", "b"] * 15)
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    load_cell_task(path, "cell_type", batch_column="batch")
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
