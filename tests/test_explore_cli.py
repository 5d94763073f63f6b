"""The exploration commands on a fashion28 run trained on the real Fashion-MNIST.

Every command runs on a copy of the session's ``fashion_run`` with
``--limit 1000`` (the first 1,000 test images) to stay fast.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.data import FASHION_MNIST_CLASSES, load_dataset
from vaekit.models import build_model
from vaekit.models.pretrained import save_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LIMIT = ["--limit", "1000"]


@pytest.fixture(scope="module")
def run(fashion_run, tmp_path_factory) -> Path:
    """A writable copy of the trained run (commands write into the run directory by default)."""
    copy = tmp_path_factory.mktemp("explore") / "run"
    shutil.copytree(fashion_run, copy)
    return copy


def _run(capsys, *argv) -> tuple[int, list[str], str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        assert image.width >= 300 and image.height >= 150


def _assert_user_error(code: int, out: list[str], err: str, *fragments: str) -> None:
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ----------------------------------------------------------------------------
# Each command


def test_latent_map_measures_class_separation_well_above_chance(run, capsys):
    code, out, _ = _run(capsys, "latent-map", run, *LIMIT)
    assert code == 0 and out[-1] == str(run / "latent_map.png")
    _assert_png(run / "latent_map.png")
    accuracy, chance = map(float, re.search(r"accuracy of z_mean ([\d.]+) on 1,000 images \(chance ([\d.]+)\)",
                                            out[0]).groups())
    assert accuracy > chance + 0.25  # classes cluster in z even after 2 short epochs
    assert any(line.startswith("overlap ") for line in out)


def test_manifold_reports_the_hole_fraction(run, capsys, tmp_path):
    output = tmp_path / "figures" / "grid.png"
    code, out, _ = _run(capsys, "manifold", run, *LIMIT, "--grid", 12, "--reference-images", 500, "-o", output)
    assert code == 0 and out[-1] == str(output)
    _assert_png(output)
    fraction = float(re.search(r"holes: \d+ of 144 grid points \(([\d.]+)%\)", out[0]).group(1))
    assert 0 <= fraction <= 100 and "500 test reconstructions" in out[0]


def test_class_means_are_saved_as_json_and_reused_without_the_dataset(run, capsys):
    code, out, _ = _run(capsys, "class-means", run, *LIMIT)
    assert code == 0 and out[-1] == str(run / "class_means.png") and out[-2] == str(run / "class_means.json")
    _assert_png(run / "class_means.png")
    saved = json.loads((run / "class_means.json").read_text())
    assert list(saved["means"]) == list(FASHION_MNIST_CLASSES)
    assert saved["split"] == "test" and saved["count"] == 1000 and sum(saved["counts"].values()) == 1000
    assert all(len(vector) == 2 for vector in saved["means"].values())

    # With the cache, interpolation needs no dataset: a data folder that does not exist is never read.
    missing = run.parent / "no-such-data"
    code, out, _ = _run(capsys, "interpolate", run, *LIMIT, "--data-dir", missing, "--from", "BAG", "--to", "shoes",
                        "--steps", 6)
    assert code == 0 and "Bag -> Sneaker (linear, 6 frames): largest step" in out[0]
    _assert_png(run / "interpolation.png")
    code, out, err = _run(capsys, "latent-map", run, *LIMIT, "--data-dir", missing, "-o", run / "unused.png")
    _assert_user_error(code, out, err, "no-such-data")
    assert not (run / "unused.png").exists()


def test_interpolate_slerp_and_transitions(run, capsys, tmp_path):
    code, out, _ = _run(capsys, "interpolate", run, *LIMIT, "--from", "pullover", "--to", "t-shirt", "--method",
                        "slerp", "-o", tmp_path / "slerp.png")
    assert code == 0 and "Pullover -> T-shirt/top (slerp, 6 frames)" in out[0]
    _assert_png(tmp_path / "slerp.png")

    code, out, _ = _run(capsys, "transitions", run, *LIMIT)
    assert code == 0
    assert [line.split(":")[0] for line in out[:5]] == ["Bag -> Sneaker", "Bag -> Sandal", "Sandal -> Sneaker",
                                                         "Pullover -> T-shirt/top", "Pullover -> Dress"]
    _assert_png(run / "transitions.png")
    code, out, _ = _run(capsys, "transitions", run, *LIMIT, "--pair", "coat:bag", "-o", tmp_path / "t.png")
    assert code == 0 and out[0].startswith("Coat -> Bag:")


def test_morph_image_files_of_any_size_and_dataset_indices(run, capsys, tmp_path, fashion_mnist_dir):
    test_set = load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir)
    # A bigger RGB copy of a real image: converted back to 28x28 greyscale on the way in.
    Image.fromarray(test_set.images[0, 0].numpy()).convert("RGB").resize((84, 84)).save(tmp_path / "boot.png")
    code, out, _ = _run(capsys, "morph", run, tmp_path / "boot.png", "test:1", *LIMIT)
    assert code == 0 and out[0].startswith("morph boot.png -> test:1 (Pullover) (linear): largest step")
    _assert_png(run / "morph.png")


def test_traverse_orders_dimensions_by_kl(run, capsys):
    code, out, _ = _run(capsys, "traverse", run, *LIMIT, "--steps", 7)
    assert code == 0
    kls = [float(m.group(1)) for line in out if (m := re.match(r"z\[\d\]: KL ([\d.]+) nats", line))]
    assert len(kls) == 2 and kls == sorted(kls, reverse=True) and kls[0] > 0.01
    _assert_png(run / "traversals.png")


def test_arithmetic_turns_shirts_towards_dresses(run, capsys):
    code, out, _ = _run(capsys, "arithmetic", run, *LIMIT, "--from", "shirt", "--to", "dress", "-n", 3)
    assert code == 0 and re.match(r"\d of 3 results read as Dress", out[1])
    after, before = map(float, re.match(r"([\d.]+)% of all \d+ test Shirt images read as Dress after the "
                                        r"arithmetic, ([\d.]+)% before", out[0]).groups())
    assert after > before  # the arithmetic moves shirts towards dresses
    _assert_png(run / "arithmetic.png")
    code, out, _ = _run(capsys, "arithmetic", run, "test:0", *LIMIT, "--from", "boot", "--to", "sandal",
                        "-o", run / "boot_to_sandal.png")
    assert code == 0 and out[1].startswith("test:0 (Ankle boot): read as ")


# ----------------------------------------------------------------------------
# The report


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if "id" in attrs:
            self.ids.append(attrs["id"])


def test_report_is_one_self_contained_page_with_every_figure(run, capsys, tmp_path):
    output = tmp_path / "page" / "report.html"
    code, out, _ = _run(capsys, "report", run, *LIMIT, "--grid", 10, "--quiet", "-o", output)
    assert code == 0 and out == [str(output.with_suffix(".json")), str(output)]
    page = output.read_text()
    parser = _Images()
    parser.feed(page)
    expected = ["latent_map", "manifold", "class_means", "interpolation", "transitions", "morph", "traversals",
                "arithmetic"]
    assert [i for i in parser.ids if i in expected] == expected
    assert len(parser.sources) == len(expected)
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == PNG_MAGIC
    assert 'src="http' not in page and "<link" not in page and "<script" not in page  # nothing fetched
    assert "&quot;arch&quot;: &quot;fashion28&quot;" in page  # the config, escaped
    assert "test_elbo" in page and "<table>" in page  # the training metrics
    assert "5-NN accuracy of z_mean" in page and "holes:" in page
    numbers = json.loads(output.with_suffix(".json").read_text())
    assert set(numbers["sections"]) == set(expected)
    assert 0 <= numbers["sections"]["manifold"]["hole_fraction"] <= 1


# ----------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


def test_a_run_without_a_model_is_a_one_line_error(run, capsys, tmp_path):
    empty = tmp_path / "no-model"
    empty.mkdir()
    shutil.copy(run / "config.json", empty / "config.json")
    code, out, err = _run(capsys, "latent-map", empty)
    _assert_user_error(code, out, err, "model.safetensors", "no model weights")
    assert sorted(p.name for p in empty.iterdir()) == ["config.json"]
    code, out, err = _run(capsys, "report", tmp_path / "nowhere")
    _assert_user_error(code, out, err, "no such run directory")


def test_an_unknown_class_lists_the_valid_names_and_writes_nothing(run, capsys, tmp_path):
    output = tmp_path / "x.png"
    code, out, err = _run(capsys, "interpolate", run, "--from", "hat", "--to", "bag", "-o", output)
    _assert_user_error(code, out, err, "unknown class 'hat'", "T-shirt/top", "Ankle boot")
    assert not output.exists()
    code, out, err = _run(capsys, "transitions", run, "--pair", "bag:scarf", "-o", output)
    _assert_user_error(code, out, err, "unknown class 'scarf'")
    assert not output.exists()


def test_an_unreadable_image_names_the_file(run, capsys, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a png")
    code, out, err = _run(capsys, "morph", run, bad, "test:1", "-o", tmp_path / "m.png")
    _assert_user_error(code, out, err, "holiday.png: not a readable image")
    code, out, err = _run(capsys, "morph", run, "test:99999", "test:1", "-o", tmp_path / "m.png")
    _assert_user_error(code, out, err, "test:99999: index out of range")
    assert not (tmp_path / "m.png").exists()


def test_a_wrong_output_extension_is_refused_before_any_work(run, capsys, tmp_path):
    code, out, err = _run(capsys, "manifold", run, "-o", tmp_path / "grid.jpg")
    _assert_user_error(code, out, err, "grid.jpg", ".png")
    code, out, err = _run(capsys, "report", run, "-o", tmp_path / "report.pdf")
    _assert_user_error(code, out, err, ".html")
    assert not list(tmp_path.iterdir())


def test_a_latent_dimension_a_figure_cannot_use_is_a_one_line_error(run, capsys, tmp_path):
    one_d = tmp_path / "one-d"
    torch.manual_seed(0)
    config = json.loads((run / "config.json").read_text())
    save_model(build_model("fashion28", latent_dim=1), one_d, {k: config[k] for k in ("dataset", "train")})
    for command in ("manifold", "latent-map"):
        code, out, err = _run(capsys, command, one_d, "--limit", 50)
        _assert_user_error(code, out, err, "at least 2 dimensions", "has 1")
    code, out, err = _run(capsys, "interpolate", one_d, "--method", "slerp", "--limit", 50)
    _assert_user_error(code, out, err, "slerp", "--method linear")
    assert sorted(p.name for p in one_d.iterdir()) == ["config.json", "model.safetensors"]
