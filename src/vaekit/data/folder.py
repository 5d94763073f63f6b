"""Any folder of images as a dataset (``--dataset folder:PATH``), and image files to score."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from vaekit.data.cache import cached_images
from vaekit.data.dataset import ImageDataset
from vaekit.data.files import (
    check_bytes,
    existing_dir,
    file_problem,
    regular_file,
    shown_path,
)
from vaekit.data.images import (
    IMAGE_EXTENSIONS,
    ImageTransform,
    image_transform,
    read_image,
    report_once,
)
from vaekit.data.registry import dataset_names, load_dataset, register_dataset
from vaekit.errors import ConfigError, DataError


@dataclass(eq=False, repr=False)  # keep the base class's repr and identity equality
class FileImageDataset(ImageDataset):
    """An :class:`~vaekit.data.ImageDataset` whose images come from files.

    Attributes
    ----------
    filenames : tuple of str
        Source file of each image, relative to the dataset folder.
    """

    filenames: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.filenames = tuple(self.filenames)
        if self.filenames and len(self.filenames) != len(self):
            raise DataError(f"dataset {self.name!r} ({self.split}): {len(self.filenames)} file names "
                            f"for {len(self)} images")

    def subset(self, index: Any) -> FileImageDataset:
        """Return a copy holding only the selected samples, with their per-image fields."""
        base = super().subset(index)
        picked = torch.arange(len(self))[index if isinstance(index, slice) else torch.as_tensor(np.asarray(index))]
        return type(self)(images=base.images, labels=base.labels, class_names=base.class_names, name=base.name,
                          split=base.split, **self._per_image(picked))

    def _per_image(self, picked: torch.Tensor) -> dict[str, Any]:
        """Per-image fields for :meth:`subset`; subclasses add theirs."""
        return {"filenames": tuple(self.filenames[i] for i in picked.tolist()) if self.filenames else ()}


# ---------------------------------------------------------------------------
# Any folder of images as a dataset
# ---------------------------------------------------------------------------

_TRAIN_DIRS = ("train",)
_TEST_DIRS = ("test", "val", "valid", "validation")
_ROOT_CLASS = "(top level)"
_FOLDER_SPLITS = ("train", "test", "all")


def list_folder(path: str | os.PathLike[str]) -> list[str]:
    """Image files under ``path`` (recursively), as sorted relative names.

    Hidden files and folders (names starting with ``.``) are skipped; an
    image is any file whose name ends with one of :data:`IMAGE_EXTENSIONS`.
    Only regular files (or symlinks to them) are listed: a FIFO, device,
    folder or broken or looping symlink with an image name, and any name
    that is not valid UTF-8, is reported once and skipped. Symlinked
    folders are not followed (no loops).

    Raises
    ------
    DataError
        If ``path`` is not a folder.
    """
    root = existing_dir(path)
    found = []
    for directory, subdirs, files in os.walk(root, onerror=_walk_error):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and _decodable(Path(directory) / d))
        base = Path(directory).relative_to(root)
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            full = Path(directory) / name
            problem = "file name is not valid UTF-8" if not _decodable(full) else file_problem(full)
            if problem is None:
                found.append((base / name).as_posix())
            else:
                report_once(f"{shown_path(full)}: {problem} (skipped)")
    return sorted(found)


def _decodable(path: Path) -> bool:
    """Whether a name from the OS is valid UTF-8 (os.walk turns bad bytes into lone surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        if path.is_dir():  # files are reported by the caller
            report_once(f"{shown_path(path)}: folder name is not valid UTF-8 (skipped)")
        return False
    return True


def _walk_error(error: OSError) -> None:
    report_once(f"{shown_path(error.filename or '?')}: cannot list the folder: {error.strerror or error} (skipped)")


def default_folder_shape(root: str | os.PathLike[str], names: Sequence[str], probe: int = 64) -> tuple[int, int, int]:
    """Input shape for a folder when none is given: fit one of the built-in architectures.

    Greyscale images no larger than 64 pixels become ``(1, 28, 28)``
    (``fashion28``); anything else ``(3, 128, 128)`` (``nn3-128``). Only up to
    ``probe`` files, spread over the folder, are looked at (headers only).
    """
    step = max(1, len(names) // probe)
    small_grey = True
    for name in names[::step][:probe]:
        try:
            with Image.open(Path(root) / name) as image:
                grey = image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                small_grey = small_grey and grey and max(image.size) <= 64
        except Exception:  # noqa: BLE001 - unreadable files are reported when decoded
            continue
        if not small_grey:
            break
    return (1, 28, 28) if small_grey else (3, 128, 128)


def load_folder(
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    image_shape: Sequence[int] | None = None,
    test_fraction: float = 0.1,
    filter: str = "lanczos",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> FileImageDataset:
    """Load a folder of images as a labelled dataset.

    Layout: top-level subfolders are classes (``PATH/cat/*.jpg``,
    ``PATH/dog/*.png``; deeper folders belong to their top-level class);
    without subfolders every image is in one class named after the folder.
    If ``PATH`` has ``train/`` and ``test/`` (or ``val/``) subfolders they
    are the splits; otherwise about ``test_fraction`` of the files, chosen
    by a hash of each name, are the test split (adding or removing files
    never moves another file between the splits, except when the hashes
    leave one split empty, likely only in folders of a few files: one file is
    then moved into it).

    Parameters
    ----------
    path
        The folder.
    split
        ``"train"``, ``"test"`` or ``"all"``.
    image_shape
        ``(C, H, W)`` to produce; default :func:`default_folder_shape`. Each
        image gets its largest centred crop of that aspect ratio, resized with
        ``filter``.
    test_fraction
        Share of the images held out as the test split (hash split only).
    filter
        Resampling filter (see :class:`ImageTransform`).
    cache_dir, workers, progress
        See :func:`cached_images`.

    Returns
    -------
    FileImageDataset
        uint8 images of shape ``(N, *image_shape)`` backed by the memory-mapped
        cache, class labels and file names, ordered by split then file name.
        Unreadable files are reported once and left out.

    Raises
    ------
    DataError
        If the folder does not exist or holds no usable image.
    ConfigError
        For an unknown split or a bad shape or fraction.
    """
    root = Path(os.path.expanduser(path))
    if split not in _FOLDER_SPLITS:
        raise ConfigError(f"unknown split {split!r} for folder {root}; choose one of: {', '.join(_FOLDER_SPLITS)}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    existing_dir(root)
    names = list_folder(root)
    if not names:
        raise DataError(f"{root}: no image files (looked for {', '.join(IMAGE_EXTENSIONS)}, in subfolders too)")
    split_of, class_of, class_names = _folder_layout(names, test_fraction, root.resolve().name)
    # Cache order: by split, so each split is one contiguous, zero-copy slice.
    order = sorted((i for i in range(len(names)) if split_of[i] is not None), key=lambda i: (split_of[i], names[i]))
    if not order:
        raise DataError(f"{root}: no image files inside its train/ and test/ folders")
    ordered = [names[i] for i in order]
    shape = tuple(image_shape) if image_shape is not None else default_folder_shape(root, ordered)
    if len(shape) != 3:
        raise ConfigError(f"image_shape must be (C, H, W), got {shape}", param="image_shape")
    transform = ImageTransform(size=(int(shape[1]), int(shape[2])), channels=int(shape[0]), filter=filter)
    cached = cached_images(root, ordered, transform, kind="folder", cache_dir=cache_dir, workers=workers,
                           progress=progress)
    splits = np.array([split_of[order[i]] for i in cached.kept], dtype=np.int64)
    labels = torch.tensor([class_of[order[i]] for i in cached.kept], dtype=torch.int64)
    if split == "all":
        part = slice(0, len(splits))
    else:
        code = 0 if split == "train" else 1
        part = slice(int(np.searchsorted(splits, code, "left")), int(np.searchsorted(splits, code, "right")))
        if part.start == part.stop:
            raise DataError(f"{root}: no usable images in the {split} split")
    return FileImageDataset(images=cached.images[part], labels=labels[part], class_names=class_names,
                            name=f"folder:{path}", split=split,
                            filenames=tuple(ordered[int(i)] for i in cached.kept[part]))


def _folder_layout(
    names: list[str], test_fraction: float, folder_name: str
) -> tuple[list[int | None], list[int], tuple[str, ...]]:
    """Split of each file (0 train, 1 test, None: in neither), its class id, and the class names."""
    tops = [name.split("/", 1)[0] if "/" in name else None for name in names]
    top_dirs = {top.lower() for top in tops if top is not None}
    split_of: list[int | None]
    if top_dirs & set(_TRAIN_DIRS) and top_dirs & set(_TEST_DIRS):
        # PATH/train/... and PATH/test/...: classes are the next folder level.
        split_of = [None if top is None or top.lower() not in _TRAIN_DIRS + _TEST_DIRS
                    else int(top.lower() in _TEST_DIRS) for top in tops]
        inner = [name.split("/", 1)[1] if top is not None else name for name, top in zip(names, tops)]
        classes = [part.split("/", 1)[0] if "/" in part else None for part in inner]
    else:
        split_of = list(_hash_split(names, test_fraction))
        classes = tops
    used = [c for c, s in zip(classes, split_of) if s is not None]
    named = sorted({c for c in used if c is not None})
    if not named:  # no class subfolders: one class, named after the folder
        return split_of, [0] * len(names), (folder_name or "images",)
    class_names = tuple(named + ([_ROOT_CLASS] if None in used else []))
    index = {name: i for i, name in enumerate(class_names)}
    # Files in neither split (PATH/extra/... beside PATH/train and PATH/test) are never loaded: class 0.
    class_of = [0 if s is None else index[c] if c is not None else len(class_names) - 1
                for c, s in zip(classes, split_of)]
    return split_of, class_of, class_names


def _hash_split(names: list[str], test_fraction: float) -> list[int]:
    """Split of each file: 1 (test) iff its name's SHA-1, as a fraction of 2**160, is below ``test_fraction``.

    Each file's split depends on its own name only, so adding or removing
    files never moves another file between train and test. Folders of two or
    more files get at least one file in each split (the smallest hash goes to
    test, the largest to train); only such tiny folders can see a file move.
    """
    hashes = [int(hashlib.sha1(name.encode()).hexdigest(), 16) for name in names]
    split = [int(h < test_fraction * 2**160) for h in hashes]  # int < float compares exactly
    if len(names) >= 2 and not any(split):
        split[hashes.index(min(hashes))] = 1
    elif len(names) >= 2 and all(split):
        split[hashes.index(max(hashes))] = 0
    return split


def _is_dir(path: str | os.PathLike[str]) -> bool:
    try:
        return os.path.isdir(path)
    except (ValueError, TypeError):  # a NUL byte: regular_file says so
        return False


def _folder_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,  # the path comes in ``arg``
    download: bool = True,  # nothing to download
    arg: str = "",
    **kwargs: Any,
) -> ImageDataset:
    if not arg:
        raise ConfigError("dataset folder:PATH: give the folder after 'folder:'", param="dataset")
    return load_folder(arg, split, **kwargs)


def load_image_files(path: str | Path, image_shape: Sequence[int]) -> tuple[ImageDataset, list[str]]:
    """Read an image file, or every image in a folder (and its subfolders), shaped for a model.

    Each image is read by :func:`~vaekit.data.images.read_image` with
    ``fit="crop"``, as :func:`load_folder` does for training folders:
    converted to greyscale (1 channel) or RGB (3 channels), its largest
    centred crop of the model's aspect ratio resized to the model's height
    and width. In a folder, unreadable files are reported once and skipped.

    Parameters
    ----------
    path
        An image file or a folder.
    image_shape
        The model's ``(C, H, W)``.

    Returns
    -------
    dataset, names
        The images (label 0, class ``"image"``) and their names (relative
        to the folder).

    Raises
    ------
    DataError
        For a missing path, a folder without a usable image, an unreadable
        single file, or a model whose channel count is neither 1 nor 3.
    """
    transform = image_transform(image_shape, "crop")  # a bad shape fails once here, not once per file
    single = not _is_dir(path)
    if not single:
        path = Path(os.fsdecode(path))
        names = list_folder(path)
        if not names:
            raise DataError(f"{path}: folder holds no image files")
        root = path
    else:
        path = regular_file(path)  # one line for a missing path, a FIFO, a device, a loop
        names, root = [path.name], path.parent
    check_bytes((len(names), *transform.shape), f"{len(names)} images of shape {transform.shape}",
                param="image_shape")
    arrays, kept = [], []
    for name in names:
        try:
            arrays.append(read_image(root / name, image_shape, fit="crop"))
            kept.append(name)
        except DataError as problem:
            if single:
                raise
            report_once(f"{problem} (skipped)")
    if not arrays:
        raise DataError(f"{path}: none of its {len(names)} image files could be read")
    dataset = ImageDataset(torch.from_numpy(np.stack(arrays)), torch.zeros(len(kept), dtype=torch.int64),
                           ("image",), name=str(path), split="files")
    return dataset, kept


def resolve_images(spec: str, image_shape: Sequence[int], data_dir: str | None = None,
                   default_split: str = "test") -> tuple[ImageDataset, list[str] | None]:
    """Images named by a dataset spec (``fashion-mnist:test``, ``shapes``) or a path.

    Returns the dataset and, for files, their names (``None`` for datasets).
    """
    if "\0" in spec:
        raise ConfigError(f"images: {spec!r} contains a NUL byte", param="images")
    if os.path.lexists(spec):
        return load_image_files(spec, image_shape)
    name, sep, split = spec.rpartition(":")
    if not sep or split not in ("train", "test"):
        name, split = spec, default_split
    try:
        return load_dataset(name, split, data_dir=data_dir), None
    except ConfigError:
        if "/" in spec or "\\" in spec or spec.lower().endswith(IMAGE_EXTENSIONS):
            raise DataError(f"{spec}: no such file or folder") from None
        raise ConfigError(f"images: '{spec}' is neither a file, a folder nor a dataset "
                          f"({', '.join(dataset_names())}, optionally with :train or :test)", param="images") from None

register_dataset("folder", _folder_loader)
