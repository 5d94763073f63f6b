import hashlib
import logging

import numpy as np
import pytest
import torch
from celeba_fixtures import celeba_dir, fresh_reports, isolated_cache  # noqa: F401
from PIL import Image
from torch.utils.data import DataLoader

import vaekit
import vaekit.data.folder
from vaekit import TrainConfig, train
from vaekit.data.folder import load_folder
from vaekit.data.images import ImageProblem, ImageTransform, decode_image
from vaekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def fashion_pngs(tmp_path_factory, fashion_mnist_dir):
    """400 real Fashion-MNIST test images as PNGs in class subfolders, and the originals."""
    data = vaekit.load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir).subset(slice(0, 400))
    root = tmp_path_factory.mktemp("fashion-png")
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / data.class_names[int(label)].replace("/", "-")
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), "L").save(folder / f"{i:04d}.png")
    return root, data


def _is_hash_test(name, fraction=0.1):
    """The documented rule: test iff the name's SHA-1, as a fraction of 2**160, is below the fraction."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) < fraction * 2**160


def _n_hash_test(root):
    return sum(_is_hash_test(name) for name in vaekit.data.folder.list_folder(root))


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_class_subfolders_become_labels_and_pixels_survive_exactly(fashion_pngs):
    root, original = fashion_pngs
    both = load_folder(root, "all", image_shape=(1, 28, 28), progress=False)
    assert len(both) == 400 and both.images.shape == (400, 1, 28, 28)
    expected_classes = sorted({original.class_names[int(i)].replace("/", "-") for i in original.labels})
    assert list(both.class_names) == expected_classes
    assert sorted(both.filenames) == vaekit.data.folder.list_folder(root)
    # Same size in, same size out: the PNG round trip must be lossless.
    for row in range(400):
        name = both.filenames[row]
        assert torch.equal(both.images[row], original.images[int(name[-8:-4])]), name
        assert both.class_names[int(both.labels[row])] == name.split("/")[0]
    part = both.subset([3, 1])
    assert part.filenames == (both.filenames[3], both.filenames[1])


def test_the_split_is_disjoint_stable_and_about_ten_percent(fashion_pngs):
    root, _ = fashion_pngs
    train_set = load_folder(root, "train", image_shape=(1, 28, 28), progress=False)
    test_set = load_folder(root, "test", image_shape=(1, 28, 28), progress=False)
    n_test = _n_hash_test(root)
    assert 30 <= n_test <= 50  # about ten percent of 400
    assert len(train_set) + len(test_set) == 400 and len(test_set) == n_test
    train_images = {x.numpy().tobytes() for x in train_set.images}
    test_images = {x.numpy().tobytes() for x in test_set.images}
    assert len(train_images) == 400 - n_test and len(test_images) == n_test and not train_images & test_images
    again = load_folder(root, "test", image_shape=(1, 28, 28), progress=False)
    assert torch.equal(again.images, test_set.images)


def test_fashion28_trains_on_a_folder_through_the_registry(fashion_pngs, tmp_path, monkeypatch):
    root, _ = fashion_pngs
    # Without an explicit shape, small greyscale images default to fashion28's 1x28x28.
    monkeypatch.chdir(root.parent)  # the folder named as typed, relative to the working directory
    result = train(TrainConfig(dataset=f"folder:{root.name}", arch="fashion28", epochs=1, batch_size=64,
                               train_limit=128), out=tmp_path / "run", progress=False)
    assert result.metrics[0]["test_elbo"] > 0
    assert len(vaekit.load_dataset(f"folder:{root}", "train")) == 400 - _n_hash_test(root)
    # Opened from another directory, the run still finds its folder (the absolute path recorded at training).
    monkeypatch.chdir(tmp_path)
    run = vaekit.Run.open(tmp_path / "run", device="cpu", precision="fp32")
    assert run.dataset_name == f"folder:{root.name}"
    assert len(run.dataset("test")) == _n_hash_test(root)


def test_colour_photos_are_cropped_and_resized_for_nn3(tmp_path, celeba_dir):
    for name in ("000002.jpg", "000058.jpg", "000168.jpg"):
        (tmp_path / "faces").mkdir(exist_ok=True)
        (tmp_path / "faces" / name).write_bytes((celeba_dir / "img_align_celeba" / name).read_bytes())
    faces = load_folder(tmp_path / "faces", "all", progress=False)
    assert faces.images.shape == (3, 3, 128, 128) and faces.class_names == ("faces",)
    faces = faces.subset([faces.filenames.index("000002.jpg")])
    with Image.open(tmp_path / "faces" / "000002.jpg") as image:
        # Largest centred square of a 178x218 image: rows 20..198.
        expected = image.resize((128, 128), Image.Resampling.LANCZOS, box=(0, 20, 178, 198))
    assert np.array_equal(faces.images[0].permute(1, 2, 0).numpy(), np.asarray(expected))


def test_modes_sizes_alpha_and_exif_rotation_are_normalised(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    Image.new("RGB", (300, 200), (255, 0, 0)).save(root / "wide.jpg", quality=95)
    Image.new("L", (20, 50), 200).save(root / "tall_grey.png")
    Image.new("RGBA", (64, 64), (0, 255, 0, 0)).save(root / "transparent.png")
    Image.new("P", (40, 40), 3).save(root / "palette.gif")
    Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16)).save(root / "sixteen.png")
    # A landscape image stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise).
    sideways = Image.new("RGB", (100, 60), (0, 0, 0))
    sideways.paste((255, 255, 255), (0, 0, 50, 60))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(root / "rotated.jpg", exif=exif, quality=95)
    data = load_folder(root, "all", image_shape=(3, 32, 32), progress=False)
    by_name = dict(zip(data.filenames, data.images))
    assert data.images.shape == (6, 3, 32, 32)
    assert by_name["wide.jpg"][0].float().mean() > 240 and by_name["wide.jpg"][1].float().mean() < 15
    assert by_name["tall_grey.png"].float().mean().round() == 200
    assert by_name["transparent.png"].max() == 0  # fully transparent: composited on black
    assert by_name["sixteen.png"].min() == 255  # 16-bit white stays white
    rotated = by_name["rotated.jpg"].float().mean(0)
    # After the EXIF rotation the white half is on top.
    assert rotated[:12].mean() > 200 and rotated[-12:].mean() < 50


def test_unreadable_files_are_reported_by_name_and_skipped(tmp_path, caplog, fresh_reports):
    root = tmp_path / "pics"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(root / f"ok{i}.png")
    (root / "notes.png").write_text("not an image")
    data = (root / "ok0.png").read_bytes()
    (root / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "README.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        everything = load_folder(root, "all", image_shape=(3, 16, 16), progress=False)
        load_folder(root, "all", image_shape=(3, 16, 16), progress=False)  # reported once only
    assert len(everything) == 4
    messages = _errors(caplog)
    assert len(messages) == 2
    assert any("notes.png" in m and "not an image" in m for m in messages)
    assert any("cut.png" in m for m in messages)


def test_train_and_test_subfolders_are_the_splits(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / "d" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L", (8, 8), 30 * i).save(folder / f"{i}.png")
    extra = tmp_path / "d" / "extra" / "bird"  # a folder beside train/ and test/: in neither split
    extra.mkdir(parents=True)
    Image.new("L", (8, 8), 90).save(extra / "0.png")
    train_set = load_folder(tmp_path / "d", "train", progress=False)
    test_set = load_folder(tmp_path / "d", "test", progress=False)
    assert (len(train_set), len(test_set)) == (10, 4)
    assert train_set.class_names == ("cat", "dog") and test_set.labels.tolist() == [0, 0, 1, 1]
    # Files are datasets for torch's DataLoader too.
    images, labels = next(iter(DataLoader(test_set, batch_size=4)))
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.float32 and labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(images, test_set.to_float())


def test_adding_files_never_moves_a_file_between_the_splits(tmp_path):
    root = tmp_path / "growing"
    root.mkdir()

    def add(start, stop):
        for i in range(start, stop):
            Image.new("L", (8, 8), i % 256).save(root / f"{i:03d}.png")

    def splits():
        return {split: set(load_folder(root, split, image_shape=(1, 8, 8), progress=False).filenames)
                for split in ("train", "test")}

    add(0, 40)
    before = splits()
    assert before["test"] == {n for n in before["test"] | before["train"] if _is_hash_test(n)}
    for start, stop in ((40, 80), (80, 200)):
        add(start, stop)
        after = splits()
        assert before["test"] <= after["test"] and before["train"] <= after["train"]
        assert not after["test"] & after["train"] and len(after["test"] | after["train"]) == stop
        before = after
    assert 5 <= len(before["test"]) <= 40  # about ten percent of 200


def test_tiny_folders_get_one_file_in_each_split(tmp_path):
    from vaekit.data.folder import _hash_split

    names = [f"{i}.png" for i in range(3)]
    for fraction in (1e-9, 0.5, 1 - 1e-9):
        split = _hash_split(names, fraction)
        assert 0 in split and 1 in split
        assert split == _hash_split(names, fraction)  # deterministic
    assert _hash_split(["only.png"], 0.5) == [0]
    # The threshold alone decides once both splits are non-empty.
    many = [f"{i}.png" for i in range(50)]
    assert _hash_split(many, 0.3) == [int(_is_hash_test(n, 0.3)) for n in many]


def test_a_changed_folder_rebuilds_its_cache(tmp_path):
    root = tmp_path / "grow"
    root.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 10 * i).save(root / f"{i}.png")
    assert len(load_folder(root, "all", progress=False)) == 3
    Image.new("L", (8, 8), 99).save(root / "3.png")
    assert len(load_folder(root, "all", progress=False)) == 4


@pytest.mark.parametrize("setup,needle", [
    (lambda p: None, "folder does not exist"),
    (lambda p: p.mkdir(), "no image files"),
    (lambda p: (p.mkdir(), (p / "a.txt").write_text("x")), "no image files"),
    (lambda p: (p.mkdir(), (p / "a.jpg").write_text("x"), (p / "b.png").write_text("y")),
     "all 2 image files are unusable"),
])
def test_unusable_folders_are_one_line_errors(tmp_path, setup, needle):
    path = tmp_path / "data"
    setup(path)
    with pytest.raises(DataError, match=needle) as error:
        load_folder(path, "train", progress=False)
    assert "\n" not in str(error.value)


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="folder:PATH"):
        vaekit.load_dataset("folder:", "train")
    with pytest.raises(ConfigError, match="unknown split 'val'"):
        load_folder(tmp_path, "val")
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        ImageTransform(size=(8, 8), channels=4)


def test_decode_image_rejects_images_smaller_than_the_crop(tmp_path):
    Image.new("RGB", (100, 200)).save(tmp_path / "small.png")
    with pytest.raises(ImageProblem, match="image is 100x200, smaller than the 148x148 crop"):
        decode_image(tmp_path / "small.png", ImageTransform(size=(128, 128), crop=148))
    with pytest.raises(ImageProblem, match="file not found"):
        decode_image(tmp_path / "missing.png", ImageTransform())
