"""Layer maps: how well each layer's mean-pooled embeddings separate labelled classes, and a 2-D picture.

Two scores per layer, on z-scored features (so one huge activation dimension does not decide every
distance): the silhouette of the true labels (euclidean; -1..1, 0 = classes interleaved) and the
accuracy of a k-nearest-neighbour classifier, cross-validated over stratified folds (scaler fitted
inside each fold), with its chance level (the majority class's share). The picture is UMAP when
umap-learn is installed (after PCA to at most 50 dimensions, neighbours found exactly by
scikit-learn, which also spares umap's slowest just-in-time compilation), else PCA to 2-D; figure and
JSON say which.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from biofm.analyze.report import pyplot, save_png

Projection = Literal["auto", "umap", "pca"]
UMAP_NEIGHBOURS = 15
UMAP_PCA_DIMS = 50


def layer_scores(X: np.ndarray, labels: np.ndarray, *, folds: int = 5, k: int = 10, seed: int = 0
                 ) -> list[dict[str, float]]:
    """Per layer of X [n, layers, d]: {"layer", "silhouette", "knn_accuracy", "knn_accuracy_std"}."""
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for layer in range(X.shape[1]):
        x = np.asarray(X[:, layer], dtype=np.float64)
        z = StandardScaler().fit_transform(x)
        sil = float(silhouette_score(z, labels)) if len(np.unique(labels)) > 1 else float("nan")
        knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(labels) - 1)))
        acc = cross_val_score(knn, x, labels, cv=cv, scoring="accuracy")
        out.append({"layer": layer, "silhouette": sil, "knn_accuracy": float(acc.mean()),
                    "knn_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0})
    return out


def chance_accuracy(labels: np.ndarray) -> float:
    """What always predicting the majority class scores."""
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())


def projection_method(requested: Projection, n: int) -> str:
    """"umap" or "pca": UMAP needs umap-learn and more points than neighbours."""
    if requested == "pca" or n <= UMAP_NEIGHBOURS + 1:
        return "pca"
    try:
        import umap  # noqa: F401
    except ImportError:
        if requested == "umap":
            from biofm.errors import BiofmError

            raise BiofmError("projection=umap needs umap-learn: pip install 'biofm[analyze]' (or set "
                             "projection=pca)") from None
        return "pca"
    return "umap"


def project(X: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """[n, 2] coordinates of X [n, d] (z-scored first)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(np.asarray(X, dtype=np.float64))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(z)
    import umap
    from sklearn.neighbors import NearestNeighbors

    z = PCA(n_components=min(UMAP_PCA_DIMS, *z.shape), random_state=seed).fit_transform(z)
    dist, idx = NearestNeighbors(n_neighbors=UMAP_NEIGHBOURS).fit(z).kneighbors(z)  # self first, as umap wants
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", precomputed-knn notes
        reducer = umap.UMAP(n_neighbors=UMAP_NEIGHBOURS, random_state=seed, init="pca", n_jobs=1,
                            precomputed_knn=(idx, dist.astype(np.float32), None))
        return reducer.fit_transform(z)


def plot_layer_maps(coords: list[np.ndarray], labels: np.ndarray, classes: list[str], scores: list[dict[str, float]],
                    method: str, title: str, dest: Path) -> None:
    """One scatter per layer, coloured by class, titled with the layer's scores."""
    plt = pyplot()
    n = len(coords)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows + 0.6), dpi=100, squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        for c, name in enumerate(classes):
            pts = coords[i][labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, color=cmap(c % cmap.N), label=name, linewidths=0)
        s = scores[i]
        ax.set_title(f"layer {i}: silhouette {s['silhouette']:.2f}, kNN {s['knn_accuracy']:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(classes), 9), fontsize=7, markerscale=3,
               frameon=False)
    what = "UMAP" if method == "umap" else "PCA"
    fig.suptitle(f"{title}: {what} of mean-pooled embeddings per layer (0 = token embeddings)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    save_png(fig, dest)
    plt.close(fig)


def plot_scores(scores: list[dict[str, float]], control: list[dict[str, float]] | None, chance: float, title: str,
                dest: Path) -> None:
    """Silhouette and kNN accuracy against depth, with the random-weights control dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    x = [s["layer"] for s in scores]
    for ax, key, name in ((axes[0], "silhouette", "silhouette"), (axes[1], "knn_accuracy", "kNN accuracy (CV)")):
        ax.plot(x, [s[key] for s in scores], marker="o", label="model")
        if control:
            ax.plot(x, [s[key] for s in control], marker="o", ls="--", color="grey", label="random-weights control")
        if key == "knn_accuracy":
            ax.axhline(chance, color="black", lw=0.8, ls=":", label="chance (majority class)")
        ax.set_xlabel("layer (0 = token embeddings)")
        ax.set_ylabel(name)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: class separation per layer", fontsize=9)
    fig.tight_layout()
    save_png(fig, dest)
    plt.close(fig)
