"""An .h5ad with nothing to read: no cells, no genes, or no gene names. Each has its own one-line message
naming the file (all three used to end as "every cell has zero counts")."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.data import build_cell_dataset
from biofm.cells.h5ad import CountReader, read_counts
from biofm.errors import BiofmError

COUNTS = np.array([[1, 0, 3], [0, 2, 0], [4, 1, 0]], dtype=np.float32)


def _write(path: Path, X, genes, var: pd.DataFrame | None = None) -> Path:
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(X.shape[0])])
    a = ad.AnnData(X=X, obs=obs, var=var if var is not None else pd.DataFrame(index=list(genes)))
    a.write_h5ad(path)
    return path


def _no_cells(path: Path, dense: bool = False) -> Path:
    X = np.zeros((0, 3), dtype=np.float32) if dense else sp.csr_matrix((0, 3), dtype=np.float32)
    return _write(path, X, ["A", "B", "C"])


def _no_genes(path: Path) -> Path:
    return _write(path, sp.csr_matrix((3, 0), dtype=np.float32), [])


def _no_names(path: Path) -> Path:
    return _write(path, sp.csr_matrix(COUNTS), ["", " ", ""])


def _no_ids(path: Path) -> Path:
    var = pd.DataFrame({"gene_ids": ["", None, " "], "feature_types": ["x"] * 3}, index=["A", "B", "C"])
    return _write(path, sp.csr_matrix(COUNTS), None, var=var)


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    assert "zero counts" not in msg
    return msg[len(f"{path}: "):]


@pytest.mark.parametrize("dense", [False, True])
def test_no_cells(tmp_path, dense):
    path = _no_cells(tmp_path / "x.h5ad", dense)
    with pytest.raises(BiofmError) as err:
        read_counts(path)
    assert _one_line(err, path) == "no cells (X has 0 rows)"


def test_no_genes(tmp_path):
    path = _no_genes(tmp_path / "x.h5ad")
    with pytest.raises(BiofmError) as err:
        read_counts(path)
    assert _one_line(err, path) == "no genes (X has 0 columns)"


def test_every_var_name_empty(tmp_path):
    path = _no_names(tmp_path / "x.h5ad")
    with pytest.raises(BiofmError) as err:
        CountReader(path)
    assert _one_line(err, path) == ("every gene name is empty (var_names); set data.gene_column to a var column "
                                    "holding gene ids (var columns: none)")


def test_every_gene_id_in_the_chosen_column_empty(tmp_path):
    path = _no_ids(tmp_path / "x.h5ad")
    with pytest.raises(BiofmError) as err:
        read_counts(path, gene_column="gene_ids")
    msg = _one_line(err, path)
    assert msg.startswith("every gene name is empty (var column 'gene_ids'); set data.gene_column to another var "
                          "column holding gene ids (others: 'feature_types')")
    assert msg.endswith("or leave it unset to use the var names")
    assert read_counts(path).genes.tolist() == ["A", "B", "C"]  # the var names are fine


def test_the_layer_is_named_when_the_matrix_is_a_layer(tmp_path):
    path = tmp_path / "x.h5ad"
    a = ad.AnnData(X=sp.csr_matrix((0, 3), dtype=np.float32), var=pd.DataFrame(index=["A", "B", "C"]),
                   layers={"counts": sp.csr_matrix((0, 3), dtype=np.float32)})
    a.write_h5ad(path)
    with pytest.raises(BiofmError, match=r"x\.h5ad: no cells \(layer 'counts' has 0 rows\)$"):
        read_counts(path, layer="counts")


def _build(tmp_path: Path, *paths: Path, gene_column: str | None = None):
    cfg = CellDataConfig(h5ad=[str(p) for p in paths], cache_dir=str(tmp_path / "cache"), gene_column=gene_column)
    return build_cell_dataset(cfg, CellTokenizerConfig(min_cells=1), seed=0)


@pytest.mark.parametrize(("make", "gene_column", "says"), [
    (_no_cells, None, "no cells (X has 0 rows)"),
    (_no_genes, None, "no genes (X has 0 columns)"),
    (_no_names, None, "every gene name is empty (var_names)"),
    (_no_ids, "gene_ids", "every gene name is empty (var column 'gene_ids')"),
])
def test_the_dataset_build_names_the_empty_file_among_good_ones(tmp_path, make, gene_column, says):
    var = pd.DataFrame({"gene_ids": ["G1", "G2", "G3"]}, index=["A", "B", "C"])
    good = _write(tmp_path / "good.h5ad", sp.csr_matrix(COUNTS), None, var=var)
    bad = make(tmp_path / "bad.h5ad")
    with pytest.raises(BiofmError) as err:
        _build(tmp_path, good, bad, gene_column=gene_column)
    assert _one_line(err, bad).startswith(says)


def test_all_zero_counts_keeps_its_own_message(tmp_path):
    path = _write(tmp_path / "z.h5ad", sp.csr_matrix(np.zeros((3, 3), dtype=np.float32)), ["A", "B", "C"])
    with pytest.raises(BiofmError, match=r"z\.h5ad: every cell has zero counts$"):
        _build(tmp_path, path)
