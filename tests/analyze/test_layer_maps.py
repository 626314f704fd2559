"""Per-layer class separation: high where classes are planted apart, near chance where they are not."""

import numpy as np
import pytest

from biofm.analyze.layer_maps import chance_accuracy, layer_scores, project, projection_method


@pytest.fixture(scope="module")
def planted():
    """Three classes of 60 points in 16 dimensions: layer 0 pure noise, layer 1 class means 10 s.d. from the origin."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    noise = rng.normal(size=(180, 16))
    means = rng.normal(size=(3, 16))
    means = 10 * means / np.linalg.norm(means, axis=1, keepdims=True)
    separated = rng.normal(size=(180, 16)) + means[labels]
    return np.stack([noise, separated], axis=1), labels  # [n, layers, d]


def test_planted_structure_scores_high_and_noise_near_chance(planted):
    X, labels = planted
    noise, separated = layer_scores(X, labels, folds=5, k=10, seed=0)
    assert separated["silhouette"] > 0.4 and separated["knn_accuracy"] > 0.95
    assert abs(noise["silhouette"]) < 0.05 and noise["knn_accuracy"] < 0.5  # chance is 1/3
    assert [noise["layer"], separated["layer"]] == [0, 1] and separated["knn_accuracy_std"] >= 0


def test_shuffled_labels_lose_the_structure(planted):
    X, labels = planted
    shuffled = np.random.default_rng(1).permutation(labels)
    s = layer_scores(X[:, 1:], shuffled, folds=5, k=10, seed=0)[0]
    assert s["silhouette"] < 0.05 and s["knn_accuracy"] < 0.5


def test_chance_is_the_majority_share():
    assert chance_accuracy(np.array([0, 0, 0, 1, 2, 2])) == 0.5


def test_projection_keeps_separated_classes_apart(planted):
    X, labels = planted
    xy = project(X[:, 1], "pca", seed=0)
    assert xy.shape == (180, 2)
    centres = np.stack([xy[labels == c].mean(0) for c in range(3)])
    spread = np.mean([xy[labels == c].std(0).mean() for c in range(3)])
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread
    assert projection_method("pca", 500) == "pca" and projection_method("auto", 10) == "pca"  # too few for UMAP
