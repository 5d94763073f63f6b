"""Latent-space exploration: arrays in, arrays out.

Everything the Fashion-MNIST report shows about a trained model's latent
space, as functions that return NumPy arrays and small dataclasses (the
figures live in :mod:`vaekit.latent_plots`):

* :func:`encode_dataset`, :func:`latent_map`, :func:`class_separation`:
  where the classes sit in z, and how well they separate (k-NN accuracy).
* :func:`manifold`, :func:`find_holes`: decoded images over a latent plane,
  and which of them are "holes" (images unlike any reconstruction).
* :func:`compute_class_means`, :func:`interpolate`, :func:`lerp`,
  :func:`slerp`, :func:`smoothness`: class averages and the transitions
  ("hybrids") between them, with a number for how smooth each one is.
* :func:`load_image`, :func:`morph`: any two images, encoded, blended, decoded.
* :func:`traverse`: one latent coordinate swept at a time.
* :func:`latent_arithmetic`: ``z(image) - mean(class A) + mean(class B)``.

:class:`LatentRun` ties them to a run directory: it loads the model with
:func:`vaekit.load`, the run's dataset from ``config.json`` and caches the
class means in ``RUN/class_means.json``.

Example
-------
>>> from vaekit import latent
>>> run = latent.LatentRun("runs/fmnist")
>>> means = run.class_means()
>>> hybrid = latent.interpolate(run.model, means.vector("bag"), means.vector("sneaker"), steps=6)
>>> hybrid.images.shape, hybrid.smoothness.max_step_fraction
((6, 1, 28, 28), 0.061)
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import statistics
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.data import ImageDataset, load_dataset
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.losses import kl_per_dimension
from vaekit.rundir import WEIGHTS_FILE, load, read_config, read_json, write_json

__all__ = [
    "METHODS",
    "CLASS_ALIASES",
    "CLASS_MEANS_FILE",
    "REPORT_TRANSITIONS",
    "Arithmetic",
    "ClassMeans",
    "Holes",
    "Interpolation",
    "LatentCodes",
    "LatentMap",
    "LatentRun",
    "Manifold",
    "Morph",
    "Projection",
    "Separation",
    "Smoothness",
    "Traversal",
    "class_arithmetic",
    "class_separation",
    "compute_class_means",
    "decode",
    "default_transition_pairs",
    "encode",
    "encode_dataset",
    "find_holes",
    "interpolate",
    "interpolation_weights",
    "knn_predict",
    "latent_arithmetic",
    "latent_map",
    "latent_plane",
    "lerp",
    "load_image",
    "manifold",
    "mean_kl_per_dimension",
    "morph",
    "principal_plane",
    "prior_quantiles",
    "project_2d",
    "resolve_class",
    "slerp",
    "smoothness",
    "traverse",
]

CLASS_MEANS_FILE = "class_means.json"

#: The transitions shown in the Fashion-MNIST report, in its order.
REPORT_TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("bag", "sneaker"),
    ("bag", "sandal"),
    ("sandal", "sneaker"),
    ("pullover", "t-shirt"),
    ("pullover", "dress"),
)

#: Other names users give to clothing classes -> the class they mean
#: (both normalised, see :func:`_normalise`). Dataset-independent: an alias
#: is used only when its target is one of the dataset's classes. Names
#: joined by "/" in a class name ("T-shirt/top") are accepted on their own
#: without an entry here, and so are plurals ending in "s".
CLASS_ALIASES: dict[str, str] = {
    "tshirt": "tshirttop",
    "tee": "tshirttop",
    "teeshirt": "tshirttop",
    "shoe": "sneaker",
    "shoes": "sneaker",
    "trainer": "sneaker",
    "trainers": "sneaker",
    "boot": "ankleboot",
    "boots": "ankleboot",
    "pants": "trouser",
    "jeans": "trouser",
    "sweater": "pullover",
    "jumper": "pullover",
    "jacket": "coat",
    "handbag": "bag",
    "purse": "bag",
    "skirt": "dress",
}

_IMAGE_REF = re.compile(r"^(train|test):(\d+)$")
_BATCH = 500


# ----------------------------------------------------------------------------
# Encoding and decoding


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 or float ``(N, C, H, W)`` -> float32 tensor in [0, 1]."""
    tensor = torch.as_tensor(images)
    if tensor.dtype == torch.uint8:
        return tensor.float().div(255.0)
    return tensor.float()


