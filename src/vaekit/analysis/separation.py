"""Where the classes sit in the latent space: 2-D projections and k-NN separation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from vaekit.analysis.latent import LatentCodes
from vaekit.analysis.limits import LIMITS, check_count
from vaekit.errors import ConfigError

# ----------------------------------------------------------------------------
# Latent map and class separation


@dataclass
class Projection:
    """A 2-D view of latent vectors."""

    coords: np.ndarray  # (N, 2)
    method: str  # "identity", "pca" or "tsne"
    description: str  # names the method, for plot titles
    axis_labels: tuple[str, str]
    explained_variance: np.ndarray | None = None  # PCA: fraction of variance on each axis


def principal_plane(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, first two principal directions and their explained-variance fractions.

    Returns
    -------
    mean : (D,) array
    components : (2, D) array of orthonormal rows; each row's largest
        coordinate is made positive so the result is deterministic.
    explained : (2,) array, fraction of the total variance along each row.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ConfigError(f"a principal plane needs latent vectors of at least 2 dimensions, got shape {z.shape}")
    mean = z.mean(0)
    _, singular, vt = np.linalg.svd(z - mean, full_matrices=False)
    components = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
    variance = singular**2
    explained = variance[:2] / max(variance.sum(), 1e-12)
    return mean, components, explained


def project_2d(z: np.ndarray, method: str = "auto", seed: int = 0) -> Projection:
    """Project latent vectors ``(N, D)`` to 2-D.

    ``"auto"`` keeps a 2-D latent as it is and uses PCA for more dimensions;
    ``"pca"`` and ``"tsne"`` (scikit-learn's t-SNE) force a method.
    """
    z = np.asarray(z, dtype=np.float32)
    dim = z.shape[1]
    if dim < 2:
        raise ConfigError(f"a 2-D map needs a latent space of at least 2 dimensions; this one has {dim}")
    if method not in ("auto", "pca", "tsne"):
        raise ConfigError(f"projection must be auto, pca or tsne, got {method!r}", param="projection")
    if method == "auto" and dim == 2:
        return Projection(z.copy(), "identity", "2-D latent space", ("z[0]", "z[1]"))
    if method in ("auto", "pca"):
        mean, components, explained = principal_plane(z)
        coords = ((z - mean) @ components.T).astype(np.float32)
        description = f"PCA of the {dim}-D latent space ({100 * explained.sum():.0f}% of the variance)"
        return Projection(coords, "pca", description, ("PC 1", "PC 2"), explained)
    return _tsne(z, seed)


def _tsne(z: np.ndarray, seed: int) -> Projection:
    if len(z) < 5:
        raise ConfigError(f"t-SNE needs at least 5 points, got {len(z)}")
    if len(z) > LIMITS["tsne"]:
        raise ConfigError(f"t-SNE of {len(z):,} points is too large (at most {LIMITS['tsne']:,}); "
                          "use projection='pca' or fewer points", param="projection")
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(z) - 1) / 3))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    return Projection(coords.astype(np.float32), "tsne", f"t-SNE of the {z.shape[1]}-D latent space",
                      ("t-SNE 1", "t-SNE 2"))


def knn_predict(z_ref: np.ndarray, labels_ref: np.ndarray, z_query: np.ndarray, k: int = 5,
                exclude_self: bool = False) -> np.ndarray:
    """Majority label of the ``k`` nearest reference vectors of each query (Euclidean).

    With ``exclude_self`` the queries are the references and each point's
    own entry is left out (leave-one-out). Ties go to the class of the
    nearest of the tied neighbours.
    """
    from sklearn.neighbors import NearestNeighbors

    z_ref, z_query = np.asarray(z_ref, np.float32), np.asarray(z_query, np.float32)
    extra = 1 if exclude_self else 0
    k = min(k, len(z_ref) - extra)
    if k < 1:
        raise ConfigError("k-NN needs at least 2 labelled latent vectors")
    index = NearestNeighbors(n_neighbors=k + extra).fit(z_ref).kneighbors(z_query, return_distance=False)
    if exclude_self:
        index = _drop_self(index, k)
    neighbour_labels = np.asarray(labels_ref)[index]  # (Q, k), nearest first
    return np.array([_vote(row) for row in neighbour_labels], dtype=np.int64)


def _drop_self(index: np.ndarray, k: int) -> np.ndarray:
    # The query is usually its own first neighbour, but not always among
    # duplicates: remove it wherever it is, else drop the farthest.
    own = np.arange(len(index))[:, None]
    keep = index != own
    keep[keep.sum(1) > k, -1] = False
    return index[keep].reshape(len(index), k)


def _vote(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    winners = np.flatnonzero(counts == counts.max())
    # First occurrence in nearest-first order decides a tie.
    return int(labels[np.isin(labels, winners)][0])


@dataclass
class Separation:
    """How well the classes separate in the latent space (leave-one-out k-NN on z_mean)."""

    accuracy: float  # fraction of images whose k nearest neighbours vote for their own class
    k: int
    n: int
    chance: float  # accuracy of always guessing the most common class
    per_class: dict[str, float]  # accuracy within each class
    confusion: np.ndarray  # (K, K): row true class, column k-NN vote
    overlaps: list[tuple[str, str, float]]  # most confused pairs, rate = confused / images of both

    def summary(self) -> str:
        return (f"class separation: {self.k}-NN accuracy of z_mean {self.accuracy:.3f} on {self.n:,} images "
                f"(chance {self.chance:.3f})")


def class_separation(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str], k: int = 5,
                     top_overlaps: int = 3) -> Separation:
    """Leave-one-out k-NN accuracy of latent vectors, per class and overall, with the most overlapping pairs."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = knn_predict(z, labels, z, k, exclude_self=True)
    n_classes = len(class_names)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    counts = confusion.sum(1)
    per_class = {class_names[c]: float(confusion[c, c] / counts[c]) for c in range(n_classes) if counts[c]}
    pairs = []
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            if counts[a] + counts[b]:
                pairs.append((class_names[a], class_names[b],
                              float((confusion[a, b] + confusion[b, a]) / (counts[a] + counts[b]))))
    pairs.sort(key=lambda pair: -pair[2])
    return Separation(float((predicted == labels).mean()), min(k, len(labels) - 1), len(labels),
                      float(counts.max() / counts.sum()), per_class, confusion, pairs[:top_overlaps])


@dataclass
class LatentMap:
    """Everything the latent-map figure shows."""

    projection: Projection
    labels: np.ndarray  # (M,) class ids of the plotted points
    class_names: tuple[str, ...]
    separation: Separation  # measured on all N images in the full latent space
    class_centres: np.ndarray  # (K, 2) mean projected position of each class (NaN if absent)
    n_total: int  # images encoded; M < n_total when t-SNE used a random subset


def latent_map(codes: LatentCodes, method: str = "auto", k: int = 5, seed: int = 0,
               tsne_max_points: int = 5000) -> LatentMap:
    """2-D map of the test set's z_mean, coloured by class, with the class separation measured.

    t-SNE scales badly, so it runs on a random subset of ``tsne_max_points``.
    """
    z, labels = codes.z_mean, codes.labels
    if codes.latent_dim < 2:
        raise ConfigError(f"latent-map needs a latent space of at least 2 dimensions; this run has {codes.latent_dim}")
    tsne_max_points = check_count("tsne_max_points", tsne_max_points, LIMITS["tsne"])
    if method == "tsne" and len(z) > tsne_max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), tsne_max_points, replace=False))
        z, labels = z[keep], labels[keep]
    projection = project_2d(z, method, seed)
    if projection.method == "tsne" and len(z) < len(codes):
        projection.description += f", random {len(z):,} of {len(codes):,} images"
    separation = class_separation(codes.z_mean, codes.labels, codes.class_names, k)
    centres = np.full((len(codes.class_names), 2), np.nan, np.float32)
    for c in np.unique(labels):
        centres[c] = projection.coords[labels == c].mean(0)
    return LatentMap(projection, labels, codes.class_names, separation, centres, len(codes))
