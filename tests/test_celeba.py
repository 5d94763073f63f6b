import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from celeba_fixtures import celeba_dir, fresh_reports, isolated_cache, make_celeba_copy  # noqa: F401
from PIL import Image

import vaekit
import vaekit.data.cache
import vaekit.data.images
from vaekit.cli import main
from vaekit.data.celeba import (
    CELEBA_ATTRIBUTES,
    CelebADataset,
    attribute_index,
    find_celeba,
    load_celeba,
    read_attributes,
)
from vaekit.errors import ConfigError, DataError

IMAGE_BYTES = 3 * 128 * 128


@pytest.fixture(scope="module")
def sample(celeba_dir):
    """The whole 3,000-image sample, train and test (the val split stands in)."""
    return (load_celeba("train", celeba_dir, progress=False), load_celeba("test", celeba_dir, progress=False))


@pytest.fixture
def small(tmp_path, celeba_dir):
    return make_celeba_copy(celeba_dir, tmp_path / "celeba", n_train=24, n_val=8)


def _no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been reused, not rebuilt")

    monkeypatch.setattr(vaekit.data.cache, "decode_image", fail)


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- the real sample -----------------------------------------------------------


def test_the_sample_has_its_official_splits_attributes_and_identities(sample):
    train, test = sample
    assert isinstance(train, CelebADataset) and len(train) == 2220 and len(test) == 780
    assert train.images.shape == (2220, 3, 128, 128) and train.images.dtype == torch.uint8
    assert train.split == "train" and test.split == "val"  # no test images in the sample
    assert train.attribute_names == CELEBA_ATTRIBUTES
    assert train.attributes.shape == (2220, 40) and train.attributes.dtype == torch.int8
    assert set(torch.unique(train.attributes).tolist()) == {0, 1}
    # Counts from the sample's SOURCE.md.
    for name, count in {"Male": 882, "Smiling": 1402, "Eyeglasses": 124, "Young": 2364}.items():
        assert int(train.attribute(name).sum() + test.attribute(name).sum()) == count, name
    assert len(torch.unique(torch.cat([train.identities, test.identities]))) == 100
    assert train.filenames[0] == "000002.jpg" and list(train.filenames) == sorted(train.filenames)
    assert int(train.identities[0]) == 2937  # 000002.jpg in identity_CelebA.txt
    assert train.labels.unique().tolist() == [0] and train.class_names == ("face",)


def test_the_test_split_falls_back_to_val_and_says_so_once(celeba_dir, sample, caplog, fresh_reports):
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        first = load_celeba("test", celeba_dir, progress=False)
        load_celeba("test", celeba_dir, progress=False)
    messages = [m for m in _errors(caplog) if "no test-split images" in m]
    assert len(messages) == 1 and "780" in messages[0] and "val" in messages[0]
    val = load_celeba("val", celeba_dir, progress=False)
    assert torch.equal(first.images, val.images) and first.filenames == val.filenames


def test_preprocessing_is_a_centred_148_crop_resized_to_128_with_lanczos(celeba_dir, sample):
    train, _ = sample
    for i in (0, 1234):
        with Image.open(celeba_dir / "img_align_celeba" / train.filenames[i]) as image:
            assert image.size == (178, 218)
            rgb = image.convert("RGB")
            exact = rgb.resize((128, 128), Image.Resampling.LANCZOS, box=(15, 35, 163, 183))
            cropped = rgb.crop((15, 35, 163, 183)).resize((128, 128), Image.Resampling.LANCZOS)
        got = train.images[i].permute(1, 2, 0).numpy()
        assert np.array_equal(got, np.asarray(exact))
        # Resizing inside the box lets the filter see the pixels just outside
        # the crop; crop-then-resize differs only at the border, slightly.
        diff = np.abs(got.astype(int) - np.asarray(cropped, dtype=int))
        assert diff[4:-4, 4:-4].max() <= 1 and diff.mean() < 0.5


def test_the_splits_are_zero_copy_views_of_the_memory_mapped_cache(celeba_dir, sample, isolated_cache):
    train, test = sample
    # Each split is a view of the whole cache file, mapped, not copied.
    sizes = [int(split.images.untyped_storage().nbytes()) for split in (train, test)]
    assert sizes == [3000 * IMAGE_BYTES] * 2
    (folder,) = isolated_cache.glob("celeba-*")
    assert (folder / "images.u8").stat().st_size == 3000 * IMAGE_BYTES
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["transform"] == {"size": [128, 128], "channels": 3, "crop": 148, "filter": "lanczos",
                                     "version": vaekit.data.images.CACHE_VERSION}
    assert len(manifest["files"]) == 3000 and manifest["skipped"] == []
    name, size, mtime = manifest["files"][0]
    assert name == "img_align_celeba/000002.jpg"
    stat = os.stat(celeba_dir / name)
    assert (size, mtime) == (stat.st_size, stat.st_mtime_ns)