@torch.no_grad()
def encode(model, images: torch.Tensor | np.ndarray, batch_size: int = _BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Posterior parameters of images.

    Parameters
    ----------
    model
        A :class:`~vaekit.models.VAE`.
    images
        ``(N, C, H, W)``, uint8 or floats in [0, 1].

    Returns
    -------
    z_mean, z_log_var : numpy.ndarray
        float32 arrays of shape ``(N, latent_dim)``.
    """
    device = _device(model)
    means, log_vars = [], []
    for start in range(0, len(images), batch_size):
        x = _as_float_images(images[start : start + batch_size]).to(device)
        z_mean, z_log_var = model.encode(x)
        means.append(z_mean.float().cpu())
        log_vars.append(z_log_var.float().cpu())
    if not means:
        empty = np.zeros((0, model.latent_dim), np.float32)
        return empty, empty.copy()
    return torch.cat(means).numpy(), torch.cat(log_vars).numpy()


@torch.no_grad()
def decode(model, z: np.ndarray | torch.Tensor, batch_size: int = _BATCH) -> np.ndarray:
    """Decode latent vectors ``(N, latent_dim)`` to images ``(N, C, H, W)`` in [0, 1] (float32)."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    if z.ndim == 1:
        z = z[None]
    if z.shape[-1] != model.latent_dim:
        raise ConfigError(f"latent vectors have {z.shape[-1]} dimensions, the model expects {model.latent_dim}")
    device = _device(model)
    parts = [model.decode(z[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(z), batch_size)]
    if not parts:
        return np.zeros((0, *model.image_shape), np.float32)
    return torch.cat(parts).numpy()


@dataclass
class LatentCodes:
    """Posterior means and log-variances of a labelled set of images."""

    z_mean: np.ndarray  # (N, D)
    z_log_var: np.ndarray  # (N, D)
    labels: np.ndarray  # (N,) int64 class ids
    class_names: tuple[str, ...]
    split: str = "test"

    def __len__(self) -> int:
        return int(self.z_mean.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.z_mean.shape[1])


def encode_dataset(model, dataset: ImageDataset, limit: int | None = None) -> LatentCodes:
    """Encode a dataset (or its first ``limit`` images) to :class:`LatentCodes`."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    z_mean, z_log_var = encode(model, dataset.images[:n])
    return LatentCodes(z_mean, z_log_var, dataset.labels[:n].numpy().astype(np.int64), tuple(dataset.class_names),
                       dataset.split)


def mean_kl_per_dimension(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """Average KL(q(z_j|x) || N(0, 1)) of each latent unit over the images, nats, shape ``(D,)``."""
    kl = kl_per_dimension(torch.as_tensor(z_mean), torch.as_tensor(z_log_var))
    return kl.mean(0).numpy()


# ----------------------------------------------------------------------------
# Class names


def _normalise(name: str) -> str:
    # "T-shirt/top", "t shirt top" and "TSHIRT_TOP" all mean the same class.
    return re.sub(r"[\s\-/_.]+", "", name.lower())


def _name_candidates(class_names: Sequence[str]) -> dict[str, int]:
    """Normalised spelling -> class id: full names first, then their "/" parts, then aliases."""
    table: dict[str, int] = {}
    for i, name in enumerate(class_names):
        table.setdefault(_normalise(name), i)
    for i, name in enumerate(class_names):
        for part in name.split("/"):
            table.setdefault(_normalise(part), i)
    for alias, target in CLASS_ALIASES.items():
        if target in table:
            table.setdefault(alias, table[target])
    return table


def resolve_class(name: str | int, class_names: Sequence[str]) -> int:
    """Class id of a user-given class name.

    Matching ignores case, spaces, hyphens, slashes and underscores, accepts
    each part of a name like "T-shirt/top", the aliases in
    :data:`CLASS_ALIASES` (``shoes`` -> Sneaker, ``boot`` -> Ankle boot), plurals
    and class ids ("7").

    Raises
    ------
    ConfigError
        For a name that matches no class; the message lists the valid names.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(class_names):
            return int(name)
    elif isinstance(name, str):
        key = _normalise(name)
        if key.isdigit() and int(key) < len(class_names):
            return int(key)
        table = _name_candidates(class_names)
        for candidate in (key, key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None):
            if candidate and candidate in table:
                return table[candidate]
    raise ConfigError(f"unknown class {name!r}; valid names: {', '.join(class_names)}")


def default_transition_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """The report's five transitions as class ids, or consecutive classes for other datasets."""
    try:
        return [(resolve_class(a, class_names), resolve_class(b, class_names)) for a, b in REPORT_TRANSITIONS]
    except ConfigError:
        k = len(class_names)
        return [(i, i + 1) for i in range(min(k - 1, 5))]


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
        raise ConfigError(f"--projection must be auto, pca or tsne, got {method!r}")
    if method == "auto" and dim == 2:
        return Projection(z.copy(), "identity", "2-D latent space", ("z[0]", "z[1]"))
    if method in ("auto", "pca"):
        mean, components, explained = principal_plane(z)
        coords = ((z - mean) @ components.T).astype(np.float32)
        description = f"PCA of the {dim}-D latent space ({100 * explained.sum():.0f}% of the variance)"
        return Projection(coords, "pca", description, ("PC 1", "PC 2"), explained)
    return _tsne(z, seed)


def _tsne(z: np.ndarray, seed: int) -> Projection:
    from sklearn.manifold import TSNE

    if len(z) < 5:
        raise ConfigError(f"t-SNE needs at least 5 points, got {len(z)}")
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


# ----------------------------------------------------------------------------
# Manifold and holes


def prior_quantiles(n: int) -> np.ndarray:
    """``n`` points of N(0, 1) at the midpoints of ``n`` equal-probability bins.

    For ``n = 20`` they run from -1.96 to 1.96 (the 2.5% and 97.5% quantiles),
    so a grid of them covers where the prior puts its mass, evenly in
    probability rather than in distance.
    """
    if n < 1:
        raise ConfigError(f"grid size must be at least 1, got {n}")
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / n) for i in range(n)], dtype=np.float32)


