from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.cells import h5ad
from biofm.cells.h5ad import CountReader, read_counts
from biofm.datasets import dataset_path
from biofm.errors import BiofmError

COUNTS = np.array([[1, 0, 3, 0], [0, 2, 0, 5], [4, 1, 0, 0]], dtype=np.float32)


def _write(path: Path, X, genes=("G1", "G2", "G3", "G4"), layers=None, var=None, raw=None) -> Path:
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(X.shape[0])])
    var = var if var is not None else pd.DataFrame(index=list(genes))
    a = ad.AnnData(X=X, obs=obs, var=var, layers=layers or {})
    if raw is not None:
        a.raw = ad.AnnData(X=raw, obs=obs, var=var)
    a.write_h5ad(path)
    return path


def _lognorm(x: np.ndarray) -> np.ndarray:
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4).astype(np.float32)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reads_counts_csr_float32(tmp_path: Path) -> None:
    m = read_counts(_write(tmp_path / "c.h5ad", sp.csr_matrix(COUNTS)))
    assert isinstance(m.X, sp.csr_matrix) and m.X.dtype == np.float32
    np.testing.assert_array_equal(m.X.toarray(), COUNTS)
    assert m.genes.tolist() == ["G1", "G2", "G3", "G4"]
    assert m.obs.index.tolist() == ["cell0", "cell1", "cell2"]
    assert m.n_duplicated == 0 and m.is_counts
    assert m.source == str(tmp_path / "c.h5ad")


@pytest.mark.parametrize("fmt", ["dense", "csc", "int"])
def test_dense_csc_and_integer_matrices(tmp_path: Path, fmt: str) -> None:
    X = {"dense": COUNTS, "csc": sp.csc_matrix(COUNTS), "int": sp.csr_matrix(COUNTS.astype(np.int32))}[fmt]
    m = read_counts(_write(tmp_path / "c.h5ad", X))
    assert isinstance(m.X, sp.csr_matrix) and m.X.dtype == np.float32
    np.testing.assert_array_equal(m.X.toarray(), COUNTS)
    assert m.X.nnz == int((COUNTS != 0).sum())  # no explicit zeros


