import base64
import json
import re

import numpy as np
import pytest
import torch
from celeba_fixtures import celeba_dir, isolated_cache, make_celeba_copy  # noqa: F401

import vaekit
from vaekit import TrainConfig
from vaekit.analysis.attributes import (
    apply_direction,
    attribute_direction,
    attribute_edit,
    encode_means,
)
from vaekit.cli import main
from vaekit.errors import ConfigError, DataError
from vaekit.training.family import (
    FamilyInterrupted,
    family_metrics,
    member_name,
    train_family,
    write_family_report,
)

TINY = dict(dataset="shapes", arch="fashion28", epochs=1, batch_size=64, train_limit=128, test_limit=64)

# Output shapes of the NN3 layers, from the module docs' tables (channels last there).
NN3_ENCODER = [(64, 64, 32), (32, 32, 64), (16, 16, 128), (8, 8, 256), (16384,), (256,), (256,)]
NN3_DECODER = [(16384,), (8, 8, 256), (16, 16, 256), (32, 32, 128), (64, 64, 64), (128, 128, 32), (128, 128, 3)]


@pytest.fixture(scope="module")
def celeba_family(tmp_path_factory, celeba_dir):
    """The NN3 family (beta 1 and 2) on a 32 + 16 image CelebA copy, one epoch each."""
    root = make_celeba_copy(celeba_dir, tmp_path_factory.mktemp("data") / "celeba", n_train=32, n_val=16)
    out = tmp_path_factory.mktemp("family") / "nn3"
    config = TrainConfig(dataset="celeba", arch="nn3-128", epochs=1, batch_size=16, data_dir=str(root))
    return train_family(config, betas=[2, 1], out=out, progress=False)


@pytest.fixture(scope="module")
def fashion_family(tmp_path_factory, fashion_mnist_dir):
    """A fashion28 family on real Fashion-MNIST, trained through the CLI."""
    out = tmp_path_factory.mktemp("family") / "fashion"
    code = main(["train-family", "--dataset", "fashion-mnist", "--arch", "fashion28", "--betas", "1", "4",
                 "--epochs", "1", "--batch-size", "64", "--train-limit", "512", "--test-limit", "256", "--data-dir",
                 str(fashion_mnist_dir), "--out", str(out), "--quiet"])
    assert code == 0
    return out


def _embedded_pngs(page):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_member_names_follow_the_module_docs():
    assert [member_name("nn3-128", b) for b in (1, 2, 3, 5)] == [
        "vae_model_NN3_w1", "vae_model_NN3_w2", "vae_model_NN3_w3", "vae_model_NN3_w5"]
    assert member_name("fashion28", 1.0) == "vae_model_fashion28_w1"
    assert member_name("fashion28", 0.5) == "vae_model_fashion28_w0.5"
    assert member_name("nn3-128", 1, latent_dim=64) == "vae_model_NN3_w1_z64"
    assert member_name("nn3-128", 1, latent_dim=256) == "vae_model_NN3_w1"


def test_the_celeba_family_has_one_nn3_run_per_beta(celeba_family):
    out = celeba_family.out
    assert [m.name for m in celeba_family.members] == ["vae_model_NN3_w1", "vae_model_NN3_w2"]
    assert [m.status for m in celeba_family.members] == ["trained", "trained"]
    for member in celeba_family.members:
        config = json.loads((out / member.name / "config.json").read_text())
        assert config["train"]["beta"] == member.beta and config["arch"] == "nn3-128"
        assert config["latent_dim"] == 256 and config["status"] == "complete"
        assert config["dataset"]["image_shape"] == [3, 128, 128]
        assert (config["dataset"]["train_size"], config["dataset"]["test_size"]) == (32, 16)
    family = json.loads((out / "family.json").read_text())
    assert [m["beta"] for m in family["members"]] == [1.0, 2.0] and family["arch"] == "nn3-128"


def test_nn3_layer_output_shapes_match_the_docs(celeba_family):
    model = vaekit.load(celeba_family.members[0].run_dir)
    shapes = []

    def record(_module, _inputs, output):
        shapes.append(tuple(output.shape[1:]))

    layers = [m for m in model.encoder if isinstance(m, (torch.nn.Conv2d, torch.nn.Flatten))]
    layers += [model.z_mean, model.z_log_var]
    layers += [m for m in model.decoder if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d))]
    handles = [layer.register_forward_hook(record) for layer in layers]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128))
    for handle in handles:
        handle.remove()
    # PyTorch is channels first; the docs (Keras) are channels last.
    as_docs = [s if len(s) == 1 else (s[1], s[2], s[0]) for s in shapes]
    assert as_docs == NN3_ENCODER + NN3_DECODER
    assert out.z.shape == (2, 256) and out.reconstruction.shape == (2, 3, 128, 128)