@dataclass
class Manifold:
    """Decoded images over a 2-D latent plane.

    ``images[r, c]`` is the decoding of ``origin + u[c] * basis[0] +
    v[r] * basis[1]``; rows run from the largest ``v`` (top) down, so the
    grid reads like a plot.
    """

    images: np.ndarray  # (n, n, C, H, W)
    u: np.ndarray  # (n,) coordinate along basis[0], left to right
    v: np.ndarray  # (n,) coordinate along basis[1], top to bottom (decreasing)
    z: np.ndarray  # (n, n, D)
    origin: np.ndarray  # (D,)
    basis: np.ndarray  # (2, D), orthonormal
    description: str
    axis_labels: tuple[str, str]


def latent_plane(latent_dim: int,
                 z_data: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str, tuple[str, str]]:
    """The plane a manifold is drawn on: the latent plane itself for D = 2, else
    the plane of the first two principal directions through the data mean.

    Returns ``(origin, basis, description, axis labels)``.
    """
    if latent_dim < 2:
        raise ConfigError(f"a manifold needs a latent space of at least 2 dimensions; this run has {latent_dim}")
    if latent_dim == 2:
        return np.zeros(2, np.float32), np.eye(2, dtype=np.float32), "latent plane", ("z[0]", "z[1]")
    if z_data is None:
        raise ConfigError(f"a {latent_dim}-D latent needs the dataset to find its principal plane")
    mean, components, explained = principal_plane(z_data)
    description = (f"plane of the first two principal directions through the data mean "
                   f"({100 * explained.sum():.0f}% of the variance)")
    return mean.astype(np.float32), components.astype(np.float32), description, ("PC 1", "PC 2")


def manifold(model, n: int = 20, z_data: np.ndarray | None = None) -> Manifold:
    """Decode an ``n`` x ``n`` grid at prior quantiles (:func:`prior_quantiles`) over a latent plane.

    Parameters
    ----------
    model
        The VAE.
    n
        Grid points per side.
    z_data
        ``(N, D)`` latent means of data; needed when ``latent_dim > 2`` to
        find the principal plane (:func:`latent_plane`).
    """
    origin, basis, description, axis_labels = latent_plane(model.latent_dim, z_data)
    q = prior_quantiles(n)
    u, v = q, q[::-1].copy()
    z = origin + u[None, :, None] * basis[0] + v[:, None, None] * basis[1]  # (n, n, D)
    images = decode(model, z.reshape(n * n, -1)).reshape(n, n, *model.image_shape)
    return Manifold(images, u, v, z.astype(np.float32), origin, basis, description, axis_labels)


@dataclass
class Holes:
    """Grid points whose decoded image is unlike every reconstruction of real images.

    A grid image's distance is the RMS pixel difference to its nearest
    neighbour among ``n_reference`` test-set reconstructions. The threshold
    is the ``percentile``-th percentile of the reconstructions' own
    nearest-neighbour distances (each to the others), so a hole is farther
    from the data's images than all but ``100 - percentile`` % of the data's
    images are from each other.
    """

    mask: np.ndarray  # bool, shape of the grid
    distances: np.ndarray  # RMS distance of each grid image to its nearest reconstruction
    threshold: float
    percentile: float
    n_reference: int

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())

    def summary(self) -> str:
        return (f"holes: {int(self.mask.sum())} of {self.mask.size} grid points ({100 * self.fraction:.1f}%) decode "
                f"to images farther than {self.threshold:.3f} RMS from every one of {self.n_reference:,} test "
                f"reconstructions (the {self.percentile:g}th percentile of the reconstructions' own "
                f"nearest-neighbour distances)")