def test_a_second_load_maps_the_cache_without_decoding(celeba_dir, sample, monkeypatch):
    _no_decoding(monkeypatch)
    again = load_celeba("train", celeba_dir, progress=False)
    assert torch.equal(again.images[:5], sample[0].images[:5])


def test_the_registry_and_split_aliases(celeba_dir, sample):
    val = vaekit.load_dataset("celeba", "valid", data_dir=celeba_dir, progress=False)
    assert val.split == "val" and len(val) == 780
    everything = load_celeba("all", celeba_dir, progress=False)
    assert len(everything) == 3000
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        load_celeba("dev", celeba_dir)


def test_subsets_keep_the_annotations_aligned(sample):
    train, _ = sample
    part = train.subset([5, 0, 9])
    assert isinstance(part, CelebADataset) and len(part) == 3
    assert part.filenames == (train.filenames[5], train.filenames[0], train.filenames[9])
    assert torch.equal(part.attributes, train.attributes[[5, 0, 9]])
    assert torch.equal(part.identities, train.identities[[5, 0, 9]])
    assert torch.equal(part.attribute("smiling"), train.attribute("Smiling")[[5, 0, 9]])
    assert "CelebADataset" in repr(part) and "tensor" not in repr(part)
    with pytest.raises(ConfigError, match="unknown attribute 'Smilling'.*Smiling"):
        train.attribute("Smilling")
    # The one name resolver: any case, spaces for underscores.
    hat = CELEBA_ATTRIBUTES.index("Wearing_Hat")
    assert torch.equal(train.attribute("wearing hat"), train.attributes[:, hat].bool())
    assert attribute_index(CELEBA_ATTRIBUTES, "Wearing-Hat") == hat
    assert attribute_index(CELEBA_ATTRIBUTES, "5 o clock shadow") == 0


def test_celeba_is_a_torch_dataset(sample):
    train, _ = sample
    part = train.subset(range(10))
    image, label = part[-1]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32 and int(label) == 0
    assert torch.equal(image, part.to_float([9])[0])
    batches = list(torch.utils.data.DataLoader(part, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), part.to_float())
    assert part.images.dtype == torch.uint8  # the training hot path still slices uint8


# -- small partial copies -------------------------------------------------------


def test_a_copy_with_a_test_split_serves_it(tmp_path, celeba_dir):
    root = make_celeba_copy(celeba_dir, tmp_path / "c", n_train=8, n_val=4, as_test=4)
    test = load_celeba("test", root, progress=False)
    assert test.split == "test" and len(test) == 4


def test_the_torchvision_layout_and_the_environment_are_searched(small, monkeypatch, tmp_path):
    parent = small.parent
    assert find_celeba(parent) == small  # DIR/celeba/...
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(parent))
    assert len(load_celeba("train", progress=False)) == 24
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(DataError, match="CelebA not found.*mmlab"):
        load_celeba("train")


def test_a_changed_image_rebuilds_the_cache(small, monkeypatch):
    first = load_celeba("train", small, progress=False)
    image = small / "img_align_celeba" / first.filenames[3]
    with Image.open(image) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image, quality=95)
    second = load_celeba("train", small, progress=False)
    assert torch.equal(second.images[0], first.images[0])
    # The centred crop is symmetric, so the new image is the old one mirrored (up to JPEG noise).
    mirrored = (second.images[3].float() - first.images[3].flip(-1).float()).abs().mean()
    assert mirrored < 6 < (second.images[3].float() - first.images[3].float()).abs().mean()
    _no_decoding(monkeypatch)
    load_celeba("train", small, progress=False)  # unchanged since: reused


def test_another_size_gets_its_own_cache(small, isolated_cache):
    small64 = load_celeba("train", small, image_size=64, progress=False)
    assert small64.images.shape == (24, 3, 64, 64)
    load_celeba("train", small, progress=False)
    shapes = {tuple(json.loads((d / "manifest.json").read_text())["shape"]) for d in isolated_cache.glob("celeba-*")}
    assert {(32, 3, 64, 64), (32, 3, 128, 128)} <= shapes


