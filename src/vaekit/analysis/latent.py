"""Latent-space operations: arrays in, arrays out.

Everything the Fashion-MNIST report shows about a trained model's latent
space, as functions that return NumPy arrays and small dataclasses (the
figures live in :mod:`vaekit.viz.latent_figures`):

* :func:`encode`, :func:`decode`, :func:`encode_dataset`: NumPy views of the
  inference layer (:class:`vaekit.analysis.Inference`).
* :func:`compute_class_means`, :func:`interpolate`, :func:`lerp`,
  :func:`slerp`, :func:`smoothness`: class averages and the transitions
  ("hybrids") between them, with a number for how smooth each one is.
* :func:`morph`: any two images, encoded, blended, decoded.
* :func:`traverse`: one latent coordinate swept at a time.
* :func:`latent_arithmetic`, :func:`class_arithmetic`: ``z(image) - mean(class A) + mean(class B)``.

The latent map and class separation are in :mod:`vaekit.analysis.separation`,
the manifold and its holes in :mod:`vaekit.analysis.manifold`, and
:class:`vaekit.analysis.explorer.Explorer` ties all of them to a run.
Wherever a function takes ``model`` it accepts a VAE, a :class:`~vaekit.runs.Run`
or an :class:`~vaekit.analysis.Inference`.

Example
-------
>>> from vaekit.analysis import latent
>>> from vaekit.analysis.explorer import Explorer
>>> run = Explorer.open("runs/fmnist")
>>> means = run.class_means()
>>> hybrid = latent.interpolate(run.model, means.vector("bag"), means.vector("sneaker"), steps=6)
>>> hybrid.images.shape, hybrid.smoothness.max_step_fraction
((6, 1, 28, 28), 0.061)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.analysis.inference import ModelLike, as_float_images, inference_for
from vaekit.analysis.limits import LIMITS, check_allocation, check_count, image_bytes
from vaekit.analysis.separation import knn_predict
from vaekit.data.classes import resolve_class
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.models.losses import kl_per_dimension

CLASS_MEANS_FILE = "class_means.json"

#: The transitions shown in the Fashion-MNIST report, in its order.
REPORT_TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("bag", "sneaker"),
    ("bag", "sandal"),
    ("sandal", "sneaker"),
    ("pullover", "t-shirt"),
    ("pullover", "dress"),
)



# ----------------------------------------------------------------------------
# Encoding and decoding


def encode(model: Any, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior parameters of images ``(N, C, H, W)`` (uint8 or floats in [0, 1]) as float32 arrays ``(N, D)``.

    ``model`` is a VAE, a :class:`~vaekit.runs.Run` or an :class:`~vaekit.analysis.Inference`.
    """
    z_mean, z_log_var = inference_for(model).encode(images)
    return z_mean.numpy(), z_log_var.numpy()


def decode(model: Any, z: np.ndarray | torch.Tensor) -> np.ndarray:
    """Decode latent vectors ``(N, latent_dim)`` (or one ``(D,)``) to images ``(N, C, H, W)`` in [0, 1] (float32)."""
    return inference_for(model).decode(z).numpy()


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


def encode_dataset(model: ModelLike, dataset: ImageDataset, limit: int | None = None) -> LatentCodes:
    """Encode a dataset (or its first ``limit`` images) to :class:`LatentCodes`."""
    n = len(dataset) if limit is None else min(check_count("limit", limit, LIMITS["probe"]), len(dataset))
    z_mean, z_log_var = encode(model, dataset.images[:n])
    return LatentCodes(z_mean, z_log_var, dataset.labels[:n].numpy().astype(np.int64), tuple(dataset.class_names),
                       dataset.split)


