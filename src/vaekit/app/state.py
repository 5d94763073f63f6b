"""What the live explorer computes: the plane of the scatter, the sliders' units, decoding and encoding.

:class:`LiveState` wraps an :class:`~vaekit.analysis.explorer.Explorer`
(a run and the first images of its test split, encoded once) and answers the
web app's questions without knowing anything about HTTP:

* the **plane**: the latent means themselves when the latent space has at
  most 2 dimensions, else their PCA plane (NumPy SVD of the centred means). A
  point ``(x, y)`` of the plane is the latent vector
  ``origin + x * axis_1 + y * axis_2``, ``origin`` being the mean of the codes
  on a PCA plane and zero when the plane is the latent space itself;
* the **units** under the sliders: the latent units with the highest mean
  KL over the images (:func:`~vaekit.analysis.latent.mean_kl_per_dimension`),
  at most :data:`MAX_SLIDERS`. A slider adds an offset to its unit;
* decoding any latent vector to a PNG with the run's decoder, interpolating
  between two vectors (:func:`~vaekit.analysis.latent.interpolation_path`, linear or
  slerp, as ``vaekit interpolate``), and encoding an uploaded image.

Every forward pass goes through the explorer's :class:`~vaekit.analysis.inference.Inference`
under one lock, so concurrent requests never share the model at once.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from vaekit.analysis.explorer import Explorer
from vaekit.analysis.latent import (
    METHODS,
    interpolation_path,
    interpolation_weights,
    mean_kl_per_dimension,
)
from vaekit.data.classes import resolve_class
from vaekit.data.images import load_image
from vaekit.errors import ConfigError, DataError

#: Sliders shown: the top ``min(d, MAX_SLIDERS)`` units by mean KL.
MAX_SLIDERS = 8
#: A slider moves its unit by at most this much (the prior's standard deviation is 1).
SLIDER_SPAN = 3.0
#: Frames in an interpolation strip: default and largest.
DEFAULT_STEPS, MAX_STEPS = 8, 32
#: Interpolation methods, as the page names them.
#: Largest uploaded image accepted, bytes.
MAX_UPLOAD_BYTES = 20 * 2**20


def png_bytes(image: np.ndarray) -> bytes:
    """A ``(C, H, W)`` float image in [0, 1] (C 1 or 3) as PNG bytes."""
    array = np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """PNG bytes as a ``data:`` URL for an ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class Plane:
    """The 2-D view of the latent space: ``z = origin + coords @ axes``."""

    origin: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D), orthonormal rows (the second is zero when D = 1)
    pca: bool  # whether the axes are principal components (else the latent axes themselves)
    explained: tuple[float, float]  # fraction of the codes' variance along each axis

    @classmethod
    def of(cls, z: np.ndarray) -> Plane:
        """The plane of codes ``z`` ``(N, D)``: the latent axes for D <= 2, else the first two principal axes."""
        n, d = z.shape
        z = z.astype(np.float64)
        total = float(((z - z.mean(0)) ** 2).sum()) or 1.0
        if d <= 2:
            axes = np.eye(2, d)
            spread = ((z - z.mean(0)) ** 2).sum(0) / total
            explained = (float(spread[0]), float(spread[1]) if d == 2 else 0.0)
            return cls(np.zeros(d), axes, False, explained)
        origin = z.mean(0)
        _, singular, vt = np.linalg.svd(z - origin, full_matrices=False)
        axes = vt[:2]
        # A deterministic sign: the largest loading of each axis is positive.
        signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])
        axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
        explained = tuple(float(s ** 2 / total) for s in singular[:2])
        return cls(origin, axes, True, (explained + (0.0, 0.0))[:2])

    def project(self, z: np.ndarray) -> np.ndarray:
        """Plane coordinates ``(..., 2)`` of latent vectors ``(..., D)``."""
        return (np.asarray(z, np.float64) - self.origin) @ self.axes.T

    def latent(self, xy: Sequence[float]) -> np.ndarray:
        """The latent vector ``(D,)`` at plane point ``xy``."""
        return self.origin + np.asarray(xy, np.float64) @ self.axes


