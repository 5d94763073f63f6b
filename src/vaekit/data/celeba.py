"""CelebA: aligned celebrity faces with 40 binary attributes, as 128x128 RGB.

The official "Align&Cropped" layout is read as distributed (also inside a
``celeba/`` subfolder, as torchvision stores it)::

    DIR/img_align_celeba/000001.jpg ...   178x218 JPEGs
    DIR/list_eval_partition.txt           image -> 0 train, 1 val, 2 test
    DIR/list_attr_celeba.txt              image -> 40 attributes (+1 / -1)
    DIR/identity_CelebA.txt               image -> person id (optional)

A partial copy works: the images listed in the annotation files but absent
from ``img_align_celeba/`` are reported once and left out, and when a copy
has no test-split images ``"test"`` falls back to the val split (said once).

Preprocessing: a centred 148x148 crop of the 178x218 image (the face; the
crop of the DCGAN and PyTorch-VAE CelebA pipelines) resized to 128x128 with
Pillow's LANCZOS filter. Decoding JPEGs every epoch is too slow, so the first
load decodes all images once, in parallel, into a uint8 memory-mapped cache
(:func:`vaekit.data.cache.cached_images`, rebuilt when the files or the
transform change); datasets are zero-copy slices of it. The full CelebA
(202,599 images) takes 49,152 bytes per image, 9.96 GB; see
``docs/celeba.md`` for timings.

CelebA's terms allow non-commercial research use only and forbid
redistribution: never commit its images or figures made from them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.data.cache import cached_images
from vaekit.data.celeba_annotations import (
    CELEBA_URL,
    read_attributes,
    read_identities,
    read_partition,
)
from vaekit.data.classes import resolve_class
from vaekit.data.fashion_mnist import user_cache_dir
from vaekit.data.files import existing_dir
from vaekit.data.folder import FileImageDataset
from vaekit.data.images import ImageTransform, report_once
from vaekit.data.registry import register_dataset
from vaekit.errors import ConfigError, DataError

__all__ = [
    "CELEBA_ATTRIBUTES",
    "CELEBA_CROP",
    "CELEBA_FILES",
    "CELEBA_IMAGE_DIR",
    "CELEBA_URL",
    "CelebADataset",
    "celeba_transform",
    "find_celeba",
    "load_celeba",
    "read_attributes",
    "read_identities",
    "read_partition",
]

CELEBA_IMAGE_DIR = "img_align_celeba"
#: annotation kind -> official file name
CELEBA_FILES: dict[str, str] = {
    "partition": "list_eval_partition.txt",
    "attributes": "list_attr_celeba.txt",
    "identity": "identity_CelebA.txt",
}
#: Side of the centred square face crop taken from the 178x218 aligned images.
CELEBA_CROP = 148
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

_NAME = "celeba"
#: split name -> partition code in list_eval_partition.txt
_PARTITIONS = {"train": 0, "val": 1, "test": 2}
_SPLIT_ALIASES = {"valid": "val", "validation": "val"}
_SPLITS = ("train", "val", "test", "all")


# ---------------------------------------------------------------------------
# The dataset object
# ---------------------------------------------------------------------------


@dataclass(eq=False, repr=False)  # keep the base class's identity equality
class CelebADataset(FileImageDataset):
    """A :class:`~vaekit.data.folder.FileImageDataset` that also carries CelebA's annotations.

    Labels are all 0 (one class, ``"face"``): CelebA has no classes.
    ``filenames`` holds each image's file, e.g. ``"000002.jpg"``.

    Attributes
    ----------
    attributes : torch.Tensor
        int8 ``(N, 40)``: 1 where the image has the attribute, 0 where not
        (the file's +1 / -1).
    attribute_names : tuple of str
        The 40 names, in column order.
    identities : torch.Tensor
        int64 ``(N,)`` CelebA person ids, -1 when ``identity_CelebA.txt`` is
        absent.
    """

    attributes: torch.Tensor | None = None
    attribute_names: tuple[str, ...] = ()
    identities: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self)
        if self.attributes is None:
            self.attributes = torch.zeros(n, len(self.attribute_names), dtype=torch.int8)
        if self.identities is None:
            self.identities = torch.full((n,), -1, dtype=torch.int64)
        self.attribute_names = tuple(self.attribute_names)
        where = f"dataset {self.name!r} ({self.split})"
        if tuple(self.attributes.shape) != (n, len(self.attribute_names)):
            raise DataError(f"{where}: attributes must have shape {(n, len(self.attribute_names))}, "
                            f"got {tuple(self.attributes.shape)}")
        if len(self.identities) != n:
            raise DataError(f"{where}: expected {n} identities, got {len(self.identities)}")

    def __repr__(self) -> str:
        return (
            f"CelebADataset(split={self.split!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"attributes={len(self.attribute_names)})"
        )

    def _per_image(self, picked: torch.Tensor) -> dict[str, Any]:
        return {
            **super()._per_image(picked),
            "attributes": self.attributes[picked].clone(),
            "attribute_names": self.attribute_names,
            "identities": self.identities[picked].clone(),
        }

    def attribute(self, name: str) -> torch.Tensor:
        """Boolean ``(N,)`` mask of the images that have attribute ``name``.

        ``name`` is matched by :func:`~vaekit.data.classes.resolve_class`:
        ``"Smiling"``, ``"smiling"`` and ``"wearing hat"`` all work.
        """
        return self.attributes[:, attribute_index(self.attribute_names, name)].bool()


def attribute_index(names: Sequence[str], name: str) -> int:
    """Column of attribute ``name`` in ``names``: :func:`~vaekit.data.classes.resolve_class` with ``what="attribute"``.

    Raises
    ------
    ConfigError
        One line listing the valid names.
    """
    return resolve_class(name, names, what="attribute")


@dataclass(frozen=True)
class _Index:
    """Usable images in cache order (partition, then name), with their annotations."""

    filenames: list[str]
    partition: np.ndarray  # int8 (N,)
    attributes: np.ndarray  # int8 (N, 40)
    attribute_names: tuple[str, ...]
    identities: np.ndarray  # int64 (N,), -1 unknown


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
        return (str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return (str(path), -1, 0)


def _read_index(root: Path) -> _Index:
    files = tuple(_stamp(root / name) for name in CELEBA_FILES.values())
    return _read_index_cached(root, files)


@functools.lru_cache(maxsize=2)
def _read_index_cached(root: Path, stamps: tuple[tuple[str, int, int], ...]) -> _Index:
    """Join the annotation files (cached per process: train and test loads parse once)."""
    partition = read_partition(root / CELEBA_FILES["partition"])
    names, attribute_names, values = read_attributes(root / CELEBA_FILES["attributes"])
    identity_path = root / CELEBA_FILES["identity"]
    identities = read_identities(identity_path) if identity_path.is_file() else {}
    if not identity_path.is_file():
        report_once(f"celeba: {identity_path} not found; identities are unknown (-1)")
    row_of = {name: i for i, name in enumerate(names)}
    listed = sorted(partition, key=lambda name: (partition[name], name))
    missing = [name for name in listed if name not in row_of]
    if missing:
        report_once(f"celeba: {len(missing)} images of {CELEBA_FILES['partition']} have no row in "
                    f"{CELEBA_FILES['attributes']} (e.g. {missing[0]}); skipped")
        listed = [name for name in listed if name in row_of]
    rows = np.fromiter((row_of[name] for name in listed), dtype=np.int64, count=len(listed))
    return _Index(
        filenames=listed,
        partition=np.fromiter((partition[name] for name in listed), dtype=np.int8, count=len(listed)),
        attributes=values[rows],
        attribute_names=attribute_names,
        identities=np.fromiter((identities.get(name, -1) for name in listed), dtype=np.int64, count=len(listed)),
    )


# ---------------------------------------------------------------------------
# Finding and loading
# ---------------------------------------------------------------------------


def _candidates(directory: Path) -> tuple[Path, ...]:
    return (directory, directory / "celeba", directory / "CelebA")


def _looks_like_celeba(directory: Path) -> bool:
    return (directory / CELEBA_IMAGE_DIR).is_dir() or (directory / CELEBA_FILES["partition"]).is_file()


def find_celeba(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Locate a CelebA folder (it is never downloaded: its terms need consent).

    Looks in ``data_dir`` (and its ``celeba/`` or ``CelebA/`` subfolder), else
    in ``$VAEKIT_DATA_DIR`` (same subfolders), else in
    ``~/.cache/vaekit/celeba`` (honouring ``$XDG_CACHE_HOME``).

    Returns
    -------
    Path
        The folder holding ``img_align_celeba/`` and the annotation files.

    Raises
    ------
    DataError
        If no candidate looks like CelebA; names where it looked.
    """
    if data_dir is not None:
        directory = existing_dir(os.path.expanduser(os.fsdecode(data_dir)), "data directory")
        searched: tuple[Path, ...] = _candidates(directory)
    else:
        env = os.environ.get("VAEKIT_DATA_DIR", "")
        searched = (*(_candidates(Path(os.path.expanduser(env))) if env else ()), user_cache_dir().parent / _NAME)
    for candidate in searched:
        if _looks_like_celeba(candidate):
            return candidate
    where = ", ".join(str(p) for p in searched)
    raise DataError(
        f"CelebA not found (no {CELEBA_IMAGE_DIR}/ or {CELEBA_FILES['partition']} in {where}); "
        f"download the Align&Cropped images and annotations from {CELEBA_URL} (research use only) "
        "and pass --data-dir DIR or set VAEKIT_DATA_DIR"
    )


def celeba_transform(image_size: int = 128, crop: int = CELEBA_CROP, filter: str = "lanczos") -> ImageTransform:
    """The CelebA preprocessing: centred ``crop`` square, resized to ``image_size``, RGB."""
    return ImageTransform(size=(image_size, image_size), channels=3, crop=crop, filter=filter)


def load_celeba(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 128,
    crop: int = CELEBA_CROP,
    filter: str = "lanczos",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CelebADataset:
    """Load one split of CelebA (or of a partial copy) as 128x128 RGB faces.

    Parameters
    ----------
    split
        ``"train"``, ``"val"``, ``"test"`` or ``"all"``. A copy without
        test-split images serves the val split for ``"test"`` (said once).
    data_dir
        The CelebA folder (see :func:`find_celeba`).
    image_size, crop, filter
        Output side, centred crop side in source pixels, resampling filter.
    cache_dir, workers, progress
        Cache location, decoding threads, progress bar
        (see :func:`vaekit.data.cache.cached_images`).

    Returns
    -------
    CelebADataset
        uint8 images ``(N, 3, image_size, image_size)`` memory-mapped from the
        cache (no copy), labels 0, the 40 attributes, identities and file
        names, in file-name order.

    Raises
    ------
    DataError
        For a missing folder, annotation file or image folder, a malformed
        annotation file, or no usable image. Single unusable images (absent,
        corrupt, too small) are reported once and left out.
    ConfigError
        For an unknown split.
    """
    split = _SPLIT_ALIASES.get(split, split)
    if split not in _SPLITS:
        raise ConfigError(f"unknown split {split!r} for celeba; choose one of: train, val, test, all")
    transform = celeba_transform(image_size, crop, filter)  # validates the options before any work
    root = find_celeba(data_dir)
    index = _present(root, _read_index(root))
    cached = cached_images(root, [f"{CELEBA_IMAGE_DIR}/{name}" for name in index.filenames], transform, kind=_NAME,
                           cache_dir=cache_dir, workers=workers, progress=progress, size_param="image_size")
    kept = cached.kept
    partition = index.partition[kept]
    split = _served_split(root, split, partition)
    if split == "all":
        part = slice(0, len(kept))
    else:
        code = _PARTITIONS[split]
        # The cache is ordered by partition, so a split is a contiguous slice: no copy.
        part = slice(int(np.searchsorted(partition, code, "left")), int(np.searchsorted(partition, code, "right")))
    rows = kept[part]
    return CelebADataset(
        images=cached.images[part],
        labels=torch.zeros(len(rows), dtype=torch.int64),
        class_names=("face",),
        name=_NAME,
        split=split,
        attributes=torch.from_numpy(index.attributes[rows]),
        attribute_names=index.attribute_names,
        identities=torch.from_numpy(index.identities[rows]),
        filenames=tuple(index.filenames[int(i)] for i in rows),
    )


def _present(root: Path, index: _Index) -> _Index:
    """Keep the annotated images that exist in ``img_align_celeba/``; report the absent ones once."""
    image_dir = root / CELEBA_IMAGE_DIR
    if not image_dir.is_dir():
        archive = root / f"{CELEBA_IMAGE_DIR}.zip"
        hint = f"; unzip {archive} first" if archive.is_file() else f" (get it from {CELEBA_URL})"
        raise DataError(f"{image_dir}: image folder not found{hint}")
    with os.scandir(image_dir) as entries:
        on_disk = {entry.name for entry in entries if entry.name.lower().endswith((".jpg", ".jpeg"))}
    if not on_disk:
        raise DataError(f"{image_dir}: no .jpg images in the folder")
    present = np.fromiter((name in on_disk for name in index.filenames), dtype=bool, count=len(index.filenames))
    if not present.any():
        raise DataError(f"{image_dir}: none of the {len(present)} images listed in {CELEBA_FILES['partition']} "
                        f"is in the folder (e.g. {index.filenames[0]})")
    if not present.all():
        absent = [name for name, ok in zip(index.filenames, present) if not ok]
        report_once(f"celeba: {len(absent)} of the {len(present)} images listed in {CELEBA_FILES['partition']} "
                    f"are not in {image_dir} (e.g. {', '.join(absent[:3])}); using the {int(present.sum())} present")
        keep = np.flatnonzero(present)
        index = dataclasses.replace(
            index,
            filenames=[index.filenames[i] for i in keep],
            partition=index.partition[keep],
            attributes=index.attributes[keep],
            identities=index.identities[keep],
        )
    return index


def _served_split(root: Path, split: str, partition: np.ndarray) -> str:
    """The split actually served: ``"test"`` becomes ``"val"`` in copies without test images."""
    if split == "all":
        return split
    if split == "test" and not (partition == _PARTITIONS["test"]).any():
        n_val = int((partition == _PARTITIONS["val"]).sum())
        if n_val:
            report_once(f"celeba: {root} has no test-split images; using the val split ({n_val} images) as test")
            return "val"
    if not (partition == _PARTITIONS[split]).any():
        raise DataError(f"{root}: no usable images of the {split} split in {CELEBA_FILES['partition']}")
    return split


def _celeba_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,  # CelebA is never downloaded (its terms need consent)
    **kwargs: Any,
) -> CelebADataset:
    return load_celeba(split, data_dir, **kwargs)


register_dataset(_NAME, _celeba_loader)
