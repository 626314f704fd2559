from __future__ import annotations

import numpy as np
import pytest

from biofm.cells.metrics import (
    batch_asw,
    cluster_agreement,
    embedding_report,
    ilisi,
    knn_graph,
    lisi_per_cell,
    nearest_neighbours,
    silhouette_labels,
    umap_connectivities,
)
from biofm.eval.types import Task


def blobs(n_per: int = 30, n: int = 3, dim: int = 5, sep: float = 20.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n), n_per)
    return rng.normal(size=(n * n_per, dim)) + np.eye(n, dim)[labels] * sep, labels


def test_knn_graph_is_the_fuzzy_union_of_neighbour_lists() -> None:
    # 1-D points 0, 1, 3, 10, n_neighbors=2 (the cell and its nearest other): nearest others are 1, 0, 1, 3.
    # Each cell's one neighbour sits at rho (its nearest non-zero distance): membership exp(0) = 1; fuzzy
    # union of 0->1 and 1->0 is 1 + 1 - 1 = 1. Every pair appears twice (both directions kept), weight 1.
    g = knn_graph(np.array([[0.0], [1.0], [3.0], [10.0]]), n_neighbors=2)
    assert sorted(tuple(sorted(e)) for e in g.get_edgelist()) == [(0, 1), (0, 1), (1, 2), (1, 2), (2, 3), (2, 3)]
    assert g.es["weight"] == pytest.approx([1.0] * 6)


def test_umap_connectivities_by_hand() -> None:
    # Cell 0 with neighbours at distances 0 (itself), 1, 2, 3: rho = 1, so the first other neighbour gets 1
    # and the rest exp(-(d - 1) / sigma) with sigma solving 1 + exp(-1/s) + exp(-2/s) = log2(4) = 2.
    idx = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3], [3, 2, 1, 0]])
    dist = np.array([[0, 1, 2, 3], [0, 1, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]], dtype=float)
    conn = umap_connectivities(idx, dist).toarray()
    from scipy.optimize import brentq

    s = brentq(lambda s: 1 + np.exp(-1 / s) + np.exp(-2 / s) - 2, 1e-3, 100)  # cells 0, 2 and 3 share it
    near, far = np.exp(-1 / s), np.exp(-2 / s)  # memberships at d - rho = 1 and 2
    # cell 1 has two neighbours at rho: 2 + exp(-1 / sigma) = 2 has no root, sigma falls to UMAP's floor
    # 1e-3 x its mean distance, and its third neighbour (cell 3) gets exp(-1000) = 0
    union = lambda a, b: a + b - a * b  # noqa: E731
    assert np.allclose(conn, conn.T) and np.all(np.diag(conn) == 0)
    assert conn[0, 1] == pytest.approx(1.0) and conn[1, 2] == pytest.approx(1.0)
    assert conn[0, 2] == pytest.approx(union(near, near), rel=1e-5)
    assert conn[0, 3] == pytest.approx(union(far, far), rel=1e-5)
    assert conn[1, 3] == pytest.approx(near, rel=1e-5) and conn[2, 3] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["leiden", "kmeans"])
def test_cluster_agreement_on_separated_blobs(method: str) -> None:
    X, labels = blobs()
    out = cluster_agreement(X, labels[::-1].copy() * 7, seed=0, method=method, n_neighbors=10, resolution=0.5)
    # Labels renamed (reversed order, other codes) do not matter: perfect agreement.
    assert out["ari"] == pytest.approx(1.0) and out["nmi"] == pytest.approx(1.0) and out["n_clusters"] == 3
    assert cluster_agreement(X, labels, 3, method, 10, 0.5) == cluster_agreement(X, labels, 3, method, 10, 0.5)


def test_cluster_agreement_random_labels_near_zero() -> None:
    X, _ = blobs()
    random = np.random.default_rng(1).integers(0, 3, size=len(X))
    out = cluster_agreement(X, random, seed=0, method="kmeans")
    assert abs(out["ari"]) < 0.05 and out["nmi"] < 0.05


def silhouette_two_pairs() -> float:
    # Points 0, 1 (group A) and 10, 11 (group B) on a line. Silhouette s = (b - a) / max(a, b):
    # point 0: a = 1, b = (10 + 11) / 2 = 10.5; point 1: a = 1, b = (9 + 10) / 2 = 9.5; symmetric for B.
    return (2 * (10.5 - 1) / 10.5 + 2 * (9.5 - 1) / 9.5) / 4


def test_silhouette_labels_by_hand() -> None:
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    assert silhouette_labels(X, np.array([0, 0, 1, 1])) == pytest.approx((silhouette_two_pairs() + 1) / 2)
    assert np.isnan(silhouette_labels(X, np.zeros(4)))


