"""IDX files (the MNIST family's format), gzipped or raw."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from vaekit.data.files import (
    MAX_ARRAY_BYTES,
    MAX_DECOMPRESSED_BYTES,
    check_bytes,
    file_problem,
    shown_path,
)
from vaekit.errors import DataError, one_line

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


def _read_decompressed(path: Path, shown: str | None = None, limit: int | None = None) -> bytes:
    """Return the file's bytes, gunzipped when they start with gzip magic.

    ``shown`` replaces the path in messages (a download's URL rather than
    its temporary file). The gzip stream is decompressed with a bound, so a
    file that expands without end (a gzip bomb) is refused once it passes
    ``limit``: by default the official decompressed size of a Fashion-MNIST
    file of that name, else :data:`MAX_DECOMPRESSED_BYTES`. Uncompressed
    files larger than :data:`MAX_ARRAY_BYTES` are refused unread.
    """
    shown = shown or shown_path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{shown}: {problem}")
    path = Path(os.fsdecode(path))
    if limit is None:
        limit = _expected_size(path.name, shown)
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_GZIP_MAGIC))
            handle.seek(0)
            if magic != _GZIP_MAGIC:
                size = os.fstat(handle.fileno()).st_size
                check_bytes((size,), f"{shown}: reading this {size}-byte file", limit=MAX_ARRAY_BYTES)
                return handle.read()
            return _gunzip(handle, shown, limit)
    except OSError as exc:
        raise DataError(f"{shown}: cannot read: {exc.strerror or exc}") from None


def _gunzip(handle: object, shown: str, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes of the gzip stream in ``handle``."""
    try:
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:  # type: ignore[arg-type]
            data = stream.read(limit + 1)  # reads in chunks: never more than limit + 1 bytes
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{shown}: corrupt gzip data: {one_line(exc)}") from None
    if len(data) > limit:
        raise DataError(f"{shown}: gzip data expands to more than {limit} bytes "
                        "(the most expected for this file); refusing to decompress further")
    return data


def _expected_size(name: str, shown: str) -> int:
    """Official decompressed size of a Fashion-MNIST file named ``name`` (or ``shown``), else the cap."""
    from vaekit.data.fashion_mnist import FASHION_MNIST_CHECKSUMS  # imports this module

    for candidate in (name, shown.rstrip("/").rsplit("/", 1)[-1]):
        known = FASHION_MNIST_CHECKSUMS.get(candidate.removesuffix(".gz"))
        if known is not None:
            return known[0]
    return MAX_DECOMPRESSED_BYTES


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
    if 0 in dims:
        raise DataError(f"{path}: bad IDX header: dimension {dims.index(0) + 1} of {dims} is 0 (no data)")
    dtype = np.dtype(_IDX_DTYPES[type_code])
    # Python ints: a header of 2**31 x 2**31 x ... cannot overflow into a
    # plausible size; it is compared with the bytes present, never allocated.
    expected = header_len + math.prod(dims) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{path}: truncated: expected {expected} bytes, got {len(data)} "
                        f"(the header's shape {dims})")
    if len(data) > expected:
        raise DataError(
            f"{path}: trailing data: expected {expected} bytes for shape {dims}, got {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Multi-byte IDX types are big-endian; hand callers native byte order.
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))



