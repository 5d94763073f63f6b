"""Distributed training under torchrun, on the CPU with gloo.

Every run here is started with ``python -m torch.distributed.run`` (the same
as ``torchrun``) in subprocesses, on a small Fashion-MNIST subset: 256
training images in global batches of 32 (8 steps per epoch), 2 epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaekit.errors import RunDirError

EPOCHS, BATCH, TRAIN, TEST = 2, 32, 256, 64
RUN_FILES = {"config.json", "metrics.csv", "model.safetensors", "checkpoint.pt", "reconstructions.png",
             "samples.png"}


def _env() -> dict[str, str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _settings(data_dir: Path) -> list[str]:
    return ["--dataset", "fashion-mnist", "--data-dir", str(data_dir), "--train-limit", str(TRAIN), "--test-limit", str(TEST),
            "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--compile", "off", "--precision", "fp32",
            "--seed", "0", "--quiet"]


def _config(data_dir: Path) -> dict:
    return dict(dataset="fashion-mnist", data_dir=str(data_dir), train_limit=TRAIN, test_limit=TEST, epochs=EPOCHS,
                batch_size=BATCH, compile="off", precision="fp32", seed=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=timeout)


def _status(run: Path) -> str:
    return json.loads((run / "config.json").read_text())["status"]


def _rows(run: Path) -> list[list[str]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    return [line.split(",") for line in lines[1:]]


def _column(run: Path, name: str) -> list[float]:
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    return [float(row[header.index(name)]) for row in _rows(run)]


def _max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _check_run_dir(run: Path) -> None:
    """One complete run directory: the run's files (and the lock file) only, one metrics row per epoch."""
    names = {p.name for p in run.iterdir()} - {".vaekit.lock"}
    assert names == RUN_FILES
    assert _status(run) == "complete"
    assert [row[0] for row in _rows(run)] == [str(e) for e in range(1, EPOCHS + 1)]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng_ranks"]) == 2


@pytest.fixture(scope="session")
def two_process_run(tmp_path_factory, fashion_mnist_dir) -> Path:
    """A 2-process run on one machine, through the CLI (trained once, whichever pytest worker asks first)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every xdist worker
    out = shared / "distributed-two-process-run"
    with FileLock(str(shared / "distributed-two-process-run.lock")):
        if not (out / "samples.png").exists():
            shutil.rmtree(out, ignore_errors=True)
            done = _torchrun("-m", "vaekit", "train", *_settings(fashion_mnist_dir), "--out", str(out))
            assert done.returncode == 0, done.stdout + done.stderr
            # Rank 0 alone reports.
            assert done.stdout.count("run directory:") == 1, done.stdout
    return out


def test_two_processes_train_as_one(two_process_run, tmp_path, fashion_mnist_dir):
    from vaekit import TrainConfig, train

    _check_run_dir(two_process_run)
    one = train(TrainConfig(**_config(fashion_mnist_dir)), out=tmp_path / "one", progress=False).run_dir
    # The same images, noise and gradients; only the order of float additions differs.
    for name in ("train_loss", "train_recon", "train_kl", "test_elbo"):
        assert _column(two_process_run, name) == pytest.approx(_column(one, name), rel=1e-3), name
    assert _max_weight_difference(one, two_process_run) < 1e-3


def test_two_nodes_on_one_machine(two_process_run, tmp_path, fashion_mnist_dir):
    out, port = tmp_path / "nodes", _free_port()
    launches = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                          "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                          "-m", "vaekit", "train", *_settings(fashion_mnist_dir), "--out", str(out)],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)
    ]
    outputs = [launch.communicate(timeout=150)[0] for launch in launches]
    for launch, output in zip(launches, outputs):
        # torchrun's two agents meet at an exit barrier on a TCP store after the training has ended; when
        # one agent leaves first, the other's last read can fail (seen once in CI: DistNetworkError "Failed to
        # recv"). That upstream teardown race is tolerated only after vaekit reported the finished run; the run
        # directory and the weights below decide the test.
        assert launch.returncode == 0 or ("DistNetworkError" in output and "test -ELBO after 2 epochs" in output), \
            outputs
    _check_run_dir(out)
    # The same two ranks as on one machine: the same arithmetic, the same weights.
    assert _max_weight_difference(out, two_process_run) < 1e-5


DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from vaekit import TrainConfig, train
    from vaekit.training import trainer as trainer_module
    from vaekit.training.callbacks import Callback
    from vaekit.training.trainer import TrainingInterrupted

    trainer_module.DIVERGENCE_CHECK_EVERY = 3  # so the stop lands mid-epoch

    class SignalOnRankOne(Callback):
        all_ranks = True
        needs_terms = False

        def on_step_end(self, trainer, terms):
            if trainer.rank == 1 and trainer.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGTERM)

    try:
        train(TrainConfig(**json.loads(sys.argv[1])), out=sys.argv[2], progress=False, callbacks=[SignalOnRankOne()])
    except TrainingInterrupted as interrupted:
        print(f"rank {os.environ['RANK']}: {interrupted}", flush=True)
        sys.exit(0)
    sys.exit(3)
""")


def test_sigterm_on_one_rank_stops_all_and_resume_continues(two_process_run, tmp_path, fashion_mnist_dir):
    driver, out = tmp_path / "driver.py", tmp_path / "stopped"
    driver.write_text(DRIVER)
    # SIGTERM on rank 1 after global step 10 (epoch 2, step 2): every rank stops at the check after step 3.
    done = _torchrun(str(driver), json.dumps(_config(fashion_mnist_dir)), str(out), "10")
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert f"rank {rank}: interrupted; saved to {out}" in done.stdout, done.stdout + done.stderr
    assert _status(out) == "interrupted"
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["epoch_state"]["step"] == 3
    assert len(_rows(out)) == 1

    resumed = _torchrun("-m", "vaekit", "train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_run_dir(out)
    assert _max_weight_difference(out, two_process_run) < 1e-5
    assert _column(out, "test_elbo") == pytest.approx(_column(two_process_run, "test_elbo"), abs=1e-3)


def test_resume_with_another_world_size_is_refused(two_process_run, tmp_path):
    from vaekit import train

    run = tmp_path / "copy"
    shutil.copytree(two_process_run, run)
    with pytest.raises(RunDirError) as raised:
        train(out=run, resume=True, progress=False, epochs=EPOCHS + 1)
    message = str(raised.value)
    assert "\n" not in message and "checkpoint.pt" in message
    assert "2 training processes" in message and "resumed with 1" in message


def test_batch_smaller_than_world_is_refused(tmp_path, fashion_mnist_dir, monkeypatch, capsys):
    from vaekit.cli import main

    # What each rank of `torchrun --nproc-per-node 2` sees; refused before joining the process group.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    settings = _settings(fashion_mnist_dir)
    settings[settings.index("--batch-size") + 1] = "1"
    assert main(["train", *settings, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaekit: error: --batch-size 1 is smaller than the 2 training")
    assert not (tmp_path / "run").exists()
