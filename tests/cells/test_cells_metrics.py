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
    silhouette_labels,
)
from biofm.eval.types import Task


def blobs(n_per: int = 30, n: int = 3, dim: int = 5, sep: float = 20.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n), n_per)
    return rng.normal(size=(n * n_per, dim)) + np.eye(n, dim)[labels] * sep, labels


def test_knn_graph_is_the_union_of_neighbour_lists() -> None:
    # 1-D points 0, 1, 3, 10: nearest other points are 1, 0, 1, 3 -> edges {0-1, 1-3, 3-10}.
    g = knn_graph(np.array([[0.0], [1.0], [3.0], [10.0]]), n_neighbors=1)
    assert sorted(tuple(sorted(e)) for e in g.get_edgelist()) == [(0, 1), (1, 2), (2, 3)]


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
    assert np.all(lisi_per_cell(X, batch, k=20) == 1.0)
    assert ilisi(X, batch, k=20) == {"ilisi": 1.0, "ilisi_norm": 0.0}


def test_ilisi_small_clusters_by_hand() -> None:
    # Far-apart clusters of 4 cells, 2 from each batch; k = 3 neighbours are the other 3 cells of the
    # cluster: 1 of the own batch, 2 of the other -> p = (1/3, 2/3), 1 / (1/9 + 4/9) = 1.8 for every cell.
    rng = np.random.default_rng(0)
    centres = np.repeat(np.arange(5) * 100.0, 4)[:, None] * np.ones((1, 3))
    X = centres + rng.normal(0, 0.1, size=(20, 3))
    batch = np.tile([0, 0, 1, 1], 5)
    assert np.allclose(lisi_per_cell(X, batch, k=3), 1.8)
    out = ilisi(X, batch, k=3)
    assert out["ilisi"] == pytest.approx(1.8) and out["ilisi_norm"] == pytest.approx(0.8)


def test_ilisi_well_mixed_is_near_n_batches() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    batch = rng.integers(0, 3, size=600)
    out = ilisi(X, batch, k=90)
    assert 2.8 < out["ilisi"] <= 3.0 and out["ilisi_norm"] > 0.9
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
    assert {"batch_asw", "ilisi", "ilisi_norm"} <= set(row) and row["ilisi_norm"] > 0.7
    with pytest.raises(ValueError, match="expected \\(90, d\\)"):
        embedding_report({"bad": X[:5]}, task)