def _nearest_distances(queries: torch.Tensor, refs: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """RMS pixel distance of each query to its nearest reference (flattened images)."""
    out = []
    for start in range(0, len(queries), 1000):
        d = torch.cdist(queries[start : start + 1000], refs)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")
        out.append(d.min(1).values)
    return torch.cat(out) / math.sqrt(refs.shape[1])


def find_holes(grid_images: np.ndarray, reconstructions: np.ndarray, percentile: float = 95.0) -> Holes:
    """Mark the grid images that are holes (see :class:`Holes`).

    Parameters
    ----------
    grid_images
        ``(..., C, H, W)`` decoded grid, e.g. ``Manifold.images``.
    reconstructions
        ``(N, C, H, W)`` decodings of real images' z_mean, ``N >= 2``.
    """
    if len(reconstructions) < 2:
        raise ConfigError("hole detection needs at least 2 reconstructed images")
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    grid_shape = grid_images.shape[:-3]
    refs = torch.as_tensor(reconstructions, dtype=torch.float32).flatten(1)
    queries = torch.as_tensor(grid_images, dtype=torch.float32).reshape(-1, refs.shape[1])
    threshold = float(np.percentile(_nearest_distances(refs, refs, exclude_self=True).numpy(), percentile))
    distances = _nearest_distances(queries, refs).numpy().reshape(grid_shape)
    return Holes(distances > threshold, distances, threshold, percentile, len(refs))


# ----------------------------------------------------------------------------
# Class means


@dataclass
class ClassMeans:
    """The mean latent vector (z_mean) of each class."""

    class_names: tuple[str, ...]
    vectors: np.ndarray  # (K, D); NaN rows for classes without images
    counts: np.ndarray  # (K,) images averaged
    split: str = "test"
    dataset: str = ""

    def vector(self, name: str | int) -> np.ndarray:
        """Mean vector of a class, by (case-insensitive, aliased) name or id."""
        index = resolve_class(name, self.class_names)
        if self.counts[index] == 0:
            raise DataError(f"class {self.class_names[index]!r} has no images in the {self.split} split used")
        return self.vectors[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "count": int(self.counts.sum()),
            "latent_dim": int(self.vectors.shape[1]),
            "counts": {name: int(c) for name, c in zip(self.class_names, self.counts)},
            "means": {name: (None if c == 0 else [float(x) for x in vec])
                      for name, vec, c in zip(self.class_names, self.vectors, self.counts)},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str | os.PathLike = "class means") -> ClassMeans:
        try:
            names = tuple(data["means"])
            dim = int(data["latent_dim"])
            vectors = np.array([data["means"][n] if data["means"][n] is not None else [np.nan] * dim
                                for n in names], dtype=np.float32).reshape(len(names), dim)
            counts = np.array([int(data["counts"][n]) for n in names], dtype=np.int64)
            return cls(names, vectors, counts, str(data.get("split", "")), str(data.get("dataset", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise RunDirError(f"{where}: not a class-means file ({type(error).__name__}: {error})") from None


def compute_class_means(codes: LatentCodes, dataset: str = "") -> ClassMeans:
    """Average z_mean of each class of ``codes``."""
    k = len(codes.class_names)
    counts = np.bincount(codes.labels, minlength=k)[:k]
    sums = np.zeros((k, codes.latent_dim), np.float64)
    np.add.at(sums, codes.labels, codes.z_mean.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        vectors = (sums / counts[:, None]).astype(np.float32)
    return ClassMeans(codes.class_names, vectors, counts.astype(np.int64), codes.split, dataset)


# ----------------------------------------------------------------------------
# Interpolation


def interpolation_weights(steps: int) -> np.ndarray:
    """``steps`` evenly spaced x in [0, 1], both ends included."""
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    return np.linspace(0.0, 1.0, steps)


def lerp(z_from: np.ndarray, z_to: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Linear interpolation ``x * z_to + (1 - x) * z_from`` for each x, shape ``(S, D)``.

    This is the report's ``x*AverageZ1 + (1-x)*AverageZ2`` with ``z_to`` as
    AverageZ1: x is the weight of the target, so x = 0 is ``z_from``.
    """
    z_from, z_to = np.asarray(z_from, np.float64), np.asarray(z_to, np.float64)
    xs = np.asarray(xs, np.float64)[:, None]
    return (xs * z_to + (1 - xs) * z_from).astype(np.float32)


def slerp(z_from: np.ndarray, z_to: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Spherical interpolation about the origin, shape ``(S, D)``.

    The direction moves along the great circle from ``z_from`` to ``z_to``
    and the norm changes linearly between theirs, so the path never cuts
    through the low-norm middle of a high-dimensional Gaussian prior (where a
    straight line goes and where no sample lies). For vectors of equal norm
    this is the classic slerp and keeps the norm exactly.
    """
    a, b = np.asarray(z_from, np.float64), np.asarray(z_to, np.float64)
    if a.shape[-1] < 2:
        raise ConfigError("slerp needs a latent space of at least 2 dimensions; use --method linear")
    xs = np.asarray(xs, np.float64)
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a < 1e-12 or norm_b < 1e-12:
        return lerp(a, b, xs)  # no direction to rotate from
    unit_a, unit_b = a / norm_a, b / norm_b
    omega = math.acos(float(np.clip(unit_a @ unit_b, -1.0, 1.0)))
    if omega < 1e-6:
        return lerp(a, b, xs)
    if math.pi - omega < 1e-6:
        unit_b, omega = _half_turn(unit_a), math.pi / 2  # opposite: go via a perpendicular
        directions = [_great_circle(unit_a, unit_b, omega, 2 * x) if x <= 0.5 else
                      _great_circle(unit_b, -unit_a, omega, 2 * x - 1) for x in xs]
    else:
        directions = [_great_circle(unit_a, unit_b, omega, x) for x in xs]
    path = np.array(directions) * ((1 - xs) * norm_a + xs * norm_b)[:, None]
    path[xs == 0] = a  # endpoints exactly, not up to rounding
    path[xs == 1] = b
    return path.astype(np.float32)


def _great_circle(unit_a: np.ndarray, unit_b: np.ndarray, omega: float, x: float) -> np.ndarray:
    return (math.sin((1 - x) * omega) * unit_a + math.sin(x * omega) * unit_b) / math.sin(omega)


def _half_turn(unit: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to ``unit`` (deterministic)."""
    axis = np.zeros_like(unit)
    axis[int(np.argmin(np.abs(unit)))] = 1.0
    perpendicular = axis - (axis @ unit) * unit
    return perpendicular / np.linalg.norm(perpendicular)


@dataclass
class Smoothness:
    """How evenly an interpolation changes the image.

    ``max_step_fraction`` is the largest pixel change between consecutive
    frames (L2 norm of the difference) divided by the total change along the
    path (the sum of all such steps). 1 / (frames - 1) means perfectly even;
    1.0 means the whole change happens in one step (a jump).
    """

    max_step_fraction: float
    frames: int
    max_step_at: float  # x at the middle of the largest step

    @property
    def even_fraction(self) -> float:
        return 1.0 / (self.frames - 1)

    @property
    def unevenness(self) -> float:
        """Largest step over the mean step: 1.0 is perfectly even."""
        return self.max_step_fraction / self.even_fraction

    def summary(self) -> str:
        return (f"largest step {100 * self.max_step_fraction:.1f}% of the total change at x = {self.max_step_at:.2f} "
                f"({self.unevenness:.1f}x the mean step over {self.frames} frames)")


def smoothness(frames: np.ndarray, xs: np.ndarray | None = None) -> Smoothness:
    """Measure :class:`Smoothness` of a sequence of images ``(S, C, H, W)``, ``S >= 2``."""
    frames = np.asarray(frames, np.float64)
    if len(frames) < 2:
        raise ConfigError("smoothness needs at least 2 frames")
    xs = np.linspace(0, 1, len(frames)) if xs is None else np.asarray(xs, np.float64)
    steps = np.linalg.norm((frames[1:] - frames[:-1]).reshape(len(frames) - 1, -1), axis=1)
    total = steps.sum()
    largest = int(steps.argmax())
    fraction = float(steps[largest] / total) if total > 0 else 0.0
    return Smoothness(fraction, len(frames), float((xs[largest] + xs[largest + 1]) / 2))


@dataclass
class Interpolation:
    """Decoded frames between two latent vectors."""

    xs: np.ndarray  # (S,) weight of the target: frame = path(x)
    z: np.ndarray  # (S, D)
    images: np.ndarray  # (S, C, H, W)
    method: str  # "linear" or "slerp"
    smoothness: Smoothness  # measured on a dense path (measure_frames), not only the S frames shown
    start: str = ""  # labels of the endpoints, for figures
    end: str = ""


METHODS = ("linear", "slerp")


def interpolate(model, z_from: np.ndarray, z_to: np.ndarray, steps: int = 6, method: str = "linear",
                measure_frames: int = 65, start: str = "", end: str = "") -> Interpolation:
    """Decode ``steps`` points from ``z_from`` (x = 0) to ``z_to`` (x = 1).

    Parameters
    ----------
    model
        The VAE.
    z_from, z_to
        ``(D,)`` latent vectors, e.g. two class means.
    steps
        Frames returned, at evenly spaced x.
    method
        ``"linear"`` (:func:`lerp`) or ``"slerp"`` (:func:`slerp`).
    measure_frames
        Smoothness is measured on this many evenly spaced frames, so a sudden
        jump between two of the shown frames is not missed.
    """
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    path = lerp if method == "linear" else slerp
    xs = interpolation_weights(steps)
    z = path(z_from, z_to, xs)
    dense_xs = interpolation_weights(max(measure_frames, 2))
    measured = smoothness(decode(model, path(z_from, z_to, dense_xs)), dense_xs)
    return Interpolation(xs, z, decode(model, z), method, measured, start, end)


# ----------------------------------------------------------------------------
# Images from files, morphing


def load_image(path: str | os.PathLike, image_shape: Sequence[int], invert: bool = False) -> np.ndarray:
    """Read an image file as the model's input: ``(C, H, W)`` float32 in [0, 1].

    The image is converted to greyscale ("L") for 1 channel or "RGB" for 3
    (transparent pixels become black, the background of Fashion-MNIST), padded
    to a square with its border colour so the aspect ratio is kept, and resized
    with a Lanczos filter. ``invert`` turns dark-on-light photos into the
    light-on-dark look of Fashion-MNIST.

    Raises
    ------
    DataError
        If the file is missing, not an image, or the model's channel count
        is neither 1 nor 3.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    channels, height, width = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise DataError(f"{path}: cannot convert an image file to the model's {channels} channels (only 1 or 3)")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({_one_line(error)})") from None
    image = _flatten_alpha(ImageOps.exif_transpose(image)).convert("L" if channels == 1 else "RGB")
    border = _border_colour(np.asarray(image))
    image = ImageOps.pad(image, (width, height), method=Image.Resampling.LANCZOS, color=border)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return (1.0 - array if invert else array).astype(np.float32)


def _flatten_alpha(image):
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _border_colour(array: np.ndarray) -> int | tuple[int, ...]:
    edge = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    median = np.median(edge, axis=0)
    return int(median) if np.ndim(median) == 0 else tuple(int(c) for c in median)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@dataclass
class Morph:
    """Two images blended through the latent space."""

    inputs: np.ndarray  # (2, C, H, W) the images as fed to the model
    interpolation: Interpolation  # x = 0 is the first image's z_mean, x = 1 the second's
    merged: np.ndarray  # (C, H, W) decoding of the midpoint (x = 0.5): the two merged


def morph(model, image_a: np.ndarray, image_b: np.ndarray, steps: int = 7, method: str = "linear",
          labels: tuple[str, str] = ("A", "B")) -> Morph:
    """Encode two images ``(C, H, W)``, interpolate their z_mean and decode."""
    pair = [_as_float_images(np.asarray(image)).numpy() for image in (image_a, image_b)]
    for label, image in zip(labels, pair):
        if image.shape != tuple(model.image_shape):
            raise DataError(f"image {label} has shape {image.shape}, the model expects {tuple(model.image_shape)}")
    inputs = np.stack(pair)
    z_mean, _ = encode(model, inputs)
    result = interpolate(model, z_mean[0], z_mean[1], steps, method, start=labels[0], end=labels[1])
    middle = lerp(z_mean[0], z_mean[1], [0.5]) if method == "linear" else slerp(z_mean[0], z_mean[1], [0.5])
    return Morph(inputs, result, decode(model, middle)[0])


# ----------------------------------------------------------------------------
# Traversals


@dataclass
class Traversal:
    """Latent traversals: row i sweeps coordinate ``dims[i]`` over ``values``, all others at ``reference``."""

    dims: np.ndarray  # (K,) latent coordinates, in display order
    values: np.ndarray  # (S,)
    reference: np.ndarray  # (D,)
    z: np.ndarray  # (K, S, D)
    images: np.ndarray  # (K, S, C, H, W)
    kl: np.ndarray | None  # (D,) mean KL per coordinate, nats (None if not given)
    change: np.ndarray  # (K,) summed RMS pixel change along each sweep: how much the coordinate does


def traverse(model, reference: np.ndarray | None = None, dims: Sequence[int] | None = None, steps: int = 9,
             span: float = 3.0, kl: np.ndarray | None = None, max_dims: int = 10) -> Traversal:
    """Sweep latent coordinates one at a time over ``[-span, span]``.

    Parameters
    ----------
    reference
        ``(D,)`` point the other coordinates are held at (default: the prior
        mean, zero).
    dims
        Coordinates to sweep; default: the ``max_dims`` coordinates with the
        highest ``kl`` (all in order when ``kl`` is None).
    kl
        ``(D,)`` mean KL per coordinate (:func:`mean_kl_per_dimension`);
        coordinates the model does not use have KL near 0 and decode to
        unchanging rows, so they go last.
    """
    dim = model.latent_dim
    reference = np.zeros(dim, np.float32) if reference is None else np.asarray(reference, np.float32)
    if reference.shape != (dim,):
        raise ConfigError(f"reference point has shape {reference.shape}, expected ({dim},)")
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    if dims is None:
        order = np.argsort(-np.asarray(kl), kind="stable") if kl is not None else np.arange(dim)
        dims = order[: max(1, max_dims)]
    dims = np.asarray(dims, dtype=np.int64)
    if dims.size == 0 or dims.min() < 0 or dims.max() >= dim:
        raise ConfigError(f"latent dimensions must be in 0..{dim - 1}, got {dims.tolist()}")
    values = np.linspace(-span, span, steps).astype(np.float32)
    z = np.repeat(reference[None, None], len(dims), 0).repeat(steps, 1)
    z[np.arange(len(dims)), :, dims] = values
    images = decode(model, z.reshape(-1, dim)).reshape(len(dims), steps, *model.image_shape)
    flat = images.reshape(len(dims), steps, -1)
    change = np.linalg.norm(np.diff(flat, axis=1), axis=2).sum(1) / math.sqrt(flat.shape[2])
    return Traversal(dims, values, reference, z, images, None if kl is None else np.asarray(kl), change)


# ----------------------------------------------------------------------------
# Latent arithmetic


def latent_arithmetic(z: np.ndarray, mean_from: np.ndarray, mean_to: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``z - strength * mean_from + strength * mean_to``: move images from one class towards another.

    ``z`` may be one vector ``(D,)`` or many ``(N, D)``.
    """
    z = np.asarray(z, np.float32)
    return (z + strength * (np.asarray(mean_to, np.float32) - np.asarray(mean_from, np.float32))).astype(np.float32)


@dataclass
class Arithmetic:
    """Images moved from one class to another by latent arithmetic."""

    inputs: np.ndarray  # (N, C, H, W)
    reconstructions: np.ndarray  # (N, C, H, W) decodings of the inputs' z_mean
    results: np.ndarray  # (N, C, H, W) decodings of z - mean(from) + mean(to)
    z: np.ndarray  # (N, D)
    z_result: np.ndarray  # (N, D)
    from_class: str
    to_class: str
    strength: float
    read_as: np.ndarray | None = None  # (N,) class id the k-NN sees in each re-encoded result


def class_arithmetic(model, images: np.ndarray, means: ClassMeans, from_class: str | int, to_class: str | int,
                     strength: float = 1.0, codes: LatentCodes | None = None, k: int = 5) -> Arithmetic:
    """Apply :func:`latent_arithmetic` with two class means to images ``(N, C, H, W)``.

    With ``codes`` (labelled latent means of real images), each result is
    re-encoded and classified by k-NN among them, to measure whether it
    became the target class.
    """
    a, b = resolve_class(from_class, means.class_names), resolve_class(to_class, means.class_names)
    inputs = _as_float_images(np.asarray(images)).numpy()
    z, _ = encode(model, inputs)
    z_result = latent_arithmetic(z, means.vector(a), means.vector(b), strength)
    results = decode(model, z_result)
    read_as = None
    if codes is not None:
        z_again, _ = encode(model, results)
        read_as = knn_predict(codes.z_mean, codes.labels, z_again, k)
    return Arithmetic(inputs, decode(model, z), results, z, z_result, means.class_names[a], means.class_names[b],
                      strength, read_as)


# ----------------------------------------------------------------------------
# A run directory with its data


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LatentRun:
    """A trained run directory with its dataset, for exploration.

    Loads lazily: the model and config at once (so a run without a model
    fails early), the dataset and its latent codes on first use.

    Parameters
    ----------
    run_dir
        A run directory (see :mod:`vaekit.rundir`).
    split
        Dataset split to explore (``"test"`` by default).
    data_dir
        Where the dataset is; default: the one the run was trained with.
    limit
        Use only the first ``limit`` images of the split (quick looks).
    device
        Where the model runs.
    """

    def __init__(self, run_dir: str | os.PathLike, split: str = "test", data_dir: str | os.PathLike | None = None,
                 limit: int | None = None, device: str | torch.device = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.config = read_config(self.run_dir)
        self.model = load(self.run_dir, device=device)
        self.split = split
        self.data_dir = data_dir
        if limit is not None and limit < 2:
            raise ConfigError(f"--limit must be at least 2, got {limit}")
        self.limit = limit
        self._datasets: dict[str, ImageDataset] = {}

    @property
    def dataset_name(self) -> str:
        try:
            return str(self.config["dataset"]["name"])
        except (KeyError, TypeError):
            raise RunDirError(f"{self.run_dir / 'config.json'}: no dataset name (config['dataset']['name'])") from None

    @property
    def class_names(self) -> tuple[str, ...]:
        names = (self.config.get("dataset") or {}).get("class_names")
        return tuple(names) if names else self.dataset.class_names

    def load_split(self, split: str) -> ImageDataset:
        """The run's dataset for ``split`` (whole; ``limit`` is not applied)."""
        if split not in self._datasets:
            data_dir = self.data_dir or (self.config.get("train") or {}).get("data_dir")
            dataset = load_dataset(self.dataset_name, split, data_dir=data_dir)
            if tuple(dataset.image_shape) != tuple(self.model.image_shape):
                raise DataError(f"dataset {self.dataset_name!r} has images of shape {dataset.image_shape}, "
                                f"the model in {self.run_dir} expects {tuple(self.model.image_shape)}")
            self._datasets[split] = dataset
        return self._datasets[split]

    @cached_property
    def dataset(self) -> ImageDataset:
        """The split explored, cut to ``limit`` images."""
        dataset = self.load_split(self.split)
        if self.limit is not None and self.limit < len(dataset):
            dataset = dataset.subset(slice(0, self.limit))
        return dataset

    @cached_property
    def codes(self) -> LatentCodes:
        """z_mean and z_log_var of every image of :attr:`dataset`."""
        return encode_dataset(self.model, self.dataset)

    def class_means(self, refresh: bool = False) -> ClassMeans:
        """Class means of the split, cached in ``RUN/class_means.json``.

        The cache is used when it was made from the same weights, split and
        limit, so commands after the first need no dataset.
        """
        path = self.run_dir / CLASS_MEANS_FILE
        key = {"weights_sha256": _file_sha256(self.run_dir / WEIGHTS_FILE), "split": self.split, "limit": self.limit}
        if not refresh and path.is_file():
            cached = self._read_cache(path, key)
            if cached is not None:
                return cached
        means = compute_class_means(self.codes, self.dataset_name)
        write_json(path, {**means.to_json(), **key})
        return means

    def _read_cache(self, path: Path, key: dict[str, Any]) -> ClassMeans | None:
        try:
            data = read_json(path)
            if not isinstance(data, dict) or any(data.get(name) != value for name, value in key.items()):
                return None
            means = ClassMeans.from_json(data, path)
        except RunDirError:
            return None  # a damaged cache is recomputed, not an error
        return means if means.vectors.shape[1] == self.model.latent_dim else None

    def image(self, ref: str | os.PathLike, invert: bool = False) -> tuple[np.ndarray, str]:
        """An image by reference: ``"test:123"``/``"train:5"`` (dataset index) or a file path.

        Returns the image ``(C, H, W)`` in [0, 1] and a short label for figures.
        """
        text = str(ref)
        match = _IMAGE_REF.match(text)
        if match and not Path(text).exists():
            split, index = match.group(1), int(match.group(2))
            dataset = self.load_split(split)
            if index >= len(dataset):
                raise ConfigError(f"{text}: index out of range; the {split} split has {len(dataset):,} images "
                                  f"(0..{len(dataset) - 1})")
            label = f"{text} ({dataset.class_names[int(dataset.labels[index])]})"
            image = dataset.images[index].float().div(255.0).numpy()
            return (1.0 - image if invert else image), label
        return load_image(text, self.model.image_shape, invert), Path(text).name

    def first_of_class(self, name: str | int, n: int) -> tuple[np.ndarray, list[str]]:
        """The first ``n`` images of a class in :attr:`dataset`, with ``split:index`` labels."""
        c = resolve_class(name, self.class_names)
        index = np.flatnonzero(self.dataset.labels.numpy() == c)[:n]
        if index.size == 0:
            raise DataError(f"no images of class {self.class_names[c]!r} in the first {len(self.dataset):,} "
                            f"images of the {self.split} split")
        return self.dataset.to_float(index).numpy(), [f"{self.split}:{i}" for i in index]
