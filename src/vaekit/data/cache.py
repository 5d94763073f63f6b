"""The memory-mapped uint8 cache of decoded image files.

:func:`cached_images` turns a list of image files into one uint8 array of
shape ``(N, C, H, W)`` on disk, memory-mapped. The first call decodes every
file in parallel (threads: Pillow releases the GIL while decoding and
resampling) with a progress bar; later calls map the finished file in
milliseconds. A manifest records every source file (name, size, mtime) and
the :class:`~vaekit.data.images.ImageTransform`; when either changes the cache
is rebuilt. The array is written to a temporary file and renamed, and the
manifest is written last, so an interrupted build never leaves a cache that
looks complete. CelebA (:mod:`vaekit.data.celeba`) and image folders
(:mod:`vaekit.data.folder`) use it.

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
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from vaekit.data.files import check_bytes
from vaekit.data.images import (
    ImageProblem,
    ImageTransform,
    decode_image,
    report_once,
)
from vaekit.errors import DataError, one_line
from vaekit.files import atomic_write_bytes

IMAGES_FILE = "images.u8"
MANIFEST_FILE = "manifest.json"
_MANIFEST_FORMAT = "vaekit-image-cache"
_BLOCK = 256  # images decoded per batch of thread tasks; bounds pending futures
_DISK_MARGIN = 64 << 20  # bytes kept free beyond the cache itself


def vaekit_cache_root() -> Path:
    """``$XDG_CACHE_HOME/vaekit`` (absolute values only), else ``~/.cache/vaekit``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vaekit"





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
    size_param: str = "image_shape",
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
    size_param
        The caller's parameter that set the image size, named when the
        cache would be absurdly large (:func:`~vaekit.data.files.check_bytes`).

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
    # Refused from the arithmetic, before a cache of that size is created.
    check_bytes((len(names), *transform.shape), f"{len(names)} images of shape {transform.shape}", param=size_param)
    folder = cache_root(cache_dir) / f"{kind}-{_cache_key(root, transform)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the image cache: {one_line(exc)}") from None
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
        raise DataError(f"{folder}: cannot write the image cache: {one_line(exc)}") from None
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
    atomic_write_bytes(folder / MANIFEST_FILE, json.dumps(manifest, separators=(",", ":")).encode("utf-8"))
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
    # Row by row on purpose: ``array[kept]`` would copy a memory-mapped cache larger than memory into RAM.
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
