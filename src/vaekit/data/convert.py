"""Any torch ``Dataset`` of images as an :class:`~vaekit.data.ImageDataset`."""

from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.data.dataset import ImageDataset
from vaekit.errors import DataError


def as_image_dataset(dataset: Any, name: str = "custom", split: str = "train",
                     class_names: Sequence[str] | None = None) -> ImageDataset:
    """Read a dataset of images once into the uint8 form training slices batches from.

    Parameters
    ----------
    dataset
        An :class:`ImageDataset` (returned as it is) or any sized, indexable
        dataset (a ``torch.utils.data.Dataset``) whose items are images
        ``(C, H, W)`` (float in [0, 1] or uint8; tensors or arrays) or
        ``(image, label)`` pairs.
    name, split
        What to call it in the run's records.
    class_names
        Names of the integer labels; default ``"0"``, ``"1"``, ...

    Raises
    ------
    DataError
        If the dataset is empty, an item is not an image ``(C, H, W)`` of the
        first item's shape, a float image has values outside [0, 1] (images in
        0..255 must be uint8), or a label is not an integer naming one of
        ``class_names``.
    """
    if isinstance(dataset, ImageDataset):
        return dataset
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"dataset {name!r}: needs a length (a map-style torch Dataset)") from None
    if n == 0:
        raise DataError(f"dataset {name!r} holds no images")
    # Read once, item by item: a custom dataset has no faster path. Training
    # then slices uint8 batches from the result, with no per-sample Python.
    where = f"dataset {name!r} ({split})"
    first_image, _ = _split_item(dataset[0], f"{where}: item 0")
    if first_image.dim() != 3:
        raise DataError(f"{where}: items must be images (C, H, W), got shape {tuple(first_image.shape)}")
    images = torch.empty((n, *first_image.shape), dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        image, label = _split_item(dataset[i], f"{where}: item {i}")
        if image.shape != first_image.shape:
            raise DataError(f"{where}: item {i} has shape {tuple(image.shape)}, item 0 {tuple(first_image.shape)}")
        images[i] = _to_uint8(image, f"{where}: item {i}")
        labels[i] = label
    names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(int(labels.max()) + 1))
    outside = (labels < 0) | (labels >= len(names))
    if bool(outside.any()):
        i = int(outside.nonzero()[0])
        raise DataError(f"{where}: item {i} has label {int(labels[i])}; the labels name {len(names)} classes "
                        f"(0 to {len(names) - 1}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    return ImageDataset(images, labels, names, name=name, split=split)


def _split_item(item: Any, where: str) -> tuple[torch.Tensor, int]:
    image, label = (item[0], item[1] if len(item) > 1 else 0) if isinstance(item, (tuple, list)) else (item, 0)
    try:
        value = label.item() if isinstance(label, (torch.Tensor, np.ndarray, np.generic)) else label
        label = int(value) if isinstance(value, float) and value.is_integer() else operator.index(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: the label must be an integer class index, got {label!r}"[:200]) from None
    return torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image), label


def _to_uint8(image: torch.Tensor, where: str) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    values = image.float()
    # A hair outside [0, 1] is rounding (e.g. of a normalisation); 0..255 floats are a mistake.
    if not bool(torch.isfinite(values).all()) or float(values.min()) < -1e-4 or float(values.max()) > 1 + 1e-4:
        raise DataError(f"{where}: float pixels must lie in [0, 1], got {float(values.min()):g} to "
                        f"{float(values.max()):g} (give images in 0..255 as uint8)")
    return (values.clamp(0, 1) * 255.0).round().to(torch.uint8)
