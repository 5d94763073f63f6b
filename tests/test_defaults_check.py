"""benchmarks/defaults_check.py: candidate defaults trained, kept, resumed or reused, and scored alike."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import load_script

from vaekit.training.config import TrainConfig


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/defaults_check.py")


def tiny(data_dir, out, results, *extra):
    # The second variant differs from the defaults in both directions a default could move.
    return ["--variants", "default", "init=keras,ema_decay=none", "--seeds", "0", "--epochs", "1",
            "--data-dir", str(data_dir),
            "--train-limit", "256", "--test-limit", "300", "--device", "cpu", "--out", str(out),
            "--json", str(results), *extra]


@pytest.fixture(scope="module")
def checked(script, fashion_mnist_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defaults-check")
    assert script.main(tiny(fashion_mnist_dir, tmp / "runs", tmp / "check.json")) == 0
    return tmp, json.loads((tmp / "check.json").read_text())


def test_every_variant_is_trained_and_scored_on_the_same_test_images(checked):
    tmp, record = checked
    assert [(r["variant"], r["seed"]) for r in record["rows"]] == [("default", 0), ("init=keras,ema_decay=none", 0)]
    for row in record["rows"]:
        assert row["test_images"] == 300 and len(row["epoch_test_elbo"]) == 1
        assert row["test_elbo"] == pytest.approx(row["recon"] + row["kl"], abs=0.01)
    assert (tmp / "runs" / "init-keras+ema_decay-none" / "seed0" / "model.safetensors").is_file()
    saved = json.loads((tmp / "runs" / "init-keras+ema_decay-none" / "seed0" / "config.json").read_text())["train"]
    assert (saved["init"], saved["ema_decay"]) == ("keras", None)
    summary = {cell["variant"]: cell for cell in record["summary"]}
    assert summary["default"]["mean"] == pytest.approx(record["rows"][0]["test_elbo"], abs=0.01)
    assert summary["default"]["sd"] is None and not summary["default"]["meets_target"]  # one seed is not a mean of 3
    assert record["meta"]["keras_anchor"]["test_elbo"] == pytest.approx(260.76)


def test_a_second_call_keeps_finished_runs_and_the_page_renders_from_json(script, checked, fashion_mnist_dir):
    tmp, record = checked
    weights = tmp / "runs" / "default" / "seed0" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert script.main(tiny(fashion_mnist_dir, tmp / "runs", tmp / "again.json")) == 0
    assert weights.stat().st_mtime_ns == before
    again = json.loads((tmp / "again.json").read_text())
    assert [r["test_elbo"] for r in again["rows"]] == [r["test_elbo"] for r in record["rows"]]
    page = (tmp / "check.md").read_text()
    assert "| init=keras,ema_decay=none | init keras," in page
    assert "--variants default init=keras,ema_decay=none" in page
    (tmp / "check.md").unlink()
    assert script.main(["--render-only", "--json", str(tmp / "check.json")]) == 0
    assert (tmp / "check.md").read_text() == page


def test_a_finished_run_elsewhere_is_reused(script, checked, fashion_mnist_dir, tmp_path):
    tmp, record = checked
    shutil.copytree(tmp / "runs" / "default" / "seed0", tmp_path / "zoo" / "family" / "some_run")
    out = tmp_path / "runs"
    args = tiny(fashion_mnist_dir, out, tmp_path / "r.json", "--reuse", str(tmp_path / "zoo"))
    args[args.index("init=keras,ema_decay=none")] = "default"
    args.remove("default")
    assert script.main(args) == 0
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["run"].endswith("zoo/family/some_run") and not out.exists()
    assert row["test_elbo"] == record["rows"][0]["test_elbo"]


def test_bad_input_is_one_line(script, checked, fashion_mnist_dir, tmp_path, capsys):
    with pytest.raises(SystemExit, match="--variants: 'colour=red' is not NAME=VALUE"):
        script.main(["--variants", "colour=red"])
    tmp, _ = checked
    # A run directory trained with other settings is refused, never overwritten.
    shutil.copytree(tmp / "runs" / "default", tmp_path / "runs" / "init-keras+ema_decay-none")
    code = script.main(tiny(fashion_mnist_dir, tmp_path / "runs", tmp_path / "r.json"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "init" in err[0], err
    assert not (tmp_path / "r.json").exists()


def test_an_averaging_variant_scores_its_average_and_its_trained_weights(script, checked, fashion_mnist_dir,
                                                                          tmp_path):
    tmp, record = checked
    args = tiny(fashion_mnist_dir, tmp / "runs", tmp_path / "ema.json")
    args[args.index("default")] = "init=keras,ema_decay=0.5"
    assert script.main(args) == 0
    ema, plain = json.loads((tmp_path / "ema.json").read_text())["rows"]
    # Averaging does not change the training: its trained weights are the plain run's, scored alike.
    assert ema["trained_weights_test_elbo"] == plain["test_elbo"] == record["rows"][1]["test_elbo"]
    assert ema["test_elbo"] != plain["test_elbo"] and "trained_weights_test_elbo" not in plain
    assert "init=keras,ema_decay=0.5, seed 0: average" in (tmp_path / "ema.md").read_text()


def test_the_table_names_each_variants_settings_and_its_3_epoch_result(script, checked):
    tmp, record = checked
    defaults = TrainConfig()
    clip = f"{defaults.effective_grad_clip:g}" if defaults.effective_grad_clip else "none"
    page = (tmp / "check.md").read_text()
    assert (f"| default | init {defaults.effective_init}, batch {defaults.batch_size}, {defaults.lr_schedule} rate, "
            f"EMA {defaults.ema_decay or 'none'}, clip {clip} | 1 |") in page
    assert "| init=keras,ema_decay=none | init keras, batch" in page and "rate, EMA none, clip" in page
    # Only a constant-rate run's epoch 3 is a 3-epoch result; runs shorter than 3 epochs have none.
    rows = [{"variant": "a", "lr_schedule": "constant", "epoch_test_elbo": [270.0, 265.0, 263.0 + seed, 260.0]}
            for seed in (0, 1)]
    rows += [{"variant": "b", "lr_schedule": "cosine", "epoch_test_elbo": [270.0, 265.0, 262.0]},
             {"variant": "c", "lr_schedule": "constant", "epoch_test_elbo": [270.0]}]
    lines = script.at_three_epochs(rows)
    assert "- a: 263.50 ± 0.71 (2 seeds: 263.00, 264.00)" in lines
    assert not any(line.startswith(("- b", "- c")) for line in lines)
    assert script.at_three_epochs(rows[2:]) == [] and "At 3 epochs" not in page


def test_no_train_scores_what_is_finished_and_names_the_rest(script, checked, fashion_mnist_dir, tmp_path):
    tmp, record = checked
    args = tiny(fashion_mnist_dir, tmp / "runs", tmp_path / "some.json", "--no-train")
    args[args.index("--seeds") + 1:args.index("--seeds") + 2] = ["0", "1"]
    assert script.main(args) == 0
    some = json.loads((tmp_path / "some.json").read_text())
    assert [(r["variant"], r["seed"]) for r in some["rows"]] == [("default", 0), ("init=keras,ema_decay=none", 0)]
    assert [r["test_elbo"] for r in some["rows"]] == [r["test_elbo"] for r in record["rows"]]
    assert not (tmp / "runs" / "default" / "seed1").exists()  # nothing was trained
    page = (tmp_path / "some.md").read_text()
    assert "Not run (`--no-train` scored only finished runs): default, seed 1; init=keras,ema_decay=none, seed 1." \
        in page and "--no-train" in some["meta"]["command"]


def test_no_train_with_nothing_finished_is_one_line(script, fashion_mnist_dir, tmp_path, capsys):
    code = script.main(tiny(fashion_mnist_dir, tmp_path / "empty", tmp_path / "r.json", "--no-train"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--no-train: no finished run" in err[0], err
    assert not (tmp_path / "r.json").exists()
