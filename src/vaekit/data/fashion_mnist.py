"""
Every dataset is held in memory as one uint8 tensor of shape (N, C, H, W)
plus an int64 label tensor. The trainer slices batches out of these tensors
directly, so nothing here works per sample in Python.

Fashion-MNIST is looked for, in order, in an explicit ``data_dir``, in
``$VAEKIT_DATA_DIR``, in the user cache (``~/.cache/vaekit/fashion-mnist``,
honouring ``$XDG_CACHE_HOME``) and in :data:`SYSTEM_DATA_DIRS` (where
Debian's ``dataset-fashion-mnist`` package installs it). If it is not found
and downloading is allowed, the four official files are fetched into the
user cache, from the upstream host or, when it cannot be reached, from
Debian's package archive (``dataset-fashion-mnist``, without root), and
checked against the MD5 of their decompressed bytes.

Every problem with user-supplied data raises :class:`~vaekit.errors.DataError`
(or :class:`~vaekit.errors.ConfigError` for a bad option) with a one-line
message that names the file or option at fault.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from vaekit.data.cache import vaekit_cache_root
from vaekit.data.dataset import ImageDataset
from vaekit.data.debian import DebianFetchError, fetch_package_files
from vaekit.data.files import existing_dir
from vaekit.data.idx import (
    _IDX_IMAGES_MAGIC,
    _IDX_LABELS_MAGIC,
    _parse_idx,
    _read_decompressed,
)
from vaekit.data.registry import register_dataset
from vaekit.errors import ConfigError, DataError, one_line

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: split -> (images file, labels file), official gzipped names. The same
#: names without ``.gz`` (uncompressed IDX files) are accepted as well.
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: uncompressed file name -> (decompressed byte count, MD5 of decompressed
#: bytes). Checksums cover the decompressed data because Debian's package
#: rewrote the gzip headers, so the MD5s of the .gz files differ from
#: upstream although the data is identical.
FASHION_MNIST_CHECKSUMS: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": (60_008, "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": (10_008, "15d484375f8d13e6eb1aabb0c3f46965"),
}

DEBIAN_PACKAGE = "dataset-fashion-mnist"
#: Official download location; a file name is appended. Module-level so
#: tests can point it at a local ``file://`` folder.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: System-wide folders searched after the user cache (overridable by tests).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

#: Seconds to wait on a stalled connection before giving up a download.
DOWNLOAD_TIMEOUT = 60.0

_FASHION_MNIST_NAME = "fashion-mnist"
_SPLITS = ("train", "test")


# ---------------------------------------------------------------------------
# Locating, downloading and verifying Fashion-MNIST
# ---------------------------------------------------------------------------


class _DownloadError(DataError):
    """The download could not be made (network, disk); the data may exist elsewhere."""


def user_cache_dir() -> Path:
    """The per-user Fashion-MNIST cache folder.

    ``$XDG_CACHE_HOME/vaekit/fashion-mnist`` when ``XDG_CACHE_HOME`` is an
    absolute path, else ``~/.cache/vaekit/fashion-mnist``.
    """
    return vaekit_cache_root() / _FASHION_MNIST_NAME


def _check_splits(splits: Iterable[str]) -> tuple[str, ...]:
    splits = tuple(splits)
    for split in splits:
        if split not in FASHION_MNIST_FILES:
            raise ConfigError(
                f"unknown split {split!r} for fashion-mnist; choose one of: "
                + ", ".join(FASHION_MNIST_FILES)
            )
    return splits


def _file_in(directory: Path, gz_name: str) -> Path | None:
    """Return the gzipped or uncompressed copy of a file in ``directory``."""
    for name in (gz_name, gz_name.removesuffix(".gz")):
        if (directory / name).is_file():
            return directory / name
    return None


def _missing_files(directory: Path, splits: Sequence[str]) -> list[str]:
    names = [name for split in splits for name in FASHION_MNIST_FILES[split]]
    return [name for name in names if _file_in(directory, name) is None]


def _candidates(base: Path) -> tuple[Path, Path]:
    # A user may point at the folder with the files or at a data root
    # holding several datasets, one of them in a fashion-mnist/ subfolder.
    return base, base / _FASHION_MNIST_NAME


def _first_complete(dirs: Iterable[Path], splits: Sequence[str]) -> Path | None:
    for directory in dirs:
        if not _missing_files(directory, splits):
            return directory
    return None


def find_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    splits: Iterable[str] = _SPLITS,
) -> Path:
    """Locate the folder holding the Fashion-MNIST files.

    Search order: ``data_dir`` (or its ``fashion-mnist/`` subfolder), then
    ``$VAEKIT_DATA_DIR`` (same two forms), the user cache
    (:func:`user_cache_dir`), then :data:`SYSTEM_DATA_DIRS`. If none holds
    the files and ``download`` is true, they are downloaded into the cache.

    Parameters
    ----------
    data_dir : path-like, optional
        Explicit folder. When given it must hold the files; other places
        are not searched, so a typo is not masked by another copy.
    download : bool, default False
        Download into the user cache if the files are found nowhere.
    splits : iterable of {"train", "test"}
        Splits whose files must be present.

    Returns
    -------
    Path
        Folder holding the images and labels files of every requested split.

    Raises
    ------
    DataError
        If the files cannot be found (or downloaded); the message lists the
        places searched and how to get the data.
    """
    splits = _check_splits(splits)
    if data_dir is not None:
        return _explicit_dir(Path(os.path.expanduser(data_dir)), splits)

    env = os.environ.get("VAEKIT_DATA_DIR", "")
    env_dirs = _candidates(Path(os.path.expanduser(env))) if env else ()
    search = (*env_dirs, user_cache_dir(), *SYSTEM_DATA_DIRS)
    found = _first_complete(search, splits)
    if found is not None:
        return found

    failure = "downloading is disabled"
    if download:
        try:
            return _announce(download_fashion_mnist(splits=splits), "downloaded from the upstream host")
        except _DownloadError as exc:  # checksum errors propagate unchanged
            failure = f"download failed: {exc}"
        try:  # a machine that reaches only the package archive: Debian packages the official files
            return _announce(fetch_debian_fashion_mnist(), f"fetched from Debian's {DEBIAN_PACKAGE} package "
                                                           "(the upstream host was unreachable)")
        except DebianFetchError as exc:
            failure += f"; Debian's {DEBIAN_PACKAGE}: {exc}"
    raise DataError(_not_found_message(splits, env, failure))


def _announce(folder: Path, how: str) -> Path:
    # Fetching happens once per machine; say where the data now lives so the user can find it.
    print(f"Fashion-MNIST {how}, checksums verified: {folder}", file=sys.stderr)
    return folder


def fetch_debian_fashion_mnist(dest_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Path:
    """Fetch Debian's ``dataset-fashion-mnist`` without root; install its files, MD5-verified, in the cache.

    ``kwargs`` go to :func:`vaekit.data.debian.fetch_package_files`.
    """
    names = [name for split in _SPLITS for name in FASHION_MNIST_FILES[split]]
    dest = Path(dest_dir) if dest_dir is not None else user_cache_dir()
    return fetch_package_files(DEBIAN_PACKAGE, "usr/share/datasets/fashion-mnist", names, dest,
                               lambda path: _checksum_problem(path, _idx_name(path)), **kwargs)


def _explicit_dir(directory: Path, splits: Sequence[str]) -> Path:
    existing_dir(directory, "data directory")  # one line for a file, FIFO or loop too
    found = _first_complete(_candidates(directory), splits)
    if found is not None:
        return found
    missing = _missing_files(directory, splits)
    raise DataError(
        f"{directory}: Fashion-MNIST files not found (also looked in "
        f"{directory / _FASHION_MNIST_NAME}): missing {', '.join(missing)} "
        "(gzipped or uncompressed)"
    )


def _not_found_message(splits: Sequence[str], env: str, failure: str) -> str:
    env_text = f"$VAEKIT_DATA_DIR={env}" if env else "$VAEKIT_DATA_DIR (unset)"
    looked = [env_text, str(user_cache_dir()), *map(str, SYSTEM_DATA_DIRS)]
    names = [name for split in splits for name in FASHION_MNIST_FILES[split]]
    return (
        f"Fashion-MNIST ({'/'.join(splits)}) not found; looked in: {', '.join(looked)}; "
        f"{failure}. Get it with 'apt install dataset-fashion-mnist', or download "
        f"{', '.join(names)} from {FASHION_MNIST_URL} into {user_cache_dir()}, "
        "or pass --data-dir DIR or set VAEKIT_DATA_DIR"
    )


def _fetch(url: str, dest: Path) -> None:
    """Copy ``url`` into ``dest`` (the only function that touches the network)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        with dest.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)


