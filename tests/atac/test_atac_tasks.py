from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.atac import evaluation as atac_eval
from biofm.atac.tasks import SHIPPED_ATAC_TASKS, is_atac_task, load_atac_task
from biofm.cells import evaluation as cells_eval
from biofm.cells.tasks import is_cell_task
from biofm.errors import BiofmError
from biofm.eval.types import SHIPPED_TASKS_DIR


def write_h5ad(path: Path, labels: list[str], batch: list[str] | None = None, peaks: bool = True,
               n_vars: int = 12) -> Path:
    rng = np.random.default_rng(0)
    n = len(labels)
    obs = pd.DataFrame({"cell_type": labels}, index=[f"cell{i}" for i in range(n)])
    if batch is not None:
        obs["batch"] = batch
    x = rng.poisson(0.8, size=(n, n_vars)).astype(np.int32)
    x[:, 0] = 1  # every cell has an accessible peak
    names = [f"chr{1 + j % 3}_{1000 * j}_{1000 * j + 500}" for j in range(n_vars)] if peaks else \
        [f"GENE{j}" for j in range(n_vars)]
    ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=names)).write_h5ad(path)
    return path


def labels_3x10() -> list[str]:
    return ["T"] * 10 + ["B"] * 10 + ["NK"] * 10


def test_yaml_task(tmp_path: Path) -> None:
    write_h5ad(tmp_path / "toy.h5ad", labels_3x10(), batch=["d1", "d2"] * 15)
    (tmp_path / "task.yaml").write_text("name: toy\nmodality: atac\nh5ad: toy.h5ad\nlabel_column: cell_type\n"
                                        "batch_column: batch\ndescription: three types\n")
    task = load_atac_task(tmp_path / "task.yaml")
    assert task.name == "toy" and task.type == "classification" and task.source == str(tmp_path / "task.yaml")
    assert task.inputs == list(range(30)) and task.classes == ["B", "NK", "T"]
    assert task.labels.tolist() == [2] * 10 + [0] * 10 + [1] * 10
    assert task.meta["modality"] == "atac" and task.meta["n_peaks"] == 12 and "gene_column" not in task.meta
    assert task.meta["batch"].tolist() == [0, 1] * 15 and task.meta["batch_names"] == ["d1", "d2"]
    assert task.meta["h5ad"] == str((tmp_path / "toy.h5ad").resolve()) and task.meta["description"] == "three types"


def test_bare_path_and_suffix(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "toy.h5ad", labels_3x10())
    a = load_atac_task(f"{path}:cell_type")
    b = load_atac_task(path, label_column="cell_type")
    assert a.name == b.name == "toy:cell_type" and a.labels.tolist() == b.labels.tolist()
    assert a.meta["modality"] == "atac" and a.meta["layer"] is None
    with pytest.raises(BiofmError, match="which obs column holds the cell labels"):
        load_atac_task(path)


def test_peak_files_are_atac_and_rna_files_are_cells(tmp_path: Path) -> None:
    peaks = write_h5ad(tmp_path / "peaks.h5ad", labels_3x10())
    genes = write_h5ad(tmp_path / "genes.h5ad", labels_3x10(), peaks=False)
    assert is_atac_task(f"{peaks}:cell_type") and not is_cell_task(f"{peaks}:cell_type")
    assert not is_atac_task(f"{genes}:cell_type") and is_cell_task(f"{genes}:cell_type")
    # the two modalities' hooks agree: exactly one claims each file
    assert (atac_eval.recognise_task(f"{peaks}:cell_type"), cells_eval.recognise_task(f"{peaks}:cell_type")) == (2, 0)
    assert (atac_eval.recognise_task(f"{genes}:cell_type"), cells_eval.recognise_task(f"{genes}:cell_type")) == (0, 2)
    # a YAML that does not say its modality follows its file; one that says, says
    (tmp_path / "p.yaml").write_text("name: p\nh5ad: peaks.h5ad\nlabel_column: cell_type\n")
    (tmp_path / "g.yaml").write_text("name: g\nh5ad: genes.h5ad\nlabel_column: cell_type\n")
    assert is_atac_task(tmp_path / "p.yaml") and not is_cell_task(tmp_path / "p.yaml")
    assert not is_atac_task(tmp_path / "g.yaml") and is_cell_task(tmp_path / "g.yaml")
    (tmp_path / "a.yaml").write_text("name: a\nmodality: atac\nh5ad: missing.h5ad\nlabel_column: cell_type\n")
    assert is_atac_task(tmp_path / "a.yaml")
    # registered datasets: the registry's modality decides (no download needed)
    assert is_atac_task("dataset:granja2019-bmmc-600:cell_type") and not is_cell_task("dataset:granja2019-bmmc-600")
    assert not is_atac_task("dataset:pbmc700:bulk_labels") and is_cell_task("dataset:pbmc700:bulk_labels")
    assert is_atac_task("granja-celltypes") and not is_atac_task("pbmc-celltypes") and not is_atac_task("splice")


