"""A tiny procedural dataset of shapes, for experiments and fast tests."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from vaekit.data.dataset import ImageDataset
from vaekit.data.files import MAX_IMAGE_BYTES, check_bytes
from vaekit.data.registry import register_dataset
from vaekit.errors import ConfigError

SHAPES_CLASSES: tuple[str, ...] = (
    "square",
    "circle",
    "triangle",
    "horizontal bar",
    "vertical bar",
    "cross",
)

_SPLITS = ("train", "test")

_SHAPES_CHUNK = 2048  # images of 28x28 per vectorised block; bounds temporary memory
_SHAPES_CHUNK_PIXELS = _SHAPES_CHUNK * 28 * 28  # larger images: fewer per block


def make_shapes(
    n: int = 1200,
    image_size: int = 28,
    channels: int = 1,
    seed: int = 0,
    split: str = "train",
) -> ImageDataset:
    """Generate a small labelled dataset of simple shapes.

    Six classes (:data:`SHAPES_CLASSES`) drawn at random positions, sizes
    and intensities on a black background. Classes are balanced (counts
    differ by at most one) and the result is fully determined by
    ``(seed, split)``; train and test use different random streams.

    Parameters
    ----------
    n : int, default 1200
        Number of images.
    image_size : int, default 28
        Height and width in pixels (at least 8).
    channels : int, default 1
        Number of channels; with several, each shape gets a random colour.
    seed : int, default 0
        Non-negative random seed.
    split : {"train", "test"}
        Split; selects an independent random stream.

    Returns
    -------
    ImageDataset
        uint8 images of shape (n, channels, image_size, image_size).
    """
    _check_shapes_options(n, image_size, channels, seed, split)
    rng = np.random.default_rng([seed, _SPLITS.index(split)])
    k = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(n) % k)
    radius = rng.uniform(0.18, 0.32, n) * image_size
    # Keep each shape fully inside the image.
    span = image_size - 1 - 2 * radius
    cx = radius + rng.uniform(0, 1, n) * span
    cy = radius + rng.uniform(0, 1, n) * span
    colour = rng.uniform(0.5, 1.0, (n, channels))
    images = np.empty((n, channels, image_size, image_size), dtype=np.uint8)
    chunk = max(1, _SHAPES_CHUNK_PIXELS // (image_size * image_size))
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        mask = _shape_masks(labels[part], cx[part], cy[part], radius[part], image_size)
        pixels = mask[:, None] * colour[part, :, None, None] * 255.0
        images[part] = np.rint(pixels).astype(np.uint8)
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=SHAPES_CLASSES,
        name="shapes",
        split=split,
    )


def _check_shapes_options(n: int, image_size: int, channels: int, seed: int, split: str) -> None:
    if n < 1:
        raise ConfigError(f"shapes: n must be at least 1, got {n}")
    if image_size < 8:
        raise ConfigError(f"shapes: image_size must be at least 8, got {image_size}")
    if channels < 1:
        raise ConfigError(f"shapes: channels must be at least 1, got {channels}")
    if seed < 0:
        raise ConfigError(f"shapes: seed must be non-negative, got {seed}")
    if split not in _SPLITS:
        raise ConfigError(f"unknown split {split!r} for shapes; choose one of: train, test")
    # From the arithmetic, before anything is allocated: one image, then all n.
    check_bytes((channels, image_size, image_size), f"one {image_size}x{image_size} shapes image",
                param="image_size", limit=MAX_IMAGE_BYTES)
    check_bytes((n, channels, image_size, image_size),
                f"{n} shapes images of {channels}x{image_size}x{image_size}", param="n")


def _shape_masks(
    labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int
) -> np.ndarray:
    """Boolean masks (B, size, size), one shape per image, by class."""
    grid = np.arange(size, dtype=np.float32)
    dx = grid[None, None, :] - cx[:, None, None].astype(np.float32)
    dy = grid[None, :, None] - cy[:, None, None].astype(np.float32)
    r = r[:, None, None].astype(np.float32)
    thick = np.maximum(r / 3, 1.0)  # bar half-thickness, never thinner than ~2 px
    ax, ay = np.abs(dx), np.abs(dy)
    in_box = (ax <= r) & (ay <= r)
    hbar = (ay <= thick) & (ax <= r)
    vbar = (ax <= thick) & (ay <= r)
    masks = (
        in_box,  # square
        dx**2 + dy**2 <= r**2,  # circle
        (dy <= r) & (ax <= (dy + r) / 2),  # triangle, apex up
        hbar,
        vbar,
        hbar | vbar,  # cross
    )
    # np.choose picks, per image, the mask of that image's class.
    return np.choose(labels[:, None, None], masks)



def _shapes_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,  # generated, nothing on disk
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    return make_shapes(split=split, **kwargs)



register_dataset("shapes", _shapes_loader)