def download_fashion_mnist(dest_dir: str | os.PathLike[str] | None = None, *, splits: Iterable[str] = _SPLITS) -> Path:
    """Download the official Fashion-MNIST files and verify their MD5s.

    Files already present in ``dest_dir`` that pass the checksum are kept.
    Each download goes to a temporary file that replaces the final name
    only after its decompressed MD5 matched, so an interrupted or corrupt
    download never leaves a file that looks valid.

    Parameters
    ----------
    dest_dir : path-like, optional
        Target folder; defaults to :func:`user_cache_dir`.
    splits : iterable of {"train", "test"}
        Splits to download.

    Returns
    -------
    Path
        The folder holding the files.

    Raises
    ------
    DataError
        If a download fails or a downloaded file has the wrong checksum
        (the bad download is deleted).
    """
    splits = _check_splits(splits)
    dest = Path(dest_dir) if dest_dir is not None else user_cache_dir()
    for split in splits:
        for name in FASHION_MNIST_FILES[split]:
            existing = _file_in(dest, name)
            if existing is not None and _checksum_problem(existing, _idx_name(existing)) is None:
                continue
            _download_one(FASHION_MNIST_URL + name, dest / name)
    return dest


def _download_one(url: str, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
    except OSError as exc:
        raise _DownloadError(f"{target.parent}: cannot write: {one_line(exc)}") from exc
    tmp = Path(tmp_name)
    try:
        try:
            _fetch(url, tmp)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise _DownloadError(f"{url}: {one_line(exc)}") from exc
        problem = _checksum_problem(tmp, _idx_name(target), shown=url)
        if problem is not None:
            raise DataError(f"{problem}; deleted the bad download")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # no-op after a successful os.replace


def _idx_name(path: Path) -> str:
    return path.name.removesuffix(".gz")


def _checksum_problem(path: Path, idx_name: str, shown: str | None = None) -> str | None:
    """Return why ``path`` fails its size/MD5 check (one line), or None."""
    shown = shown or str(path)
    try:
        data = _read_decompressed(path, shown)
    except DataError as exc:
        return str(exc)
    problem = _digest_problem(data, idx_name)
    return None if problem is None else f"{shown}: checksum mismatch: {problem}"


def _digest_problem(data: bytes, idx_name: str) -> str | None:
    size, md5 = FASHION_MNIST_CHECKSUMS[idx_name]
    if len(data) != size:
        return f"expected {size} decompressed bytes, got {len(data)}"
    got = hashlib.md5(data).hexdigest()
    if got != md5:
        return f"MD5 of decompressed data is {got}, expected {md5}"
    return None


def verify_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    splits: Iterable[str] = _SPLITS,
) -> list[Path]:
    """Check the Fashion-MNIST files against the official sizes and MD5s.

    The MD5 is taken over the decompressed bytes, so files re-gzipped with
    other headers (as Debian's package does) still verify.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder to check; found with :func:`find_fashion_mnist` (no
        download) when omitted.
    splits : iterable of {"train", "test"}
        Splits to check.

    Returns
    -------
    list of Path
        The files that were checked.

    Raises
    ------
    DataError
        Naming the first file that is missing or fails its check.
    """
    splits = _check_splits(splits)
    directory = find_fashion_mnist(data_dir, splits=splits)
    checked = []
    for split in splits:
        for name in FASHION_MNIST_FILES[split]:
            path = _file_in(directory, name)
            assert path is not None  # find_fashion_mnist guarantees presence
            problem = _checksum_problem(path, _idx_name(path))
            if problem is not None:
                raise DataError(problem)
            checked.append(path)
    return checked