def test_batch_asw_by_hand() -> None:
    # Cell type 0: the two-pair layout above with batch as the grouping -> 1 - mean|s|.
    # Cell type 1: batches alternate on a regular grid, points 100, 101, 102, 103 with batches a b a b:
    #   point 100 (a): a = 2, b = (1 + 3) / 2 = 2 -> s = 0; point 101 (b): a = 2, b = (1 + 1) / 2 = 1 -> s = -0.5;
    #   by symmetry 102 -> -0.5, 103 -> 0; so 1 - |s| averages to 0.75.
    # Cell type 2 lies in one batch only: skipped.
    X = np.array([[0.0], [1.0], [10.0], [11.0], [100.0], [101.0], [102.0], [103.0], [500.0], [501.0]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    batch = np.array([0, 0, 1, 1, 0, 1, 0, 1, 0, 0])
    expected = ((1 - silhouette_two_pairs()) + 0.75) / 2
    assert batch_asw(X, labels, batch) == pytest.approx(expected)
    assert np.isnan(batch_asw(X[8:], labels[8:], batch[8:]))


def test_ilisi_separated_batches_is_one() -> None:
    X, batch = blobs(n_per=40, n=2)
    assert lisi_per_cell(X, batch, k=20) == pytest.approx(np.ones(len(X)))
    out = ilisi(X, batch, k=20)
    assert out["ilisi"] == pytest.approx(1.0) and out["ilisi_norm"] == pytest.approx(0.0, abs=1e-12)


def test_lisi_equidistant_neighbours_by_hand() -> None:
    # Far-apart regular tetrahedra of 4 cells (every pair at the same distance), batches 0 0 1 1; k = 4
    # (the cell and the 3 others), perplexity 3: the 3 others get equal weight at once, 1 of the own
    # batch and 2 of the other -> p = (1/3, 2/3), 1 / (1/9 + 4/9) = 1.8 for every cell.
    tetra = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    X = np.concatenate([tetra + 100.0 * c for c in range(5)])
    batch = np.tile([0, 0, 1, 1], 5)
    assert lisi_per_cell(X, batch, k=4, perplexity=3) == pytest.approx(np.full(20, 1.8))


def test_lisi_kernel_is_calibrated_to_the_perplexity() -> None:
    # Cell 0 at the origin of a line; its 6 others at distances 1 (own batch), 1.5 (other), 5, 6 (own),
    # 7, 8 (other). k = 7, perplexity 7 // 3 = 2: the kernel exp(-beta d) whose entropy is log 2, found
    # here by a root finder, not by the bisection under test.
    from scipy.optimize import brentq

    X = np.array([0.0, 1.0, -1.5, 5.0, 6.0, -7.0, 8.0])[:, None]
    batch = np.array([0, 0, 1, 0, 0, 1, 1])
    d, own = np.array([1.0, 1.5, 5.0, 6.0, 7.0, 8.0]), np.array([1, 0, 1, 1, 0, 0], dtype=bool)

    def entropy(beta: float) -> float:
        p = np.exp(-beta * d)
        return np.log(p.sum()) + beta * (d * p).sum() / p.sum()

    p = np.exp(-brentq(lambda b: entropy(b) - np.log(2), 1e-3, 50) * d)
    p /= p.sum()
    expected = 1 / (p[own].sum() ** 2 + p[~own].sum() ** 2)  # about 1.9: two near cells, one per batch
    assert lisi_per_cell(X, batch, k=7)[0] == pytest.approx(expected, rel=1e-3)
    # plain counting of the 6 others (3 per batch) would say 2.0; the kernel is what makes it differ
    assert abs(expected - 2.0) > 0.02
    idx, dist = nearest_neighbours(X, 7)
    assert idx[0, 0] == 0 and dist[0, 0] == 0 and idx.shape == (7, 7)  # the cell itself comes first


def test_ilisi_well_mixed_is_near_n_batches() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    batch = rng.integers(0, 3, size=600)
    out = ilisi(X, batch, k=90)
    # about 30 effective neighbours (perplexity 90 // 3) drawn from 3 equal batches: near 3, a little below
    assert 2.5 < out["ilisi"] <= 3.0 and out["ilisi_norm"] > 0.75
    assert np.isnan(ilisi(X, np.zeros(600), k=10)["ilisi_norm"])


def test_embedding_report_rows() -> None:
    X, labels = blobs()
    batch = np.tile([0, 1], len(labels) // 2)
    task = Task("t", "classification", list(range(len(labels))), labels, ["a", "b", "c"], meta={"batch": None})
    rows = embedding_report({"good": X, "noise": np.random.default_rng(0).normal(size=X.shape)}, task, seed=0)
    assert [r["embedding"] for r in rows] == ["good", "noise"]
    assert set(rows[0]) == {"embedding", "dim", "leiden_ari", "leiden_nmi", "leiden_n_clusters", "kmeans_ari",
                            "kmeans_nmi", "asw_label"}
    assert rows[0]["kmeans_ari"] == pytest.approx(1.0) and rows[0]["asw_label"] > rows[1]["asw_label"]
    task.meta["batch"] = batch
    (row,) = embedding_report({"good": X}, task, seed=0, lisi_k=20)
    assert {"batch_asw", "ilisi", "ilisi_norm"} <= set(row) and row["ilisi_norm"] > 0.6
    with pytest.raises(ValueError, match="expected \\(90, d\\)"):
        embedding_report({"bad": X[:5]}, task)
