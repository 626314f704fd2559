"""Unsupervised quality of a cell embedding: do cells of one type sit together, and are batches mixed?

scib-metrics (Luecken et al. 2022's metrics, scverse) is not a dependency -- it brings jax, over
300 MB -- so its definitions are implemented here from its source (scib-metrics 0.5) and tested
against values its own code gives on real data (tests/cells/test_reference_definitions.py). Names
that carry a standard name carry the standard definition:

* `cluster_agreement` -- Leiden clusters (igraph's `community_leiden`, modularity, FIXED resolution,
  default 1.0, igraph's two iterations, seeded) on scib-metrics' weighted kNN graph: UMAP's fuzzy
  connectivities of the 15 nearest cells (the cell itself included), as scanpy builds them; or
  k-means with one cluster per cell type. Compared with the labels by adjusted Rand index and
  normalised mutual information (arithmetic mean). This is scib-metrics'
  `nmi_ari_cluster_labels_leiden(optimize_resolution=False)`; its default instead tries ten
  resolutions and keeps the best NMI against the labels, which tunes the clustering on the very
  labels it is scored against and flatters every embedding, so it is not done here. The k-means
  variant uses scikit-learn's k-means (10 starts), not scib-metrics' jax k-means.
* `silhouette_labels` -- scib-metrics' `silhouette_label`: (mean silhouette width of the labels,
  Euclidean, + 1) / 2, in [0, 1].
* `batch_asw` -- scib-metrics' `silhouette_batch`: within each cell type, 1 - |silhouette of the
  batch labels| per cell, averaged over the type's cells, then over types. 1 = batches mixed.
* `ilisi` -- scib-metrics' `ilisi_knn`: per cell, the inverse Simpson index of the batch labels
  under Harmony's Gaussian kernel on the distances to its k = 90 nearest cells (itself included,
  then given weight 0), the kernel's precision found by binary search so that its perplexity is
  k // 3 = 30; the median over cells, scaled to (median - 1) / (n_batches - 1): 0 = no mixing,
  1 = perfect mixing (`ilisi_norm`, scib's reported iLISI; `ilisi` is the unscaled median).

Neighbours are exact (scikit-learn), where scib-metrics' benchmarker uses approximate ones
(pynndescent); given the same neighbours, the numbers are scib-metrics'. Every metric is computed
on the embedding as given (no standardisation), like scib.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from biofm.eval.types import Task

__all__ = [
    "batch_asw",
    "cluster_agreement",
    "embedding_report",
    "ilisi",
    "knn_graph",
    "leiden_clusters",
    "lisi_per_cell",
    "nearest_neighbours",
    "silhouette_labels",
    "umap_connectivities",
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


def nearest_neighbours(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances [n, k] of each row's k nearest rows, ITSELF INCLUDED (scib-metrics'
    and scanpy's convention: k = 15 means the cell and 14 others); exact, ties broken by row order."""
    from sklearn.neighbors import NearestNeighbors

    X = _check_xy(X)
    k = min(k, len(X))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    return idx, dist


def _smooth_knn_dist(dist: np.ndarray, n_iter: int = 64, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's `smooth_knn_dist` (local_connectivity 1, bandwidth 1), in float32 as umap-learn computes it.

    Per row of `dist` [n, k] (float32, column 0 = the cell itself): rho = its first non-zero distance,
    sigma by binary search so that sum_j>0 exp(-max(d_j - rho, 0) / sigma) = log2(k). Returns (sigma, rho).
    """
    n, k = dist.shape
    f32 = np.float32
    target = np.log2(k)
    nonzero = dist > 0
    first = np.argmax(nonzero, axis=1)
    rho = np.where(nonzero.any(axis=1), dist[np.arange(n), first], 0).astype(f32)
    d = dist[:, 1:] - rho[:, None]  # [n, k - 1], float32
    fmax = f32(np.finfo(np.float32).max)
    lo, hi, mid = np.zeros(n, f32), np.full(n, fmax), np.ones(n, f32)
    active = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        # d / sigma in float32, exp and the sum in float64 (what umap-learn's numba kernel computes: checked
        # bit for bit against it in tests/cells/test_reference_definitions.py)
        q = (-(d[rows] / mid[rows, None])).astype(np.float64)
        psum = np.where(d[rows] > 0, np.exp(q), 1.0).sum(axis=1)
        done = np.abs(psum - target) < tol
        active[rows[done]] = False
        r, p = rows[~done], psum[~done]
        up = p > target  # too many effective neighbours: narrower kernel
        hi[r[up]] = mid[r[up]]
        mid[r[up]] = (lo[r[up]] + hi[r[up]]) / f32(2)
        down = r[~up]
        lo[down] = mid[down]
        mid[down] = np.where(hi[down] >= fmax, mid[down] * f32(2), (lo[down] + hi[down]) / f32(2))
    sigma = mid.copy()
    floor = 1e-3 * np.where(rho > 0, dist.mean(axis=1, dtype=np.float64), dist.mean(dtype=np.float64))
    small = sigma < floor
    sigma[small] = floor[small]
    return sigma, rho


def umap_connectivities(idx: np.ndarray, dist: np.ndarray) -> sp.csr_matrix:
    """UMAP's fuzzy simplicial set of a kNN result (umap-learn's `fuzzy_simplicial_set`, which scanpy's
    `pp.neighbors` and scib-metrics' `knn_graph_connectivities` use): membership
    exp(-(d - rho) / sigma) from each cell to its neighbours (0 to itself), symmetrised by the fuzzy
    union A + A^T - A * A^T. Sparse [n, n] float32."""
    n, k = idx.shape
    dist = np.asarray(dist, dtype=np.float32)
    sigma, rho = _smooth_knn_dist(dist)
    excess = dist - rho[:, None]  # float32 [n, k]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # those entries are set to 1 below
        val = np.exp((-(excess / sigma[:, None])).astype(np.float64)).astype(np.float32)
    val[(excess <= 0) | (sigma[:, None] == 0)] = 1.0
    val[idx == np.arange(n)[:, None]] = 0.0
    a = sp.coo_matrix((val.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    a.eliminate_zeros()
    at = a.transpose()
    prod = a.multiply(at)
    out = 1.0 * (a + at - prod) + 0.0 * prod  # umap-learn's expression (set_op_mix_ratio 1), same rounding
    out.eliminate_zeros()
    return sp.csr_matrix(out)


def knn_graph(X: np.ndarray, n_neighbors: int = 15) -> Any:
    """scib-metrics' Leiden graph: `umap_connectivities` of the `n_neighbors` nearest cells (itself
    included) as an igraph graph with a "weight" attribute; every connected pair appears as two edges
    (the directed adjacency made undirected edge by edge, as scanpy and scib-metrics do)."""
    import igraph as ig

    idx, dist = nearest_neighbours(X, n_neighbors)
    graph = ig.Graph.Weighted_Adjacency(umap_connectivities(idx, dist), mode="directed")
    graph.to_undirected(mode="each")
    return graph


def leiden_clusters(X: np.ndarray, seed: int = 0, n_neighbors: int = 15, resolution: float = 1.0) -> np.ndarray:
    """Leiden on `knn_graph`: igraph's `community_leiden` (modularity, fixed `resolution`, igraph's
    default two iterations), igraph's random numbers from `random.Random(seed)` as in scib-metrics."""
    import igraph as ig

    graph = knn_graph(X, n_neighbors)
    ig.set_random_number_generator(random.Random(seed))
    try:
        part = graph.community_leiden(objective_function="modularity", weights="weight", resolution=resolution)
    finally:
        ig.set_random_number_generator(random)  # igraph's default generator again
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


