"""The data package's public API: ImageDataset as a torch Dataset, the one class-name
resolver, the one image-file loader, and where a dataset was found."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import vaekit.data.fashion_mnist as fashion_mnist_mod
from vaekit.data import FASHION_MNIST_CLASSES, ImageDataset, load_dataset, make_shapes
from vaekit.data.celeba import CELEBA_ATTRIBUTES, CELEBA_FILES
from vaekit.data.classes import class_mask, resolve_class, resolve_classes
from vaekit.data.folder import load_image_files
from vaekit.data.images import ImageTransform, decode_image, load_image, read_image
from vaekit.data.source import data_source, verify_source
from vaekit.errors import ConfigError, DataError

# ---------------------------------------------------------------------------
# ImageDataset as a torch Dataset
# ---------------------------------------------------------------------------


def test_a_dataloader_yields_float_batches_and_every_label():
    data = make_shapes(n=50)
    torch.manual_seed(0)
    batches = list(DataLoader(data, batch_size=16, shuffle=True))
    assert [tuple(images.shape) for images, _ in batches] == [(16, 1, 28, 28)] * 3 + [(2, 1, 28, 28)]
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.dtype == torch.float32 and 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == torch.int64
    assert sorted(labels.tolist()) == sorted(data.labels.tolist())
    # Shuffled, but each sample exactly once: the same images as the uint8 tensor.
    as_bytes = sorted((x * 255).round().to(torch.uint8).numpy().tobytes() for x in images)
    assert as_bytes == sorted(x.numpy().tobytes() for x in data.images)
    assert data.images.dtype == torch.uint8  # the trainer's hot path still slices uint8


def test_indexing_counts_from_the_end_and_stops_at_the_bounds():
    data = make_shapes(n=6, seed=1)
    image, label = data[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.dim() == 0 and int(label) == int(data.labels[0])
    assert torch.equal(image, data.to_float([0])[0])
    assert torch.equal(data[-1][0], data[5][0]) and int(data[-6][1]) == int(data.labels[0])
    assert torch.equal(data[np.int64(2)][0], data[2][0])
    for bad in (6, -7, 100):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            data[bad]
    with pytest.raises(TypeError, match="subset"):
        data[0:2]
    assert len(list(data)) == 6  # iteration ends at IndexError
    image[:] = 0  # a fresh float copy: the dataset's uint8 images are untouched
    assert data.images[0].any()


# ---------------------------------------------------------------------------
# One class-name resolver
# ---------------------------------------------------------------------------


def test_any_torch_dataset_is_read_once_into_uint8():
    from vaekit.data.convert import as_image_dataset

    floats = [(torch.full((1, 4, 4), 0.5), torch.tensor(1)), (np.zeros((1, 4, 4), np.float32), np.int64(0)),
              (torch.full((1, 4, 4), 1.00001), 2.0)]  # a hair above 1 is rounding
    data = as_image_dataset(floats, class_names=["a", "b", "c"])
    assert data.images.dtype == torch.uint8 and data.images[:, 0, 0, 0].tolist() == [128, 0, 255]
    assert data.labels.tolist() == [1, 0, 2] and data.class_names == ("a", "b", "c")


@pytest.mark.parametrize("items, needle", [
    ([torch.full((1, 4, 4), 200.0)], "item 0: float pixels must lie in [0, 1], got 200 to 200 (give images in "
                                     "0..255 as uint8)"),
    ([(torch.zeros(1, 4, 4), "cat")], "item 0: the label must be an integer class index, got 'cat'"),
    ([(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 4, 4), 3)], "item 1 has label 3; the labels name 2 classes (0 to 1"),
    ([(torch.zeros(1, 4, 4), -1)], "item 0 has label -1"),
    ([torch.zeros(4, 4)], "items must be images (C, H, W), got shape (4, 4)"),
])
def test_a_dataset_that_is_not_images_and_class_labels_is_one_line(items, needle):
    from vaekit.data.convert import as_image_dataset

    with pytest.raises(DataError) as error:
        as_image_dataset(items, name="mine", split="test", class_names=["a", "b"])
    assert str(error.value).startswith("dataset 'mine' (test): ") and needle in str(error.value)
    assert "\n" not in str(error.value)


def test_training_and_analysis_resolve_the_same_names(fashion_mnist_dir):
    test = load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir)
    assert resolve_class("bag", FASHION_MNIST_CLASSES) == 8
    without_bags = test.exclude_classes(["bag"])
    assert len(without_bags) == 9000 and 8 not in without_bags.labels.tolist()
    names = ["bag", "t shirt", "Ankle-Boot"]
    assert resolve_classes(names, test.class_names) == [8, 0, 9]
    mask = class_mask(test.labels, names, test.class_names)
    assert mask.dtype == bool and mask.shape == (10000,) and int(mask.sum()) == 3000
    assert np.array_equal(mask, np.isin(test.labels.numpy(), [8, 0, 9]))
    # What training leaves out is exactly what analysis marks.
    assert torch.equal(test.exclude_classes(names).labels, test.labels[~torch.from_numpy(mask)])
    assert np.array_equal(class_mask(test.labels.numpy(), "bag", test.class_names), test.labels.numpy() == 8)


def test_resolver_accepts_ids_single_names_and_attributes():
    assert resolve_classes("Bag", FASHION_MNIST_CLASSES) == [8]
    assert resolve_classes([3, "3", np.int64(9)], FASHION_MNIST_CLASSES) == [3, 3, 9]
    hat = CELEBA_ATTRIBUTES.index("Wearing_Hat")
    for spelling in ("wearing hat", "Wearing_Hat", "WEARING-HAT"):
        assert resolve_class(spelling, CELEBA_ATTRIBUTES, what="attribute") == hat
    assert resolve_class("smiling", CELEBA_ATTRIBUTES, what="attribute") == CELEBA_ATTRIBUTES.index("Smiling")


def test_unknown_names_are_one_line_errors_naming_the_kind_and_the_parameter():
    with pytest.raises(ConfigError) as error:
        resolve_class("hat", CELEBA_ATTRIBUTES, what="attribute")
    message = str(error.value)
    assert message.startswith("unknown attribute 'hat'; valid names: 5_o_Clock_Shadow, ") and "\n" not in message
    tiny = ImageDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 8, 9]), FASHION_MNIST_CLASSES,
                        "tiny", "test")
    assert tiny.exclude_classes(["bag"]).labels.tolist() == [0, 9]
    with pytest.raises(ConfigError, match=r"^exclude_classes: unknown class 'hat'; valid names: T-shirt/top"):
        tiny.exclude_classes(["bag", "hat"])
    with pytest.raises(ConfigError, match="class id 10 is out of range"):
        resolve_classes([0, 10], FASHION_MNIST_CLASSES)
    with pytest.raises(ConfigError, match="unknown class True"):
        resolve_class(True, FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------
# One image-file loader
# ---------------------------------------------------------------------------


@pytest.fixture
def wide_photo(tmp_path):
    """90x30 grey (100) photo: dark bars near both ends, a white square in the middle."""
    pixels = np.full((30, 90), 100, dtype=np.uint8)
    pixels[5:25, 4:12] = 0
    pixels[5:25, 78:86] = 0
    pixels[5:25, 35:55] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(pixels, "L").save(path)
    return path


def test_both_fits_give_the_model_shape(wide_photo):
    for shape in ((1, 28, 28), (3, 32, 48), (1, 40, 20)):
        for fit in ("crop", "pad"):
            image = load_image(wide_photo, shape, fit=fit)
            assert image.shape == shape and image.dtype == np.float32, (shape, fit)
            assert 0.0 <= image.min() and image.max() <= 1.0


def test_pad_keeps_the_whole_object_and_crop_cuts_it(wide_photo):
    pad = load_image(wide_photo, (1, 30, 30), fit="pad")[0]
    crop = load_image(wide_photo, (1, 30, 30), fit="crop")[0]
    # Pad: the 90x30 photo shrinks to 30x10 in rows 10..19; the rest is its border colour.
    border = np.float32(100) / np.float32(255)
    assert np.array_equal(pad[:10], np.full((10, 30), border)) and np.array_equal(pad[20:], pad[:10])
    assert pad[10:20, :5].min() < 0.2 and pad[10:20, -5:].min() < 0.2  # both bars kept
    # Crop: the centred 30x30 block; the bars are cut away, the white square fills the middle.
    assert crop.min() > 0.3 and crop[10:20, 10:20].min() > 0.95
    assert not np.allclose(pad, crop)
    # Exactly the decoding path of the image datasets.
    cached = decode_image(wide_photo, ImageTransform(size=(30, 30), channels=1))
    assert np.array_equal(crop, cached[0] / np.float32(255))
    assert np.array_equal(read_image(wide_photo, (1, 30, 30)), cached)
    # Scoring files uses the crop, as training folders do.
    files, names = load_image_files(wide_photo, (1, 30, 30))
    assert names == ["wide.png"] and torch.equal(files.images[0], torch.tensor(cached))


def test_transparent_pixels_are_composited_on_black(tmp_path):
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :] = (255, 255, 255, 0)  # invisible white
    rgba[5:15, 5:15] = (255, 0, 0, 255)  # opaque red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    for fit in ("crop", "pad"):
        image = load_image(tmp_path / "logo.png", (3, 20, 20), fit=fit)
        assert image[:, :4].max() == 0.0 and image[:, -4:].max() == 0.0, fit
        assert np.allclose(image[:, 7:13, 7:13], np.array([1.0, 0.0, 0.0])[:, None, None]), fit
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "grey_alpha.png")
    assert load_image(tmp_path / "grey_alpha.png", (1, 20, 20))[:, :4].max() == 0.0


def test_greyscale_and_rgb_are_converted_to_the_models_channels(tmp_path):
    Image.new("L", (12, 12), 200).save(tmp_path / "grey.png")
    Image.new("RGB", (12, 12), (0, 255, 0)).save(tmp_path / "green.png")
    as_rgb = load_image(tmp_path / "grey.png", (3, 8, 8))
    assert np.allclose(as_rgb, 200 / 255)  # grey becomes three equal channels
    as_grey = load_image(tmp_path / "green.png", (1, 8, 8), fit="crop")
    assert np.allclose(as_grey, 150 / 255, atol=1 / 255)  # ITU-R 601 luma of pure green
    assert np.allclose(load_image(tmp_path / "green.png", (1, 8, 8), invert=True), 1 - as_grey, atol=1e-6)


def test_exif_orientation_decides_where_the_padding_goes(tmp_path):
    # Stored landscape 100x60 with orientation 6: upright it is a 60x100 portrait.
    pixels = np.full((60, 100), 128, dtype=np.uint8)
    pixels[:, :30] = 255  # after the rotation: the top 30 rows
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels, "L").save(tmp_path / "sideways.png", exif=exif)
    image = load_image(tmp_path / "sideways.png", (1, 50, 50), fit="pad")[0]
    grey = np.float32(128) / np.float32(255)
    assert np.array_equal(image[:, :10], np.full((50, 10), grey))  # portrait: padded left and right
    assert image[3, 25] > 0.95 and abs(image[45, 25] - grey) < 0.02  # white on top


def test_unusable_files_are_one_line_data_errors_naming_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    cut = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(cut)
    cut.write_bytes(cut.read_bytes()[:60])
    for path, needle in ((tmp_path / "notes.png", "not a readable image"), (cut, "not a readable image"),
                         (tmp_path / "missing.png", "file not found")):
        for fit in ("crop", "pad"):
            with pytest.raises(DataError) as error:
                load_image(path, (1, 28, 28), fit=fit)
            assert str(error.value).startswith(f"{path}: {needle}") and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="^fit: unknown value 'stretch'"):
        load_image(cut, (1, 28, 28), fit="stretch")
    with pytest.raises(ConfigError, match="^crop: a fixed crop needs fit='crop'"):
        ImageTransform(crop=100, fit="pad")


def test_crop_caches_keep_their_keys():
    # Image caches are keyed by to_dict(); the default fit must not change old keys.
    assert "fit" not in ImageTransform().to_dict()
    assert ImageTransform(fit="pad").to_dict()["fit"] == "pad"


# ---------------------------------------------------------------------------
# Where the data was found
# ---------------------------------------------------------------------------


@pytest.fixture
def no_search(tmp_path, monkeypatch):
    """No real search locations: only what a test points at."""
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fashion_mnist_mod, "SYSTEM_DATA_DIRS", ())


def _fake_fashion_mnist(folder, payload=b"x"):
    folder.mkdir(parents=True)
    for names in fashion_mnist_mod.FASHION_MNIST_FILES.values():
        for name in names:
            (folder / name).write_bytes(payload * 200_000 + name.encode())
    return folder


def test_fashion_mnist_source_is_the_folder_found_and_a_fast_fingerprint(fashion_mnist_dir, no_search):
    source = data_source("fashion-mnist", data_dir=fashion_mnist_dir)
    assert source["name"] == "fashion-mnist" and source["path"] == str(fashion_mnist_dir.resolve())
    assert len(source["checksum"]) == 64 and int(source["checksum"], 16) >= 0
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        again = data_source("fmnist", data_dir=fashion_mnist_dir.parent)  # alias; parent of the folder
        timings.append(time.perf_counter() - start)
    assert again == source and min(timings) < 0.05
    assert verify_source(json.loads(json.dumps(source)))  # survives the run directory's JSON


def test_the_environment_is_respected_and_a_copy_has_the_same_checksum(fashion_mnist_dir, no_search, tmp_path,
                                                                       monkeypatch):
    copy = tmp_path / "data" / "fashion-mnist"
    copy.mkdir(parents=True)
    for path in fashion_mnist_dir.iterdir():
        if path.name in {n for names in fashion_mnist_mod.FASHION_MNIST_FILES.values() for n in names}:
            os.symlink(path, copy / path.name)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "data"))
    source = data_source("fashion-mnist")
    assert source["path"] == str(copy.resolve())
    assert source["checksum"] == data_source("fashion-mnist", data_dir=fashion_mnist_dir)["checksum"]


def test_a_changed_or_moved_folder_no_longer_verifies(tmp_path, no_search):
    folder = _fake_fashion_mnist(tmp_path / "fm")
    source = data_source("fashion-mnist", data_dir=folder)
    assert data_source("fashion-mnist", data_dir=folder) == source and verify_source(source)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-1] + b"!")  # same size, last byte changed
    changed = data_source("fashion-mnist", data_dir=folder)
    assert changed["checksum"] != source["checksum"] and not verify_source(source) and verify_source(changed)
    shutil.move(folder, tmp_path / "moved")
    assert not verify_source(changed)
    moved = data_source("fashion-mnist", data_dir=tmp_path / "moved")
    assert moved["path"] == str((tmp_path / "moved").resolve()) and moved["checksum"] == changed["checksum"]


def test_celeba_source_fingerprints_the_annotations(tmp_path):
    root = tmp_path / "faces" / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    for name in CELEBA_FILES.values():
        (root / name).write_text(f"{name}\n")
    source = data_source("celeba", data_dir=tmp_path / "faces")  # the celeba/ subfolder is found
    assert source["path"] == str(root.resolve()) and verify_source(source)
    (root / CELEBA_FILES["attributes"]).write_text("edited\n")
    assert data_source("celeba", data_dir=root)["checksum"] != source["checksum"] and not verify_source(source)


def test_folder_source_is_absolute_and_loads_from_anywhere(tmp_path, monkeypatch):
    images = tmp_path / "pics" / "cats"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(images / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    source = data_source("Folder:pics")
    assert source == {"name": f"folder:{(tmp_path / 'pics').resolve()}", "path": str((tmp_path / "pics").resolve()),
                      "checksum": source["checksum"]}
    assert verify_source(source)
    monkeypatch.chdir(images)  # another working directory: the recorded name still loads
    assert len(load_dataset(source["name"], "all", data_dir=source["path"], progress=False)) == 3
    Image.new("L", (8, 8), 255).save(images / "3.png")
    assert not verify_source(source)
    with pytest.raises(DataError, match="folder does not exist"):
        data_source("folder:nowhere")


def test_generated_and_unknown_datasets():
    assert data_source("shapes") == {"name": "shapes", "path": None, "checksum": None}
    assert verify_source(data_source("shapes"))
    assert not verify_source({"name": "fashion-mnist", "path": None, "checksum": "abc"})
    assert not verify_source({})
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        data_source("mnist")
