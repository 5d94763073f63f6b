"""Bad numerics (diverged training, NaN models) and absurd sizes end in one clear VaekitError line."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit.analysis import latent
from vaekit.analysis import manifold as manifold_ops
from vaekit.analysis.anomaly import anomaly_scores
from vaekit.analysis.attributes import attribute_edit
from vaekit.analysis.bounds import check_iw_samples, evaluate_model, image_bounds
from vaekit.analysis.denoise import denoise_benchmark
from vaekit.analysis.embedding import embed_dataset
from vaekit.analysis.explorer import Explorer
from vaekit.analysis.inference import Inference
from vaekit.analysis.limits import (
    MAX_BYTES,
    NonFiniteResultError,
    check_allocation,
    check_count,
)
from vaekit.analysis.separation import latent_map, project_2d
from vaekit.errors import ConfigError, VaekitError
from vaekit.training.checkpoint import load_checkpoint
from vaekit.training.diagnostics import diagnose_collapse
from vaekit.training.trainer import TrainingDiverged, TrainingInterrupted
from vaekit.viz import sections
from vaekit.viz.figures import save_reconstructions, save_samples

TINY = dict(dataset="shapes", epochs=2, train_limit=256, test_limit=64, batch_size=64, progress=False)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


def _poison(model: torch.nn.Module, value: float = math.nan) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(value)


def _assert_clean_run_dir(run_dir, epochs_done: int) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["status"] == "diverged"
    assert config.get("epochs_done", 0) == epochs_done
    assert "NaN" not in (run_dir / "config.json").read_text() and "Infinity" not in (run_dir / "config.json").read_text()
    metrics = run_dir / "metrics.csv"
    rows = list(csv.DictReader(metrics.open())) if metrics.exists() else []
    assert len(rows) == epochs_done
    for row in rows:
        for value in row.values():
            assert value.lower() not in ("nan", "inf", "-inf")
    if (run_dir / "model.safetensors").exists():
        for tensor in load_file(run_dir / "model.safetensors").values():
            assert torch.isfinite(tensor).all()
    checkpoint = load_checkpoint(run_dir)
    if epochs_done == 0:
        assert checkpoint is None
    else:
        assert int(checkpoint["epoch"]) == epochs_done and checkpoint["epoch_state"] is None
        weights = load_file(run_dir / "model.safetensors")
        # model.safetensors holds what the run publishes: the moving average when it keeps one (the default).
        average = checkpoint.get("average")
        published = average["weights"] if average else checkpoint["model"]
        for name, tensor in checkpoint["model"].items():
            assert torch.isfinite(tensor).all() and torch.isfinite(published[name]).all()
            assert torch.equal(published[name], weights[name])


# ----------------------------------------------------------------------------- family A: training


@pytest.mark.parametrize("lr", [1e6, 1e9])
def test_huge_lr_stops_with_epoch_and_step(tmp_path, lr):
    with pytest.raises(TrainingDiverged) as caught:
        vaekit.train(out=tmp_path / "run", lr=lr, **TINY)
    text = _one_line(caught.value)
    assert isinstance(caught.value, VaekitError)
    assert text.startswith("training diverged: the loss is ") and "at epoch 1, step " in text
    assert "lower lr" in text and str(tmp_path / "run") in text
    assert caught.value.epoch == 1 and caught.value.step >= 1
    _assert_clean_run_dir(tmp_path / "run", 0)
    assert not (tmp_path / "run" / "samples.png").exists()


def test_divergence_in_epoch_two_keeps_epoch_one(tmp_path):
    def hook(trainer, epoch, step):
        if epoch == 1 and step == 1:
            _poison(trainer.model)

    class Poison(vaekit.Callback):
        def on_step_end(self, trainer, terms):
            hook(trainer, trainer.epoch, trainer.step - 1)

    with pytest.raises(TrainingDiverged) as caught:
        vaekit.train(out=tmp_path / "run", callbacks=[Poison()], **TINY)
    text = _one_line(caught.value)
    assert "the loss is nan at epoch 2, step 3" in text and "last good checkpoint (epoch 1)" in text
    _assert_clean_run_dir(tmp_path / "run", 1)


def test_nan_after_last_step_caught_by_test_elbo(tmp_path):
    class PoisonAtEpochEnd(vaekit.Callback):
        def on_step_end(self, trainer, terms):
            if trainer.step == trainer.steps_per_epoch:
                _poison(trainer.model)

    with pytest.raises(TrainingDiverged) as caught:
        vaekit.train(out=tmp_path / "run", callbacks=[PoisonAtEpochEnd()], **TINY)
    assert "the test ELBO is not finite after epoch 1" in _one_line(caught.value)
    _assert_clean_run_dir(tmp_path / "run", 0)


def test_infinite_weights_are_never_checkpointed_on_ctrl_c(tmp_path):
    class PoisonThenInterrupt(vaekit.Callback):
        def on_step_end(self, trainer, terms):
            if trainer.epoch == 1 and trainer.step == 2:
                _poison(trainer.model, math.inf)
                raise KeyboardInterrupt

    with pytest.raises(TrainingDiverged) as caught:
        vaekit.train(out=tmp_path / "run", callbacks=[PoisonThenInterrupt()], **TINY)
    assert not isinstance(caught.value, TrainingInterrupted)
    assert "diverged" in _one_line(caught.value)
    _assert_clean_run_dir(tmp_path / "run", 1)


def test_good_run_unaffected_and_interrupt_still_resumable(tmp_path):
    class Interrupt(vaekit.Callback):
        def on_step_end(self, trainer, terms):
            if trainer.epoch == 0 and trainer.step == 2:
                raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        vaekit.train(out=tmp_path / "run", callbacks=[Interrupt()], **TINY)
    result = vaekit.train(out=tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["status"] == "complete"
    assert len(result.metrics) == 2


# ----------------------------------------------------------------------------- family A: analysis


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("edges") / "run"
    return vaekit.train(out=out, **{**TINY, "epochs": 1}).run_dir


@pytest.fixture()
def nan_explorer(good_run):
    explorer = Explorer.open(good_run, limit=64)
    _poison(explorer.model.model)
    return explorer


def _refuses_nan(call) -> str:
    with pytest.raises(NonFiniteResultError) as caught:
        call()
    text = _one_line(caught.value)
    assert "the model's weights may have diverged" in text
    return text


def test_nan_model_refused_by_every_analysis(nan_explorer, tmp_path):
    model, data = nan_explorer.model, nan_explorer.dataset
    _refuses_nan(lambda: evaluate_model(model, data, iw_samples=2, iw_images=4))
    _refuses_nan(lambda: embed_dataset(model, data))
    _refuses_nan(lambda: anomaly_scores(model, data, iw_samples=2))
    _refuses_nan(lambda: model.sample(4))
    _refuses_nan(lambda: model.reconstruct(data.images[:4]))
    _refuses_nan(lambda: model.encode(data.images[:4]))
    _refuses_nan(lambda: manifold_ops.manifold(model, 3, np.random.default_rng(0).normal(size=(8, model.latent_dim))))
    _refuses_nan(lambda: diagnose_collapse(model.model, data))
    _refuses_nan(lambda: denoise_benchmark(model, data))
    zero, one = np.zeros(model.latent_dim), np.ones(model.latent_dim)
    _refuses_nan(lambda: latent.interpolate(model, zero, one, steps=3))
    _refuses_nan(lambda: latent.traverse(model, steps=3))
    _refuses_nan(lambda: save_samples(model, tmp_path / "s.png", n=4))
    _refuses_nan(lambda: save_reconstructions(model, data, tmp_path / "r.png", n=4))
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "r.png").exists()


def test_nan_model_refused_by_sections(nan_explorer):
    _refuses_nan(lambda: sections.latent_map_section(nan_explorer, projection="pca"))
    _refuses_nan(lambda: sections.manifold_section(nan_explorer, grid=3, n_reference=8))
    _refuses_nan(lambda: sections.traversal_section(nan_explorer, steps=3, reference="zero"))
    _refuses_nan(lambda: sections.class_means_section(nan_explorer))


def test_inf_model_refused(good_run):
    explorer = Explorer.open(good_run, limit=64)
    _poison(explorer.model.model, math.inf)
    _refuses_nan(lambda: explorer.model.decode(np.zeros((2, explorer.model.latent_dim), np.float32)))


# ----------------------------------------------------------------------------- family B: sizes


@pytest.fixture(scope="module")
def model(good_run):
    return Explorer.open(good_run, limit=64).model


def _refused(call, param: str) -> str:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        call()
    assert time.perf_counter() - started < 0.5, "refused only after working"
    assert caught.value.param == param, caught.value.param
    text = _one_line(caught.value)
    assert param in text
    return text


@pytest.mark.parametrize("grid", [10**6, 100_000, 2**62])
def test_manifold_grid_refused(model, grid):
    _refused(lambda: manifold_ops.manifold(model, grid), "grid")


def test_sizes_refused_before_allocation(model, good_run, tmp_path):
    data = Explorer.open(good_run, limit=64)
    _refused(lambda: sections.manifold_section(data, grid=100_000), "grid")
    _refused(lambda: sections.manifold_section(data, grid=10, n_reference=10**12), "reference_images")
    _refused(lambda: latent.interpolation_weights(10**12), "steps")
    _refused(lambda: latent.interpolate(model, np.zeros(model.latent_dim), np.ones(model.latent_dim), steps=10**9),
             "steps")
    _refused(lambda: latent.interpolate(model, np.zeros(model.latent_dim), np.ones(model.latent_dim),
                                        measure_frames=10**10), "measure_frames")
    _refused(lambda: latent.morph(model, data.dataset.images[0], data.dataset.images[1], steps=10**8), "steps")
    _refused(lambda: latent.traverse(model, steps=10**9), "steps")
    _refused(lambda: latent.traverse(model, max_dims=10**9), "dims")
    _refused(lambda: sections.traversal_section(data, max_dims=10**12), "dims")
    _refused(lambda: sections.transitions_section(data, steps=10**7), "steps")
    _refused(lambda: sections.arithmetic_section(data, source="circle", target="square", n=10**9), "n")
    _refused(lambda: model.sample(10**12), "n")
    _refused(lambda: save_samples(model, tmp_path / "s.png", n=10**9), "n")
    _refused(lambda: save_reconstructions(model, data.dataset, tmp_path / "r.png", n=10**9), "n")
    _refused(lambda: image_bounds(model, data.dataset.images, k=10**9), "iw_samples")
    _refused(lambda: evaluate_model(model, data.dataset, iw_samples=10**12), "iw_samples")
    _refused(lambda: evaluate_model(model, data.dataset, iw_samples=10, iw_images=10**12), "iw_images")
    _refused(lambda: anomaly_scores(model, data.dataset, iw_samples=10**8), "iw_samples")
    _refused(lambda: diagnose_collapse(model.model, data.dataset, probe_size=10**12), "probe_size")
    _refused(lambda: latent.encode_dataset(model, data.dataset, limit=10**12), "limit")
    _refused(lambda: latent_map(data.codes, method="tsne", tsne_max_points=10**9), "tsne_max_points")
    _refused(lambda: Explorer(data.run, limit=10**13), "limit")
    _refused(lambda: attribute_edit(good_run, "circle", strengths=[0.5] * 10**5), "strengths")
    _refused(lambda: attribute_edit(good_run, "circle", n=10**9), "n")
    assert not (tmp_path / "s.png").exists()


def test_tsne_of_too_many_points_refused():
    _refused(lambda: project_2d(np.zeros((200_000, 2), np.float32), "tsne"), "projection")


@pytest.mark.parametrize("value", [2.5, math.inf, math.nan, True, "7", -3, 0])
def test_counts_must_be_positive_integers(value):
    _refused(lambda: check_count("steps", value), "steps")


def test_iw_samples_times_images_refused():
    check_iw_samples(1000, 10_000)  # the usual protocol passes
    _refused(lambda: check_iw_samples(10**5, 10**6), "iw_samples")


def test_allocation_budget_from_arithmetic():
    check_allocation("n", 1000, 4 * 784)
    text = _refused(lambda: check_allocation("n", 10**9, 4 * 3 * 128 * 128), "n")
    assert "TiB" in text and "limit" in text
    _refused(lambda: check_allocation("grid", MAX_BYTES // 8 + 1, 8), "grid")


def test_sample_allocation_refused_for_big_images():
    class Big(torch.nn.Module):
        latent_dim, image_shape = 4, (3, 1024, 1024)

        def decode_logits(self, z):  # pragma: no cover - never reached
            raise AssertionError("allocated")

    _refused(lambda: Inference(Big()).sample(2000), "n")