def test_family_html_compares_the_members(celeba_family):
    page = celeba_family.report.read_text()
    assert page.count("Prediction from dataset") >= 2 and page.count("Random point in the latent space") >= 2
    for name in ("vae_model_NN3_w1", "vae_model_NN3_w2"):
        assert f"<h3>{name} (β = " in page
    for header in ("reconstruction error", "KL (rate)", "active units", "test −ELBO"):
        assert header in page
    assert "CelebA terms" in page
    pngs = _embedded_pngs(page)
    assert len(pngs) == 5 and all(p.startswith(b"\x89PNG") for p in pngs)  # rate-distortion + 2 x 2
    assert pngs[1] == (celeba_family.out / "vae_model_NN3_w1" / "reconstructions.png").read_bytes()
    metrics = family_metrics(celeba_family.out)
    for m in metrics:
        assert f"{m.recon:.2f}" in page and f"{m.kl:.2f}" in page and f"{m.elbo:.2f}" in page
        assert f"{m.active_units} / 256" in page
        assert m.elbo == pytest.approx(m.recon + m.kl, abs=0.02)
    assert celeba_family.rate_distortion.read_bytes() == pngs[0]


def test_a_finished_family_is_left_alone_when_run_again(celeba_family):
    out = celeba_family.out
    weights = {m.name: (out / m.name / "model.safetensors").read_bytes() for m in celeba_family.members}
    config = out / "vae_model_NN3_w1" / "config.json"
    again = train_family(TrainConfig(**json.loads(config.read_text())["train"]), betas=[1, 2], out=out,
                         progress=False)
    assert [m.status for m in again.members] == ["complete", "complete"]
    for name, data in weights.items():
        assert (out / name / "model.safetensors").read_bytes() == data


def test_attribute_directions_on_the_celeba_family(celeba_family):
    run = celeba_family.members[0].run_dir
    model = vaekit.load(run)
    config = json.loads((run / "config.json").read_text())
    train_set = vaekit.load_dataset("celeba", "train", data_dir=config["train"]["data_dir"], progress=False)
    direction = attribute_direction(model, train_set, "smiling")
    assert direction.attribute == "Smiling" and direction.direction.shape == (256,)
    assert direction.n_with + direction.n_without == 32
    assert direction.n_with == int(train_set.attribute("Smiling").sum()) > 0
    z = encode_means(model, train_set.images).numpy()
    smiling = train_set.attribute("Smiling").numpy()
    assert np.allclose(direction.direction, z[smiling].mean(0) - z[~smiling].mean(0), atol=1e-5)
    edit = attribute_edit(run, "Smiling", n=3, strengths=[-2, 0, 2])
    assert edit.edited.shape == (3, 3, 3, 128, 128) and edit.originals.shape == (3, 3, 128, 128)
    assert 0.0 <= edit.edited.min() and edit.edited.max() <= 1.0
    # alpha = 0 is the reconstruction from the posterior mean; +-2 moves away from it.
    images = torch.from_numpy(np.rint(edit.originals * 255).astype(np.uint8))
    with torch.no_grad():
        expected = model.decode(model.encode(images.float() / 255)[0]).numpy()
    assert np.allclose(edit.edited[:, 1], expected, atol=1e-5)
    assert np.abs(edit.edited[:, 2] - edit.edited[:, 1]).mean() > 1e-4
    moved = apply_direction(model, images[:1], direction.direction, [1.0])
    assert moved.shape == (1, 1, 3, 128, 128)


