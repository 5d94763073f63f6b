"""The in-memory image dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
import torch

from vaekit.errors import ConfigError, DataError

Index = Union[torch.Tensor, np.ndarray, Sequence[int], slice]


@dataclass(eq=False)  # eq on tensors is ambiguous; identity is what we want
class ImageDataset:
    """A labelled image dataset held in memory.

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
            A copy; labels keep their original class ids.
        """
        idx = _as_index(index)
        return ImageDataset(
            images=self.images[idx].clone(),
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
        """
        if isinstance(classes, (str, int)):
            classes = [classes]
        ids = [self._class_id(c) for c in classes]
        keep = ~torch.isin(self.labels, torch.tensor(ids, dtype=torch.int64))
        return self.subset(keep)

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

    def _class_id(self, cls: str | int) -> int:
        # bool is an int subclass; reject it so True does not mean class 1.
        if isinstance(cls, int) and not isinstance(cls, bool):
            if 0 <= cls < len(self.class_names):
                return cls
            raise ConfigError(
                f"class id {cls} is out of range for dataset {self.name!r} "
                f"(0..{len(self.class_names) - 1})"
            )
        if isinstance(cls, str):
            # Case, spaces and punctuation do not matter: "bag", "Bag", "ankle-boot".
            wanted = _class_key(cls)
            for class_id, name in enumerate(self.class_names):
                if _class_key(name) == wanted:
                    return class_id
        raise ConfigError(
            f"unknown class {cls!r} for dataset {self.name!r}; choose from: "
            + ", ".join(self.class_names)
        )


def _class_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _as_index(index: Index) -> slice | torch.Tensor:
    return index if isinstance(index, slice) else torch.as_tensor(np.asarray(index))