def test_log_normalised_x_names_the_counts_layer(tmp_path: Path) -> None:
    path = _write(tmp_path / "pbmc.h5ad", _lognorm(COUNTS), layers={"counts": sp.csr_matrix(COUNTS)})
    before = _sha(path)
    with pytest.raises(BiofmError) as err:
        read_counts(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: X holds non-integer values (e.g. ")
    assert "cell 'cell0', gene 'G1'" in msg
    assert "layer 'counts' holds integers — pass data.layer=counts" in msg
    assert "data.allow_non_counts=true" in msg
    assert _sha(path) == before  # never modified, not even on error
    m = read_counts(path, layer="counts")
    np.testing.assert_array_equal(m.X.toarray(), COUNTS)
    assert m.layer == "counts"


def test_allow_non_counts_accepts_log_values(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.h5ad", _lognorm(COUNTS))
    with pytest.raises(BiofmError, match=r"no matrix in this file .* holds integer counts"):
        read_counts(path)
    m = read_counts(path, allow_non_counts=True)
    assert not m.is_counts
    np.testing.assert_allclose(m.X.toarray(), _lognorm(COUNTS), rtol=1e-6)


def test_scaled_x_with_counts_in_raw(tmp_path: Path) -> None:
    scaled = (COUNTS - COUNTS.mean(0)) / (COUNTS.std(0) + 1)
    path = _write(tmp_path / "s.h5ad", scaled.astype(np.float32), raw=sp.csr_matrix(COUNTS))
    with pytest.raises(BiofmError) as err:
        read_counts(path, allow_non_counts=True)  # negative values are never expression
    msg = str(err.value)
    assert "X holds negative values" in msg and ".raw.X holds integers — pass data.layer=raw" in msg
    m = read_counts(path, layer="raw")
    np.testing.assert_array_equal(m.X.toarray(), COUNTS)


def test_counts_layer_points_back_to_x(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.h5ad", sp.csr_matrix(COUNTS), layers={"lognorm": _lognorm(COUNTS)})
    with pytest.raises(BiofmError, match=r"'lognorm' holds non-integer .*X holds integers — leave data.layer unset"):
        read_counts(path, layer="lognorm")


def test_nan_values(tmp_path: Path) -> None:
    X = COUNTS.copy()
    X[1, 1] = np.nan
    with pytest.raises(BiofmError, match=r"NaN or infinite values \(e.g. nan at cell 'cell1', gene 'G2'\)"):
        read_counts(_write(tmp_path / "n.h5ad", X))


def test_missing_layer_lists_the_layers(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.h5ad", sp.csr_matrix(COUNTS), layers={"counts": COUNTS, "spliced": COUNTS})
    with pytest.raises(BiofmError, match=r"m.h5ad: no layer 'raw_counts' \(layers: 'counts', 'spliced'\)"):
        read_counts(path, layer="raw_counts")
    path2 = _write(tmp_path / "m2.h5ad", sp.csr_matrix(COUNTS))
    with pytest.raises(BiofmError, match=r"no layer 'counts' .*no layers and no .raw"):
        read_counts(path2, layer="counts")


def test_not_an_h5ad(tmp_path: Path) -> None:
    text = tmp_path / "cells.h5ad"
    text.write_text("gene,cell\n")
    with pytest.raises(BiofmError, match=r"cells.h5ad: not an HDF5 file"):
        read_counts(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(BiofmError, match=r"other.h5: not an AnnData .h5ad file"):
        read_counts(other)
    with pytest.raises(BiofmError, match=r"missing.h5ad: file not found"):
        read_counts(tmp_path / "missing.h5ad")
    with pytest.raises(BiofmError, match=r"is a folder"):
        read_counts(tmp_path)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicated_genes_are_summed(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5ad", sp.csr_matrix(COUNTS), genes=("A", "B", "A", "C"))
    before = _sha(path)
    m = read_counts(path)
    assert _sha(path) == before
    assert m.n_duplicated == 1
    assert m.genes.tolist() == ["A", "B", "C"]
    expected = np.stack([COUNTS[:, 0] + COUNTS[:, 2], COUNTS[:, 1], COUNTS[:, 3]], axis=1)
    np.testing.assert_array_equal(m.X.toarray(), expected)


def test_gene_column_with_ensembl_versions(tmp_path: Path) -> None:
    var = pd.DataFrame({"gene_ids": ["ENSG00000141510.17", "ENSMUSG00000051951.5", "ENSG00000141510.16", "FOO.1"]},
                       index=["TP53", "Xkr4", "TP53-dup", "FOO"])
    path = _write(tmp_path / "e.h5ad", sp.csr_matrix(COUNTS), var=var)
    m = read_counts(path, gene_column="gene_ids")
    assert m.genes.tolist() == ["ENSG00000141510", "ENSMUSG00000051951", "FOO.1"]
    assert m.n_duplicated == 1  # two versions of one gene
    np.testing.assert_array_equal(m.X.toarray()[:, 0], COUNTS[:, 0] + COUNTS[:, 2])
    with pytest.raises(BiofmError, match=r"no var column 'ensembl' \(var columns: 'gene_ids'\)"):
        read_counts(path, gene_column="ensembl")


def test_registered_files_load(mirror: Path) -> None:
    pbmc = read_counts(dataset_path("pbmc700"))
    assert pbmc.X.shape == (700, 765) and pbmc.is_counts and pbmc.n_duplicated == 0
    assert pbmc.obs["bulk_labels"].nunique() == 10
    mouse = read_counts(dataset_path("mouse10k"))
    assert mouse.n_cells == 10_000 and mouse.n_duplicated >= 1 and mouse.n_genes == 1000 - mouse.n_duplicated
    ens = read_counts(dataset_path("mouse10k"), gene_column="gene_ids")
    assert ens.genes[0].startswith("ENSMUSG") and ens.n_genes == 1000
    assert np.isclose(mouse.X.sum(), ens.X.sum())  # merging moves counts, never drops them


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("fmt", ["csr", "csc", "dense", "int", "bool"])
def test_count_reader_chunks_equal_the_whole_read(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # small read blocks, so a chunk of a dense or CSC matrix is assembled from several reads
    monkeypatch.setattr(h5ad, "_DENSE_VALUES", 7)
    monkeypatch.setattr(h5ad, "_SCAN_VALUES", 5)
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(23, 6)).astype(np.float32)
    X = (X > 0).astype(np.float32) if fmt == "bool" else X
    stored = {"csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X), "dense": X, "int": sp.csr_matrix(X.astype(np.int64)),
              "bool": sp.csr_matrix(X.astype(bool))}[fmt]
    path = _write(tmp_path / "c.h5ad", stored, genes=("A", "B", "A", "", "C", "B"))
    before = _sha(path)
    whole = read_counts(path)
    assert whole.genes.tolist() == ["A", "B", "C"] and whole.n_duplicated == 2 and whole.n_unnamed == 1
    for chunk in (1, 4, 23, 100):
        with CountReader(path) as r:
            assert (r.n_cells, r.n_genes, r.n_duplicated, r.n_unnamed) == (23, 3, 2, 1)
            parts = list(r.chunks(chunk))
        assert [s for s, _ in parts] == list(range(0, 23, chunk))
        x = sp.vstack([p for _, p in parts], format="csr")
        assert x.dtype == np.float32 and x.has_sorted_indices
        for attr in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(x, attr), getattr(whole.X, attr))
    assert _sha(path) == before


def test_count_reader_raw_layer_and_errors(tmp_path: Path) -> None:
    scaled = ((COUNTS - COUNTS.mean(0)) / (COUNTS.std(0) + 1)).astype(np.float32)
    path = _write(tmp_path / "s.h5ad", scaled, raw=sp.csr_matrix(COUNTS))
    with CountReader(path, layer="raw") as r:
        np.testing.assert_array_equal(sp.vstack([x for _, x in r.chunks(2)]).toarray(), COUNTS)
    with CountReader(path) as r, pytest.raises(BiofmError, match=r"X holds negative values .* at cell 'cell1'"):
        r.read(1, 3)  # the cell is named by its row in the file, not in the chunk
    flat = _write(tmp_path / "flat.h5ad", sp.csr_matrix(COUNTS))
    with h5py.File(flat, "r+") as f:
        del f["X"]
        f["X"] = np.arange(4.0)
    with pytest.raises(BiofmError, match=r"flat.h5ad: X is not a numeric cells x genes matrix \(expected a 2-d matrix"):
        CountReader(flat)
