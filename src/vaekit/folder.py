"""Folders of image files as datasets, and the uint8 cache that makes them fast.

Two layers:

* :func:`cached_images` turns a list of image files into one uint8 array of
  shape ``(N, C, H, W)`` on disk, memory-mapped. The first call decodes every
  file in parallel (threads: Pillow releases the GIL while decoding and
  resampling) with a progress bar; later calls map the finished file in
  milliseconds. A manifest records every source file (name, size, mtime) and
  the :class:`ImageTransform`; when either changes the cache is rebuilt. The
  array is written to a temporary file and renamed, and the manifest is
  written last, so an interrupted build never leaves a cache that looks
  complete. CelebA (:mod:`vaekit.celeba`) uses it too.
* :func:`load_folder` makes any folder of images a dataset
  (``--dataset folder:PATH``): top-level subfolders become class labels, every
  image is cropped to the target aspect ratio and resized to the
  architecture's input size and channels.

A file that cannot be decoded (corrupt, truncated, not an image, too small)
never stops a long run: it is reported once, as ``name: reason``, and left
out. Only a folder with no usable image at all is an error.

Caches live in ``$VAEKIT_CACHE_DIR`` if set, else in
``$XDG_CACHE_HOME/vaekit`` (default ``~/.cache/vaekit``), one folder per
source folder and transform: ``<kind>-<hash>/{images.u8, manifest.json}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from vaekit.data import ImageDataset, register_dataset, vaekit_cache_root
from vaekit.errors import ConfigError, DataError

__all__ = [
    "CACHE_VERSION",
    "IMAGE_EXTENSIONS",
    "CachedImages",
    "FileImageDataset",
    "ImageProblem",
    "ImageTransform",
    "cache_root",
    "cached_images",
    "decode_image",
    "default_folder_shape",
    "list_folder",
    "load_folder",
    "report_once",
]

logger = logging.getLogger("vaekit")

#: Bump when the decoding code changes the pixels it produces, so existing
#: caches are rebuilt rather than silently mixed with new ones.
CACHE_VERSION = 1

#: File endings read as images (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")

IMAGES_FILE = "images.u8"
MANIFEST_FILE = "manifest.json"
_MANIFEST_FORMAT = "vaekit-image-cache"
_BLOCK = 256  # images decoded per batch of thread tasks; bounds pending futures
_DISK_MARGIN = 64 << 20  # bytes kept free beyond the cache itself
# Resampling filters by name; LANCZOS is the sharpest for downscaling.
_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
# Pillow's resize first shrinks by an integer factor when the image is this
# many times larger than the target; 3.0 is indistinguishable from a full
# LANCZOS resample (Pillow docs) and much faster for big photos.
_REDUCING_GAP = 3.0
_REPORTED: set[str] = set()


def report_once(message: str) -> None:
    """Log a warning the first time ``message`` is seen in this process.

    Loaders run once per split (the trainer asks for train, then test), and
    a problem with one file should be read once, not at every call.
    """
    if message not in _REPORTED:
        _REPORTED.add(message)
        logger.warning(message)


# ---------------------------------------------------------------------------
# Datasets read from files
# ---------------------------------------------------------------------------


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
# Decoding one image
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageTransform:
    """How a source image becomes a training image.

    Parameters
    ----------
    size
        ``(height, width)`` of the result.
    channels
        1 (greyscale) or 3 (RGB). Transparent pixels are composited on black.
    crop
        Height of the centred crop in source pixels (its width follows the
        target aspect ratio); images smaller than the crop are rejected.
        ``None`` takes the largest centred region with the target aspect
        ratio, so any image size works.
    filter
        Resampling filter: ``"lanczos"`` (default), ``"bicubic"``,
        ``"bilinear"`` or ``"box"``.
    version
        :data:`CACHE_VERSION` of the code that decoded the images.
    """

    size: tuple[int, int] = (128, 128)
    channels: int = 3
    crop: int | None = None
    filter: str = "lanczos"
    version: int = CACHE_VERSION

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ConfigError(f"image size must be positive, got {height}x{width}")
        if self.channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, got {self.channels}")
        if self.crop is not None and self.crop < 1:
            raise ConfigError(f"crop must be at least 1 pixel, got {self.crop}")
        if self.filter not in _FILTERS:
            raise ConfigError(f"unknown resampling filter {self.filter!r}; choose one of: {', '.join(_FILTERS)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one decoded image."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": list(self.size)}

    def describe(self) -> str:
        """One line for logs and docs, e.g. ``centre crop 148x148, LANCZOS to 128x128 RGB``."""
        height, width = self.size
        if self.crop is None:
            crop = "largest centred crop"
        else:
            crop = f"centre crop {_crop_width(self.crop, self.size)}x{self.crop}"
        mode = "RGB" if self.channels == 3 else "greyscale"
        return f"{crop}, {self.filter.upper()} resize to {width}x{height} {mode}"


class ImageProblem(Exception):
    """One image file cannot be used; the message says why (one line)."""


def decode_image(path: str | os.PathLike[str], transform: ImageTransform) -> np.ndarray:
    """Read one image file and apply ``transform``.

    Parameters
    ----------
    path
        The image file.
    transform
        Crop, size, channels and filter.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``transform.shape``, i.e. ``(C, H, W)``.

    Raises
    ------
    ImageProblem
        If the file is missing, not an image, corrupt or truncated, or
        smaller than the crop.
    """
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(0x0112, 1)
            width, height = image.size
            if orientation in (5, 6, 7, 8):  # EXIF: stored rotated by 90 degrees
                width, height = height, width
            box = _crop_box((width, height), transform)
            _draft(image, transform, box)
            if orientation not in (1, None):  # phone photos are stored sideways
                image = ImageOps.exif_transpose(image)
            # Draft mode may have decoded at 1/2, 1/4 or 1/8 scale: scale the box too.
            sx, sy = image.size[0] / width, image.size[1] / height
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
            image = _to_mode(image, transform.channels)
            height, width = transform.size
            # resize() with a box crops and resizes in one pass; it also
            # forces the decode, so truncated files fail here.
            image = image.resize((width, height), _FILTERS[transform.filter], box=box, reducing_gap=_REDUCING_GAP)
            array = np.asarray(image, dtype=np.uint8)
    except ImageProblem:
        raise
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem("not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this one file
        raise ImageProblem(_one_line(exc)) from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _draft(image: Image.Image, transform: ImageTransform, box: tuple[float, float, float, float]) -> None:
    """Let JPEG decode big photos at 1/2, 1/4 or 1/8 scale when that is enough.

    Decoding a 4000x3000 photo at 1/8 scale is ~20x faster and loses nothing
    once the result is resized to 128 pixels. ``box`` is the crop in
    full-size pixels.
    """
    if image.format != "JPEG":
        return
    scale = max(transform.size[1] / (box[2] - box[0]), transform.size[0] / (box[3] - box[1]))
    if scale < 0.5:
        width, height = image.size
        mode = "RGB" if transform.channels == 3 else "L"
        image.draft(mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _crop_width(crop_height: int, size: tuple[int, int]) -> int:
    return max(1, round(crop_height * size[1] / size[0]))


def _crop_box(image_size: tuple[int, int], transform: ImageTransform) -> tuple[float, float, float, float]:
    """Centred crop box ``(left, top, right, bottom)`` in source pixels."""
    width, height = image_size
    target_height, target_width = transform.size
    if transform.crop is not None:
        crop_h, crop_w = transform.crop, _crop_width(transform.crop, transform.size)
        if width < crop_w or height < crop_h:
            raise ImageProblem(f"image is {width}x{height}, smaller than the {crop_w}x{crop_h} crop")
        # Integer offsets: the crop is the exact pixel block, as in torchvision.
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        return (left, top, left + crop_w, top + crop_h)
    if width * target_height > height * target_width:  # wider than the target
        crop_w, crop_h = height * target_width / target_height, float(height)
    else:
        crop_w, crop_h = float(width), width * target_height / target_width
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert to ``L`` or ``RGB``; transparency goes on black, 16-bit is scaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    target = "RGB" if channels == 3 else "L"
    return image if image.mode == target else image.convert(target)


# ---------------------------------------------------------------------------
# The memory-mapped cache
# ---------------------------------------------------------------------------


@dataclass
class CachedImages:
    """What :func:`cached_images` returns.

    Attributes
    ----------
    images : torch.Tensor
        uint8 ``(M, C, H, W)``, memory-mapped from the cache file (pages are
        read when touched; writes stay private to this process).
    kept : numpy.ndarray
        For each row of ``images``, its index in the list of names given.
    skipped : list of (str, str)
        ``(name, reason)`` of each file that could not be used.
    cache_dir : Path
        The cache folder.
    built : bool
        Whether this call decoded the images (False: reused).
    seconds : float
        Time the build took (0 when reused).
    """

    images: torch.Tensor
    kept: np.ndarray
    skipped: list[tuple[str, str]]
    cache_dir: Path
    built: bool
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding vaekit's image caches.

    Parameters
    ----------
    cache_dir
        Explicit folder; wins over the environment.

    Returns
    -------
    Path
        ``cache_dir``, else ``$VAEKIT_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/vaekit`` (an absolute ``XDG_CACHE_HOME`` only, as
        the XDG spec says), else ``~/.cache/vaekit``.
    """
    if cache_dir is not None:
        return Path(os.path.expanduser(cache_dir))
    env = os.environ.get("VAEKIT_CACHE_DIR", "")
    if env:
        return Path(os.path.expanduser(env))
    return vaekit_cache_root()