def test_the_attribute_command_writes_its_figure(celeba_family, tmp_path, capsys):
    run = celeba_family.members[1].run_dir
    out = tmp_path / "smile.png"
    assert main(["attribute", str(run), "--attr", "EYEGLASSES", "-n", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "Eyeglasses: direction measured on" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["attribute", str(run), "--attr", "Smilng"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vaekit: error: --attr: unknown attribute 'Smilng'") and "Smiling" in err
    assert "Wearing_Necktie" in err


def test_the_fashion_family_is_trained_and_compared_from_the_cli(fashion_family, capsys):
    names = ["vae_model_fashion28_w1", "vae_model_fashion28_w4"]
    for name in names:
        assert (fashion_family / name / "samples.png").is_file()
    metrics = family_metrics(fashion_family)
    assert [m.name for m in metrics] == names and [m.beta for m in metrics] == [1.0, 4.0]
    # A larger beta buys a lower rate.
    assert metrics[1].kl < metrics[0].kl
    page = (fashion_family / "family.html").read_text()
    assert len(_embedded_pngs(page)) == 5 and "CelebA" not in page


def test_class_names_work_as_attributes(fashion_family, tmp_path, capsys):
    run = fashion_family / "vae_model_fashion28_w1"
    edit = attribute_edit(run, "trouser", n=2, max_images=500)
    assert edit.direction.attribute == "Trouser" and edit.edited.shape == (2, 5, 1, 28, 28)
    assert edit.direction.n_with + edit.direction.n_without == 500


def test_an_interrupted_family_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "fam"

    def interrupt(name, epoch, step):
        if name == "vae_model_fashion28_w3":
            raise KeyboardInterrupt

    with pytest.raises(FamilyInterrupted, match="train-family"):
        train_family(TrainConfig(**TINY), betas=[1, 3], out=out, progress=False, on_step=interrupt)
    assert json.loads((out / "vae_model_fashion28_w3" / "config.json").read_text())["status"] == "interrupted"
    result = train_family(TrainConfig(**TINY), betas=[1, 3], out=out, progress=False)
    assert [m.status for m in result.members] == ["complete", "resumed"]
    assert json.loads((out / "vae_model_fashion28_w3" / "config.json").read_text())["status"] == "complete"
    # Another beta joins the family; the report then shows all three.
    train_family(TrainConfig(**TINY), betas=[2], out=out, progress=False)
    assert [m.beta for m in family_metrics(out)] == [1.0, 2.0, 3.0]
    assert write_family_report(out).read_text().count("<h3>") == 3
    # A member is never reused with another recipe, nor a family with another architecture.
    with pytest.raises(ConfigError, match="lr was 0.001 when this member was trained, not 0.01"):
        train_family(TrainConfig(**{**TINY, "lr": 0.01}), betas=[1], out=out, progress=False)
    with pytest.raises(ConfigError, match="this family has arch 'fashion28'"):
        train_family(TrainConfig(**{**TINY, "arch": "nn3-128"}), betas=[1], out=out, progress=False)


@pytest.mark.parametrize("args,needle", [
    (["--betas", "1", "1.0"], "--betas: 1 is given twice"),
    (["--beta", "2"], "--beta: use --betas"),
    (["--arch", "resnet"], "unknown architecture 'resnet'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_bad_family_options_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "fam"
    code = main(["train-family", "--dataset", "shapes", "--arch", "fashion28", "--out", str(out), "--quiet", *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: ") and needle in err[0], err
    assert not out.exists()


def test_a_negative_beta_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-family", "--betas", "-1", "--out", str(tmp_path / "f")])
    assert exit_info.value.code == 2 and "must be zero or positive" in capsys.readouterr().err


def test_attribute_errors_for_datasets_without_the_attribute(fashion_family):
    run = fashion_family / "vae_model_fashion28_w1"
    with pytest.raises(ConfigError, match="unknown class 'Smiling'.*Trouser"):
        attribute_edit(run, "Smiling")
    shapes = vaekit.load_dataset("shapes", "train", n=60)
    squares = shapes.subset(shapes.labels == 0)
    with pytest.raises(DataError, match="none of the 10 images of dataset 'shapes' has it"):
        attribute_direction(vaekit.load(run), squares, "circle")


@pytest.mark.parametrize("members", [
    [["vae_model_NN3_w1", 1.0]],
    [{"name": "vae_model_NN3_w1"}],
    [{"name": "../elsewhere", "beta": 1.0}],
    [{"name": "vae_model_NN3_w1", "beta": "one"}],
])
def test_a_damaged_family_json_is_one_line_and_nothing_is_trained(tmp_path, capsys, members):
    out = tmp_path / "fam"
    out.mkdir()
    record = {"format": "vaekit-family", "arch": "fashion28", "dataset": "shapes", "latent_dim": 2, "members": members}
    (out / "family.json").write_text(json.dumps(record))
    code = main(["train-family", "--dataset", "shapes", "--arch", "fashion28", "--betas", "1", "--epochs", "1",
                 "--out", str(out), "--quiet"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "family.json: members[0] is not a member" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["family.json"]
    with pytest.raises(vaekit.errors.RunDirError, match=r"members\[0\] is not a member"):
        family_metrics(out)