class LiveState:
    """Everything the live explorer serves for one run (computed once, decoded on request).

    Parameters
    ----------
    explorer
        The run and its (limited) test split; its codes are encoded here if
        they were not yet.
    """

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.model = explorer.model
        self.codes = explorer.codes
        if len(self.codes) < 2:
            raise DataError(f"{explorer.run_dir}: the live explorer needs at least 2 test images, "
                            f"got {len(self.codes)}")
        self.plane = Plane.of(self.codes.z_mean)
        self.kl = mean_kl_per_dimension(self.codes.z_mean, self.codes.z_log_var).astype(np.float64)
        self.units = [int(j) for j in np.argsort(-self.kl, kind="stable")[:min(self.latent_dim, MAX_SLIDERS)]]
        self._lock = threading.Lock()

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.codes.class_names)

    @cached_property
    def class_means(self) -> np.ndarray:
        """``(K, D)`` mean z_mean of each class (NaN rows for classes without images)."""
        return self.explorer.class_means().vectors.astype(np.float64)

    @cached_property
    def coords(self) -> np.ndarray:
        """Plane coordinates of every code, ``(N, 2)``."""
        return self.plane.project(self.codes.z_mean)

    # ------------------------------------------------------------------ what the page shows

    def info(self) -> dict[str, Any]:
        """The run, the plane, the classes (with their means on the plane) and the sliders' units."""
        run = self.explorer.run
        means_xy = self.plane.project(self.class_means)
        return {
            "run": run.path.name or str(run.path),
            "dataset": self.explorer.dataset_name,
            "split": self.codes.split,
            "count": len(self.codes),
            "latent_dim": self.latent_dim,
            "image_shape": list(self.model.image_shape),
            "plane": {"pca": self.plane.pca, "explained": list(self.plane.explained),
                      "labels": ["PC 1", "PC 2"] if self.plane.pca else
                      ["z[0]", "z[1]" if self.latent_dim > 1 else "(none)"]},
            "classes": [{"name": name, "mean": None if not np.all(np.isfinite(xy)) else [float(v) for v in xy]}
                        for name, xy in zip(self.class_names, means_xy)],
            "units": [{"unit": j, "kl": float(self.kl[j])} for j in self.units],
            "slider_span": SLIDER_SPAN,
            "methods": list(METHODS),
            "max_steps": MAX_STEPS,
        }

    def points(self) -> dict[str, Any]:
        """The scatter: plane coordinates (rounded) and class ids of every code."""
        xy = np.round(self.coords, 4)
        return {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "labels": self.codes.labels.tolist()}

    # ------------------------------------------------------------------ latent vectors

    def latent(self, x: float, y: float, offsets: Mapping[int, float] | None = None) -> np.ndarray:
        """The latent vector at plane point ``(x, y)`` with slider ``offsets`` (unit -> value) added."""
        for name, value in (("x", x), ("y", y)):
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}", param=name)
        z = self.plane.latent((x, y))
        for unit, value in (offsets or {}).items():
            if not 0 <= unit < self.latent_dim:
                raise ConfigError(f"offset unit {unit} is out of range (the latent space has {self.latent_dim} "
                                  f"units, 0..{self.latent_dim - 1})", param="offset")
            if not math.isfinite(value) or abs(value) > 10 * SLIDER_SPAN:
                raise ConfigError(f"offset of unit {unit} must be a number within +-{10 * SLIDER_SPAN:g}, "
                                  f"got {value}", param="offset")
            z[unit] += value
        return z

    def class_mean(self, name: str | int) -> np.ndarray:
        """The mean latent vector of a class, by name or id."""
        index = resolve_class(name, self.class_names)
        vector = self.class_means[index]
        if not np.all(np.isfinite(vector)):
            raise DataError(f"class {self.class_names[index]!r} has no images among the {len(self.codes):,} "
                            f"explored")
        return vector.copy()

    # ------------------------------------------------------------------ the model

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Images ``(N, C, H, W)`` in [0, 1] of latent vectors ``(N, D)`` or ``(D,)``."""
        with self._lock:
            return self.model.decode(np.atleast_2d(np.asarray(z, np.float32))).numpy()

    def decode_png(self, z: np.ndarray) -> bytes:
        """The image of one latent vector as PNG bytes, at the model's image size."""
        return png_bytes(self.decode(z)[0])

    def interpolate(self, z_from: np.ndarray, z_to: np.ndarray, steps: int = DEFAULT_STEPS,
                    method: str = "linear") -> dict[str, Any]:
        """Decode ``steps`` frames from ``z_from`` to ``z_to``: data URLs, weights and plane positions."""
        if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= MAX_STEPS:
            raise ConfigError(f"steps must be an integer from 2 to {MAX_STEPS}, got {steps!r}", param="steps")
        xs = interpolation_weights(steps)
        path = interpolation_path(z_from, z_to, xs, method)
        images = self.decode(path)
        xy = self.plane.project(path)
        return {"method": method, "x": xs.tolist(), "images": [data_url(png_bytes(im)) for im in images],
                "path": [[float(a), float(b)] for a, b in xy]}

    def encode_upload(self, data: bytes, invert: bool = False, name: str = "uploaded image") -> dict[str, Any]:
        """Encode an uploaded image file: where its z_mean lands on the plane, and its reconstruction."""
        if not data:
            raise DataError(f"{name}: empty upload (send the image file's bytes)")
        if len(data) > MAX_UPLOAD_BYTES:
            raise DataError(f"{name}: {len(data):,} bytes, more than the {MAX_UPLOAD_BYTES // 2**20} MiB accepted")
        stream = io.BytesIO(data)
        stream.name = name
        image = load_image(stream, self.model.image_shape, fit="pad", invert=invert)
        with self._lock:
            z_mean, _ = self.model.encode(image[None])
        z = z_mean[0].numpy().astype(np.float64)
        x, y = (float(v) for v in self.plane.project(z))
        return {"x": x, "y": y, "input": data_url(png_bytes(image)),
                "reconstruction": data_url(self.decode_png(z)),
                "offsets": {str(j): float(z[j] - self.plane.latent((x, y))[j]) for j in self.units}}
