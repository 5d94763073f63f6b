"""The redesigned API: Run, the inference layer, Trainer callbacks, objects instead of names.

Each test pins one promise of the redesign (issue 8) that a user relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vaekit
from vaekit.analysis import Inference
from vaekit.cli import main
from vaekit.data import make_shapes
from vaekit.errors import ConfigError
from vaekit.models import ArchSpec, ConvLayer, VAEOutput
from vaekit.training import Callback

QUICK = dict(dataset="shapes", arch="fashion28", latent_dim=2, epochs=1, batch_size=64, train_limit=256,
             test_limit=64)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    return vaekit.train(out=tmp_path_factory.mktemp("redesign") / "run", progress=False, **QUICK)


# ----------------------------------------------------------------------------
# The inference layer


def test_inference_batches_change_nothing_and_leave_the_training_flag(shapes_run):
    model = shapes_run.model.train()
    images = make_shapes(n=37, split="test").images
    whole, small = Inference(model, batch_size=64), Inference(model, batch_size=5)
    z_whole, _ = whole.encode(images)
    z_small, _ = small.encode(images)
    torch.testing.assert_close(z_small, z_whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small.reconstruct(images), whole.reconstruct(images), rtol=1e-5, atol=1e-5)
    assert model.training, "inference must put the model back in training mode"
    recon, kl = whole.elbo_parts(images, seed=3)
    again, _ = small.elbo_parts(images, seed=3)
    assert recon.shape == kl.shape == (37,) and np.all(kl >= 0)
    assert not np.array_equal(recon, whole.elbo_parts(images, seed=4)[0]), "the seed draws the posterior sample"
    np.testing.assert_allclose(whole.elbo_parts(images, seed=3)[0], recon)
    model.eval()


def test_inference_accepts_uint8_floats_and_arrays_and_rejects_wrong_shapes(shapes_run):
    inference = Inference(shapes_run.model)
    images = make_shapes(n=4, split="test").images
    from_uint8 = inference.encode(images)[0]
    from_float = inference.encode(images.float() / 255)[0]
    from_numpy = inference.encode(images.numpy())[0]
    torch.testing.assert_close(from_uint8, from_float)
    torch.testing.assert_close(from_uint8, from_numpy)
    assert inference.decode(np.zeros(2, np.float32)).shape == (1, 1, 28, 28)
    assert inference.sample(3, seed=1).shape == (3, 1, 28, 28)
    torch.testing.assert_close(inference.sample(3, seed=1), inference.sample(3, seed=1))
    with pytest.raises(ConfigError, match="model expects"):
        inference.encode(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ConfigError, match="latent vectors"):
        inference.decode(torch.zeros(2, 5))


def test_bf16_inference_stays_close_to_fp32(shapes_run):
    images = make_shapes(n=16, split="test").images
    fp32 = Inference(shapes_run.model, "fp32").reconstruct(images)
    bf16 = Inference(shapes_run.model, "bf16").reconstruct(images)
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.05


# ----------------------------------------------------------------------------
# The model surface


def test_build_model_returns_the_model_training_starts_from():
    torch.manual_seed(0)
    built = vaekit.build_model("fashion28", latent_dim=2)
    torch.manual_seed(0)
    pytorch = vaekit.build_model("fashion28", latent_dim=2, init="pytorch")
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), pytorch.state_dict().values())), \
        "auto is PyTorch's init on fashion28"
    torch.manual_seed(0)
    nn3 = vaekit.build_model("nn3-128", latent_dim=4)
    assert float(nn3.encoder[0].bias[0].detach()) == pytest.approx(0.01), "auto is vaekit's init on nn3-128"
    assert float(vaekit.build_model("fashion28", init="vaekit").encoder[0].bias[0].detach()) == pytest.approx(0.01)
    torch.manual_seed(0)
    again = vaekit.build_model("fashion28", latent_dim=2)
    for (name, a), b in zip(built.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    keras = vaekit.build_model("fashion28", init="keras")
    assert float(keras.encoder[0].bias.detach().abs().max()) == 0.0
    with pytest.raises(ConfigError, match="init must be one of"):
        vaekit.build_model("fashion28", init="xavier")


def test_model_sample_and_reconstruct(shapes_run):
    model = shapes_run.model
    x = make_shapes(n=5, split="test").images.float() / 255
    with torch.no_grad():
        recon = model.reconstruct(x)
        samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
    assert samples.shape == (6, 1, 28, 28)


def test_save_pretrained_and_from_pretrained_are_symmetric(shapes_run, tmp_path):
    class MyVAE(vaekit.VAE):
        pass

    shapes_run.model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format_version"] == 1 and config["class_name"] == "VAE" and config["arch"] == "fashion28"
    assert "train" not in config, "save_pretrained writes a fresh config, not the run's"
    loaded = MyVAE.from_pretrained(tmp_path / "m")
    assert type(loaded) is MyVAE and not loaded.training
    for name, tensor in shapes_run.model.state_dict().items():
        assert torch.equal(tensor.cpu(), loaded.state_dict()[name]), name


# ----------------------------------------------------------------------------
# Run


def test_run_opens_model_config_metrics_and_a_lazy_dataset(shapes_run):
    run = vaekit.Run.open(shapes_run.run_dir, device="cpu", precision="fp32")
    assert run.device.type == "cpu" and not run.model.training
    assert run.metrics[-1]["epoch"] == 1 and isinstance(run.metrics[-1]["test_elbo"], float)
    assert run.config["status"] == "complete" and run.dataset_name == "shapes"
    assert run.config["data"] == {"name": "shapes", "path": None, "checksum": None}
    assert run._datasets == {}, "the dataset is loaded on first use only"
    test = run.dataset("test", limit=10)
    assert len(test) == 10 and run.dataset("test") is run.dataset("test")
    # Channels-last weights, except the convolution reading one channel (slower in that layout on CPUs).
    convs = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 1 and convs[0].weight.is_contiguous()
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs[1:])


def test_a_run_remembers_where_its_data_was_found(fashion_run, tmp_path):
    """Trained with VAEKIT_DATA_DIR set (as `make demo` does), analysed from a shell without it."""
    run = vaekit.Run.open(fashion_run)
    recorded = run.config["data"]
    assert recorded["path"] and Path(recorded["path"]).is_absolute() and recorded["checksum"]
    env = {k: v for k, v in os.environ.items() if k != "VAEKIT_DATA_DIR"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    copy = tmp_path / "run"
    shutil.copytree(fashion_run, copy)
    done = subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(copy), "--limit", "50", "--iw-samples",
                           "2", "--iw-images", "5", "--device", "cpu"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fashion-mnist (test), 50 images" in done.stdout
    # Moved data falls back to the search order, with one clear line when it is found nowhere.
    moved = dict(recorded, path=str(tmp_path / "moved"))
    config = json.loads((copy / "config.json").read_text())
    config["data"] = moved
    config["train"]["data_dir"] = None
    (copy / "config.json").write_text(json.dumps(config))
    env["VAEKIT_DATA_DIR"] = str(Path(recorded["path"]))
    done = subprocess.run([sys.executable, "-m", "vaekit", "evaluate", str(copy), "--limit", "20", "--iw-samples",
                           "1", "--iw-images", "2"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_excluded_class_names_resolve_the_same_for_training_and_anomaly(fashion_mnist_dir, tmp_path, capsys):
    out = tmp_path / "no-bags"
    code = main(["train", "--dataset", "fashion-mnist", "--data-dir", str(fashion_mnist_dir), "--exclude-classes",
                 "bag", "--epochs", "1", "--train-limit", "600", "--test-limit", "100", "--quiet", "--out", str(out)])
    assert code == 0
    capsys.readouterr()
    code = main(["anomaly", str(out), "--limit", "300", "--iw-samples", "2", "-n", "3"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "AUROC, anomalous Bag" in printed.out
    assert vaekit.Run.open(out).excluded_classes == ["Bag"]


# ----------------------------------------------------------------------------
# Trainer, callbacks, objects instead of names


class Recorder(Callback):
    def __init__(self):
        self.events, self.terms, self.rows = [], [], []

    def on_train_start(self, trainer):
        self.events.append("start")

    def on_step_end(self, trainer, terms):
        self.terms.append(terms)

    def on_epoch_end(self, trainer, row):
        self.rows.append(row)

    def on_train_end(self, trainer):
        self.events.append("end")


def test_a_callback_receives_the_loss_terms_and_the_metrics_rows(tmp_path):
    recorder = Recorder()
    result = vaekit.train(out=tmp_path / "run", progress=False, callbacks=[recorder], **{**QUICK, "epochs": 2})
    assert recorder.events == ["start", "end"]
    assert len(recorder.terms) == 2 * 4  # 256 images in batches of 64, two epochs
    first = recorder.terms[0]
    assert set(first) >= {"loss", "recon", "kl", "beta", "n"} and first["n"] == 64
    assert first["loss"] == pytest.approx(first["recon"] + first["beta"] * first["kl"], rel=1e-4)
    assert recorder.rows == result.metrics and [row["epoch"] for row in recorder.rows] == [1, 2]


def test_train_accepts_a_custom_arch_spec(tmp_path):
    spec = ArchSpec(name="tiny16", input_shape=(1, 28, 28), latent_dim=3,
                    encoder_convs=(ConvLayer(8, 4, 2, "same"), ConvLayer(16, 4, 2, "same")), encoder_dense=(32,),
                    decoder_start=(16, 7, 7), decoder_convs=(ConvLayer(8, 3, 2), ConvLayer(1, 3, 2)))
    result = vaekit.train(out=tmp_path / "run", progress=False, model=spec, **{**QUICK, "latent_dim": None})
    assert result.model.spec == spec
    config = vaekit.Run.open(result.run_dir).config
    assert config["arch"] == "tiny16" and config["latent_dim"] == 3 and config["train"]["arch"] == "tiny16"
    assert vaekit.load(result.run_dir).spec == spec, "a custom spec is rebuilt from config.json"


class TinyMLPVAE(nn.Module):
    """A VAE that is not vaekit's: the protocol (encode, decode_logits, latent_dim, image_shape) is enough."""

    latent_dim, image_shape = 2, (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 4))
        self.dec = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 784), nn.Unflatten(1, (1, 28, 28)))

    def encode(self, x):
        z_mean, z_log_var = self.enc(x).chunk(2, dim=1)
        return z_mean, z_log_var

    def decode_logits(self, z):
        return self.dec(z)

    def forward(self, x):
        z_mean, z_log_var = self.encode(x)
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean)
        logits = self.decode_logits(z)
        return VAEOutput(torch.sigmoid(logits), z_mean, z_log_var, z, logits)


