"""Reading paired cells: unpaired cells reported and dropped, one-line errors naming file/modality/cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from biofm.errors import BiofmError
from biofm.multiome.data import fit_features, protein_values, read_paired, values

from .conftest import synthetic_mudata

PROT = {"rna": "rna", "protein": "adt"}


def test_cells_in_one_modality_are_reported_and_dropped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "x.h5mu"
    synthetic_mudata(n=20, extra_rna=2, extra_second=3).write(path)
    p = read_paired(str(path), None, PROT, ["rna", "protein"])
    assert p.n_cells == 20 and p.dropped == {"rna": 2, "protein": 3}
    assert list(p.cells[:3]) == ["c0", "c1", "c2"]
    err = capsys.readouterr().err
    assert "2 cell(s) only in rna (e.g. 'r0') dropped" in err and "3 cell(s) only in protein" in err
    # rows of both modalities are the same cells
    assert p.counts["rna"].shape[0] == p.counts["protein"].shape[0] == 20


def test_negative_counts_name_file_modality_and_cell(tmp_path: Path) -> None:
    m = synthetic_mudata(n=10)
    x = m.mod["adt"].X.toarray()
    x[3, 2] = -4
    m.mod["adt"].X = sp.csr_matrix(x)
    path = tmp_path / "bad.h5mu"
    m.write(path)
    with pytest.raises(BiofmError) as e:
        read_paired(str(path), None, PROT, ["rna", "protein"])
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "modality adt" in msg and "'c3'" in msg and "protein 'P2'" in msg


def test_non_integer_rna_is_refused(tmp_path: Path) -> None:
    m = synthetic_mudata(n=10)
    x = m.mod["rna"].X.toarray().astype(np.float32)
    x[5, 1] = 0.5
    m.mod["rna"].X = sp.csr_matrix(x)
    path = tmp_path / "frac.h5mu"
    m.write(path)
    with pytest.raises(BiofmError, match=r"modality rna: X holds non-integer values .*cell 'c5', gene 'G1'"):
        read_paired(str(path), None, PROT, ["rna", "protein"])


def test_missing_modality_and_no_common_cell(tmp_path: Path) -> None:
    path = tmp_path / "x.h5mu"
    synthetic_mudata(n=10).write(path)
    with pytest.raises(BiofmError, match=r"no modality 'protein' .*modalities: rna, adt.*data.modalities.protein"):
        read_paired(str(path), None, {"rna": "rna", "protein": "protein"}, ["rna", "protein"])
    import anndata as ad
    import pandas as pd

    a = ad.AnnData(sp.csr_matrix(np.ones((3, 4), dtype=np.int32)), obs=pd.DataFrame(index=["a", "b", "c"]))
    b = ad.AnnData(sp.csr_matrix(np.ones((3, 2), dtype=np.int32)), obs=pd.DataFrame(index=["x", "y", "z"]))
    a.write_h5ad(tmp_path / "r.h5ad")
    b.write_h5ad(tmp_path / "p.h5ad")
    with pytest.raises(BiofmError, match="no cell is in both rna and protein"):
        read_paired(None, {"rna": str(tmp_path / "r.h5ad"), "protein": str(tmp_path / "p.h5ad")}, {},
                    ["rna", "protein"])


def test_two_h5ad_files_pair_by_cell_name(tmp_path: Path) -> None:
    m = synthetic_mudata(n=12)
    rna, adt = m.mod["rna"], m.mod["adt"][::-1].copy()  # the same cells in another order
    rna.write_h5ad(tmp_path / "r.h5ad")
    adt.write_h5ad(tmp_path / "p.h5ad")
    p = read_paired(None, {"rna": str(tmp_path / "r.h5ad"), "protein": str(tmp_path / "p.h5ad")}, {},
                    ["rna", "protein"])
    assert np.array_equal(p.counts["protein"].toarray(), m.mod["adt"].X.toarray())


def test_peaks_sorted_and_classes_from_training_cells(h5mu_atac: Path) -> None:
    p = read_paired(str(h5mu_atac), None, {"rna": "rna", "atac": "atac"}, ["rna", "atac"])
    starts = [int(n.split("_")[1]) for n in p.features["atac"]]
    assert starts == sorted(starts)
    train = np.arange(0, 60)
    f = fit_features("rna", values("rna", p.counts["rna"]), p.features["rna"], train, 5, 10, 10)
    assert f.n == 10 and len(f.edges) == 3 and f.centres[0] == 0
    cls = f.classes(values("rna", p.counts["rna"])[:, f.columns])
    assert cls.data.min() >= 1 and cls.data.max() <= 4


def test_protein_clr_centres_each_cell() -> None:
    x = sp.csr_matrix(np.array([[1, 3, 0], [10, 10, 10]]))
    v = protein_values(x)
    assert np.allclose(v.sum(1), 0) and np.allclose(v[1], 0)
