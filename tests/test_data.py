"""Tests for vaekit.data: IDX reading, Fashion-MNIST search/download/load, shapes."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit.data.dataset as dataset_mod
import vaekit.data.fashion_mnist as fashion_mnist_mod
import vaekit.data.idx as idx_mod
import vaekit.data.registry as registry_mod
import vaekit.data.shapes as shapes_mod
from vaekit.errors import ConfigError, DataError

TRAIN_FILES = fashion_mnist_mod.FASHION_MNIST_FILES["train"]
TEST_FILES = fashion_mnist_mod.FASHION_MNIST_FILES["test"]
ALL_FILES = TRAIN_FILES + TEST_FILES


# ---------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real search locations and no network for any test in this file."""
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fashion_mnist_mod, "SYSTEM_DATA_DIRS", ())
    # Any download goes to a folder that does not exist...
    monkeypatch.setattr(fashion_mnist_mod, "FASHION_MNIST_URL", (tmp_path / "no-server").as_uri() + "/")
    # ...and a non-file URL would be a bug in the test: refuse it outright.
    real_fetch = fashion_mnist_mod._fetch

    def local_only_fetch(url, dest):
        assert url.startswith("file://"), f"test tried to reach the network: {url}"
        real_fetch(url, dest)

    monkeypatch.setattr(fashion_mnist_mod, "_fetch", local_only_fetch)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return path


def patch_checksum(monkeypatch, name: str, payload: bytes) -> None:
    """Make a synthetic file the 'official' one for size/MD5 checks."""
    idx_name = name.removesuffix(".gz")
    monkeypatch.setitem(
        fashion_mnist_mod.FASHION_MNIST_CHECKSUMS, idx_name, (len(payload), hashlib.md5(payload).hexdigest())
    )


