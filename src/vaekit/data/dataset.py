"""The in-memory image dataset every loader returns."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from vaekit.data.classes import class_mask
from vaekit.errors import ConfigError, DataError

Index = Union[torch.Tensor, np.ndarray, Sequence[int], slice]


@dataclass(eq=False)  # eq on tensors is ambiguous; identity is what we want
class ImageDataset(Dataset):
    """A labelled image dataset held in memory.

    Also a map-style :class:`torch.utils.data.Dataset`: ``dataset[i]`` is
    ``(image, label)`` with the image as float32 ``(C, H, W)`` in [0, 1], so
    it can be handed to a :class:`~torch.utils.data.DataLoader`. The trainer
    does not go through it: it slices uint8 batches out of ``images``.

    Attributes
    ----------
    images : torch.Tensor
        uint8 tensor of shape (N, C, H, W), contiguous.
    labels : torch.Tensor
        int64 tensor of shape (N,), indices into ``class_names``.
    class_names : tuple of str
        Human-readable name of each class id.
    name : str
        Dataset name, e.g. ``"fashion-mnist"``.
    split : str
        ``"train"`` or ``"test"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str
    split: str

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r} ({self.split})"
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"{where}: images must be a uint8 (N, C, H, W) tensor, "
                f"got {self.images.dtype} of shape {tuple(self.images.shape)}"
            )
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"{where}: expected {len(self.images)} labels in a 1-D tensor, "
                f"got shape {tuple(self.labels.shape)}"
            )
        # Contiguous memory makes batch slicing and .to(device) cheap.
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64).contiguous()
        self.class_names = tuple(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` (negative counts from the end) as ``(image, label)``.

        Parameters
        ----------
        index : int
            Position of the sample.

        Returns
        -------
        image : torch.Tensor
            float32 ``(C, H, W)`` in [0, 1].
        label : torch.Tensor
            int64 scalar, an index into ``class_names``.

        Raises
        ------
        IndexError
            If ``index`` is outside ``-len(self) .. len(self) - 1``; this also
            ends iteration over the dataset.
        TypeError
            If ``index`` is not an integer (use :meth:`subset` for several).
        """
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"dataset index must be an integer, got {type(index).__name__}; "
                            "use subset() to select several samples") from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for dataset {self.name!r} ({self.split}) of {n} samples")
        return self.images[i].to(torch.float32).div_(255.0), self.labels[i]

    def __repr__(self) -> str:
        # The default dataclass repr would print tensor contents.
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, classes={len(self.class_names)})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of class names (not necessarily all present)."""
        return len(self.class_names)

    def subset(self, index: Index) -> ImageDataset:
        """Return a new dataset holding only the selected samples.

        Parameters
        ----------
        index : tensor, array, sequence of int, or slice
            Integer indices or a boolean mask over the samples.

        Returns
        -------
        ImageDataset
            Labels keep their original class ids. The images of a contiguous
            slice are a view of this dataset's (no copy, so a memory-mapped
            dataset stays on disk); any other selection copies them.

        Raises
        ------
        ConfigError
            If the selection is empty (a dataset must have images).
        """
        idx = _as_index(index)
        images = self.images[idx]
        if len(self) and not len(images):
            raise ConfigError(f"subset: the selection is empty; dataset {self.name!r} ({self.split}) "
                              "needs at least one image", param="subset")
        # A slice of a memory-mapped dataset stays a view: nothing is read until it is used,
        # so a hold-out split or train_limit of a dataset larger than memory costs no RAM.
        return ImageDataset(
            images=images if isinstance(idx, slice) and idx.step in (None, 1) else images.clone(),
            labels=self.labels[idx].clone(),
            class_names=self.class_names,
            name=self.name,
            split=self.split,
        )

    def exclude_classes(self, classes: Iterable[str | int] | str | int) -> ImageDataset:
        """Return a copy without the samples of the given classes.

        Parameters
        ----------
        classes : str, int, or iterable of them
            Class names (as in ``class_names``) or class ids to drop.

        Returns
        -------
        ImageDataset
            Remaining samples; labels are not renumbered, so class ids keep
            their meaning across filtered and unfiltered datasets.

        Raises
        ------
        ConfigError
            For an unknown class, or when every sample would be excluded.
        """
        try:
            drop = class_mask(self.labels, classes, self.class_names)
        except ConfigError as error:
            raise ConfigError(f"exclude_classes: {error}", param="exclude_classes") from None
        if len(self) and drop.all():
            raise ConfigError(f"exclude_classes: every class would be excluded; dataset {self.name!r} "
                              f"({self.split}) would have no image left", param="exclude_classes")
        return self.subset(torch.from_numpy(~drop))

    def to_float(self, index: Index | None = None) -> torch.Tensor:
        """Return images (all, or ``images[index]``) as float32 in [0, 1].

        Parameters
        ----------
        index : tensor, array, sequence of int, or slice, optional
            Samples to convert; all when omitted.

        Returns
        -------
        torch.Tensor
            float32 tensor of shape (B, C, H, W).
        """
        images = self.images if index is None else self.images[_as_index(index)]
        return images.to(torch.float32).div_(255.0)


def _as_index(index: Index) -> slice | torch.Tensor:
    if isinstance(index, slice):
        return index
    array = np.asarray(index)
    # An empty list is a float array to NumPy; as an index it selects nothing.
    return torch.as_tensor(array.astype(np.int64) if array.size == 0 and array.dtype != bool else array)
