"""Unsupervised quality of a cell embedding: do cells of one type sit together, and are batches mixed?

Implemented here (scib-metrics is not a dependency), following scib's definitions where they exist:

* `cluster_agreement` -- Leiden clusters on a kNN graph of the embedding (or k-means with one
  cluster per cell type) compared with the labels: adjusted Rand index and normalised mutual
  information. The Leiden resolution is FIXED (default 1.0). scib instead tries a range of
  resolutions and keeps the one with the best NMI against the labels; that tunes the clustering on
  the very labels it is scored against and flatters every embedding, so it is not done here.
* `silhouette_labels` -- scib's "ASW label": (silhouette of the labels, Euclidean, + 1) / 2, in [0, 1].
* `batch_asw` -- scib's batch ASW: within each cell type, 1 - |silhouette of the batch labels| per
  cell, averaged over the type's cells, then over types. 1 = batches perfectly mixed.
* `ilisi` -- integration LISI, unweighted kNN version: for each cell, the inverse Simpson index of
  the batch labels among its k nearest other cells (the cell itself excluded), i.e. the "effective
  number of batches" around it (1 = only one batch nearby, n_batches = all equally). Harmony's LISI
  weights neighbours with a Gaussian kernel calibrated to a perplexity; plain kNN counting is
  simpler, needs no calibration, and agrees with it closely when k is large (k = 90 by default,
  scib's 3 x perplexity 30). Summarised as the median over cells, and scaled as scib does:
  (median - 1) / (n_batches - 1), 0 = no mixing, 1 = perfect mixing.

Every metric is computed on the embedding as given (no standardisation), like scib.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from biofm.eval.types import Task

__all__ = [
    "batch_asw",
    "cluster_agreement",
    "embedding_report",
    "ilisi",
    "knn_graph",
    "leiden_clusters",
    "lisi_per_cell",
    "silhouette_labels",
]


def _check_xy(X: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D embedding, got shape {X.shape}")
    for c in columns:
        if len(c) != X.shape[0]:
            raise ValueError(f"{len(c)} labels for {X.shape[0]} cells")
    if not np.isfinite(X).all():
        raise ValueError("the embedding contains NaN or infinite values")
    return X


def _neighbours(X: np.ndarray, k: int) -> np.ndarray:
    """Indices [n, k] of each row's k nearest OTHER rows (Euclidean); ties broken by row order."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(X) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    own = np.arange(len(X))
    if (idx[:, 0] == own).all():
        return idx[:, 1:]
    # With duplicate points a row need not come first among its own neighbours: drop it wherever it is.
    out = np.empty((len(X), k), dtype=np.int64)
    for i, row in enumerate(idx):
        out[i] = row[row != i][:k]
    return out


def knn_graph(X: np.ndarray, n_neighbors: int = 15) -> Any:
    """Undirected, unweighted igraph graph: an edge wherever one cell is among the other's k nearest."""
    import igraph as ig

    X = _check_xy(X)
    nn = _neighbours(X, n_neighbors)
    src = np.repeat(np.arange(len(X)), nn.shape[1])
    pairs = np.unique(np.sort(np.stack([src, nn.ravel()], axis=1), axis=1), axis=0)
    return ig.Graph(n=len(X), edges=pairs.tolist(), directed=False)


def leiden_clusters(X: np.ndarray, seed: int = 0, n_neighbors: int = 15, resolution: float = 1.0) -> np.ndarray:
    """Leiden (RB configuration model, fixed resolution, seeded, iterated to convergence) on `knn_graph`."""
    import leidenalg

    graph = knn_graph(X, n_neighbors)
    part = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition,
                                    resolution_parameter=resolution, seed=seed, n_iterations=-1)
    return np.asarray(part.membership, dtype=np.int64)


def cluster_agreement(
    X: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    method: Literal["leiden", "kmeans"] = "leiden",
    n_neighbors: int = 15,
    resolution: float = 1.0,
) -> dict[str, float]:
    """ARI and NMI (arithmetic mean normalisation, as scib) of unsupervised clusters against `labels`.

    `leiden`: fixed `resolution` on an `n_neighbors` kNN graph (never tuned against the labels, see
    the module notes). `kmeans`: k = number of distinct labels, seeded, best of 10 starts.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels)
    X = _check_xy(X, labels)
    if method == "leiden":
        clusters = leiden_clusters(X, seed, n_neighbors, resolution)
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        k = len(np.unique(labels))
        clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    else:
        raise ValueError(f"unknown clustering method {method!r}; use leiden or kmeans")
    return {"ari": float(adjusted_rand_score(labels, clusters)),
            "nmi": float(normalized_mutual_info_score(labels, clusters, average_method="arithmetic")),
            "n_clusters": len(np.unique(clusters))}


def silhouette_labels(X: np.ndarray, labels: np.ndarray) -> float:
    """scib's ASW label: (mean silhouette width of the labels, Euclidean, + 1) / 2; 1 = tight, separate types."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    X = _check_xy(X, labels)
    if not 1 < len(np.unique(labels)) < len(labels):
        return float("nan")
    return float((silhouette_score(X, labels, metric="euclidean") + 1) / 2)