def _simpson(dist: np.ndarray, idx: np.ndarray, codes: np.ndarray, perplexity: float, tol: float = 1e-5,
             max_tries: int = 50) -> np.ndarray:
    """scib-metrics' `compute_simpson_index`, vectorised over cells (float64; scib-metrics runs float32 jax).

    Per cell: P_j = exp(-beta d_j) over its neighbours other than itself, normalised; beta found by
    bisection (from 1, doubling / halving until bracketed, at most `max_tries` steps) until the entropy
    H = log(sum P) + beta sum(d P) / sum(P) is within `tol` of log(perplexity); then sum over batches
    of (sum of P in the batch)^2. A cell whose kernel vanishes (H = 0) gets -1, as in scib-metrics.
    """
    n = len(dist)
    others = idx != np.arange(n)[:, None]  # [n, k]: the cell itself gets weight 0
    log_perp = np.log(perplexity)

    def h_beta(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(others, np.exp(-dist * beta[:, None]), 0.0)
        total = p.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(total == 0, 0.0, np.log(total) + beta * (dist * p).sum(axis=1) / total)
            p = np.where(total[:, None] == 0, 0.0, p / total[:, None])
        return h, p

    beta = np.ones(n)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    h, p = h_beta(beta)
    diff = h - log_perp
    for _ in range(max_tries):
        todo = np.abs(diff) >= tol
        if not todo.any():
            break
        up = diff > 0  # entropy too high: sharpen the kernel
        new_beta = np.where(up, np.where(hi == np.inf, beta * 2, (beta + hi) / 2),
                            np.where(lo == -np.inf, beta / 2, (beta + lo) / 2))
        lo = np.where(todo & up, beta, lo)
        hi = np.where(todo & ~up, beta, hi)
        beta = np.where(todo, new_beta, beta)
        h_new, p_new = h_beta(beta)
        h, p = np.where(todo, h_new, h), np.where(todo[:, None], p_new, p)
        diff = h - log_perp
    per_batch = np.zeros((n, codes.max() + 1))
    np.add.at(per_batch, (np.repeat(np.arange(n), idx.shape[1]), codes[idx].ravel()), p.ravel())
    return np.where(h == 0, -1.0, (per_batch**2).sum(axis=1))


def lisi_per_cell(X: np.ndarray, batch: np.ndarray, k: int = 90, perplexity: float | None = None) -> np.ndarray:
    """scib-metrics' `lisi_knn`: 1 / Simpson index of `batch` under the perplexity-calibrated kernel on
    each cell's k nearest cells (itself included, weight 0); perplexity defaults to k // 3.

    1 = only one batch nearby, n_batches = all equally; -1 marks a cell whose kernel vanished (scib-metrics'
    convention). k is capped at the number of cells.
    """
    batch = np.asarray(batch)
    X = _check_xy(X, batch)
    if len(X) < 2:
        return np.ones(len(X))
    _, codes = np.unique(batch, return_inverse=True)
    idx, dist = nearest_neighbours(X, k)
    perplexity = float(np.floor(idx.shape[1] / 3)) if perplexity is None else perplexity
    return 1.0 / _simpson(dist, idx, codes, perplexity)


def ilisi(X: np.ndarray, batch: np.ndarray, k: int = 90) -> dict[str, float]:
    """scib-metrics' `ilisi_knn`: median LISI of the batch labels over cells (`ilisi`, 1 .. n_batches) and
    its scaling (median - 1) / (n_batches - 1) (`ilisi_norm`, what scib tables report: 0 = batches apart,
    1 = fully mixed; NaN with a single batch). k nearest cells, itself included; perplexity k // 3.
    """
    batch = np.asarray(batch)
    n_batches = len(np.unique(batch))
    med = float(np.nanmedian(lisi_per_cell(X, batch, k)))
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
