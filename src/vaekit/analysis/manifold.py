"""Decoded images over a latent plane, and which of them are "holes"."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import torch

from vaekit.analysis.inference import ModelLike, inference_for
from vaekit.analysis.latent import decode
from vaekit.analysis.limits import check_allocation, check_count, image_bytes
from vaekit.analysis.separation import principal_plane
from vaekit.errors import ConfigError

# ----------------------------------------------------------------------------
# Manifold and holes


def prior_quantiles(n: int) -> np.ndarray:
    """``n`` points of N(0, 1) at the midpoints of ``n`` equal-probability bins.

    For ``n = 20`` they run from -1.96 to 1.96 (the 2.5% and 97.5% quantiles),
    so a grid of them covers where the prior puts its mass, evenly in
    probability rather than in distance.
    """
    n = check_count("grid", n)
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


def manifold(model: ModelLike, n: int = 20, z_data: np.ndarray | None = None) -> Manifold:
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
    model = inference_for(model)
    n = check_count("grid", n)
    check_allocation("grid", n * n, image_bytes(model.image_shape))
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