def test_bad_images_are_reported_once_by_name_and_skipped(small, caplog, fresh_reports):
    images = small / "img_align_celeba"
    names = sorted(p.name for p in images.iterdir())
    truncated, not_jpeg, tiny, absent = names[1], names[2], names[3], names[4]
    data = (images / truncated).read_bytes()
    (images / truncated).write_bytes(data[: len(data) // 3])
    (images / not_jpeg).write_text("this is not a JPEG\n")
    Image.new("RGB", (120, 140), (128, 64, 32)).save(images / tiny)
    (images / absent).unlink()
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        train = load_celeba("train", small, progress=False)
        load_celeba("test", small, progress=False)
    assert len(train) == 24 - 4
    assert not {truncated, not_jpeg, tiny, absent} & set(train.filenames)
    messages = _errors(caplog)
    problems = {
        truncated: "truncated",
        not_jpeg: "not an image",
        tiny: "image is 120x140, smaller than the 148x148 crop",
        absent: "are not in",
    }
    for name, reason in problems.items():
        hits = [m for m in messages if name in m]
        assert len(hits) == 1 and reason in hits[0], (name, messages)


def test_an_interrupted_build_leaves_no_cache_behind(small, monkeypatch, isolated_cache):
    calls = {"n": 0}
    decode = vaekit.data.cache.decode_image

    def interrupt(path, transform):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return decode(path, transform)

    monkeypatch.setattr(vaekit.data.cache, "decode_image", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_celeba("train", small, progress=False, workers=1)
    unfinished = [d for d in isolated_cache.glob("celeba-*") if not (d / "manifest.json").exists()]
    assert unfinished and all(list(d.glob("images.u8*")) == [] for d in unfinished)
    monkeypatch.setattr(vaekit.data.cache, "decode_image", decode)
    assert len(load_celeba("train", small, progress=False)) == 24


@pytest.mark.parametrize("damage,needles", [
    (lambda d: (d / "list_attr_celeba.txt").unlink(), ["list_attr_celeba.txt: file not found"]),
    (lambda d: (d / "list_eval_partition.txt").unlink(), ["list_eval_partition.txt: file not found"]),
    (lambda d: shutil.rmtree(d / "img_align_celeba"), ["img_align_celeba: image folder not found"]),
    (lambda d: [p.unlink() for p in (d / "img_align_celeba").iterdir()], ["img_align_celeba: no .jpg images"]),
    (lambda d: _edit_line(d / "list_attr_celeba.txt", 5, lambda line: line.rsplit(" ", 1)[0]),
     ["list_attr_celeba.txt line 5: expected 40 values of 1 or -1", "got 39"]),
    (lambda d: _edit_line(d / "list_attr_celeba.txt", 1, lambda line: "202599"),
     ["list_attr_celeba.txt: line 1 says 202599 images but the file has 32 rows"]),
    (lambda d: _edit_line(d / "list_eval_partition.txt", 3, lambda line: line[:-1] + "7"),
     ["list_eval_partition.txt line 3: expected 'IMAGE.jpg 0|1|2'"]),
    (lambda d: [p.write_bytes(b"junk") for p in (d / "img_align_celeba").iterdir()],
     ["not an image", "all 32 image files are unusable"]),
])
def test_broken_copies_are_one_line_errors_naming_the_file(small, damage, needles):
    damage(small)
    with pytest.raises(DataError) as error:
        load_celeba("train", small, progress=False)
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def _edit_line(path, number, edit):
    lines = path.read_bytes().decode("ascii").split("\r\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_bytes("\r\n".join(lines).encode("ascii"))


def test_read_attributes_parses_the_official_format(celeba_dir):
    names, attribute_names, values = read_attributes(celeba_dir / "list_attr_celeba.txt")
    assert len(names) == 3000 and attribute_names == CELEBA_ATTRIBUTES and values.shape == (3000, 40)
    # 000002.jpg: Male = -1 (a woman, per SOURCE.md), Smiling = +1.
    assert names[0] == "000002.jpg"
    assert values[0, CELEBA_ATTRIBUTES.index("Male")] == 0 and values[0, CELEBA_ATTRIBUTES.index("Smiling")] == 1


def test_the_cli_reports_a_missing_celeba_in_one_line(tmp_path, capsys):
    (tmp_path / "img_align_celeba").mkdir()
    code = main(["train", "--dataset", "celeba", "--arch", "nn3-128", "--data-dir", str(tmp_path),
                 "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaekit: error: ") and "list_eval_partition.txt: file not found" in err[-1]
    assert not (tmp_path / "run").exists()
