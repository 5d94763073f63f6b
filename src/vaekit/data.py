"""Datasets: Fashion-MNIST from IDX files and a tiny procedural shapes set.

Every dataset is held in memory as one uint8 tensor of shape (N, C, H, W)
plus an int64 label tensor. The trainer slices batches out of these tensors
directly, so nothing here works per sample in Python.

Fashion-MNIST is looked for, in order, in an explicit ``data_dir``, in
``$VAEKIT_DATA_DIR``, in the user cache (``~/.cache/vaekit/fashion-mnist``,
honouring ``$XDG_CACHE_HOME``) and in :data:`SYSTEM_DATA_DIRS` (where
Debian's ``dataset-fashion-mnist`` package installs it). If it is not found
and downloading is allowed, the four official files are fetched into the
user cache and checked against the MD5 of their decompressed bytes.

Every problem with user-supplied data raises :class:`~vaekit.errors.DataError`
(or :class:`~vaekit.errors.ConfigError` for a bad option) with a one-line
message that names the file or option at fault.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np
import torch

from vaekit.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "DOWNLOAD_TIMEOUT",
    "FASHION_MNIST_CHECKSUMS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_URL",
    "SHAPES_CLASSES",
    "SYSTEM_DATA_DIRS",
    "ImageDataset",
    "dataset_names",
    "download_fashion_mnist",
    "find_fashion_mnist",
    "load_dataset",
    "load_fashion_mnist",
    "make_shapes",
    "read_idx",
    "register_dataset",
    "user_cache_dir",
    "vaekit_cache_root",
    "verify_fashion_mnist",
]

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

#: Official download location; a file name is appended. Module-level so
#: tests can point it at a local ``file://`` folder.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: System-wide folders searched after the user cache (overridable by tests).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

#: Seconds to wait on a stalled connection before giving up a download.
DOWNLOAD_TIMEOUT = 60.0

SHAPES_CLASSES: tuple[str, ...] = (
    "square",
    "circle",
    "triangle",
    "horizontal bar",
    "vertical bar",
    "cross",
)

_FASHION_MNIST_NAME = "fashion-mnist"
_SPLITS = ("train", "test")
_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian NumPy dtype (from the IDX format description).
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_IDX_LABELS_MAGIC = 0x00000801  # ubyte, 1-D
_IDX_IMAGES_MAGIC = 0x00000803  # ubyte, 3-D

Index = Union[torch.Tensor, np.ndarray, Sequence[int], slice]


# ---------------------------------------------------------------------------
# In-memory dataset
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped or raw.

    Compression is detected from the gzip magic bytes, not the file name.

    Parameters
    ----------
    path : path-like
        The IDX file.

    Returns
    -------
    numpy.ndarray
        Read-only array with the shape given in the file header.

    Raises
    ------
    DataError
        If the file is missing, unreadable, not valid gzip, not an IDX file,
        or its length does not match the header.
    """
    path = Path(path)
    return _parse_idx(_read_decompressed(path), path)


def _read_decompressed(path: Path, shown: str | None = None) -> bytes:
    """Return the file's bytes, gunzipped when they start with gzip magic.

    ``shown`` replaces the path in messages (a download's URL rather than
    its temporary file).
    """
    shown = shown or str(path)
    if not path.is_file():
        raise DataError(f"{shown}: file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{shown}: cannot read: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{shown}: corrupt gzip data: {_one_line(exc)}") from exc