def write_fake_split(
    directory: Path,
    monkeypatch,
    split: str = "test",
    n: int = 20,
    gz: bool = True,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Write a small IDX split with matching (patched) checksums."""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    for name, array in zip(fashion_mnist_mod.FASHION_MNIST_FILES[split], (images, labels)):
        payload = idx_bytes(array)
        write_file(directory / (name if gz else name.removesuffix(".gz")), payload, gz)
        patch_checksum(monkeypatch, name, payload)
    return images, labels


def touch_all(directory: Path) -> Path:
    """Create empty files with all official names (enough for the search)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        (directory / name).touch()
    return directory


def assert_one_line_naming(exc_info, name: str) -> str:
    message = str(exc_info.value)
    assert name in message, message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------
# Real Fashion-MNIST
# ---------------------------------------------------------------------------


def test_real_train_split(fashion_mnist_dir):
    ds = fashion_mnist_mod.load_fashion_mnist("train", data_dir=fashion_mnist_dir)
    assert ds.images.shape == (60000, 1, 28, 28)
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (60000,)
    assert ds.image_shape == (1, 28, 28) and len(ds) == 60000
    assert ds.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(ds.labels).tolist() == [6000] * 10
    assert ds.to_float().mean().item() == pytest.approx(0.28604, abs=1e-5)
    assert ds.class_names == fashion_mnist_mod.FASHION_MNIST_CLASSES
    assert (ds.name, ds.split) == ("fashion-mnist", "train")


def test_real_test_split_and_aliases(fashion_mnist_dir):
    ds = registry_mod.load_dataset("fmnist", split="test", data_dir=fashion_mnist_dir)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert ds.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.to_float().mean().item() == pytest.approx(0.28685, abs=1e-5)
    again = registry_mod.load_dataset("Fashion_MNIST", split="test", data_dir=fashion_mnist_dir)
    assert torch.equal(again.images, ds.images)


def test_loaded_tensors_are_private_copies(fashion_mnist_dir):
    first = fashion_mnist_mod.load_fashion_mnist("test", data_dir=fashion_mnist_dir)
    first.images[0].fill_(123)
    first.labels[0] = 3
    second = fashion_mnist_mod.load_fashion_mnist("test", data_dir=fashion_mnist_dir)
    assert second.labels[0].item() == 9
    assert not torch.equal(second.images[0], first.images[0])


def test_verify_real_folder(fashion_mnist_dir):
    checked = fashion_mnist_mod.verify_fashion_mnist(fashion_mnist_dir)
    assert sorted(p.name for p in checked) == sorted(ALL_FILES)
    ds = fashion_mnist_mod.load_fashion_mnist("test", data_dir=fashion_mnist_dir, verify=True)
    assert len(ds) == 10000


def test_uncompressed_copies_load_the_same(fashion_mnist_dir, tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name in TEST_FILES:
        payload = gzip.decompress((fashion_mnist_dir / name).read_bytes())
        (raw_dir / name.removesuffix(".gz")).write_bytes(payload)
    raw = fashion_mnist_mod.load_fashion_mnist("test", data_dir=raw_dir, verify=True)
    gz = fashion_mnist_mod.load_fashion_mnist("test", data_dir=fashion_mnist_dir)
    assert torch.equal(raw.images, gz.images) and torch.equal(raw.labels, gz.labels)
    assert fashion_mnist_mod.verify_fashion_mnist(raw_dir, splits=["test"])


def test_debian_style_gzip_header_still_verifies(fashion_mnist_dir, tmp_path):
    # Debian strips the file name and fixes the mtime: other .gz bytes, same data.
    labels_name, images_name = TEST_FILES[1], TEST_FILES[0]
    original = (fashion_mnist_dir / labels_name).read_bytes()
    payload = gzip.decompress(original)
    regzipped = gzip.compress(payload, compresslevel=9, mtime=1234567890)
    assert hashlib.md5(regzipped).digest() != hashlib.md5(original).digest()
    deb = tmp_path / "deb"
    deb.mkdir()
    (deb / labels_name).write_bytes(regzipped)
    os.symlink(fashion_mnist_dir / images_name, deb / images_name)
    assert len(fashion_mnist_mod.verify_fashion_mnist(deb, splits=["test"])) == 2

    # A changed (but still valid) label is caught by the MD5 check only.
    tampered = bytearray(payload)
    tampered[-1] = (tampered[-1] + 1) % 10
    (deb / labels_name).write_bytes(gzip.compress(bytes(tampered)))
    with pytest.raises(DataError, match="checksum mismatch") as exc:
        fashion_mnist_mod.verify_fashion_mnist(deb, splits=["test"])
    assert_one_line_naming(exc, labels_name)
    with pytest.raises(DataError, match="checksum mismatch"):
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=deb, verify=True)
    assert len(fashion_mnist_mod.load_fashion_mnist("test", data_dir=deb)) == 10000  # verify is opt-in


# ---------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------


def test_read_idx_detects_gzip_by_magic_not_extension(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = idx_bytes(array)
    gz_named_raw = write_file(tmp_path / "plain.gz", payload, gz=False)
    raw_named_gz = write_file(tmp_path / "packed.idx", payload, gz=True)
    for path in (gz_named_raw, raw_named_gz):
        result = idx_mod.read_idx(path)
        assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
        np.testing.assert_array_equal(result, array)


def test_read_idx_big_endian_types(tmp_path):
    values = np.array([1, -2, 300], dtype=">i4")
    payload = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes()
    result = idx_mod.read_idx(write_file(tmp_path / "ints", payload, gz=False))
    assert result.tolist() == [1, -2, 300] and result.dtype == np.int32


LABELS = np.arange(10, dtype=np.uint8)
GOOD = idx_bytes(LABELS)
BAD_IDX_FILES = {
    "truncated": (GOOD[:-3], False, "truncated: expected 18 bytes, got 15"),
    "trailing": (GOOD + b"\0", False, "trailing data"),
    "short-header": (GOOD[:6], False, "truncated"),
    "tiny": (b"\0\0", False, "too short"),
    "bad-magic": (b"\x01\x02" + GOOD[2:], False, "bad magic number 0x01020801"),
    "bad-type": (bytes([0, 0, 0x07, 1]) + GOOD[4:], False, "bad magic number 0x00000701"),
    "zero-dims": (bytes([0, 0, 8, 0]), False, "bad magic number"),
    "truncated-gzip": (gzip.compress(GOOD)[:-12], False, "corrupt gzip data"),
    "garbage-gzip": (b"\x1f\x8b" + b"not deflate at all", False, "corrupt gzip data"),
    "truncated-inside-gzip": (GOOD[:-1], True, "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_IDX_FILES))
def test_read_idx_rejects_bad_files(tmp_path, case):
    payload, gz, expected = BAD_IDX_FILES[case]
    path = write_file(tmp_path / f"{case}-idx1-ubyte.gz", payload, gz)
    with pytest.raises(DataError, match=expected) as exc:
        idx_mod.read_idx(path)
    assert_one_line_naming(exc, path.name)


def test_read_idx_corrupt_gzip_crc(tmp_path):
    packed = bytearray(gzip.compress(GOOD))
    packed[-8] ^= 0xFF  # CRC32 in the trailer
    path = write_file(tmp_path / "crc.gz", bytes(packed), gz=False)
    with pytest.raises(DataError, match="corrupt gzip data") as exc:
        idx_mod.read_idx(path)
    assert_one_line_naming(exc, "crc.gz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as exc:
        idx_mod.read_idx(tmp_path / "nope-idx3-ubyte.gz")
    assert_one_line_naming(exc, "nope-idx3-ubyte.gz")


# ---------------------------------------------------------------------------
# load_fashion_mnist on synthetic files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_split_loads(tmp_path, monkeypatch, gz):
    images, labels = write_fake_split(tmp_path, monkeypatch, n=12, gz=gz)
    ds = fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path, verify=True)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


def test_count_mismatch(tmp_path, monkeypatch):
    write_fake_split(tmp_path, monkeypatch, n=12, labels=np.arange(11, dtype=np.uint8) % 10)
    with pytest.raises(DataError, match="holds 12 images but .* holds 11 labels") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    message = assert_one_line_naming(exc, TEST_FILES[0])
    assert TEST_FILES[1] in message


def test_label_out_of_range(tmp_path, monkeypatch):
    labels = np.array([0, 1, 2, 10, 4, 255], dtype=np.uint8)
    write_fake_split(tmp_path, monkeypatch, n=6, labels=labels)
    with pytest.raises(DataError, match="label 10 at index 3 is out of range 0..9") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    assert_one_line_naming(exc, TEST_FILES[1])


def test_wrong_magic_for_role(tmp_path, monkeypatch):
    # A 1-D labels file where the 3-D images file should be.
    write_fake_split(tmp_path, monkeypatch, n=4)
    payload = idx_bytes(np.zeros(4, dtype=np.uint8))
    write_file(tmp_path / TEST_FILES[0], payload, gz=True)
    patch_checksum(monkeypatch, TEST_FILES[0], payload)
    expected = "wrong IDX magic number 0x00000801, expected 0x00000803"
    with pytest.raises(DataError, match=expected) as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    assert_one_line_naming(exc, TEST_FILES[0])


def test_wrong_image_size(tmp_path, monkeypatch):
    write_fake_split(tmp_path, monkeypatch, n=4, images=np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="expected 28x28 images, got 32x32") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    assert_one_line_naming(exc, TEST_FILES[0])


def test_valid_idx_of_wrong_size_is_not_fashion_mnist(tmp_path, monkeypatch):
    write_fake_split(tmp_path, monkeypatch, n=4)
    monkeypatch.setitem(fashion_mnist_mod.FASHION_MNIST_CHECKSUMS, "t10k-images-idx3-ubyte", (7_840_016, "x"))
    with pytest.raises(DataError, match="expected 7840016 decompressed bytes, got 3152") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    assert_one_line_naming(exc, TEST_FILES[0])


def test_truncated_and_corrupt_files_in_a_split(tmp_path, monkeypatch):
    write_fake_split(tmp_path, monkeypatch, n=4)
    labels_path = tmp_path / TEST_FILES[1]
    labels_path.write_bytes(labels_path.read_bytes()[:-5])
    with pytest.raises(DataError, match="corrupt gzip data") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path)
    assert_one_line_naming(exc, TEST_FILES[1])


def test_file_replaced_on_disk_is_reread(tmp_path, monkeypatch):
    write_fake_split(tmp_path, monkeypatch, n=5)
    assert fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path).labels.tolist() == [0, 1, 2, 3, 4]
    write_fake_split(tmp_path, monkeypatch, n=5, labels=np.full(5, 7, dtype=np.uint8))
    stamp = (tmp_path / TEST_FILES[1]).stat().st_mtime_ns + 10**9
    os.utime(tmp_path / TEST_FILES[1], ns=(stamp, stamp))
    assert fashion_mnist_mod.load_fashion_mnist("test", data_dir=tmp_path).labels.tolist() == [7] * 5


# ---------------------------------------------------------------------------
# Search order
# ---------------------------------------------------------------------------


def test_search_order(tmp_path, monkeypatch):
    explicit = touch_all(tmp_path / "explicit")
    env = touch_all(tmp_path / "env")
    cache = touch_all(tmp_path / "home" / ".cache" / "vaekit" / "fashion-mnist")
    system = touch_all(tmp_path / "system")
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(env))
    monkeypatch.setattr(fashion_mnist_mod, "SYSTEM_DATA_DIRS", (tmp_path / "absent", system))

    assert fashion_mnist_mod.find_fashion_mnist(explicit) == explicit
    assert fashion_mnist_mod.find_fashion_mnist() == env
    shutil.rmtree(env)  # a stale env var falls through to the next place
    assert fashion_mnist_mod.find_fashion_mnist() == cache
    monkeypatch.delenv("VAEKIT_DATA_DIR")
    assert fashion_mnist_mod.find_fashion_mnist() == cache
    shutil.rmtree(cache)
    assert fashion_mnist_mod.find_fashion_mnist() == system


def test_parent_folder_with_fashion_mnist_subfolder(tmp_path, monkeypatch):
    nested = touch_all(tmp_path / "datasets" / "fashion-mnist")
    assert fashion_mnist_mod.find_fashion_mnist(tmp_path / "datasets") == nested
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "datasets"))
    assert fashion_mnist_mod.find_fashion_mnist() == nested