def mean_kl_per_dimension(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """Average KL(q(z_j|x) || N(0, 1)) of each latent unit over the images, nats, shape ``(D,)``."""
    kl = kl_per_dimension(torch.as_tensor(z_mean), torch.as_tensor(z_log_var))
    return kl.mean(0).numpy()




def default_transition_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """The report's five transitions as class ids, or consecutive classes for other datasets."""
    try:
        return [(resolve_class(a, class_names), resolve_class(b, class_names)) for a, b in REPORT_TRANSITIONS]
    except ConfigError:
        k = len(class_names)
        return [(i, i + 1) for i in range(min(k - 1, 5))]




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
    return np.linspace(0.0, 1.0, check_count("steps", steps, minimum=2))


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


#: Interpolation methods by name: the CLI's ``--method`` and the live explorer's choice.
PATHS = {"linear": lerp, "slerp": slerp}
METHODS = tuple(PATHS)


def interpolation_path(z_from: np.ndarray, z_to: np.ndarray, xs: np.ndarray, method: str = "linear") -> np.ndarray:
    """The latent points at weights ``xs`` from ``z_from`` to ``z_to`` by ``method`` (one of :data:`METHODS`).

    Raises
    ------
    ConfigError
        If ``method`` is not one of :data:`METHODS`.
    """
    check_method(method)
    return PATHS[method](z_from, z_to, xs)


def check_method(method: str) -> None:
    """Refuse an interpolation ``method`` that is not one of :data:`METHODS` (a one-line ConfigError)."""
    if method not in PATHS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}", param="method")


def interpolate(model: ModelLike, z_from: np.ndarray, z_to: np.ndarray, steps: int = 6, method: str = "linear",
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
    model = inference_for(model)
    check_method(method)
    xs = interpolation_weights(steps)
    check_allocation("steps", steps, image_bytes(model.image_shape))
    check_allocation("measure_frames", check_count("measure_frames", measure_frames, minimum=1),
                     image_bytes(model.image_shape))
    z = interpolation_path(z_from, z_to, xs, method)
    dense_xs = interpolation_weights(max(measure_frames, 2))
    measured = smoothness(decode(model, interpolation_path(z_from, z_to, dense_xs, method)), dense_xs)
    return Interpolation(xs, z, decode(model, z), method, measured, start, end)




@dataclass
class Morph:
    """Two images blended through the latent space."""

    inputs: np.ndarray  # (2, C, H, W) the images as fed to the model
    interpolation: Interpolation  # x = 0 is the first image's z_mean, x = 1 the second's
    merged: np.ndarray  # (C, H, W) decoding of the midpoint (x = 0.5): the two merged


def morph(model: ModelLike, image_a: np.ndarray, image_b: np.ndarray, steps: int = 7, method: str = "linear",
          labels: tuple[str, str] = ("A", "B")) -> Morph:
    """Encode two images ``(C, H, W)``, interpolate their z_mean and decode."""
    model = inference_for(model)
    pair = [as_float_images(np.asarray(image)).numpy() for image in (image_a, image_b)]
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


def traverse(model: ModelLike, reference: np.ndarray | None = None, dims: Sequence[int] | None = None, steps: int = 9,
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
    model = inference_for(model)
    dim = model.latent_dim
    reference = np.zeros(dim, np.float32) if reference is None else np.asarray(reference, np.float32)
    if reference.shape != (dim,):
        raise ConfigError(f"reference point has shape {reference.shape}, expected ({dim},)")
    steps = check_count("steps", steps, minimum=2)
    if dims is None:
        order = np.argsort(-np.asarray(kl), kind="stable") if kl is not None else np.arange(dim)
        dims = order[: check_count("dims", max_dims)]
    dims = np.asarray(dims, dtype=np.int64)
    check_count("dims", dims.size)
    check_allocation("steps", dims.size * steps, image_bytes(model.image_shape) + 4 * dim)
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


def class_arithmetic(model: ModelLike, images: np.ndarray, means: ClassMeans, from_class: str | int, to_class: str | int,
                     strength: float = 1.0, codes: LatentCodes | None = None, k: int = 5) -> Arithmetic:
    """Apply :func:`latent_arithmetic` with two class means to images ``(N, C, H, W)``.

    With ``codes`` (labelled latent means of real images), each result is
    re-encoded and classified by k-NN among them, to measure whether it
    became the target class.
    """
    model = inference_for(model)
    a, b = resolve_class(from_class, means.class_names), resolve_class(to_class, means.class_names)
    inputs = as_float_images(np.asarray(images)).numpy()
    z, _ = encode(model, inputs)
    z_result = latent_arithmetic(z, means.vector(a), means.vector(b), strength)
    results = decode(model, z_result)
    read_as = None
    if codes is not None:
        z_again, _ = encode(model, results)
        read_as = knn_predict(codes.z_mean, codes.labels, z_again, k)
    return Arithmetic(inputs, decode(model, z), results, z, z_result, means.class_names[a], means.class_names[b],
                      strength, read_as)
