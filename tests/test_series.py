"""vaekit.training.series: member states, and several trainings at once (--jobs) with Ctrl-C and errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vaekit import TrainConfig, train
from vaekit.cli import main
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.files import write_json
from vaekit.training import run_anomaly_protocol
from vaekit.training.series import (
    TrainJob,
    check_jobs,
    member_state,
    threads_per_job,
    train_jobs,
)

# Settings given, not measured ("auto" would time each choice in every new process).
SPEED = dict(precision="fp32", compile="off", fused_optimizer="off")
TINY = dict(dataset="shapes", arch="fashion28", epochs=1, batch_size=64, train_limit=128, test_limit=64, **SPEED)


def _copy_as(source, target, status, checkpoint):
    """A copy of a finished run, marked ``status``, with or without its checkpoint."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    write_json(target / "config.json", {**config, "status": status})
    (target / "checkpoint.pt").unlink(missing_ok=True)
    if checkpoint:
        shutil.copyfile(source / "model.safetensors", target / "checkpoint.pt")  # only its presence matters here


def test_member_state_new_complete_resume_and_refusals(tmp_path):
    config = TrainConfig(**TINY)
    assert member_state(tmp_path / "none", config) == "new"
    train(config, out=tmp_path / "done", progress=False)
    assert member_state(tmp_path / "done", config) == "complete"
    # Only runtime settings may differ: the data's folder, the device.
    assert member_state(tmp_path / "done", TrainConfig(**{**TINY, "device": "cpu"})) == "complete"
    _copy_as(tmp_path / "done", tmp_path / "half", "interrupted", checkpoint=True)
    assert member_state(tmp_path / "half", config) == "resume"
    with pytest.raises(ConfigError, match=r"done: beta was 1\.0 when this member was trained, not 2\.0; use the "
                                          r"same settings to resume the protocol"):
        member_state(tmp_path / "done", TrainConfig(**{**TINY, "beta": 2.0}), "protocol")
    # init "auto" is the scheme it resolves to on the architecture: pytorch on fashion28, vaekit elsewhere.
    assert TrainConfig(**TINY).init == "auto" and config.effective_init == "pytorch"
    assert member_state(tmp_path / "done", TrainConfig(**{**TINY, "init": "pytorch"})) == "complete"
    with pytest.raises(ConfigError, match=r"init was 'pytorch' when this member was trained, not 'vaekit'"):
        member_state(tmp_path / "done", TrainConfig(**{**TINY, "init": "vaekit"}))
    assert TrainConfig(**{**TINY, "arch": "nn3-128"}).comparable()["init"] == "vaekit"
    resolved = json.loads((tmp_path / "done" / "config.json").read_text())["resolved"]
    assert (resolved["init"], resolved["grad_clip"]) == ("pytorch", 1000.0)
    # So is grad_clip "auto": a run saved with the limit it resolves to is the same member; none is not.
    assert member_state(tmp_path / "done", TrainConfig(**{**TINY, "grad_clip": 1000.0})) == "complete"
    with pytest.raises(ConfigError, match=r"grad_clip was 1000\.0 when this member was trained, not None"):
        member_state(tmp_path / "done", TrainConfig(**{**TINY, "grad_clip": None}))
    _copy_as(tmp_path / "done", tmp_path / "broken", "interrupted", checkpoint=False)
    with pytest.raises(RunDirError, match="but no checkpoint.pt to resume from; nothing was deleted"):
        member_state(tmp_path / "broken", config)
    assert (tmp_path / "broken" / "model.safetensors").is_file()


def test_jobs_must_be_a_positive_integer():
    assert check_jobs(3) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="jobs must be an integer of at least 1"):
            check_jobs(bad)
    assert threads_per_job(1) >= threads_per_job(2) >= threads_per_job(64) == 1


