import json
import os
import signal

import pytest
import torch

import vaekit
from vaekit.errors import ConfigError, RunDirError
from vaekit.runs.run import read_metrics
from vaekit.training import TrainingInterrupted, train
from vaekit.training.config import TrainConfig
from vaekit.training.diagnostics import diagnose_collapse

QUICK = dict(dataset="shapes", epochs=2, batch_size=64, train_limit=384, test_limit=128, seed=3)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "shapes"
    return train(TrainConfig(**QUICK), out=out, progress=False)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_run_directory_holds_config_weights_metrics_and_figures(shapes_run):
    run = shapes_run.run_dir
    for name in ("config.json", "model.safetensors", "metrics.csv", "checkpoint.pt",
                 "reconstructions.png", "samples.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "fashion28" and config["latent_dim"] == 2
    assert config["status"] == "complete" and config["epochs_done"] == 2
    assert config["train"]["beta"] == 1.0 and config["dataset"]["class_names"][0] == "square"
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for column in ("train_loss", "train_recon", "train_kl", "test_elbo", "seconds", "images_per_s",
                   "active_units", "collapsed"):
        assert column in rows[0]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])


def test_loaded_model_reproduces_the_trained_one(shapes_run):
    model = vaekit.load(shapes_run.run_dir)
    assert not model.training
    x = torch.rand(4, 1, 28, 28)
    noise = torch.randn(4, 2)
    with torch.no_grad():
        expected = shapes_run.model.float()(x, noise=noise).reconstruction
        assert torch.allclose(model(x, noise=noise).reconstruction, expected, atol=1e-6)
    assert vaekit.VAE.from_pretrained(shapes_run.run_dir).latent_dim == 2


def test_training_refuses_to_overwrite_an_existing_run(shapes_run):
    weights_before = (shapes_run.run_dir / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run"):
        train(TrainConfig(**QUICK), out=shapes_run.run_dir, progress=False)
    assert (shapes_run.run_dir / "model.safetensors").read_bytes() == weights_before


def test_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    straight = train(TrainConfig(**QUICK), out=tmp_path / "straight", progress=False)

    def interrupt(epoch, step):
        if epoch == 0 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**QUICK), out=tmp_path / "cut", progress=False, on_step=interrupt)
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["status"] == "interrupted"
    resumed = train(out=tmp_path / "cut", resume=True, progress=False)
    for name, tensor in _weights(straight.model).items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    straight_rows, resumed_rows = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "cut")
    assert [r["test_elbo"] for r in straight_rows] == [r["test_elbo"] for r in resumed_rows]


