"""Any torch ``Dataset`` of images as an :class:`~vaekit.data.ImageDataset`."""

from __future__ import annotations

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
        If the dataset is empty, or an item is not an image of the first item's shape.
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
    first_image, _ = _split_item(dataset[0])
    images = torch.empty((n, *first_image.shape), dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        image, label = _split_item(dataset[i])
        if image.shape != first_image.shape:
            raise DataError(f"dataset {name!r}: item {i} has shape {tuple(image.shape)}, item 0 "
                            f"{tuple(first_image.shape)}")
        images[i] = _to_uint8(image)
        labels[i] = label
    if images.dim() != 4:
        raise DataError(f"dataset {name!r}: items must be images (C, H, W), got shape {tuple(first_image.shape)}")
    names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(int(labels.max()) + 1))
    return ImageDataset(images, labels, names, name=name, split=split)


def _split_item(item: Any) -> tuple[torch.Tensor, int]:
    if isinstance(item, (tuple, list)):
        image, label = item[0], int(item[1]) if len(item) > 1 else 0
    else:
        image, label = item, 0
    return torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image), label


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    return (image.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