def test_xdg_cache_home_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = touch_all(tmp_path / "xdg" / "vaekit" / "fashion-mnist")
    touch_all(tmp_path / "home" / ".cache" / "vaekit" / "fashion-mnist")
    assert fashion_mnist_mod.user_cache_dir() == cache
    assert fashion_mnist_mod.find_fashion_mnist() == cache


def test_uncompressed_names_and_single_split_are_found(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in TEST_FILES:
        (folder / name.removesuffix(".gz")).touch()
    assert fashion_mnist_mod.find_fashion_mnist(folder, splits=["test"]) == folder
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte.gz, train-labels"):
        fashion_mnist_mod.find_fashion_mnist(folder)


def test_explicit_dir_without_files_does_not_fall_through(tmp_path):
    touch_all(tmp_path / "home" / ".cache" / "vaekit" / "fashion-mnist")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="Fashion-MNIST files not found") as exc:
        fashion_mnist_mod.find_fashion_mnist(empty, download=True)
    assert_one_line_naming(exc, str(empty))
    with pytest.raises(DataError, match="does not exist") as exc:
        fashion_mnist_mod.load_fashion_mnist("train", data_dir=tmp_path / "typo")
    assert_one_line_naming(exc, "typo")


def test_unknown_split(tmp_path):
    with pytest.raises(ConfigError, match="unknown split 'val' for fashion-mnist"):
        fashion_mnist_mod.load_fashion_mnist("val", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# Download (from local file:// folders only)
# ---------------------------------------------------------------------------


def serve(monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(fashion_mnist_mod, "FASHION_MNIST_URL", folder.as_uri() + "/")


def test_download_into_cache(fashion_mnist_dir, monkeypatch):
    serve(monkeypatch, fashion_mnist_dir)
    ds = fashion_mnist_mod.load_fashion_mnist("test")  # download=True is the default
    cache = fashion_mnist_mod.user_cache_dir()
    assert sorted(os.listdir(cache)) == sorted(TEST_FILES)  # no temp files left
    for name in TEST_FILES:
        assert (cache / name).read_bytes() == (fashion_mnist_dir / name).read_bytes()
    assert ds.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    # Second call finds the cached copy; the server is gone.
    monkeypatch.setattr(fashion_mnist_mod, "FASHION_MNIST_URL", "file:///nonexistent/")
    assert fashion_mnist_mod.find_fashion_mnist(download=True, splits=["test"]) == cache


def test_download_with_bad_checksum_is_rejected_and_deleted(tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_fake_split(server, monkeypatch, n=8)
    # The served labels differ from what the checksum table expects.
    payload = idx_bytes(np.full(8, 3, dtype=np.uint8))
    write_file(server / TEST_FILES[1], payload, gz=True)
    serve(monkeypatch, server)
    with pytest.raises(DataError, match="checksum mismatch: MD5 of decompressed data is") as exc:
        fashion_mnist_mod.load_fashion_mnist("test")
    message = assert_one_line_naming(exc, TEST_FILES[1])
    assert "deleted" in message
    # The good images file was kept; no labels file and no temp file remain.
    assert os.listdir(fashion_mnist_mod.user_cache_dir()) == [TEST_FILES[0]]


def test_download_replaces_a_corrupt_cached_file(tmp_path, monkeypatch):
    server = tmp_path / "server"
    images, labels = write_fake_split(server, monkeypatch, n=8)
    serve(monkeypatch, server)
    cache = fashion_mnist_mod.user_cache_dir()
    cache.mkdir(parents=True)
    (cache / TEST_FILES[1]).write_bytes(b"junk")
    fashion_mnist_mod.download_fashion_mnist(splits=["test"])
    assert (cache / TEST_FILES[1]).read_bytes() == (server / TEST_FILES[1]).read_bytes()
    ds = fashion_mnist_mod.load_fashion_mnist("test", download=False)
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


def test_no_data_no_network_gives_one_line_help(tmp_path):
    with pytest.raises(DataError) as exc:
        fashion_mnist_mod.load_fashion_mnist("train")
    message = assert_one_line_naming(exc, "download failed")
    cache = str(tmp_path / "home" / ".cache" / "vaekit" / "fashion-mnist")
    for part in (cache, "$VAEKIT_DATA_DIR (unset)", "apt install dataset-fashion-mnist",
                 "--data-dir", "train-images-idx3-ubyte.gz"):
        assert part in message, part
    # The failed attempt leaves no partial file (temp files start with a dot).
    assert not os.path.exists(cache) or os.listdir(cache) == []


def test_download_disabled_never_fetches(monkeypatch):
    def fail(url, dest):
        raise AssertionError("fetched although download=False")

    monkeypatch.setattr(fashion_mnist_mod, "_fetch", fail)
    with pytest.raises(DataError, match="downloading is disabled") as exc:
        fashion_mnist_mod.load_fashion_mnist("test", download=False)
    assert_one_line_naming(exc, "apt install dataset-fashion-mnist")


# ---------------------------------------------------------------------------
# Shapes and the registry
# ---------------------------------------------------------------------------


def test_shapes_deterministic_and_balanced():
    a = shapes_mod.make_shapes(n=300, seed=1)
    b = registry_mod.load_dataset("shapes", n=300, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (300, 1, 28, 28) and a.images.dtype == torch.uint8
    assert a.labels.dtype == torch.int64
    assert torch.bincount(a.labels).tolist() == [50] * 6
    assert a.class_names == shapes_mod.SHAPES_CLASSES
    assert (a.images.flatten(1).amax(1) >= 127).all()  # every image shows a shape
    assert (a.images[:, :, 0, :] == 0).all()  # shapes stay off the border rows
    test = shapes_mod.make_shapes(n=300, seed=1, split="test")
    other_seed = shapes_mod.make_shapes(n=300, seed=2)
    assert not torch.equal(test.images, a.images) and test.split == "test"
    assert not torch.equal(other_seed.images, a.images)
    counts = torch.bincount(shapes_mod.make_shapes(n=10).labels)
    assert counts.max() - counts.min() <= 1


def test_shapes_classes_look_different():
    ds = shapes_mod.make_shapes(n=600, seed=0)
    lit = (ds.images > 0).float().flatten(1).mean(1)
    square, cross = (lit[ds.labels == k].mean() for k in (0, 5))
    assert square > cross  # a filled square covers more pixels than a cross


def test_shapes_rgb_and_size():
    ds = shapes_mod.make_shapes(n=12, image_size=16, channels=3, seed=3)
    assert ds.images.shape == (12, 3, 16, 16) and ds.image_shape == (3, 16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n must be"), ({"image_size": 4}, "image_size"), ({"channels": 0}, "channels"),
     ({"seed": -1}, "seed"), ({"split": "val"}, "unknown split 'val' for shapes")],
)
def test_shapes_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        shapes_mod.make_shapes(**kwargs)


def test_load_dataset_unknown_name():
    with pytest.raises(ConfigError) as exc:
        registry_mod.load_dataset("foo")
    message = str(exc.value)
    assert message.startswith("unknown dataset 'foo'; choose one of: fashion-mnist, shapes")


def test_register_dataset_and_prefix(monkeypatch):
    monkeypatch.setattr(registry_mod, "DATASETS", dict(registry_mod.DATASETS))
    monkeypatch.setattr(registry_mod, "_ALIASES", dict(registry_mod._ALIASES))
    seen = {}

    def folder_loader(split, data_dir, download, arg, **kwargs):
        seen.update(split=split, arg=arg, **kwargs)
        return shapes_mod.make_shapes(n=6, split=split)

    registry_mod.register_dataset("folder", folder_loader, aliases=["dir"])
    ds = registry_mod.load_dataset("folder:/some/Path", split="test", extra=1)
    assert seen == {"split": "test", "arg": "/some/Path", "extra": 1} and len(ds) == 6
    assert "folder" in registry_mod.dataset_names()


# ---------------------------------------------------------------------------
# ImageDataset
# ---------------------------------------------------------------------------


def test_image_dataset_subset_exclude_and_float():
    ds = shapes_mod.make_shapes(n=60, seed=0)
    sub = ds.subset(torch.arange(10))
    assert len(sub) == 10 and torch.equal(sub.images, ds.images[:10])
    assert len(ds.subset(np.array([3, 1]))) == 2
    no_squares = ds.exclude_classes("square")
    assert len(no_squares) == 50 and 0 not in no_squares.labels.tolist()
    fewer = ds.exclude_classes(["circle", 5])
    assert set(fewer.labels.tolist()) == {0, 2, 3, 4}
    assert fewer.class_names == ds.class_names  # ids keep their meaning
    floats = ds.to_float(torch.tensor([0, 1]))
    assert floats.dtype == torch.float32 and floats.shape == (2, 1, 28, 28)
    assert 0.0 <= floats.min() and floats.max() <= 1.0
    assert torch.equal(ds.to_float(slice(0, 2)), floats)
    assert "n=60" in repr(ds)
    with pytest.raises(ConfigError, match="unknown class 'Sock'"):
        ds.exclude_classes("Sock")
    with pytest.raises(ConfigError, match="class id 6 is out of range"):
        ds.exclude_classes(6)


def test_image_dataset_validates_tensors():
    labels = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(DataError, match="uint8"):
        dataset_mod.ImageDataset(torch.zeros(2, 1, 4, 4), labels, ("a",), "x", "train")
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="expected 2 labels"):
        dataset_mod.ImageDataset(images, torch.zeros(3, dtype=torch.int64), ("a",), "x", "train")
