"""Checks every data reader makes before it opens or allocates anything.

Two mechanisms, used by all readers of user data (IDX files, images, CelebA
annotations, dataset folders):

* :func:`regular_file` / :func:`existing_dir` look at a path with one
  ``stat`` before it is opened, so a FIFO (which blocks ``open`` forever), a
  device (``/dev/zero`` never ends), a folder where a file belongs, a
  symlink loop or a path under a regular file is refused with one line
  instead of a hang or a traceback.
* :func:`check_bytes` refuses a size computed from user input (a file
  header, ``n`` and ``image_size``) from the arithmetic, with Python ints
  that cannot overflow, before anything of that size is allocated.

:func:`shown_path` renders any path, including names that are not valid
UTF-8, as printable text for messages.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from pathlib import Path
from typing import Iterable

from vaekit.errors import ConfigError, DataError

#: Largest array vaekit allocates from sizes given by users or file headers.
MAX_ARRAY_BYTES = 64 * 2**30

#: Largest single image (C x H x W bytes) vaekit decodes or generates;
#: a training image is at most a few hundred pixels on a side.
MAX_IMAGE_BYTES = 2**28

#: Largest decompressed size accepted from a compressed file whose expected
#: size is unknown; a stream that expands past it is refused as a bomb.
MAX_DECOMPRESSED_BYTES = 2**30

PathLike = str | bytes | os.PathLike


def shown_path(path: PathLike) -> str:
    """``path`` as printable text: undecodable bytes become ``\\xNN`` escapes."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def _stat(path: PathLike, what: str) -> tuple[Path, os.stat_result]:
    """``(Path, stat)`` of ``path`` (symlinks followed), or one-line :class:`DataError`."""
    shown = shown_path(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"{what}: expected a path, got {type(path).__name__}")
    if "\0" in str(path):
        raise DataError(f"{shown!r}: {what} path contains a NUL byte")
    if not str(path):
        raise DataError(f"{what}: the path is empty")
    try:
        return Path(path), os.stat(path)
    except OSError as exc:
        raise DataError(f"{shown}: {_stat_problem(exc, what)}") from None


def _stat_problem(exc: OSError, what: str) -> str:
    if exc.errno == errno.ENOENT:
        return "file not found" if what == "file" else f"{what} does not exist"
    if exc.errno == errno.ENOTDIR:
        return f"{what} not found: a parent of it is a file, not a folder"
    if exc.errno == errno.ELOOP:
        return f"{what} is a symlink loop"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{what} path is too long"
    return f"cannot read the {what}: {exc.strerror or exc}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def file_problem(path: PathLike, what: str = "file") -> str | None:
    """Why ``path`` cannot be read as a regular file (one line, without the path), or None."""
    try:
        regular_file(path, what)
    except DataError as error:
        message = str(error)
        shown = shown_path(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        return message[len(shown) + 2:] if shown and message.startswith(f"{shown}: ") else message
    return None


def regular_file(path: PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a regular file (symlinks followed).

    Parameters
    ----------
    path
        The file; ``bytes`` names are decoded as the OS does.
    what
        What the file is, for the message (``"file"``, ``"image"``...).

    Raises
    ------
    DataError
        One line naming the path: not found, a symlink loop, under a regular
        file, or a directory, FIFO, device or socket ("is a directory",
        "is a FIFO (named pipe), not a regular file"). Nothing is opened.
    """
    result, info = _stat(path, what)
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        suffix = "" if kind == "not a regular file" else ", not a regular file"
        verb = "" if kind.startswith("not") else "is "
        raise DataError(f"{shown_path(result)}: {verb}{kind}{suffix}")
    return result


def existing_dir(path: PathLike, what: str = "folder") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a directory (symlinks followed).

    Raises
    ------
    DataError
        One line naming the path: not found, a symlink loop, or a file (or
        FIFO, device...) where a folder belongs.
    """
    result, info = _stat(path, what)
    if not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else _kind(info.st_mode)
        raise DataError(f"{shown_path(result)}: is {kind}, not a folder ({what} expected)")
    return result


def check_bytes(sizes: Iterable[int], what: str, param: str | None = None,
                limit: int | None = None) -> int:
    """Bytes of an array of ``sizes`` (Python ints: no overflow); refuse absurd ones before allocating.

    Parameters
    ----------
    sizes
        Element count factors and item size, e.g. ``(n, c, h, w, 1)``.
    what
        What would be allocated, for the message.
    param
        The parameter at fault: with it a :class:`ConfigError`, without it
        (sizes from a file) a :class:`DataError`.
    limit
        Bytes allowed; default :data:`MAX_ARRAY_BYTES`.

    Returns
    -------
    int
        The byte count.
    """
    limit = MAX_ARRAY_BYTES if limit is None else limit
    total = math.prod(int(s) for s in sizes)
    if total > limit:
        message = f"{what} would need {_human(total)}, more than the {_human(limit)} vaekit allows"
        if param is not None:
            raise ConfigError(f"{param}: {message}", param=param)
        raise DataError(message)
    return total


def _human(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e6 else f"{value:.3e} {unit}"
    return f"{n} bytes"