# ---------------------------------------------------------------------------
# Loading Fashion-MNIST
# ---------------------------------------------------------------------------


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = False,
) -> ImageDataset:
    """Load one Fashion-MNIST split.

    Parameters
    ----------
    split : {"train", "test"}
        Which split to load.
    data_dir : path-like, optional
        Folder holding the files; searched for when omitted
        (see :func:`find_fashion_mnist`).
    download : bool, default True
        Download into the user cache when the files are found nowhere.
    verify : bool, default False
        Also check the MD5 of local files (downloads are always checked).
        Sizes, shapes and labels are always checked.

    Returns
    -------
    ImageDataset
        uint8 images of shape (N, 1, 28, 28) and labels 0..9. The tensors
        are fresh copies, so callers may modify them freely.

    Raises
    ------
    DataError
        If the files are missing, corrupt or inconsistent.
    """
    (split,) = _check_splits([split])
    directory = find_fashion_mnist(data_dir, download=download, splits=[split])
    images_name, labels_name = FASHION_MNIST_FILES[split]
    images_path = _file_in(directory, images_name)
    labels_path = _file_in(directory, labels_name)
    assert images_path is not None and labels_path is not None  # found above
    images = _load_checked(images_path, _IDX_IMAGES_MAGIC, verify)
    labels = _load_checked(labels_path, _IDX_LABELS_MAGIC, verify)
    _check_pair(images, labels, images_path, labels_path)
    # Copies: the cached arrays are shared and read-only, callers' tensors
    # must be neither.
    return ImageDataset(
        images=torch.from_numpy(images[:, None].copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=FASHION_MNIST_CLASSES,
        name=_FASHION_MNIST_NAME,
        split=split,
    )


def _load_checked(path: Path, magic: int, verify: bool) -> np.ndarray:
    resolved = path.resolve()
    stat = resolved.stat()
    # mtime and size in the key: a file replaced on disk is read again.
    return _load_cached(str(resolved), stat.st_mtime_ns, stat.st_size, str(path), magic, verify)


@functools.lru_cache(maxsize=8)
def _load_cached(
    resolved: str, mtime_ns: int, size: int, shown: str, magic: int, verify: bool
) -> np.ndarray:
    """Read, structurally check and optionally MD5-check one IDX file."""
    path = Path(shown)  # report the name the user knows, not the symlink target
    data = _read_decompressed(path)
    array = _parse_idx(data, path, expected_magic=magic)
    idx_name = _idx_name(path)
    expected_size, _ = FASHION_MNIST_CHECKSUMS[idx_name]
    if len(data) != expected_size:
        raise DataError(
            f"{path}: not the official Fashion-MNIST file: expected {expected_size} "
            f"decompressed bytes, got {len(data)} (shape {array.shape})"
        )
    if verify:
        problem = _digest_problem(data, idx_name)
        if problem is not None:
            raise DataError(f"{path}: checksum mismatch: {problem}")
    return array


def _check_pair(
    images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path
) -> None:
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise DataError(f"{images_path}: expected 28x28 images, got {height}x{width}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= len(FASHION_MNIST_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{labels_path}: label {int(labels[i])} at index {i} is out of range "
            f"0..{len(FASHION_MNIST_CLASSES) - 1} ({bad.size} bad labels)"
        )


def _fashion_mnist_loader(split: str = "train", data_dir: str | os.PathLike[str] | None = None, download: bool = True,
                          **kwargs: Any) -> ImageDataset:
    return load_fashion_mnist(split, data_dir, download, **kwargs)


register_dataset(_FASHION_MNIST_NAME, _fashion_mnist_loader, aliases=("fashion_mnist", "fmnist"))
