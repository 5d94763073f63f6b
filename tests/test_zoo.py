"""Pretrained models: packaging a run into the zoo, model cards, loading by name, names in commands."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit
import vaekit.zoo.registry as registry
from vaekit.cli import main
from vaekit.runs import Run

ROOT = Path(__file__).resolve().parents[1]


def _build_script():
    spec = importlib.util.spec_from_file_location("build_pretrained", ROOT / "scripts" / "build_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_retraining_script_trains_exactly_the_recipe_its_cards_give():
    """Its members train in parallel processes from TrainConfigs: the same settings as the commands on the cards."""
    from vaekit.cli import build_parser, train_config_from_args

    build = _build_script()
    for member in build.MEMBERS:
        words = member.command().split("  (")[0].replace("FAMILY", "out").replace("RUN", "out").split()[1:]
        config = train_config_from_args(build_parser().parse_args(words))
        if member.latent_dim is None:  # one member of the family: its beta replaces the family's
            config = dataclasses.replace(config, beta=float(member.beta))
        assert member.config() == config, member.name


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, fashion_run, fashion_mnist_dir):
    """``fashion_run`` packaged as the shipped model ``fashion28-beta1`` in a private zoo folder."""
    build = _build_script()
    weights = tmp_path_factory.mktemp("zoo") / "weights"
    patch = pytest.MonkeyPatch()
    patch.setattr(registry, "WEIGHTS_DIR", weights)
    patch.setattr(build, "WEIGHTS_DIR", weights)
    patch.setattr(build, "TEST_LIMIT", 1000)
    patch.setattr(build, "IW_SAMPLES", 20)
    patch.setattr(build, "IW_IMAGES", 20)
    patch.setenv("VAEKIT_DATA_DIR", str(fashion_mnist_dir))
    member = build.MEMBERS[0]
    try:
        build.write_card(member, *build.store(member, fashion_run))
    finally:
        patch.undo()  # each test that wants this zoo asks for it (fixture `zoo`)
    return weights / member.name


@pytest.fixture
def zoo(packaged, monkeypatch, fashion_mnist_dir):
    monkeypatch.setattr(registry, "WEIGHTS_DIR", packaged.parent)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(fashion_mnist_dir))
    return packaged


def test_packaging_writes_a_run_folder_with_a_complete_card(zoo, fashion_run):
    names = {p.name for p in zoo.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.csv", "card.json", "class_means.json"} <= names
    card = vaekit.model_card("fashion28-beta1")
    assert card.epochs == 2 and card.latent_dim == 2 and card.arch == "fashion28" and card.beta == 1
    assert card.command.startswith("vaekit train-family --epochs 30")
    assert 200 < card.test_elbo < 400 and card.iwae <= card.test_elbo + 1.0
    assert abs(card.test_elbo_fp32 - card.test_elbo) < 0.1 or card.weights_dtype == "float32"
    assert card.active_units == 2 and "Xeon" in card.trained_on or card.trained_on
    assert card.weights_bytes == (zoo / "model.safetensors").stat().st_size
    config = json.loads((zoo / "config.json").read_text())
    assert "data" not in config and config["train"]["data_dir"] is None  # no path of the training machine


def test_fp16_weights_stay_close_to_the_run(zoo, fashion_run):
    stored = load_file(zoo / "model.safetensors")
    card = vaekit.model_card("fashion28-beta1")
    assert {str(t.dtype) for t in stored.values()} == {f"torch.{card.weights_dtype}"}
    shipped, original = vaekit.load_pretrained("fashion28-beta1"), vaekit.load(fashion_run)
    assert next(shipped.parameters()).dtype == torch.float32  # stored fp16, computed in fp32
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (shipped.decode(z) - original.decode(z)).abs().max() < 0.02


def test_names_resolve_to_the_shipped_folder_and_outputs_go_to_the_working_directory(zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run.open("fashion28-beta1", device="cpu")
    assert run.path == zoo and run.pretrained == "fashion28-beta1" and run.output_dir == Path("fashion28-beta1")
    before = sorted(p.name for p in zoo.iterdir())
    assert main(["reconstruct", "fashion28-beta1", "-n", "4", "--device", "cpu"]) == 0
    assert (tmp_path / "fashion28-beta1" / "reconstructions.png").stat().st_size > 1000
    assert main(["class-means", "fashion28-beta1", "--device", "cpu", "--limit", "500"]) == 0
    assert (tmp_path / "fashion28-beta1" / "class_means.json").is_file()
    assert sorted(p.name for p in zoo.iterdir()) == before  # the package folder is never written


def test_a_run_folder_with_a_pretrained_name_stays_the_users(zoo, fashion_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(fashion_run, tmp_path / "fashion28-beta1")
    run = Run.open("fashion28-beta1", device="cpu")
    assert run.pretrained is None and run.path == Path("fashion28-beta1")


def test_pretrained_command_lists_and_shows_cards(zoo, capsys):
    assert main(["pretrained"]) == 0
    listing = capsys.readouterr().out
    assert "fashion28-beta1" in listing and "the report's model" in listing
    assert main(["pretrained", "fashion28-beta1"]) == 0
    card = capsys.readouterr().out
    assert "vaekit train-family" in card and "test -ELBO" in card and "active units" in card
    assert main(["pretrained", "fashion28-beta1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "fashion28-beta1"


def test_unknown_name_is_one_line_listing_the_shipped_ones(zoo, capsys):
    assert main(["pretrained", "fashion28-beta9"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fashion28-beta9" in err[0] and "fashion28-beta1" in err[0]
    with pytest.raises(vaekit.ConfigError, match="not a pretrained model"):
        vaekit.load_pretrained("nope")


def test_a_damaged_card_is_one_line_naming_the_file(zoo, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(zoo, weights / "fashion28-beta1")
    (weights / "fashion28-beta1" / "card.json").write_text('{"name": "x"}')
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    with pytest.raises(vaekit.RunDirError, match="card.json: not a model card"):
        vaekit.model_card("fashion28-beta1")



def test_the_live_explorer_opens_a_pretrained_name(zoo):
    from starlette.testclient import TestClient

    from vaekit.app import create_app
    from vaekit.app.server import _state_for

    state = _state_for("fashion28-beta1", limit=300, device="cpu", precision="fp32", data_dir=None)
    client = TestClient(create_app(state))
    info = client.get("/api/info").json()
    assert info["count"] == 300 and info["latent_dim"] == 2 and len(info["classes"]) == 10
    one, two = (client.get("/api/decode", params={"x": x, "y": 0.0}) for x in (-1.5, 1.5))
    assert one.status_code == two.status_code == 200 and one.content != two.content


@pytest.mark.parametrize("argv, output", [
    (["sample", "-n", "4"], "samples.png"),
    (["latent-map", "--limit", "300"], "latent_map.png"),
    (["transitions", "--limit", "300"], "transitions.png"),
    (["evaluate", "--limit", "200", "--iw-samples", "4", "--iw-images", "8"], "evaluation.json"),
    (["embed", "--limit", "300", "--probe-train", "300"], "embeddings.npz"),
])
def test_analysis_commands_take_a_pretrained_name(zoo, tmp_path, monkeypatch, argv, output):
    monkeypatch.chdir(tmp_path)
    command, *options = argv
    assert main([command, "fashion28-beta1", *options, "--device", "cpu"]) == 0
    assert (tmp_path / "fashion28-beta1" / output).stat().st_size > 100


def test_a_pretrained_model_exports_to_onnx(zoo, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["export", "fashion28-beta1", "-o", str(tmp_path / "onnx")]) == 0
    assert {p.name for p in (tmp_path / "onnx").iterdir()} >= {"encoder.onnx", "decoder.onnx"}

# ---------------------------------------------------------------------------- the models this checkout ships

SHIPPED = registry.pretrained_names()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="this checkout ships no pretrained model yet")


@needs_shipped
def test_shipped_models_are_small_trained_for_30_epochs_and_load():
    total = sum(p.stat().st_size for p in registry.WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total <= 25e6
    for name in SHIPPED:
        card = vaekit.model_card(name)
        assert card.name == name and card.epochs == 30 and card.test_elbo < 300
        assert card.weights_dtype == "float32" or abs(card.test_elbo - card.test_elbo_fp32) < 0.1
        model = vaekit.load_pretrained(name)
        with torch.no_grad():
            images = model.decode(torch.zeros(2, model.latent_dim))
        assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all() and images.std() > 0.01


@needs_shipped
def test_report_of_a_shipped_model_needs_no_training(fashion_mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(fashion_mnist_dir))
    name = "fashion28-beta1" if "fashion28-beta1" in SHIPPED else SHIPPED[0]
    assert main(["report", name, "--limit", "1000", "--device", "cpu"]) == 0
    page = (tmp_path / name / "report.html").read_text()
    assert name in page and "<img" in page
