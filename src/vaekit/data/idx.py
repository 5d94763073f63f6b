"""IDX files (the MNIST family's format), gzipped or raw."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vaekit.errors import DataError

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



def _one_line(exc: BaseException) -> str:
    # The CLI prints messages as one line; some library errors span several.
    return " ".join(str(exc).split()) or type(exc).__name__