def cached_images(
    root: str | os.PathLike[str],
    names: Sequence[str],
    transform: ImageTransform,
    *,
    kind: str = "folder",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CachedImages:
    """Decode ``root/name`` for every name into a memory-mapped uint8 cache.

    Parameters
    ----------
    root
        Folder the names are relative to.
    names
        Relative file names (with ``/``), in the order wanted in the cache.
    transform
        Crop, size, channels and filter (part of the cache key).
    kind
        Prefix of the cache folder name, e.g. ``"celeba"``.
    cache_dir
        Where caches live (see :func:`cache_root`).
    workers
        Decoding threads; default: the CPU cores available, at most 16.
    progress
        Show a progress bar while building.

    Returns
    -------
    CachedImages
        The images of the usable files, in the order of ``names``.

    Raises
    ------
    DataError
        If no file is usable, or the cache cannot be written (no space,
        read-only folder).
    """
    root = Path(root).resolve()
    if not names:
        raise DataError(f"{root}: no image files to read")
    folder = cache_root(cache_dir) / f"{kind}-{_cache_key(root, transform)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the image cache: {_one_line(exc)}") from None
    files = _file_stats(root, names)
    with _locked(folder):
        cached = _open_cache(folder, root, transform, files)
        if cached is None:
            cached = _build_cache(folder, root, list(names), files, transform, workers, progress)
    if cached.skipped:
        _report_skipped(kind, root, cached)
    if len(cached.kept) == 0:
        name, reason = cached.skipped[0]
        raise DataError(f"{root / name}: {reason} (and all {len(names)} image files are unusable)")
    return cached