def test_a_protocol_with_two_jobs_trains_both_models_at_once_then_scores_them(tmp_path):
    out = tmp_path / "protocol"
    config = TrainConfig(**{**TINY, "test_limit": 120})
    result = run_anomaly_protocol(config, out=out, classes=["square", "circle"], iw_samples=4, progress=False,
                                  jobs=2)
    assert [row.status for row in result.classes] == ["trained", "trained"]
    assert all(row.train_s > 0 and 0 <= row.auroc["neg_elbo"] <= 1 for row in result.classes)
    weights = [(row.run_dir / "model.safetensors").read_bytes() for row in result.classes]
    assert weights[0] != weights[1]  # two models, each without its own class
    again = run_anomaly_protocol(config, out=out, classes=["square", "circle"], iw_samples=4, progress=False,
                                 jobs=2)
    assert [row.status for row in again.classes] == ["complete", "complete"]
    assert [row.auroc for row in again.classes] == [row.auroc for row in result.classes]


def test_a_failing_job_raises_its_own_error_in_the_parent(tmp_path):
    good = TrainJob(TrainConfig(**TINY), tmp_path / "good")
    bad = TrainJob(TrainConfig(**{**TINY, "dataset": f"folder:{tmp_path / 'no-such-folder'}"}), tmp_path / "bad")
    with pytest.raises(DataError, match="no-such-folder"):
        train_jobs([bad, good], workers=2, progress=False)


def test_family_with_two_jobs_then_ctrl_c_saves_both_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "family"

    def arguments(epochs: int) -> list[str]:
        return ["train-family", "--dataset", "shapes", "--epochs", str(epochs), "--batch-size", "32",
                "--train-limit", "256", "--test-limit", "64", "--betas", "1", "2", "--jobs", "2", "--quiet",
                "--precision", "fp32", "--compile", "off", "--fused-optimizer", "off",
                "--out", str(out)]

    process = subprocess.Popen([sys.executable, "-m", "vaekit", *arguments(200)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    members = [out / "vae_model_fashion28_w1", out / "vae_model_fashion28_w2"]
    deadline = time.monotonic() + 180
    while not all((m / "metrics.csv").exists() for m in members) and time.monotonic() < deadline \
            and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and f"run the same `vaekit train-family ... --out {out}`" in err
    for member in members:  # both were running; both saved
        config = json.loads((member / "config.json").read_text())
        assert config["status"] == "interrupted" and (member / "checkpoint.pt").is_file()
    # The same command, with fewer epochs, finishes both from their checkpoints.
    epochs = 1 + max(json.loads((m / "config.json").read_text())["epochs_done"] for m in members)
    assert main(arguments(epochs)) == 0
    for member in members:
        config = json.loads((member / "config.json").read_text())
        assert config["status"] == "complete" and config["epochs_done"] == epochs
    assert (out / "family.html").is_file() and (out / "family.json").is_file()


def test_thread_share_applies_the_last_count_sent_between_steps():
    import multiprocessing

    import torch

    from vaekit.training.series import ThreadShare

    before = torch.get_num_threads()
    receive, send = multiprocessing.Pipe(duplex=False)
    share = ThreadShare(receive)
    try:
        share.on_step_end(None, {})  # nothing sent: nothing changes
        assert torch.get_num_threads() == before
        send.send(before + 1)
        send.send(before + 2)
        share.on_step_end(None, {})
        assert torch.get_num_threads() == before + 2
    finally:
        torch.set_num_threads(before)


def test_when_a_job_ends_with_nothing_left_to_start_the_running_one_gets_its_cores(tmp_path):
    from vaekit.runs.run import read_metrics

    short = TrainJob(TrainConfig(**TINY), tmp_path / "short")
    long = TrainJob(TrainConfig(**{**TINY, "epochs": 12, "train_limit": 512}), tmp_path / "long")
    train_jobs([long, short], workers=2, progress=False)
    threads = [int(row["threads"]) for row in read_metrics(tmp_path / "long")]
    # Both start with half the cores; the long one ends with all of them (on a 1-core machine both are 1).
    assert min(threads) >= threads_per_job(2) and threads[-1] == threads_per_job(1)
    assert [int(row["threads"]) for row in read_metrics(tmp_path / "short")] == [threads_per_job(2)]