def test_resume_can_extend_a_finished_run(tmp_path):
    train(TrainConfig(**{**QUICK, "epochs": 1}), out=tmp_path / "run", progress=False)
    result = train(out=tmp_path / "run", resume=True, progress=False, epochs=2)
    assert [int(r["epoch"]) for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert [row["epoch"] for row in result.metrics] == [1, 2]
    assert isinstance(result.metrics[0]["test_elbo"], float)


def test_resume_refuses_to_change_the_recipe(shapes_run):
    with pytest.raises(ConfigError, match="beta: cannot change"):
        train(out=shapes_run.run_dir, resume=True, progress=False, beta=5.0)


@pytest.mark.parametrize("field,value", [
    ("beta", -1.0), ("batch_size", 0), ("epochs", 0), ("lr", 0.0), ("latent_dim", 0), ("precision", "fp8"),
    ("recon", "l1"), ("lr_schedule", "linear"), ("ema_decay", 1.0),
])
def test_invalid_hyper_parameters_are_one_line_config_errors(tmp_path, field, value):
    # The library names the parameter; the CLI turns it into the flag (tests/test_options.py).
    with pytest.raises(ConfigError, match=f"^{field}\\b") as error:
        train(TrainConfig(**{**QUICK, field: value}), out=tmp_path / "x", progress=False)
    assert error.value.param == field and "\n" not in str(error.value)
    assert not (tmp_path / "x").exists()


def test_architecture_and_dataset_shapes_must_agree(tmp_path):
    with pytest.raises(ConfigError, match="expects"):
        train(TrainConfig(**{**QUICK, "arch": "nn3-128"}), out=tmp_path / "x", progress=False)


def test_kl_warmup_ramps_beta(tmp_path):
    result = train(TrainConfig(**{**QUICK, "kl_warmup_epochs": 2, "beta": 2.0}), out=tmp_path / "w", progress=False)
    assert [row["beta"] for row in result.metrics] == [1.0, 2.0]


def test_excluded_classes_are_not_trained_on(tmp_path):
    settings = {**QUICK, "epochs": 1, "exclude_classes": ["circle"], "train_limit": None}
    result = train(TrainConfig(**settings), out=tmp_path / "e", progress=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["train"]["exclude_classes"] == ["circle"]
    full = vaekit.load_dataset("shapes", "train")
    circles = int((full.labels == full.class_names.index("circle")).sum())
    assert circles > 0 and config["dataset"]["train_size"] == len(full) - circles


def test_collapse_is_detected_when_the_dense16_layer_is_dead(shapes_run):
    model = vaekit.load(shapes_run.run_dir)
    dense16 = model.encoder[7]
    assert isinstance(dense16, torch.nn.Linear) and dense16.out_features == 16
    with torch.no_grad():
        dense16.weight.zero_()
        dense16.bias.fill_(-1.0)
    dataset = vaekit.load_dataset("shapes", "test", n=64)
    report = diagnose_collapse(model, dataset)
    assert report.collapsed and report.active_units == 0
    assert "Dense 16" in report.reason and report.dead_units >= 16


def test_a_trained_model_is_not_reported_collapsed(tmp_path):
    # vaekit's init uses z within these 12 steps; PyTorch's (what "auto" is on fashion28) wakes up later on
    # this tiny set (KL about 0.03 after 2 epochs), so the shared default-settings run is no test of this.
    run = train(TrainConfig(**{**QUICK, "init": "vaekit"}), out=tmp_path / "run", progress=False)
    report = diagnose_collapse(run.model, vaekit.load_dataset("shapes", "test", n=256))
    assert report.dead_layers == []
    assert report.kl > 0.05


def test_atomic_writes_leave_no_temporary_files_and_normal_permissions(shapes_run):
    names = [p.name for p in shapes_run.run_dir.iterdir()]
    assert not [n for n in names if n.endswith(".tmp")]
    assert (shapes_run.run_dir / "model.safetensors").stat().st_mode & 0o044 == 0o044


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import vaekit.files as files_mod

    target = tmp_path / "config.json"
    files_mod.write_json(target, {"version": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        files_mod.write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_cosine_schedule_runs_from_lr_to_zero():
    from vaekit.training.schedule import scheduled_lr

    rates = [scheduled_lr(1e-3, "cosine", step, 100) for step in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[50] == pytest.approx(5e-4) and rates[100] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert scheduled_lr(1e-3, "constant", 77, 100) == 1e-3


def test_a_cosine_run_differs_from_a_constant_one_and_resumes_exactly(tmp_path, shapes_run):
    settings = {**QUICK, "lr_schedule": "cosine"}
    straight = train(TrainConfig(**settings), out=tmp_path / "straight", progress=False)
    changed = [name for name, tensor in _weights(straight.model).items()
               if not torch.equal(tensor, shapes_run.model.state_dict()[name])]
    assert changed  # the same seed and data with a constant rate ends elsewhere

    def interrupt(epoch, step):
        if epoch == 1 and step == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**settings), out=tmp_path / "cut", progress=False, on_step=interrupt)
    resumed = train(out=tmp_path / "cut", resume=True, progress=False)
    for name, tensor in _weights(straight.model).items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["train"]["lr_schedule"] == "cosine"


def test_a_cosine_run_refuses_to_change_its_length_on_resume(tmp_path):
    train(TrainConfig(**{**QUICK, "epochs": 1, "lr_schedule": "cosine"}), out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="^epochs: a run with lr_schedule cosine keeps its 1 epochs") as error:
        train(out=tmp_path / "run", resume=True, progress=False, epochs=2)
    assert "\n" not in str(error.value)
    assert [int(r["epoch"]) for r in read_metrics(tmp_path / "run")] == [1]


def test_a_run_whose_metrics_lack_a_newer_column_resumes_and_keeps_its_rows(tmp_path):
    import csv

    run = tmp_path / "run"
    train(TrainConfig(**{**QUICK, "epochs": 1}), out=run, progress=False)
    # As an older vaekit wrote it: without the threads column.
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    old_columns = [c for c in rows[0] if c != "threads"]
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    train(out=run, resume=True, progress=False, epochs=2)
    resumed = read_metrics(run)
    assert [r["epoch"] for r in resumed] == ["1", "2"] and resumed[0]["test_elbo"] == rows[0]["test_elbo"]
    assert resumed[0]["threads"] == "" and int(resumed[1]["threads"]) >= 1
    assert vaekit.Run.open(run).metrics[0]["threads"] is None


@pytest.mark.parametrize("arch, grad_clip, expected", [
    ("fashion28", "auto", 1000.0), ("nn3-128", "auto", None), ("fashion28", None, None), ("fashion28", 0.5, 0.5)])
def test_a_step_clips_the_gradient_norm_at_the_limit_grad_clip_resolves_to(monkeypatch, arch, grad_clip, expected):
    from vaekit.models import build_model
    from vaekit.training.step import prepare_images, train_step
    from vaekit.training.tuning import make_optimizer

    limits = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, limit, **kw: limits.append(limit) or clip(params, limit, **kw))
    torch.manual_seed(0)
    model = build_model(arch, latent_dim=2)
    config = TrainConfig(arch=arch, grad_clip=grad_clip)
    optimizer = make_optimizer(model, config.lr, False)
    images = torch.randint(0, 256, (2, *model.image_shape), dtype=torch.uint8)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(model, optimizer, scaler, prepare_images(images, False), 1.0, config, torch.device("cpu"), "fp32")
    assert limits == ([expected] if expected else [])


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt here, as in a terminal (a test runner's worker may ignore it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_stop_signal_between_an_epochs_files_waits_for_them_and_the_run_resumes(tmp_path, monkeypatch,
                                                                                   sigint_raises):
    from vaekit.training.trainer import Trainer

    save_model = Trainer._save_model

    def save_then_signal(trainer, fields):
        save_model(trainer, fields)
        if fields.get("epochs_done") == 1:  # lands after the epoch is counted, before its metrics.csv row
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_save_model", save_then_signal)
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**QUICK), out=tmp_path / "run", progress=False)
    assert [int(r["epoch"]) for r in read_metrics(tmp_path / "run")] == [1]
    monkeypatch.undo()
    resumed = train(out=tmp_path / "run", resume=True, progress=False)
    assert [row["epoch"] for row in resumed.metrics] == [1, 2]


def test_a_second_stop_signal_interrupts_at_once(tmp_path, sigint_raises):
    from vaekit.training.trainer import Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.world = 1
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with trainer._stop_signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the first")
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the second")
    assert reached == ["after the first"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.parametrize("resume", [False, True])
def test_a_mistyped_setting_is_refused_not_ignored(shapes_run, tmp_path, resume):
    out = shapes_run.run_dir if resume else tmp_path / "new"
    config = None if resume else TrainConfig(**QUICK)
    with pytest.raises(ConfigError, match=r"^epoch: not a training setting .*; did you mean epochs\?$"):
        train(config, out=out, resume=resume, progress=False, epoch=20)
    assert not (tmp_path / "new").exists()
