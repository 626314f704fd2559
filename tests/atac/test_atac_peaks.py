from __future__ import annotations

import hashlib
import itertools
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from biofm.atac.peaks import chrom_sort_key, is_peak_h5ad, parse_peak_name, peak_order, read_peaks
from biofm.datasets import dataset_path
from biofm.errors import BiofmError

# unsorted on purpose: chr10 before chr2 as text, chrX before chr1, a start order inside chr1
PEAKS = ["chr10_500_900", "chr2_100_600", "chrX_5_50", "chr1_3000_3500", "chr1_200_700"]
COUNTS = np.array([[1, 0, 2, 0, 0], [0, 3, 0, 1, 0], [0, 0, 0, 0, 4]], dtype=np.int32)


def _write(path: Path, X, peaks=PEAKS, var: pd.DataFrame | None = None, layers=None) -> Path:
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(X.shape[0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about the duplicate names some tests write on purpose
        a = ad.AnnData(X=X, obs=obs, var=var if var is not None else pd.DataFrame(index=list(peaks)),
                       layers=layers or {})
        a.write_h5ad(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("name", "expected"), [
    ("chr5_180470204_180470704", ("chr5", 180470204, 180470704)),
    ("chr5:180470204-180470704", ("chr5", 180470204, 180470704)),
    ("chrUn_gl000220:100-600", ("chrUn_gl000220", 100, 600)),
    ("chrUn_gl000220_100_600", ("chrUn_gl000220", 100, 600)),  # split from the right
    (" 1_10_20 ", ("1", 10, 20)),
])
def test_parse_peak_name(name: str, expected: tuple[str, int, int]) -> None:
    assert parse_peak_name(name) == expected


@pytest.mark.parametrize("name", ["CD3E", "chr1_100", "chr1:100_200", "chr1_-5_10", "chr1:a-b", "chr1_10_20x"])
def test_unparseable_names_are_refused(name: str) -> None:
    with pytest.raises(BiofmError, match="not a genomic interval"):
        parse_peak_name(name)


def test_start_not_before_end_is_refused() -> None:
    with pytest.raises(BiofmError, match="start 20 >= end 20"):
        parse_peak_name("chr1:20-20")


def test_natural_chromosome_order() -> None:
    chroms = ["chrY", "chr10", "chrM", "chr2", "chrUn_x", "chrX", "chr1", "chr22", "GL000"]
    assert sorted(chroms, key=chrom_sort_key) == ["chr1", "chr2", "chr10", "chr22", "chrX", "chrY", "chrM",
                                                  "GL000", "chrUn_x"]
    order = peak_order(np.array(["chr2", "chr1", "chr1"]), np.array([5, 9, 1]), np.array([6, 10, 2]))
    assert order.tolist() == [2, 1, 0]


def test_reads_counts_sorted_by_position(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.h5ad", sp.csr_matrix(COUNTS))
    before = _sha(path)
    m = read_peaks(path)
    assert m.peak_names.tolist() == ["chr1_200_700", "chr1_3000_3500", "chr2_100_600", "chr10_500_900", "chrX_5_50"]
    assert m.chrom.tolist() == ["chr1", "chr1", "chr2", "chr10", "chrX"]
    assert m.start.tolist() == [200, 3000, 100, 500, 5] and m.end.tolist() == [700, 3500, 600, 900, 50]
    assert m.start.dtype == np.int64 and m.counts.dtype.kind == "i"
    np.testing.assert_array_equal(m.counts.toarray(), COUNTS[:, m.order])  # sorted = original[:, order]
    assert m.order.tolist() == [4, 3, 1, 0, 2]
    np.testing.assert_array_equal(m.binary().toarray(), (COUNTS[:, m.order] > 0).astype(np.float32))
    assert m.binary().dtype == np.float32 and m.counts.data.max() == 4  # counts kept, not binarised
    assert (m.n_cells, m.n_peaks) == (3, 5) and m.cell_names.tolist() == ["cell0", "cell1", "cell2"]
    assert _sha(path) == before  # read-only


def test_colon_names_dense_matrix_and_peak_column(tmp_path: Path) -> None:
    names = [n.replace("_", ":", 1).replace("_", "-") for n in PEAKS]
    var = pd.DataFrame({"region": names}, index=[f"p{i}" for i in range(5)])
    m = read_peaks(_write(tmp_path / "p.h5ad", COUNTS.astype(np.float32), var=var), peak_column="region")
    assert m.peak_names[0] == "chr1:200-700" and m.chrom[-1] == "chrX"
    np.testing.assert_array_equal(m.counts.toarray(), COUNTS[:, m.order])


def test_non_integer_values_name_cell_and_peak(tmp_path: Path) -> None:
    x = COUNTS.astype(np.float32)
    x[1, 3] = 0.5
    with pytest.raises(BiofmError, match=r"non-integer values .*cell 'cell1', peak 'chr1_3000_3500'") as e:
        read_peaks(_write(tmp_path / "p.h5ad", sp.csr_matrix(x)))
    assert "p.h5ad" in str(e.value) and "\n" not in str(e.value)


def test_negative_values_name_cell_and_peak(tmp_path: Path) -> None:
    x = COUNTS.copy()
    x[2, 0] = -1
    with pytest.raises(BiofmError, match=r"negative values .*cell 'cell2', peak 'chr10_500_900'") as e:
        read_peaks(_write(tmp_path / "p.h5ad", sp.csr_matrix(x)))
    assert "gene" not in str(e.value)


def test_unparseable_name_names_the_var_row(tmp_path: Path) -> None:
    peaks = [*PEAKS[:3], "CD3E", PEAKS[4]]
    with pytest.raises(BiofmError, match=r"p.h5ad: var row 3 \(var names\): peak name 'CD3E' is not a genomic"):
        read_peaks(_write(tmp_path / "p.h5ad", sp.csr_matrix(COUNTS), peaks=peaks))


def test_start_after_end_names_the_var_row(tmp_path: Path) -> None:
    peaks = [*PEAKS[:1], "chr2_600_100", *PEAKS[2:]]
    with pytest.raises(BiofmError, match=r"var row 1 .*start 600 >= end 100"):
        read_peaks(_write(tmp_path / "p.h5ad", sp.csr_matrix(COUNTS), peaks=peaks))


def test_duplicate_peaks_same_name_or_same_interval(tmp_path: Path) -> None:
    same_name = [*PEAKS[:4], PEAKS[0]]
    with pytest.raises(BiofmError, match=r"duplicate peak 'chr10_500_900' at var rows 0 and 4"):
        read_peaks(_write(tmp_path / "a.h5ad", sp.csr_matrix(COUNTS), peaks=same_name))
    same_interval = [*PEAKS[:4], "chr10:500-900"]
    with pytest.raises(BiofmError, match=r"duplicate peak chr10:500-900 at var rows 0 .* and 4"):
        read_peaks(_write(tmp_path / "b.h5ad", sp.csr_matrix(COUNTS), peaks=same_interval))


def test_cells_without_accessible_peaks_are_named(tmp_path: Path) -> None:
    x = np.vstack([COUNTS, np.zeros((2, 5), dtype=np.int32)])
    with pytest.raises(BiofmError, match=r"cell 'cell3' \(row 3\) has no accessible peak, nor do 1 other.*filter"):
        read_peaks(_write(tmp_path / "p.h5ad", sp.csr_matrix(x)))


def test_not_an_h5ad_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "t.h5ad").write_text("cell,chr1_1_2\n")
    with pytest.raises(BiofmError, match=r"t\.h5ad: not an HDF5 file"):
        read_peaks(tmp_path / "t.h5ad")
    with pytest.raises(BiofmError, match="no cells"):
        read_peaks(_write(tmp_path / "c.h5ad", sp.csr_matrix((0, 5), dtype=np.int32)))
    with pytest.raises(BiofmError, match=r"no peaks \(X has 0 columns\)"):
        read_peaks(_write(tmp_path / "g.h5ad", sp.csr_matrix((3, 0), dtype=np.int32), peaks=[]))


def test_counts_from_a_layer(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.h5ad", sp.csr_matrix(COUNTS * 0.1), layers={"counts": sp.csr_matrix(COUNTS)})
    np.testing.assert_array_equal(read_peaks(path, layer="counts").counts.toarray().sum(), COUNTS.sum())
    with pytest.raises(BiofmError, match="non-integer"):
        read_peaks(path)


def test_is_peak_h5ad(tmp_path: Path) -> None:
    assert is_peak_h5ad(_write(tmp_path / "p.h5ad", sp.csr_matrix(COUNTS)))
    assert not is_peak_h5ad(_write(tmp_path / "g.h5ad", sp.csr_matrix(COUNTS), peaks=list("ABCDE")))
    assert not is_peak_h5ad(tmp_path / "missing.h5ad")


def test_granja_fixture(mirror: Path) -> None:
    m = read_peaks(dataset_path("granja2019-bmmc-600", mirror=mirror))
    assert (m.n_cells, m.n_peaks) == (600, 5000)
    # sorted: non-decreasing start within each chromosome, chromosomes in natural order
    keys = [chrom_sort_key(c) for c in m.chrom]
    assert all(a <= b for a, b in itertools.pairwise(keys))
    same = m.chrom[1:] == m.chrom[:-1]
    assert (np.diff(m.start)[same] >= 0).all()
    assert m.chrom[0] == "chr1" and m.chrom[-1] == "chrX" and m.order.tolist() != list(range(5000))
    assert m.counts.max() > 1 and m.obs["cell_type"].nunique() == 6
