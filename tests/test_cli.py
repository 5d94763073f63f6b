import json
import shutil
import subprocess
import sys

import pytest

import vaekit.data
from vaekit.cli import main

SHAPES_TRAIN = ["train", "--dataset", "shapes", "--epochs", "1", "--batch-size", "64", "--train-limit", "256",
                "--test-limit", "128", "--quiet"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*SHAPES_TRAIN, "--out", str(out)]) == 0
    return out


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vaekit: error: ")
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_train_prints_the_run_and_its_figures(cli_run, capsys):
    assert (cli_run / "model.safetensors").is_file() and (cli_run / "samples.png").is_file()


def test_reconstruct_and_sample_write_figures_where_asked(cli_run, tmp_path, capsys):
    assert main(["reconstruct", str(cli_run), "-o", str(tmp_path / "r.png"), "-n", "6"]) == 0
    assert main(["sample", str(cli_run), "-o", str(tmp_path / "s.png"), "-n", "16"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "r.png") in printed and str(tmp_path / "s.png") in printed
    for name in ("r.png", "s.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_commands_take_the_runtime_options(cli_run, tmp_path, capsys):
    assert main(["sample", str(cli_run), "-o", str(tmp_path / "s.png"), "-n", "4", "--device", "cpu",
                 "--precision", "fp32"]) == 0
    assert main(["reconstruct", str(cli_run), "-o", str(tmp_path / "r.png"), "-n", "2", "--device", "cpu"]) == 0
    assert (tmp_path / "s.png").is_file() and (tmp_path / "r.png").is_file()
    assert main(["sample", str(cli_run), "--device", "tpu9"]) == 2
    _one_error_line(capsys, "--device: unknown device 'tpu9'")


def test_training_into_an_existing_run_is_refused_and_keeps_it(cli_run, capsys):
    before = (cli_run / "model.safetensors").read_bytes()
    assert main([*SHAPES_TRAIN, "--out", str(cli_run)]) == 2
    _one_error_line(capsys, str(cli_run), "--resume")
    assert (cli_run / "model.safetensors").read_bytes() == before


def test_resume_with_more_epochs_continues_the_run(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["epochs_done"] == 2


@pytest.mark.parametrize("args,needles", [
    (["--beta", "-1"], ["--beta", "-1"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--arch", "resnet"], ["--arch: unknown architecture 'resnet'", "fashion28"]),
    (["--epochs", "0"], ["--epochs must be at least 1, got 0"]),
    (["--latent-dim", "0"], ["--latent-dim must be at least 1"]),
    (["--dataset", "mnist-digits"], ["unknown dataset", "fashion-mnist"]),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, needles):
    assert main([*SHAPES_TRAIN, *args, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, *needles)
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 2
    _one_error_line(capsys, str(tmp_path), "not a vaekit run directory")


def test_weights_that_do_not_match_the_config_are_rejected(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    config = json.loads((run / "config.json").read_text())
    config["spec"]["latent_dim"] = 8
    (run / "config.json").write_text(json.dumps(config))
    assert main(["sample", str(run)]) == 2
    _one_error_line(capsys, "model.safetensors", "do not match", "z_mean.weight")


def test_truncated_weights_are_rejected(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["sample", str(run)]) == 2
    _one_error_line(capsys, "model.safetensors", "unreadable")


def test_corrupt_idx_file_is_named_in_the_error(fashion_mnist_dir, tmp_path, capsys):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(fashion_mnist_dir / name, tmp_path / name)
    data = (fashion_mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 3])
    assert main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    _one_error_line(capsys, "t10k-images-idx3-ubyte.gz")
    assert not (tmp_path / "run").exists()


def test_demo_without_data_or_network_says_how_to_get_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(vaekit.data.fashion_mnist, "SYSTEM_DATA_DIRS", ())
    monkeypatch.setattr(vaekit.data.fashion_mnist, "FASHION_MNIST_URL", (tmp_path / "offline").as_uri() + "/")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    line = _one_error_line(capsys, "dataset-fashion-mnist", "VAEKIT_DATA_DIR")
    assert "--data-dir" in line
    assert not (tmp_path / "demo").exists()


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vaekit.cli", "sample", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"vaekit: error: {tmp_path / 'missing'}: no such run directory"


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_saves_the_run_and_resume_finishes_it(tmp_path, signal_name):
    import signal
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "vaekit", "train", "--dataset", "shapes", "--epochs", "200", "--batch-size", "32",
               "--train-limit", "256", "--test-limit", "64", "--quiet", "--out", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "interrupted"
    done_before = config["epochs_done"]
    assert main(["train", "--resume", str(run), "--epochs", str(done_before + 1), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "complete" and config["epochs_done"] == done_before + 1
