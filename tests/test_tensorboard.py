"""Experiment tracking: ``log="tensorboard"`` / ``vaekit train --log tensorboard``."""

import csv
import sys

import pytest
import torch

import vaekit
from vaekit import TrainConfig, train
from vaekit.cli import main
from vaekit.errors import ConfigError
from vaekit.training.callbacks import TensorBoardLogger
from vaekit.training.trainer import TrainingInterrupted

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

# 4 steps per epoch; 28x28 images, so the image holds 8 images above 8 reconstructions: 224 x 56.
QUICK = dict(dataset="shapes", epochs=2, batch_size=64, train_limit=256, test_limit=64, seed=3,
             precision="fp32", compile="off", fused_optimizer="off", log="tensorboard")
STEPS = 4
CLI_TRAIN = ["train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "64", "--train-limit", "128",
             "--test-limit", "32", "--precision", "fp32", "--compile", "off", "--quiet"]


def read_log(run_dir):
    return EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()


def steps(log, tag):
    return [event.step for event in log.Scalars(tag)]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run interrupted in its second epoch, then resumed to the end: one log, written by two sessions."""
    out = tmp_path_factory.mktemp("tensorboard") / "run"

    def interrupt(epoch, step):
        if epoch == 1 and step == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**QUICK), out=out, progress=False, on_step=interrupt)
    first = read_log(out)
    train(out=out, resume=True, progress=False)
    return out, first


def test_the_loss_terms_are_logged_once_per_step_and_resume_continues_the_steps(resumed_run):
    out, first = resumed_run
    assert steps(first, "train/loss") == list(range(1, STEPS + 3))  # the interrupted session
    log = read_log(out)
    for tag in ("train/loss", "train/recon", "train/kl", "train/beta"):
        assert steps(log, tag) == list(range(1, 2 * STEPS + 1)), tag
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # appended, not replaced


def test_the_test_metrics_are_logged_once_per_epoch(resumed_run):
    out, _ = resumed_run
    log = read_log(out)
    for tag in ("test/elbo", "test/recon", "test/kl", "test/active_units", "train/epoch_loss"):
        assert steps(log, tag) == [STEPS, 2 * STEPS], tag
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [round(e.value, 3) for e in log.Scalars("test/elbo")] == \
        [round(float(row["test_elbo"]), 3) for row in rows]


def test_a_reconstruction_image_is_logged_per_epoch(resumed_run):
    out, _ = resumed_run
    images = read_log(out).Images("reconstructions")
    assert [image.step for image in images] == [STEPS, 2 * STEPS]
    assert {(image.width, image.height) for image in images} == {(8 * 28, 2 * 28)}


def test_the_grid_shows_the_test_images_above_their_reconstructions(tmp_path):
    class Trainer:  # what the logger reads of a trainer
        model, precision, config = vaekit.build_model("fashion28", 2), "fp32", TrainConfig()
        test_set = vaekit.load_dataset("shapes", "test", n=5)

    grid = TensorBoardLogger(tmp_path / "tb").reconstruction_grid(Trainer())
    assert grid.shape == (1, 2 * 28, 5 * 28)
    for i in range(5):
        assert torch.equal(grid[0, :28, 28 * i:28 * (i + 1)], Trainer.test_set.images[i, 0].float() / 255)
    assert 0 <= float(grid.min()) and float(grid.max()) <= 1
    assert not (tmp_path / "tb").exists()  # the writer opens when training starts


def test_the_cli_flag_writes_the_log(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*CLI_TRAIN, "--log", "tensorboard", "--out", str(out)]) == 0
    log = read_log(out)
    assert steps(log, "train/loss") == [1, 2]
    assert steps(log, "test/elbo") == [2]
    assert len(log.Images("reconstructions")) == 1


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.mark.parametrize("value", ["wandb", "none,tensorboard", ""])
def test_an_unknown_tracker_is_a_one_line_error(tmp_path, capsys, value):
    assert main([*CLI_TRAIN, "--log", value, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "--log must be none or one or more of tensorboard", f"got '{value}'")
    assert not (tmp_path / "run").exists()


def test_a_missing_tensorboard_package_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main([*CLI_TRAIN, "--log", "tensorboard", "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "--log tensorboard: needs the tensorboard package (pip install 'vaekit[tensorboard]')")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError) as error:
        train(TrainConfig(**QUICK), out=tmp_path / "run", progress=False)
    assert error.value.param == "log"


def test_the_log_setting_is_parsed_and_may_change_on_resume():
    assert TrainConfig().trackers == ()
    assert TrainConfig(log="tensorboard").trackers == ("tensorboard",)
    assert TrainConfig(log=" TensorBoard , tensorboard").trackers == ("tensorboard",)
    from vaekit.training.api import resume_overrides

    assert resume_overrides(TrainConfig(**QUICK), {"log": "none"}).trackers == ()