class PlainImages(torch.utils.data.Dataset):
    """A torch Dataset of (float image, label) pairs, as users bring them."""

    def __init__(self, n):
        self.data = make_shapes(n=n, seed=5)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data.images[i].float() / 255, int(self.data.labels[i])


def test_train_accepts_any_vae_module_and_a_torch_dataset(tmp_path):
    result = vaekit.train(out=tmp_path / "run", progress=False, model=TinyMLPVAE(), dataset=PlainImages(120),
                          epochs=2, batch_size=32, channels_last=False)
    config = vaekit.Run.open(result.run_dir, model=TinyMLPVAE()).config
    assert config["dataset"]["train_size"] == 108 and config["dataset"]["test_size"] == 12  # 10% held out
    assert config["arch"] == "TinyMLPVAE" and config["class_name"].endswith("TinyMLPVAE")
    assert result.metrics[-1]["test_elbo"] < result.metrics[0]["test_elbo"] + 50
    run = vaekit.Run.open(result.run_dir, model=TinyMLPVAE())
    assert run.model.enc[1].weight.shape == (64, 784)
    with pytest.raises(vaekit.RunDirError, match="custom class"):
        vaekit.load(result.run_dir)


# ----------------------------------------------------------------------------
# Commands: device and precision, nothing written unasked


def test_a_command_runs_on_the_cpu_in_bf16(shapes_run, tmp_path, capsys):
    out = tmp_path / "rec.png"
    code = main(["reconstruct", str(shapes_run.run_dir), "--device", "cpu", "--precision", "bf16", "-o", str(out)])
    assert code == 0 and out.read_bytes()[:4] == b"\x89PNG"
    code = main(["evaluate", str(shapes_run.run_dir), "--device", "cpu", "--precision", "bf16", "--iw-samples", "2",
                 "--iw-images", "4", "-o", str(tmp_path / "e.json")])
    assert code == 0 and "-ELBO" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(shapes_run.run_dir), "--precision", "fp8", "-o", str(tmp_path / "f.json")])
    assert exit_.value.code == 2 and not (tmp_path / "f.json").exists()


def test_read_only_commands_write_nothing_into_the_run_unless_asked(shapes_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shapes_run.run_dir, run)
    before = sorted(p.name for p in run.iterdir())
    for command in (["interpolate", "--from", "square", "--to", "circle"], ["transitions"], ["traverse"]):
        assert main([command[0], str(run), "--limit", "40", "-o", str(tmp_path / "x.png"), *command[1:]]) == 0
    assert sorted(p.name for p in run.iterdir()) == before
