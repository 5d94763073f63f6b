"""Bad inputs on the data side: absurd sizes, files that are not what they seem, empty selections.

Each must end in one line (a DataError or ConfigError naming the file or
parameter), never a hang, a traceback or a huge allocation.
"""

from __future__ import annotations

import gzip
import os
import re
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit.data.files as files_mod
import vaekit.data.idx as idx_mod
import vaekit.data.shapes as shapes_mod
from vaekit.data import load_dataset
from vaekit.data.celeba import find_celeba
from vaekit.data.celeba_annotations import (
    read_attributes,
    read_identities,
    read_partition,
)
from vaekit.data.dataset import ImageDataset
from vaekit.data.fashion_mnist import find_fashion_mnist
from vaekit.data.files import check_bytes, existing_dir, regular_file
from vaekit.data.folder import (
    list_folder,
    load_folder,
    load_image_files,
    resolve_images,
)
from vaekit.data.idx import read_idx
from vaekit.data.images import (
    ImageProblem,
    ImageTransform,
    decode_image,
    load_image,
    read_image,
)
from vaekit.data.shapes import make_shapes
from vaekit.errors import ConfigError, DataError, VaekitError

TIMEOUT = 20


def call_guarded(fn, *args, **kwargs):
    """Run ``fn`` in a thread; fail if it hangs; return its result or the exception it raised."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} hung on a bad input"
    return box.get("error", box.get("result"))


def one_line_error(fn, *args, kind=VaekitError, **kwargs) -> str:
    error = call_guarded(fn, *args, **kwargs)
    assert isinstance(error, kind), f"expected {kind.__name__}, got {error!r}"
    message = str(error)
    assert "\n" not in message and message
    message.encode("utf-8")  # printable (no lone surrogates)
    return message


def idx_bytes(dims, type_code=0x08, payload=b"") -> bytes:
    header = b"\x00\x00" + bytes([type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def png(path, size=(10, 10), mode="L"):
    Image.new(mode, size, 128).save(path)
    return path


# ---------------------------------------------------------------------------
# Family 1: sizes nobody should allocate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dims, match", [
    ((2**31, 2**31, 2**31, 2**31), "truncated: expected"),  # int64 product overflows
    ((2**32 - 1,) * 8, "truncated: expected"),
    ((2**32 - 1, 1), "truncated: expected"),
    ((60000, 28, 28), "truncated: expected 47040016 bytes, got 116"),  # header claims more than the data
    ((0, 28, 28), "dimension 1 of .* is 0"),
    ((10, 0), "dimension 2 of .* is 0"),
])
def test_idx_absurd_headers_refused_from_arithmetic(tmp_path, dims, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(idx_bytes(dims, payload=bytes(100)))
    message = one_line_error(read_idx, path, kind=DataError)
    assert str(path) in message
    assert re.search(match, message), message


def test_idx_overflow_with_multibyte_type(tmp_path):
    path = tmp_path / "f8.idx"
    path.write_bytes(idx_bytes((2**31, 2**31, 2**31), type_code=0x0E))
    assert "truncated" in one_line_error(read_idx, path, kind=DataError)


def test_idx_still_reads_a_good_file(tmp_path):
    path = tmp_path / "ok.idx"
    path.write_bytes(idx_bytes((2, 3), payload=bytes(range(6))))
    assert read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_gzip_bomb_refused_past_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_mod, "MAX_DECOMPRESSED_BYTES", 1000)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_bytes((100_000,), payload=bytes(100_000))))
    message = one_line_error(read_idx, path, kind=DataError)
    assert str(path) in message and "more than 1000 bytes" in message


def test_gzip_bomb_bound_by_official_size(tmp_path):
    # A file named like Fashion-MNIST's test labels may expand to 10008 bytes, no more.
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(50_000)))
    message = one_line_error(read_idx, path, kind=DataError)
    assert "more than 10008 bytes" in message


def test_gzip_within_cap_still_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_mod, "MAX_DECOMPRESSED_BYTES", 1000)
    path = tmp_path / "small.gz"
    path.write_bytes(gzip.compress(idx_bytes((4,), payload=b"\x01\x02\x03\x04")))
    assert read_idx(path).tolist() == [1, 2, 3, 4]


def test_gzip_bomb_uses_bounded_read(tmp_path, monkeypatch):
    """The stream is never decompressed as a whole: reads ask for at most cap + 1 bytes."""
    monkeypatch.setattr(idx_mod, "MAX_DECOMPRESSED_BYTES", 4096)
    asked = []
    real = gzip.GzipFile.read

    def spy(self, size=-1):
        asked.append(size)
        return real(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", spy)
    path = tmp_path / "bomb2.gz"
    path.write_bytes(gzip.compress(bytes(10 * 2**20)))
    one_line_error(read_idx, path, kind=DataError)
    assert asked and all(0 <= size <= 4097 for size in asked)


@pytest.mark.parametrize("kwargs, param", [
    ({"n": 10**12}, "n"),
    ({"image_size": 10**6}, "image_size"),
    ({"n": 10**9, "image_size": 512, "channels": 3}, "n"),
    ({"n": 2**63, "image_size": 2**31}, "image_size"),
])
def test_make_shapes_absurd_sizes(kwargs, param):
    error = call_guarded(make_shapes, **kwargs)
    assert isinstance(error, ConfigError), error
    assert error.param == param and str(error).startswith(f"{param}: ") and "more than" in str(error)


def test_make_shapes_big_images_keep_memory_bounded(monkeypatch):
    data = make_shapes(n=3, image_size=600)
    assert data.images.shape == (3, 1, 600, 600)
    # Blocks sized by pixels do not change the images.
    whole = make_shapes(n=40).images
    monkeypatch.setattr(shapes_mod, "_SHAPES_CHUNK_PIXELS", 28 * 28 * 3)
    assert torch.equal(make_shapes(n=40).images, whole)


@pytest.mark.parametrize("shape", [(3, 10**6, 10**6), (1, 2**40, 1), (3, 10**5, 10**5)])
def test_folder_absurd_image_shape(tmp_path, shape):
    png(tmp_path / "a.png")
    error = call_guarded(load_folder, tmp_path, image_shape=shape, cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(error, ConfigError), error
    assert error.param == "image_shape" and "more than" in str(error)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("images*"))


def test_image_files_absurd_shape(tmp_path):
    png(tmp_path / "a.png")
    for call in (lambda: load_image_files(tmp_path, (3, 10**6, 10**6)),
                 lambda: read_image(tmp_path / "a.png", (3, 10**6, 10**6))):
        error = call_guarded(call)
        assert isinstance(error, ConfigError) and error.param == "image_shape", error


def test_check_bytes_python_ints():
    assert check_bytes((2, 3, 4), "x") == 24
    with pytest.raises(DataError, match="would need"):
        check_bytes((2**32,) * 4, "x")
    with pytest.raises(ConfigError) as info:
        check_bytes((10,), "x", param="n", limit=5)
    assert info.value.param == "n"


# ---------------------------------------------------------------------------
# Family 2: files that are not what they seem
# ---------------------------------------------------------------------------


def make_fifo(path):
    os.mkfifo(path)
    return path


def make_loop(path):
    os.symlink(path.name + ".b", path)
    os.symlink(path.name, path.parent / (path.name + ".b"))
    return path


def make_dir(path):
    path.mkdir()
    return path


def make_file(path):
    path.write_text("x")
    return path


def make_under_file(path):
    parent = path.parent / "somefile.txt"
    parent.write_text("x")
    return parent / path.name


BAD_FILES = {
    "fifo": (make_fifo, "FIFO"),
    "loop": (make_loop, "symlink loop"),
    "directory": (make_dir, "is a directory"),
    "under-file": (make_under_file, "is a file, not a folder"),
    "missing": (lambda p: p, "file not found"),
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request, tmp_path):
    make, match = BAD_FILES[request.param]
    return make(tmp_path / "thing.png"), match


@pytest.fixture(params=["/dev/zero", "/dev/null"])
def device(request):
    if not os.path.exists(request.param):
        pytest.skip("no such device")
    return request.param


READERS = [
    lambda p: read_idx(p),
    lambda p: read_image(p, (1, 28, 28)),
    lambda p: load_image(p, (3, 16, 16)),
    lambda p: read_partition(p),
    lambda p: read_identities(p),
    lambda p: read_attributes(p),
    lambda p: load_image_files(p, (1, 28, 28)),
]


@pytest.mark.parametrize("reader", READERS)
def test_readers_refuse_bad_files(reader, bad_file):
    path, match = bad_file
    if reader is READERS[-1] and match == "is a directory":
        match = "folder holds no image files"  # a folder is what load_image_files also takes
    message = one_line_error(reader, path, kind=DataError)
    assert match in message and "thing.png" in message


@pytest.mark.parametrize("reader", READERS)
def test_readers_refuse_devices(reader, device):
    message = one_line_error(reader, device, kind=DataError)
    assert device in message and "character device" in message


def test_decode_image_problem_for_fifo(tmp_path):
    path = make_fifo(tmp_path / "pipe.png")
    error = call_guarded(decode_image, path, ImageTransform(size=(8, 8), channels=1))
    assert isinstance(error, ImageProblem) and "FIFO" in str(error)


def test_regular_file_bytes_name(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"bad\xff.png")
    os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
    assert regular_file(name).name == os.fsdecode(b"bad\xff.png")
    message = one_line_error(read_image, name, (1, 8, 8), kind=DataError)
    assert "bad\\xff.png" in message  # printable, not a surrogate


def test_nul_in_path_refused():
    for call in (lambda: regular_file("a\0b"), lambda: read_idx("a\0b"), lambda: read_image("a\0b", (1, 8, 8)),
                 lambda: existing_dir("a\0b")):
        assert "NUL" in one_line_error(call, kind=DataError)


def test_list_folder_skips_what_is_not_an_image_file(tmp_path, caplog):
    png(tmp_path / "good.png")
    (tmp_path / "sub").mkdir()
    png(tmp_path / "sub" / "also.png")
    make_fifo(tmp_path / "pipe.png")
    make_loop(tmp_path / "loop.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    (tmp_path / "dir.png").mkdir()  # a folder named like an image: walked, holds nothing
    os.symlink(tmp_path, tmp_path / "sub" / "back")  # a folder loop: not followed
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xff.png")
    os.close(os.open(bad, os.O_CREAT | os.O_WRONLY, 0o644))
    names = call_guarded(list_folder, tmp_path)
    assert names == ["good.png", "sub/also.png"]
    text = caplog.text
    for expected in ("pipe.png: is a FIFO", "loop.jpg: file is a symlink loop", "zero.png: is a character device",
                     "bad\\xff.png: file name is not valid UTF-8 (skipped)"):
        assert expected in text, text


def test_load_folder_with_bad_entries_trains_on_the_rest(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    png(tmp_path / "c.png")
    make_fifo(tmp_path / "pipe.png")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    data = call_guarded(load_folder, tmp_path, "all", image_shape=(1, 8, 8), cache_dir=tmp_path.parent / "c",
                        progress=False)
    assert isinstance(data, ImageDataset), data
    assert sorted(data.filenames) == ["a.png", "b.png", "c.png"]


def test_load_image_files_folder_skips_fifo(tmp_path):
    png(tmp_path / "a.png")
    make_fifo(tmp_path / "b.png")
    dataset, names = call_guarded(load_image_files, tmp_path, (1, 8, 8))
    assert names == ["a.png"] and len(dataset) == 1


@pytest.mark.parametrize("make, match", [
    (make_file, "is a file, not a folder"),
    (make_fifo, "is a FIFO"),
    (make_loop, "symlink loop"),
    (lambda p: p, "folder does not exist"),
    (make_under_file, "not found"),
])
def test_folder_roots_refused(tmp_path, make, match):
    root = make(tmp_path / "root")
    for call in (lambda: load_folder(root, progress=False), lambda: list_folder(root),
                 lambda: load_dataset(f"folder:{root}", progress=False)):
        assert match in one_line_error(call, kind=DataError)


@pytest.mark.parametrize("make, match", [
    (make_file, "is a file, not a folder"),
    (make_fifo, "is a FIFO"),
    (make_loop, "symlink loop"),
    (lambda p: p, "data directory does not exist"),
])
def test_data_dir_refused(tmp_path, make, match):
    root = make(tmp_path / "data")
    for call in (lambda: find_fashion_mnist(root, download=False), lambda: find_celeba(root)):
        assert match in one_line_error(call, kind=DataError)


def test_celeba_annotation_fifo_in_data_dir(tmp_path):
    make_fifo(tmp_path / "list_eval_partition.txt")
    (tmp_path / "img_align_celeba").mkdir()
    message = one_line_error(load_dataset, "celeba", data_dir=tmp_path, progress=False, cache_dir=tmp_path / "c")
    assert "list_eval_partition.txt" in message


def test_resolve_images_nul_and_fifo(tmp_path):
    error = call_guarded(resolve_images, "pics/a\0.png", (1, 8, 8))
    assert isinstance(error, ConfigError) and "NUL" in str(error)
    pipe = make_fifo(tmp_path / "p.png")
    assert "FIFO" in one_line_error(resolve_images, str(pipe), (1, 8, 8), kind=DataError)


# ---------------------------------------------------------------------------
# Family 3: options naming nothing usable
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, match", [
    ("", "a dataset name is needed"),
    ("   ", "a dataset name is needed"),
    ("fashion\0mnist", "NUL byte"),
    ("folder:/tmp/x\0y", "NUL byte"),
    ("folder:", "give the folder"),
    ("no-such-set", "unknown dataset"),
])
def test_load_dataset_bad_names(name, match):
    error = call_guarded(load_dataset, name)
    assert isinstance(error, ConfigError), error
    assert match in str(error) and "\n" not in str(error)


def test_folder_pointing_at_file(tmp_path):
    path = png(tmp_path / "one.png")
    assert "is a file, not a folder" in one_line_error(load_dataset, f"folder:{path}", kind=DataError)


def small_set():
    images = torch.zeros((6, 1, 4, 4), dtype=torch.uint8)
    return ImageDataset(images, torch.tensor([0, 1, 2, 0, 1, 2]), ("a", "b", "c"), name="t", split="train")


def test_exclude_every_class():
    data = small_set()
    for classes in (["a", "b", "c"], [0, 1, 2], ["a", "b", "c", 0]):
        with pytest.raises(ConfigError, match="exclude_classes: every class would be excluded") as info:
            data.exclude_classes(classes)
        assert info.value.param == "exclude_classes"
    assert len(data.exclude_classes(["a", "b"])) == 2


def test_exclude_all_present_classes_of_shapes():
    data = make_shapes(n=12)
    with pytest.raises(ConfigError, match="every class"):
        data.exclude_classes(list(range(6)))


@pytest.mark.parametrize("index", [[], slice(3, 3), np.zeros(6, dtype=bool), torch.tensor([], dtype=torch.int64)])
def test_empty_subset_refused(index):
    with pytest.raises(ConfigError, match="subset: the selection is empty") as info:
        small_set().subset(index)
    assert info.value.param == "subset"


def test_empty_subset_of_file_dataset(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    data = load_folder(tmp_path, "all", image_shape=(1, 8, 8), cache_dir=tmp_path.parent / "c2", progress=False)
    with pytest.raises(ConfigError, match="selection is empty"):
        data.subset([])
    assert len(data.subset([0])) == 1


def test_files_module_caps_are_constants():
    assert files_mod.MAX_DECOMPRESSED_BYTES == 2**30
    assert files_mod.MAX_ARRAY_BYTES >= 2**30