def _cache_key(root: Path, transform: ImageTransform) -> str:
    # The version is not in the key: a new decoder rebuilds the cache in
    # place instead of leaving the old one behind as a stale 10 GB file.
    key = {**transform.to_dict(), "root": str(root)}
    key.pop("version")
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _file_stats(root: Path, names: Sequence[str]) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of each file (size -1 if it cannot be read)."""
    stats = []
    for name in names:
        try:
            stat = os.stat(root / name)
            stats.append([name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            stats.append([name, -1, 0])
    return stats


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache folder, so two processes do not build it twice."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; builds are still atomic
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_cache(folder: Path, root: Path, transform: ImageTransform, files: list[list[Any]]) -> CachedImages | None:
    """Map the cache if its manifest matches the files and transform, else None."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != _MANIFEST_FORMAT
        or manifest.get("transform") != transform.to_dict()
        or manifest.get("files") != files
    ):
        return None
    shape = tuple(manifest.get("shape", ()))
    skipped_index = [int(entry[0]) for entry in manifest.get("skipped", [])]
    kept = np.setdiff1d(np.arange(len(files)), np.asarray(skipped_index, dtype=np.int64))
    path = folder / IMAGES_FILE
    if len(shape) != 4 or shape[0] != len(kept) or not path.is_file() or path.stat().st_size != math.prod(shape):
        return None
    skipped = [(str(entry[1]), str(entry[2])) for entry in manifest.get("skipped", [])]
    return CachedImages(_map(path, shape), kept, skipped, folder, built=False, manifest=manifest)