def batch_asw(X: np.ndarray, labels: np.ndarray, batch: np.ndarray) -> float:
    """scib's batch ASW: per cell type, mean over its cells of 1 - |silhouette w.r.t. batch|; mean over types.

    Cell types found in a single batch, or with every cell in its own batch, are skipped (as in
    scib); NaN when no type qualifies.
    """
    from sklearn.metrics import silhouette_samples

    labels, batch = np.asarray(labels), np.asarray(batch)
    X = _check_xy(X, labels, batch)
    per_type = []
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        n_b = len(np.unique(batch[rows]))
        if n_b == 1 or n_b == len(rows):
            continue
        sil = silhouette_samples(X[rows], batch[rows], metric="euclidean")
        per_type.append(float(np.mean(1 - np.abs(sil))))
    return float(np.mean(per_type)) if per_type else float("nan")


def lisi_per_cell(X: np.ndarray, batch: np.ndarray, k: int = 90) -> np.ndarray:
    """Inverse Simpson index of `batch` among each cell's k nearest other cells (unweighted)."""
    batch = np.asarray(batch)
    X = _check_xy(X, batch)
    if len(X) < 2:
        return np.ones(len(X))
    _, codes = np.unique(batch, return_inverse=True)
    nn = _neighbours(X, k)
    kk = nn.shape[1]
    counts = np.zeros((len(X), codes.max() + 1))
    np.add.at(counts, (np.repeat(np.arange(len(X)), kk), codes[nn].ravel()), 1.0)
    p = counts / kk
    return 1.0 / (p**2).sum(axis=1)


def ilisi(X: np.ndarray, batch: np.ndarray, k: int = 90) -> dict[str, float]:
    """Median iLISI over cells and scib's scaling of it, (median - 1) / (n_batches - 1).

    k is capped at n_cells - 1. `ilisi` ranges from 1 to n_batches; `ilisi_norm` from 0 (batches
    apart) to 1 (batches fully mixed); NaN with a single batch.
    """
    batch = np.asarray(batch)
    n_batches = len(np.unique(batch))
    med = float(np.median(lisi_per_cell(X, batch, k)))
    norm = (med - 1) / (n_batches - 1) if n_batches > 1 else float("nan")
    return {"ilisi": med, "ilisi_norm": float(norm)}


def embedding_report(
    embeddings: dict[str, np.ndarray],
    task: Task,
    seed: int = 0,
    *,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    lisi_k: int = 90,
) -> list[dict[str, Any]]:
    """One row per named embedding [n_cells, d] (rows in task order): clustering, ASW and batch metrics.

    Keys: embedding, dim, leiden_ari, leiden_nmi, leiden_n_clusters, kmeans_ari, kmeans_nmi,
    asw_label, and with a batch column (task.meta["batch"]) also batch_asw, ilisi, ilisi_norm.
    """
    labels = np.asarray(task.labels)
    batch = task.meta.get("batch")
    rows = []
    for name, X in embeddings.items():
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != len(labels):
            raise ValueError(f"embedding {name!r} has shape {X.shape}; expected ({len(labels)}, d)")
        row: dict[str, Any] = {"embedding": name, "dim": int(X.shape[1])}
        leiden = cluster_agreement(X, labels, seed, "leiden", n_neighbors, resolution)
        kmeans = cluster_agreement(X, labels, seed, "kmeans")
        row.update({"leiden_ari": leiden["ari"], "leiden_nmi": leiden["nmi"],
                    "leiden_n_clusters": leiden["n_clusters"], "kmeans_ari": kmeans["ari"],
                    "kmeans_nmi": kmeans["nmi"], "asw_label": silhouette_labels(X, labels)})
        if batch is not None:
            row["batch_asw"] = batch_asw(X, labels, batch)
            row.update(ilisi(X, batch, lisi_k))
        rows.append(row)
    return rows