def _parse_idx(data: bytes, path: Path, expected_magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a read-only array without copying the payload."""
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes is too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file: bad magic number 0x{magic:08x}")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated: expected a {header_len}-byte IDX header, got {len(data)} bytes"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header_len + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{path}: truncated: expected {expected} bytes, got {len(data)}")
    if len(data) > expected:
        raise DataError(
            f"{path}: trailing data: expected {expected} bytes for shape {dims}, got {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Multi-byte IDX types are big-endian; hand callers native byte order.
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------
# Locating, downloading and verifying Fashion-MNIST
# ---------------------------------------------------------------------------


class _DownloadError(DataError):
    """The download could not be made (network, disk); the data may exist elsewhere."""


def user_cache_dir() -> Path:
    """Return the per-user Fashion-MNIST cache folder.

    Returns
    -------
    Path
        ``$XDG_CACHE_HOME/vaekit/fashion-mnist`` when ``XDG_CACHE_HOME`` is an
        absolute path, else ``~/.cache/vaekit/fashion-mnist``.
    """
    return vaekit_cache_root() / _FASHION_MNIST_NAME


def vaekit_cache_root() -> Path:
    """``$XDG_CACHE_HOME/vaekit`` (absolute values only), else ``~/.cache/vaekit``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "vaekit"


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
            return download_fashion_mnist(splits=splits)
        except _DownloadError as exc:  # checksum errors propagate unchanged
            failure = f"download failed: {exc}"
    raise DataError(_not_found_message(splits, env, failure))


def _explicit_dir(directory: Path, splits: Sequence[str]) -> Path:
    if not directory.is_dir():
        raise DataError(f"{directory}: data directory does not exist")
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


def download_fashion_mnist(
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    splits: Iterable[str] = _SPLITS,
) -> Path:
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
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
        os.close(fd)
    except OSError as exc:
        raise _DownloadError(f"{target.parent}: cannot write: {_one_line(exc)}") from exc
    tmp = Path(tmp_name)
    try:
        try:
            _fetch(url, tmp)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise _DownloadError(f"{url}: {_one_line(exc)}") from exc
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


# ---------------------------------------------------------------------------
# Procedural shapes
# ---------------------------------------------------------------------------

_SHAPES_CHUNK = 2048  # images per vectorised block; bounds temporary memory


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
    for start in range(0, n, _SHAPES_CHUNK):
        part = slice(start, start + _SHAPES_CHUNK)
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


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

Loader = Callable[..., ImageDataset]

#: name -> loader, called as ``loader(split=..., data_dir=..., download=...,
#: **kwargs)``. A name given as ``"prefix:arg"`` that is not registered
#: itself goes to the loader registered as ``"prefix"``, with ``arg=arg``.
DATASETS: dict[str, Loader] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(name: str, loader: Loader, aliases: Iterable[str] = ()) -> None:
    """Register a dataset loader under ``name`` (and optional aliases).

    Parameters
    ----------
    name : str
        Canonical name, e.g. ``"celeba"``, or a prefix such as ``"folder"``
        that will receive the rest of ``"folder:PATH"`` as ``arg``.
    loader : callable
        ``loader(split=..., data_dir=..., download=..., **kwargs)`` returning
        an :class:`ImageDataset`.
    aliases : iterable of str
        Other accepted spellings.
    """
    DATASETS[name] = loader
    for alias in aliases:
        _ALIASES[alias] = name


def dataset_names() -> list[str]:
    """Return the canonical names of registered datasets, in registration order."""
    return list(DATASETS)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    """Load a registered dataset by name.

    Parameters
    ----------
    name : str
        ``"fashion-mnist"`` (also ``"fashion_mnist"``, ``"fmnist"``),
        ``"shapes"``, or any name added with :func:`register_dataset`.
    split : {"train", "test"}
        Which split.
    data_dir : path-like, optional
        Where to look for the files (datasets on disk only).
    download : bool, default True
        Whether a missing dataset may be downloaded.
    **kwargs
        Passed on to the loader (e.g. ``n``, ``seed`` for shapes).

    Returns
    -------
    ImageDataset

    Raises
    ------
    ConfigError
        If ``name`` is not a registered dataset.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in DATASETS:
        return DATASETS[key](split=split, data_dir=data_dir, download=download, **kwargs)
    prefix, sep, arg = name.strip().partition(":")
    if sep and prefix.lower() in DATASETS:
        loader = DATASETS[prefix.lower()]
        return loader(split=split, data_dir=data_dir, download=download, arg=arg, **kwargs)
    raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def _fashion_mnist_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    return load_fashion_mnist(split, data_dir, download, **kwargs)


def _shapes_loader(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,  # generated, nothing on disk
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    return make_shapes(split=split, **kwargs)


def _one_line(exc: BaseException) -> str:
    # The CLI prints messages as one line; some library errors span several.
    return " ".join(str(exc).split()) or type(exc).__name__


register_dataset(_FASHION_MNIST_NAME, _fashion_mnist_loader, aliases=("fashion_mnist", "fmnist"))
register_dataset("shapes", _shapes_loader)