def test_rna_file_named_as_atac_is_refused(tmp_path: Path) -> None:
    write_h5ad(tmp_path / "genes.h5ad", labels_3x10(), peaks=False)
    (tmp_path / "t.yaml").write_text("name: t\nmodality: atac\nh5ad: genes.h5ad\nlabel_column: cell_type\n")
    with pytest.raises(BiofmError, match=r"genes\.h5ad: its var names are not peaks .*cells \(RNA\) task"):
        load_atac_task(tmp_path / "t.yaml")


def test_yaml_mistakes_name_the_key(tmp_path: Path) -> None:
    write_h5ad(tmp_path / "toy.h5ad", labels_3x10())
    (tmp_path / "t.yaml").write_text("name: t\nmodality: atac\nh5ad: toy.h5ad\nlabel_column: celltype\n")
    with pytest.raises(BiofmError, match=r"no obs column 'celltype' .*set label_column: in t\.yaml"):
        load_atac_task(tmp_path / "t.yaml")
    (tmp_path / "b.yaml").write_text("name: b\nh5ad: toy.h5ad\nlabel_column: cell_type\nbatch_column: donor\n")
    with pytest.raises(BiofmError, match=r"no obs column 'donor' .*set batch_column: in b\.yaml"):
        load_atac_task(tmp_path / "b.yaml")
    (tmp_path / "l.yaml").write_text("name: l\nh5ad: toy.h5ad\nlabel_column: cell_type\nlayer: counts\n")
    with pytest.raises(BiofmError, match=r"no layer 'counts' in toy\.h5ad"):
        load_atac_task(tmp_path / "l.yaml")
    (tmp_path / "k.yaml").write_text("name: k\nh5ad: toy.h5ad\nlabel_column: cell_type\ngene_column: x\n")
    with pytest.raises(BiofmError, match=r"k\.yaml: .*gene_column"):
        load_atac_task(tmp_path / "k.yaml")
    (tmp_path / "m.yaml").write_text("name: m\nmodality: cells\nh5ad: toy.h5ad\nlabel_column: cell_type\n")
    assert not is_atac_task(tmp_path / "m.yaml")
    with pytest.raises(BiofmError, match=r"m\.yaml: .*modality"):
        load_atac_task(tmp_path / "m.yaml")


def test_labels_follow_the_cell_rules(tmp_path: Path) -> None:
    labels = [*labels_3x10(), "rare", ""]
    write_h5ad(tmp_path / "toy.h5ad", labels)
    (tmp_path / "t.yaml").write_text("name: t\nh5ad: toy.h5ad\nlabel_column: cell_type\nmin_cells_per_class: 2\n")
    task = load_atac_task(tmp_path / "t.yaml")
    assert task.classes == ["B", "NK", "T"] and len(task.inputs) == 30
    assert task.meta["dropped_missing_label"] == 1 and task.meta["dropped_classes"] == {"rare": 1}


def test_shipped_yamls_exist_and_say_atac() -> None:
    for name, file in SHIPPED_ATAC_TASKS.items():
        text = (SHIPPED_TASKS_DIR / file).read_text()
        assert f"name: {name}\n" in text and "modality: atac\n" in text and "h5ad: dataset:granja2019-bmmc" in text
    assert set(atac_eval.shipped_tasks()) == {"granja-celltypes", "granja-celltypes-600"}


def test_shipped_fixture_task(mirror: Path) -> None:
    task = atac_eval.load_task("granja-celltypes-600")
    assert task.name == "granja-celltypes-600" and len(task.inputs) == 600 and task.n_classes == 6
    assert np.bincount(task.labels).tolist() == [100] * 6
    assert task.meta["batch_names"] == ["BMMC_D5T1", "BMMC_D6T1"] and task.meta["n_peaks"] == 5000
    ref = load_atac_task("dataset:granja2019-bmmc-600:cell_type")
    assert ref.labels.tolist() == task.labels.tolist() and ref.meta["batch"] is None


def test_evaluate_routes_peak_files_to_atac(tmp_path: Path) -> None:
    from biofm.modality import modalities

    if "atac" not in modalities():
        pytest.skip("the atac modality is not registered yet (entry point biofm.modalities: atac)")
    from biofm.eval.evaluate import load_any_task

    peaks = write_h5ad(tmp_path / "peaks.h5ad", labels_3x10())
    genes = write_h5ad(tmp_path / "genes.h5ad", labels_3x10(), peaks=False)
    assert load_any_task(f"{peaks}:cell_type")[0] == "atac"
    assert load_any_task(f"{genes}:cell_type")[0] == "cells"
