"""Guards shared by every analysis entry point: sizes nobody should allocate, and non-finite results.

Two families of bad input end in one clear line instead of an out-of-memory
crash or a figure full of NaN:

* **sizes**: :func:`check_count` refuses a count above its maximum and
  :func:`check_allocation` refuses a request whose arithmetic (items x bytes
  per item) exceeds :data:`MAX_BYTES`, both *before* anything is allocated;
  the maxima live here, in one place (:data:`LIMITS`);
* **non-finite numbers**: :func:`check_finite` (NumPy values, results) and
  :func:`check_finite_tensor` (model outputs, used by
  :class:`~vaekit.analysis.inference.Inference` on everything it returns)
  raise :class:`NonFiniteResultError` saying the weights may have diverged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vaekit.errors import ConfigError, RunDirError

#: Bytes one request may allocate (the figure a count x its item size is held to).
MAX_BYTES = 4 * 2**30

#: The largest value each count-like option may take.
LIMITS: dict[str, int] = {
    "grid": 1000,  # manifold: grid x grid decoded images
    "steps": 10_000,  # interpolation, morph and traversal frames
    "dims": 10_000,  # traversal rows
    "n": 100_000,  # sampled / reconstructed / edited images
    "iw_samples": 1_000_000,  # IWAE K per image
    "iw_decodes": 10**10,  # IWAE K x images: decoder passes of one evaluation
    "probe": 10_000_000,  # images in a probe (collapse diagnosis, reference images, embeddings)
    "tsne": 100_000,  # points of a t-SNE map (quadratic cost)
    "strengths": 1_000,  # attribute-edit strengths
    "measure_frames": 100_000,
    "figure_images": 10_000,  # images drawn into one figure
}


class NonFiniteResultError(RunDirError):
    """An evaluation produced NaN or infinite numbers (usually diverged weights)."""


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or value != value \
            or value in (math.inf, -math.inf) or int(value) != value:
        raise ConfigError(f"{name} must be an integer, got {value!r}", param=name)
    return int(value)


def check_count(name: str, value: Any, maximum: int | None = None, minimum: int = 1) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (default maximum: ``LIMITS[name]``), else :class:`ConfigError`."""
    number = _integer(name, value)
    maximum = LIMITS[name] if maximum is None else maximum
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}", param=name)
    if number > maximum:
        raise ConfigError(f"{name} must be at most {maximum:,}, got {number:,}", param=name)
    return number


def check_allocation(name: str, n_items: int, bytes_per_item: int, budget: int = MAX_BYTES) -> None:
    """Refuse ``n_items`` of ``bytes_per_item`` bytes each when the product exceeds ``budget`` (no allocation)."""
    total = int(n_items) * int(bytes_per_item)
    if total > budget:
        raise ConfigError(f"{name}: {int(n_items):,} items of {_size(bytes_per_item)} would need {_size(total)}, "
                          f"more than the {_size(budget)} limit; ask for fewer", param=name)


def image_bytes(image_shape: tuple[int, ...]) -> int:
    """Bytes of one float32 image of ``image_shape``."""
    return 4 * math.prod(int(s) for s in image_shape)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


DIVERGED_HINT = "the model's weights may have diverged"


def check_finite(values: dict[str, Any], where: str) -> None:
    """Raise :class:`NonFiniteResultError` naming the first NaN or infinite number in ``values``.

    Strings, dicts and ``None`` are skipped; numbers, lists, arrays and tensors are checked.
    """
    for name, value in values.items():
        if value is None or isinstance(value, (str, dict)):
            continue
        if isinstance(value, torch.Tensor):
            check_finite_tensor(value, f"{where}: {name}")
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            continue
        bad = ~np.isfinite(array.astype(np.float64))
        if bad.any():
            raise NonFiniteResultError(f"{where}: {name} is not finite ({int(bad.sum())} of {array.size} values "
                                       f"are NaN or infinite); {DIVERGED_HINT}")


def check_finite_tensor(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """``tensor`` unchanged, or :class:`NonFiniteResultError` when it holds NaN or infinity."""
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteResultError(f"{what} is not finite ({bad} of {tensor.numel()} values are NaN or infinite); "
                                   f"{DIVERGED_HINT}")
    return tensor
