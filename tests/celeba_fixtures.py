"""CelebA fixtures shared by the CelebA, folder and family tests.

The real sample lives next to the repository, in ``../shared/data/celeba-sample``.
CelebA's terms forbid redistribution: tests copy its images to ``tmp_path``
only and never write a figure into the repository.

Import the fixtures into a test module (``from celeba_fixtures import ...``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CELEBA = REPO_ROOT.parent / "shared" / "data" / "celeba-sample"
CELEBA_NEEDED = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")
ANNOTATIONS = ("list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")


@pytest.fixture(scope="session")
def celeba_dir() -> Path:
    """The real 3,000-image CelebA sample; skip if absent (fail on CI)."""
    from conftest import require_shared_data

    return require_shared_data(SHARED_CELEBA, CELEBA_NEEDED)


@pytest.fixture(autouse=True, scope="module")
def isolated_cache(tmp_path_factory):
    """Every test module builds its image caches in its own temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("vaekit-cache")
        patch.setenv("VAEKIT_CACHE_DIR", str(folder))
        yield folder


def partition_rows(source: Path) -> list[tuple[str, int]]:
    """``(image, partition)`` rows of the sample, in file order."""
    rows = []
    for line in (source / "list_eval_partition.txt").read_text().splitlines():
        if line.strip():
            name, part = line.split()
            rows.append((name, int(part)))
    return rows


def make_celeba_copy(source: Path, dest: Path, n_train: int = 64, n_val: int = 32,
                     as_test: int = 0) -> Path:
    """A partial CelebA copy in the official layout: the first images of each split.

    Annotation rows are copied byte for byte (CRLF endings kept) and the
    attribute file's count line is updated. ``as_test`` val images are
    relabelled as test-split images, to exercise a copy that has a test split.
    """
    rows = partition_rows(source)
    train = [name for name, part in rows if part == 0][:n_train]
    val = [name for name, part in rows if part == 1][: n_val + as_test]
    chosen = set(train) | set(val)
    relabel = set(val[:as_test])
    (dest / "img_align_celeba").mkdir(parents=True)
    for name in sorted(chosen):
        shutil.copyfile(source / "img_align_celeba" / name, dest / "img_align_celeba" / name)
    for file_name in ANNOTATIONS:
        raw = (source / file_name).read_bytes().split(b"\r\n")
        if file_name == "list_attr_celeba.txt":
            header, body = raw[:2], raw[2:]
        else:
            header, body = [], raw
        kept = [line for line in body if line.split(b" ", 1)[0].decode() in chosen]
        if file_name == "list_eval_partition.txt":
            kept = [line.replace(b" 1", b" 2") if line.split(b" ", 1)[0].decode() in relabel else line
                    for line in kept]
        if header:
            header = [str(len(kept)).encode(), header[1]]
        (dest / file_name).write_bytes(b"\r\n".join(header + kept) + b"\r\n")
    return dest


@pytest.fixture
def fresh_reports(monkeypatch):
    """Forget which data problems were already reported, so this test sees its own."""
    import vaekit.data.images

    monkeypatch.setattr(vaekit.data.images, "_REPORTED", set())