def _map(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    if shape[0] == 0:
        return torch.empty(shape, dtype=torch.uint8)
    # mode "c" (copy-on-write): writable, so torch takes it without a copy
    # or a warning, yet nothing a caller does ever reaches the file.
    array = np.memmap(path, dtype=np.uint8, mode="c", shape=shape)
    return torch.from_numpy(array)


def _build_cache(
    folder: Path,
    root: Path,
    names: list[str],
    files: list[list[Any]],
    transform: ImageTransform,
    workers: int | None,
    progress: bool,
) -> CachedImages:
    started = time.perf_counter()
    # The manifest goes first: from here until the new one is written, the
    # folder must not look like a finished cache.
    (folder / MANIFEST_FILE).unlink(missing_ok=True)
    for stale in folder.glob(f"{IMAGES_FILE}.partial-*"):
        stale.unlink(missing_ok=True)  # left by a killed build (we hold the lock)
    shape = (len(names), *transform.shape)
    _check_free_space(folder, math.prod(shape))
    partial = folder / f"{IMAGES_FILE}.partial-{os.getpid()}"
    try:
        array = np.memmap(partial, dtype=np.uint8, mode="w+", shape=shape)
        desc = f"caching {folder.name.split('-')[0]} {transform.size[1]}x{transform.size[0]}"
        problems = _decode_all(root, names, transform, array, workers, progress, desc)
        kept = np.setdiff1d(np.arange(len(names)), np.asarray([i for i, _ in problems], dtype=np.int64))
        _compact(array, kept)
        array.flush()
        del array
        os.truncate(partial, len(kept) * math.prod(transform.shape))
        os.replace(partial, folder / IMAGES_FILE)
    except OSError as exc:
        raise DataError(f"{folder}: cannot write the image cache: {_one_line(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    manifest = {
        "format": _MANIFEST_FORMAT,
        "root": str(root),
        "transform": transform.to_dict(),
        "shape": [len(kept), *transform.shape],
        "dtype": "uint8",
        "build_seconds": round(seconds, 2),
        "skipped": [[i, names[i], reason] for i, reason in problems],
        "files": files,
    }
    from vaekit.rundir import atomic_write_bytes

    atomic_write_bytes(folder / MANIFEST_FILE, json.dumps(manifest, separators=(",", ":")).encode("utf-8"))
    (folder / MANIFEST_FILE).chmod(0o644)  # as readable as the images file (mkstemp makes it 0600)
    skipped = [(names[i], reason) for i, reason in problems]
    images = _map(folder / IMAGES_FILE, tuple(manifest["shape"]))
    return CachedImages(images, kept, skipped, folder, built=True, seconds=seconds, manifest=manifest)


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + _DISK_MARGIN:
        raise DataError(
            f"{folder}: the image cache needs {needed / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free; "
            "set VAEKIT_CACHE_DIR to a folder on a larger disk"
        )


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def _decode_all(
    root: Path,
    names: list[str],
    transform: ImageTransform,
    out: np.ndarray,
    workers: int | None,
    progress: bool,
    desc: str,
) -> list[tuple[int, str]]:
    """Decode every file into its row of ``out``; return ``(index, reason)`` of failures."""
    from tqdm.auto import tqdm

    def work(i: int) -> str | None:
        try:
            out[i] = decode_image(root / names[i], transform)
        except ImageProblem as problem:
            return str(problem)
        return None

    problems: list[tuple[int, str]] = []
    with ThreadPoolExecutor(workers or _default_workers()) as pool, tqdm(
        total=len(names), desc=desc, unit="img", disable=not progress, dynamic_ncols=True
    ) as bar:
        for start in range(0, len(names), _BLOCK):
            indices = range(start, min(start + _BLOCK, len(names)))
            for i, problem in zip(indices, pool.map(work, indices)):
                if problem is not None:
                    problems.append((i, problem))
            bar.update(len(indices))
    return problems


def _compact(array: np.ndarray, kept: np.ndarray) -> None:
    """Move the kept rows to the front, in order (a no-op when nothing was skipped)."""
    for row, source in enumerate(kept):
        if row != source:
            array[row] = array[source]


def _report_skipped(kind: str, root: Path, cached: CachedImages) -> None:
    shown = cached.skipped[:5]
    lines = [f"{kind}: {root / name}: {reason}; skipped" for name, reason in shown]
    more = len(cached.skipped) - len(shown)
    if more:
        lines.append(f"{kind}: ... and {more} more unusable files (all listed in {cached.cache_dir / MANIFEST_FILE})")
    for line in lines:
        report_once(line)


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
    """
    root = Path(path)
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        base = Path(directory).relative_to(root)
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((base / name).as_posix())
    return sorted(found)


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
    are the splits; otherwise a fixed ``test_fraction`` of the files, chosen
    by a hash of their names (stable when files are added), is the test split.

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
    if not root.is_dir():
        raise DataError(f"{root}: folder does not exist" if not root.exists() else f"{root}: not a folder")
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
        raise ConfigError(f"image_shape must be (C, H, W), got {shape}")
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
    class_of = [class_names.index(c) if c is not None else len(class_names) - 1 for c in classes]
    return split_of, class_of, class_names


def _hash_split(names: list[str], test_fraction: float) -> list[int]:
    """Hold out the ``test_fraction`` of files with the smallest name hashes."""
    if len(names) < 2:
        return [0] * len(names)
    ranks = sorted(range(len(names)), key=lambda i: hashlib.sha1(names[i].encode()).hexdigest())
    n_test = min(len(names) - 1, max(1, round(len(names) * test_fraction)))
    test = set(ranks[:n_test])
    return [1 if i in test else 0 for i in range(len(names))]


def _folder_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,  # the path comes in ``arg``
    download: bool = True,  # nothing to download
    arg: str = "",
    **kwargs: Any,
) -> ImageDataset:
    if not arg:
        raise ConfigError("--dataset folder:PATH: give the folder after 'folder:'")
    return load_folder(arg, split, **kwargs)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


register_dataset("folder", _folder_loader)
