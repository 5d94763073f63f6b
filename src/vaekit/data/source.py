"""Where a dataset was found: a record a run directory keeps, and a check that it still holds.

Training records :func:`data_source` of its dataset; analysis commands, run
later and maybe from another shell (another ``$VAEKIT_DATA_DIR``, another
working directory), load the data from the recorded ``path`` when
:func:`verify_source` says it is still there and unchanged, else fall back to
the usual search.

The checksum is a *fingerprint*, not a hash of every byte: SHA-256 over each
file's relative name, size and first and last 64 KiB (files in sorted
order). It takes milliseconds even for Fashion-MNIST's 30 MB and catches a
replaced, truncated or re-downloaded file; a change in the middle of a file
that keeps its size goes unnoticed. Folders of images are fingerprinted by
their sorted file names and sizes only (reading thousands of images would
not be cheap).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from vaekit.data.celeba import CELEBA_FILES, find_celeba
from vaekit.data.fashion_mnist import FASHION_MNIST_FILES, find_fashion_mnist
from vaekit.data.files import existing_dir
from vaekit.data.folder import list_folder
from vaekit.data.registry import canonical_dataset_name
from vaekit.errors import ConfigError, DataError

#: Bytes read from each end of a file for its fingerprint.
FINGERPRINT_BYTES = 64 * 1024


def data_source(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where dataset ``name`` is found now, and a fingerprint of its files.

    Parameters
    ----------
    name : str
        Dataset name as given to :func:`~vaekit.data.load_dataset`
        (``"fashion-mnist"``, ``"celeba"``, ``"folder:PATH"``, ``"shapes"``).
    data_dir : path-like, optional
        Explicit data folder, searched as the loader does; otherwise the
        loader's search order (``$VAEKIT_DATA_DIR``, caches) applies.

    Returns
    -------
    dict
        ``{"name": ..., "path": ..., "checksum": ...}``. ``path`` is the
        absolute folder the loader reads (``None`` for generated data such as
        ``shapes``), ``checksum`` the SHA-256 hex fingerprint described in
        the module docstring (``None`` with ``path``). For ``folder:PATH``
        the name is rewritten with the absolute path, so it loads from any
        working directory.

    Raises
    ------
    DataError
        If the dataset's files cannot be found (nothing is downloaded).
    ConfigError
        If ``name`` is not a registered dataset.
    """
    key = canonical_dataset_name(name)
    prefix, _, arg = key.partition(":")
    if prefix == "folder" and arg:
        root = existing_dir(os.path.expanduser(arg)).resolve()
        return {"name": f"folder:{root}", "path": str(root), "checksum": _folder_fingerprint(root)}
    if key in _SOURCES:
        root, files = _SOURCES[key](data_dir)
        return {"name": key, "path": str(root.resolve()), "checksum": _files_fingerprint(root, files)}
    return {"name": key, "path": None, "checksum": None}


def verify_source(source: dict[str, Any]) -> bool:
    """Whether a recorded :func:`data_source` still holds: same folder, same fingerprint.

    Parameters
    ----------
    source : dict
        As returned by :func:`data_source` (e.g. read back from a run's
        ``config.json``).

    Returns
    -------
    bool
        True when the data is generated (``path`` None) or the recorded
        folder still exists with the same checksum; False when it has
        moved, changed, or the record is unusable.
    """
    name, path = source.get("name"), source.get("path")
    if not isinstance(name, str):
        return False
    if path is None:
        return source.get("checksum") is None
    if not Path(path).is_dir():
        return False
    try:
        now = data_source(name, data_dir=path)
    except (DataError, ConfigError):
        return False
    return now["path"] == str(Path(path).resolve()) and now["checksum"] == source.get("checksum")


def _fashion_mnist_files(data_dir: str | os.PathLike[str] | None) -> tuple[Path, list[Path]]:
    root = find_fashion_mnist(data_dir, download=False)
    official = {n for names in FASHION_MNIST_FILES.values() for gz in names for n in (gz, gz.removesuffix(".gz"))}
    return root, sorted(p for p in root.iterdir() if p.name in official)


def _celeba_files(data_dir: str | os.PathLike[str] | None) -> tuple[Path, list[Path]]:
    # The annotations define which images exist and their splits; fingerprinting
    # 200,000 JPEGs would not be cheap, and the image cache checks those anyway.
    root = find_celeba(data_dir)
    return root, [root / name for name in CELEBA_FILES.values() if (root / name).is_file()]


_SOURCES: dict[str, Callable[[str | os.PathLike[str] | None], tuple[Path, list[Path]]]] = {
    "fashion-mnist": _fashion_mnist_files,
    "celeba": _celeba_files,
}


def _files_fingerprint(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(FINGERPRINT_BYTES))
            if size > FINGERPRINT_BYTES:
                handle.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
                digest.update(handle.read())
    return digest.hexdigest()


def _folder_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name in list_folder(root):
        digest.update(f"{name}\0{(root / name).stat().st_size}\0".encode())
    return digest.hexdigest()
