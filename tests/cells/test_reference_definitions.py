"""Standard names, standard definitions: biofm's HVG selection, kNN graph, Leiden, LISI and ASW against the
reference libraries on real data (the mirror's PBMCs and mouse cells).

scanpy, scikit-misc and umap-learn are test-time dependencies (the dev / seurat-v3 / analyze extras, all in
requirements.lock); each test skips without its library. scib-metrics is not installed anywhere (jax, over
300 MB): its numbers below were computed once with its own code, by SCIB_REFERENCE_SCRIPT (the end of this
file) in a scratch venv with scib-metrics 0.5.10, jax 0.10.2, numpy 2.4.6, scikit-learn 1.9.1, umap-learn
0.5.12 and igraph 1.0.0:  python scib_reference.py pbmc68k_reduced_processed.h5ad
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from biofm.cells.baselines import highly_variable_genes, highly_variable_genes_seurat_v3, log_normalise
from biofm.cells.metrics import (
    _smooth_knn_dist,
    batch_asw,
    ilisi,
    leiden_clusters,
    lisi_per_cell,
    nearest_neighbours,
    silhouette_labels,
    umap_connectivities,
)
from biofm.datasets import dataset_path

# scib-metrics 0.5.10 on pbmc68k-reduced: X = obsm["X_pca"] (700 x 50, as float64), labels = obs.bulk_labels,
# batch = obs.phase (a stand-in batch column: the definitions do not care what the groups are); exact
# neighbours (scikit-learn, 90 per cell, the cell itself included), the same that biofm finds.
SCIB = {
    "lisi_first5": [1.1903215646743774, 1.160231351852417, 1.987682580947876, 2.5766749382019043,
                    1.3072060346603394],
    "lisi_median": 1.5306835174560547,
    "ilisi_scaled": 0.26534175872802734,
    "asw_label": 0.550262451171875,
    "asw_batch": 0.8981001973152161,
    "leiden": {0: (8, 0.5050746121375472, 0.6621217763562318), 42: (8, 0.5059921617370726, 0.6610644932030897)},
}


def _read(path: Path) -> Any:
    import anndata as ad

    with warnings.catch_warnings():  # anndata's notes on the old file format of scanpy's processed PBMCs
        warnings.simplefilter("ignore")
        return ad.read_h5ad(path)


@pytest.fixture(scope="module")
def pbmc_counts(mirror: Path) -> sp.csr_matrix:
    return sp.csr_matrix(_read(dataset_path("pbmc700")).X, dtype=np.float32)


@pytest.fixture(scope="module")
def mouse_counts(mirror: Path) -> sp.csr_matrix:
    # 3,000 of the 10,000 cells: 376 of the 1,000 genes are never detected in them (the edge cases)
    return sp.csr_matrix(_read(dataset_path("mouse10k")).X, dtype=np.float32)[:3000]


@pytest.fixture(scope="module")
def reduced(mirror: Path) -> Any:
    return _read(dataset_path("pbmc68k-reduced"))


def _scanpy_hvg(x: sp.csr_matrix, flavor: str, n_top: int) -> np.ndarray:
    import anndata as ad
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scanpy's note when n_top exceeds the usable genes
        df = sc.pp.highly_variable_genes(ad.AnnData(x.copy()), flavor=flavor, n_top_genes=n_top, inplace=False)
    return np.flatnonzero(df["highly_variable"].to_numpy())


@pytest.mark.parametrize("n_top", [50, 200, 500, 2000])
def test_hvg_is_scanpys_seurat_flavour(pbmc_counts: sp.csr_matrix, mouse_counts: sp.csr_matrix, n_top: int) -> None:
    pytest.importorskip("scanpy")
    for counts in (pbmc_counts, pbmc_counts[::2], mouse_counts):
        lognorm = log_normalise(counts)
        ours = highly_variable_genes(lognorm, n_top)
        assert np.array_equal(ours, _scanpy_hvg(lognorm, "seurat", n_top))
        assert len(ours) <= max(n_top, counts.shape[1])
    # 2,000 > the 624 mouse genes with a dispersion: scanpy keeps just those, never an undetected gene
    assert len(highly_variable_genes(log_normalise(mouse_counts), 2000)) == 624


def test_hvg_on_scanpys_own_log_normalised_pbmcs(reduced: Any) -> None:
    pytest.importorskip("scanpy")
    raw = sp.csr_matrix(reduced.raw.X)  # scanpy's normalize_total + log1p of the 700 PBMCs
    for n_top in (100, 500):
        assert np.array_equal(highly_variable_genes(raw, n_top), _scanpy_hvg(raw, "seurat", n_top))


@pytest.mark.parametrize("n_top", [100, 500])
def test_hvg_seurat_v3_is_scanpys(pbmc_counts: sp.csr_matrix, mouse_counts: sp.csr_matrix, n_top: int) -> None:
    pytest.importorskip("scanpy")
    pytest.importorskip("skmisc")
    for counts in (pbmc_counts, mouse_counts):
        ours = highly_variable_genes_seurat_v3(counts, n_top)
        assert len(ours) == n_top and np.array_equal(ours, _scanpy_hvg(counts, "seurat_v3", n_top))


def test_knn_graph_weights_are_umaps_fuzzy_simplicial_set(reduced: Any) -> None:
    pytest.importorskip("umap")
    from umap.umap_ import fuzzy_simplicial_set, smooth_knn_dist

    X = np.asarray(reduced.obsm["X_pca"], dtype=np.float64)
    idx, dist = nearest_neighbours(X, 15)
    sigma, rho = _smooth_knn_dist(dist.astype(np.float32))
    ref_sigma, ref_rho = smooth_knn_dist(dist.astype(np.float32), 15.0, local_connectivity=1.0)
    assert np.array_equal(rho, ref_rho) and np.array_equal(sigma, ref_sigma)  # bit for bit
    ref = fuzzy_simplicial_set(sp.coo_matrix((len(X), 1)), n_neighbors=15, random_state=None, metric=None,
                               knn_indices=idx, knn_dists=dist, set_op_mix_ratio=1.0, local_connectivity=1.0)[0]
    ours = umap_connectivities(idx, dist)
    assert np.array_equal(ours.indptr, ref.indptr) and np.array_equal(ours.indices, ref.indices)
    # the memberships' exp: numba calls libm's float32 expf, numpy rounds a float64 exp -- 1 ulp at most
    assert np.allclose(ours.data, ref.data, rtol=2.4e-7, atol=0) and (ours != ref).nnz < 20


def test_scib_metrics_numbers(reduced: Any) -> None:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    X = np.asarray(reduced.obsm["X_pca"], dtype=np.float64)
    labels = reduced.obs["bulk_labels"].astype(str).to_numpy()
    batch = reduced.obs["phase"].astype(str).to_numpy()
    # scib-metrics runs jax in float32; biofm in float64: agreement to float32 precision
    lisi = lisi_per_cell(X, batch, k=90)
    assert lisi[:5] == pytest.approx(SCIB["lisi_first5"], rel=1e-5)
    assert np.median(lisi) == pytest.approx(SCIB["lisi_median"], rel=1e-5)
    assert ilisi(X, batch)["ilisi_norm"] == pytest.approx(SCIB["ilisi_scaled"], rel=1e-5)
    assert silhouette_labels(X, labels) == pytest.approx(SCIB["asw_label"], rel=1e-5)
    assert batch_asw(X, labels, batch) == pytest.approx(SCIB["asw_batch"], rel=1e-5)
    for seed, (n_clusters, ari, nmi) in SCIB["leiden"].items():
        clusters = leiden_clusters(X, seed=seed)  # 15 neighbours, resolution 1, scib-metrics' graph and RNG
        assert len(np.unique(clusters)) == n_clusters
        assert adjusted_rand_score(labels, clusters) == pytest.approx(ari, abs=1e-12)
        assert normalized_mutual_info_score(labels, clusters, average_method="arithmetic") == pytest.approx(
            nmi, abs=1e-12)


SCIB_REFERENCE_SCRIPT = '''
import json, sys, warnings
import anndata as ad
import numpy as np
import scib_metrics
from scib_metrics.metrics import ilisi_knn, silhouette_batch, silhouette_label
from scib_metrics.metrics._lisi import lisi_knn
from scib_metrics.metrics._nmi_ari import _compute_clustering_leiden
from scib_metrics.nearest_neighbors import NeighborsResults
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

warnings.simplefilter("ignore")
a = ad.read_h5ad(sys.argv[1])
X = np.asarray(a.obsm["X_pca"], dtype=np.float64)
labels = a.obs["bulk_labels"].astype(str).to_numpy()
batch = a.obs["phase"].astype(str).to_numpy()
dist, idx = NearestNeighbors(n_neighbors=90).fit(X).kneighbors(X)
nn = NeighborsResults(indices=idx, distances=dist)
out = {"scib_metrics": scib_metrics.__version__}
lisi = lisi_knn(nn, batch)
out["lisi_first5"] = [float(v) for v in lisi[:5]]
out["lisi_median"] = float(np.nanmedian(lisi))
out["ilisi_scaled"] = float(ilisi_knn(nn, batch))
out["asw_label"] = float(silhouette_label(X, labels))
out["asw_batch"] = float(silhouette_batch(X, labels, batch))
conn = nn.subset_neighbors(15).knn_graph_connectivities
for seed in (0, 42):
    clusters = _compute_clustering_leiden(conn, 1.0, seed)
    nmi = normalized_mutual_info_score(labels, clusters, average_method="arithmetic")
    out[f"leiden_seed{seed}"] = {"n_clusters": int(len(np.unique(clusters))),
                                 "ari": float(adjusted_rand_score(labels, clusters)), "nmi": float(nmi)}
print(json.dumps(out, indent=1))
'''
