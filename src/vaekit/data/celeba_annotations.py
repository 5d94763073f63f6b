"""CelebA's annotation files: the partition, attribute and identity lists, parsed and checked.

Every malformed file raises :class:`~vaekit.errors.DataError` with one line
naming the file (and line).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from vaekit.data.files import file_problem
from vaekit.errors import DataError

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def read_partition(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read ``list_eval_partition.txt``: image name -> 0 (train), 1 (val) or 2 (test).

    Raises
    ------
    DataError
        Naming the file and line of the first malformed row.
    """
    rows = _read_rows(Path(path))
    partition = {}
    for number, line in rows:
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {number}: expected 'IMAGE.jpg 0|1|2', got {line.strip()[:60]!r}")
        partition[parts[0]] = int(parts[1])
    return partition


def read_identities(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read ``identity_CelebA.txt``: image name -> person id.

    Raises
    ------
    DataError
        Naming the file and line of the first malformed row.
    """
    identities = {}
    for number, line in _read_rows(Path(path)):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path} line {number}: expected 'IMAGE.jpg IDENTITY', got {line.strip()[:60]!r}")
        identities[parts[0]] = int(parts[1])
    return identities


def read_attributes(path: str | os.PathLike[str]) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """Read ``list_attr_celeba.txt``.

    The official layout: the number of images, the attribute names, then one
    row per image of ``+1`` / ``-1`` values.

    Returns
    -------
    names : list of str
        Image file names, in file order.
    attribute_names : tuple of str
        Column names (40 in the official file).
    values : numpy.ndarray
        int8 ``(len(names), len(attribute_names))``, 1 (has it) or 0.

    Raises
    ------
    DataError
        Naming the file (and line) of a malformed header or row, or a row
        count that disagrees with the header (a truncated file).
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path} line 1: expected the number of images, got {lines[0].strip()[:40]!r}"
                        if lines else f"{path}: file is empty")
    attribute_names = tuple(lines[1].split())
    if not attribute_names:
        raise DataError(f"{path} line 2: expected the attribute names, got an empty line")
    body = [(i + 3, line) for i, line in enumerate(lines[2:]) if line.strip()]
    expected = int(lines[0].strip())
    if len(body) != expected:
        raise DataError(f"{path}: line 1 says {expected} images but the file has {len(body)} rows (truncated?)")
    split = [line.split(None, 1) for _, line in body]
    names = [parts[0] for parts in split]
    values = _parse_values([parts[1] if len(parts) > 1 else "" for parts in split], len(attribute_names))
    if values is None:  # find the first bad row, for the message
        for (number, line), parts in zip(body, split):
            row = parts[1].split() if len(parts) > 1 else []
            if len(row) != len(attribute_names) or any(v not in ("1", "-1") for v in row):
                raise DataError(f"{path} line {number}: expected {len(attribute_names)} values of 1 or -1 "
                                f"after the image name, got {len(row)}: {line.strip()[:60]!r}")
        raise DataError(f"{path}: attribute values must be 1 or -1")
    return names, attribute_names, values


def _parse_values(rows: list[str], width: int) -> np.ndarray | None:
    """Parse all rows of ``+1``/``-1`` at once in C; None if any row is malformed."""
    text = " ".join(rows)
    with warnings.catch_warnings():
        # fromstring warns (DeprecationWarning) on text it cannot parse to the end.
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(text, dtype=np.int8, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if flat.size != len(rows) * width or not np.isin(flat, (-1, 1)).all():
        return None
    counts = np.fromiter((len(row.split()) for row in rows), dtype=np.int64, count=len(rows)) if rows else None
    if counts is not None and (counts != width).any():
        return None
    return (flat.reshape(len(rows), width) > 0).astype(np.int8)


def _read_text(path: Path) -> str:
    problem = file_problem(path)
    if problem == "file not found":
        raise DataError(f"{path}: file not found (CelebA annotation file; get it from {CELEBA_URL})")
    if problem is not None:  # checked before opening: reading a FIFO or a device never ends
        raise DataError(f"{path}: {problem}")
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (CelebA annotation file; get it from {CELEBA_URL})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text annotation file (byte {exc.start} is not ASCII)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_rows(path: Path) -> list[tuple[int, str]]:
    rows = [(i + 1, line) for i, line in enumerate(_read_text(path).splitlines()) if line.strip()]
    if not rows:
        raise DataError(f"{path}: file is empty")
    return rows
