"""ema_decay: the run keeps, evaluates and saves a moving average of its weights."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vaekit.cli import main
from vaekit.runs.run import read_metrics
from vaekit.training import TrainingInterrupted, train
from vaekit.training.callbacks import Callback
from vaekit.training.checkpoint import load_checkpoint
from vaekit.training.config import TrainConfig

QUICK = dict(dataset="shapes", epochs=2, batch_size=64, train_limit=384, test_limit=128, seed=3)
DECAY = 0.3  # reached after the warm-up's third update, so 12 steps see both


class RecordWeights(Callback):
    """The trained weights after every step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, trainer, terms) -> None:
        self.steps.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})


@pytest.fixture(scope="module")
def ema_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ema")
    recorder = RecordWeights()
    averaged = train(TrainConfig(**QUICK, ema_decay=DECAY), out=root / "ema", progress=False, callbacks=[recorder])
    plain = train(TrainConfig(**QUICK, ema_decay=None), out=root / "plain", progress=False)
    return averaged, plain, recorder.steps


def test_the_saved_weights_are_the_moving_average_of_every_step(ema_runs):
    averaged, _, steps = ema_runs
    expected = dict(steps[0])  # the first update copies the weights
    for n, weights in enumerate(steps[1:], start=1):
        decay = min(DECAY, (1 + n) / (10 + n))  # the warm-up
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    saved = load_file(averaged.run_dir / "model.safetensors")
    assert len(steps) == 12
    for name, tensor in expected.items():
        assert torch.allclose(saved[name], tensor, atol=1e-6), name
        assert torch.equal(averaged.model.state_dict()[name].cpu(), saved[name]), name
    assert any(not torch.allclose(saved[k], steps[-1][k]) for k in saved)  # the average is not the last step


def test_averaging_leaves_the_training_itself_unchanged(ema_runs):
    averaged, plain, _ = ema_runs
    trained = load_checkpoint(averaged.run_dir)["model"]
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(trained[name], tensor.cpu()), name
    rows, plain_rows = read_metrics(averaged.run_dir), read_metrics(plain.run_dir)
    # The trained weights are scored beside the average; they are exactly the plain run's weights.
    assert [r["online_test_elbo"] for r in rows] == [r["test_elbo"] for r in plain_rows]
    assert [r["test_elbo"] for r in rows] != [r["test_elbo"] for r in plain_rows]
    assert "online_test_elbo" not in plain_rows[0]
    assert json.loads((averaged.run_dir / "config.json").read_text())["train"]["ema_decay"] == DECAY


def test_an_interrupted_ema_run_resumes_to_the_same_average(tmp_path, ema_runs):
    averaged, _, _ = ema_runs

    def interrupt(epoch, step):
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**QUICK, ema_decay=DECAY), out=tmp_path / "cut", progress=False, on_step=interrupt)
    assert load_checkpoint(tmp_path / "cut")["average"]["updates"] == 9
    resumed = train(out=tmp_path / "cut", resume=True, progress=False)
    for name, tensor in averaged.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


@pytest.mark.parametrize("value", ["1", "0", "-0.5", "nan"])
def test_the_ema_option_refuses_a_decay_outside_zero_to_one(tmp_path, capsys, value):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "shapes", "--epochs", "1", "--ema", value, "--out", str(out)]) != 0
    error = capsys.readouterr().err.strip()
    assert "--ema" in error and "\n" not in error
    assert not out.exists()


def test_a_checkpoint_with_a_broken_average_is_refused_in_one_line(tmp_path, ema_runs):
    import shutil

    from vaekit.errors import RunDirError

    averaged, _, _ = ema_runs
    run = tmp_path / "run"
    shutil.copytree(averaged.run_dir, run)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(iter(checkpoint["average"]["weights"]))
    checkpoint["average"]["weights"][name] = torch.zeros(3)
    torch.save(checkpoint, run / "checkpoint.pt")
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match=f"checkpoint.pt: average.weights.*{name}") as error:
        train(out=run, resume=True, progress=False, epochs=3)
    assert "\n" not in str(error.value)
    assert (run / "model.safetensors").read_bytes() == before
