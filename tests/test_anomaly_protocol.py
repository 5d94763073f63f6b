"""The held-out-class anomaly-detection protocol as one command (vaekit.training.anomaly_protocol)."""

import json
from pathlib import Path

import pytest
import torch

import vaekit.training.anomaly_protocol as protocol_mod
import vaekit.training.series as series_mod
from vaekit.analysis.anomaly import ANOMALY_SCORES
from vaekit.cli import main
from vaekit.errors import ConfigError
from vaekit.runs.run import read_metrics
from vaekit.training import TrainConfig, run_anomaly_protocol

DOCS = Path(__file__).resolve().parents[1] / "docs"

# One epoch on a few shapes images: seconds per member.
TINY = dict(dataset="shapes", arch="fashion28", epochs=1, batch_size=64, train_limit=128, test_limit=120,
            precision="fp32", compile="off", fused_optimizer="off")


@pytest.fixture(scope="module")
def shapes_protocol(tmp_path_factory):
    out = tmp_path_factory.mktemp("protocol") / "shapes"
    result = run_anomaly_protocol(TrainConfig(**TINY), out=out, classes=["square", "Circles"], iw_samples=4,
                                  progress=False)
    return out, result


def test_one_row_per_class_with_every_score_and_their_mean(shapes_protocol):
    out, result = shapes_protocol
    record = json.loads((out / protocol_mod.PROTOCOL_FILE).read_text())
    assert record["complete"] and record["latent_dim"] == 8  # the protocol's default latent size
    assert [row["class"] for row in record["classes"]] == ["square", "circle"]
    assert [row["run"] for row in record["classes"]] == ["without_square", "without_circle"]
    for row in record["classes"]:
        assert set(row["auroc"]) == set(ANOMALY_SCORES)
        assert all(0.0 <= value <= 1.0 for value in row["auroc"].values())
        assert row["n_normal"] + row["n_anomalous"] == 120 and row["n_anomalous"] > 0
        assert row["in_distribution_test_neg_elbo"] > 0
        trained = json.loads((out / row["run"] / "config.json").read_text())["train"]
        assert trained["exclude_classes"] == [row["class"]] and trained["latent_dim"] == 8
    for score in ANOMALY_SCORES:
        rows = [row["auroc"][score] for row in record["classes"]]
        assert record["mean"][score] == pytest.approx(sum(rows) / len(rows))
        assert result.mean[score] == pytest.approx(record["mean"][score])
    assert record["machine"] and record["wall_time_s"] > 0 and record["recipe"]["epochs"] == 1
    assert "exclude_classes" not in record["recipe"]
    table = (out / protocol_mod.TABLE_FILE).read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 2 + 1  # header, one row per class, the mean
    assert "-ELBO" in lines[0] and "complexity" in lines[0] and lines[-1].startswith("| **mean")
    assert f"{record['mean']['iwae']:.3f}" in lines[-1]
    assert record["jobs"] == 1 and record["training_threads"] == torch.get_num_threads()
    assert table == protocol_mod.protocol_table(record)  # the page is its JSON, rendered
    assert record["machine"] in table and "Incomplete" not in table


def test_an_unfinished_protocol_says_so_and_the_best_score_is_named(shapes_protocol):
    out, _ = shapes_protocol
    record = json.loads((out / protocol_mod.PROTOCOL_FILE).read_text())
    record.update(complete=False, classes=record["classes"][:1], command="vaekit anomaly-protocol --out X")
    record["mean"] = dict(record["classes"][0]["auroc"])
    page = protocol_mod.protocol_table(record)
    assert "**Incomplete**: 1 class so far" in page and "\nvaekit anomaly-protocol --out X\n" in page
    recipe = record["recipe"]
    assert f"batch {recipe['batch_size']}, lr {recipe['lr']} ({recipe['lr_schedule']}), init `{recipe['init']}`" in page
    assert record["arch"] == "fashion28" and recipe["grad_clip"] == 1000.0  # the recipe holds auto resolved
    record["recipe"].update(ema_decay=0.99)
    assert ", weights averaged (EMA 0.99), gradient norm clipped at 1000, precision" in protocol_mod.protocol_table(record)
    record["recipe"].update(ema_decay=None, grad_clip=None)
    page_of_old_defaults = protocol_mod.protocol_table(record)
    assert ", no weight averaging, no gradient clipping, precision" in page_of_old_defaults
    # A recipe whose defaults have changed since names the options that train it again today.
    assert "to train the same models today, add `--grad-clip none --ema none`." in page_of_old_defaults
    assert "to train the same models today" not in page
    best = max(record["mean"], key=record["mean"].get)
    assert f"Best mean: **{protocol_mod.SCORE_TITLES[best]}**, {record['mean'][best]:.3f}." in page


def test_the_published_results_page_is_its_json_rendered():
    record = json.loads((DOCS / protocol_mod.PROTOCOL_FILE).read_text())
    assert record["complete"] and record["dataset"] == "fashion-mnist"
    assert len(record["classes"]) == 10 and record["latent_dim"] == protocol_mod.PROTOCOL_LATENT_DIM
    assert (DOCS / protocol_mod.TABLE_FILE).read_text() == protocol_mod.protocol_table(record)


def test_running_again_leaves_finished_members_alone(shapes_protocol, monkeypatch):
    out, first = shapes_protocol
    weights = {row.name: (row.run_dir / "model.safetensors").stat().st_mtime_ns for row in first.classes}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(series_mod, "train", no_training)
    again = run_anomaly_protocol(TrainConfig(**TINY), out=out, classes=["square", "circle"], iw_samples=4,
                                 progress=False)
    assert [row.status for row in again.classes] == ["complete", "complete"]
    for row in again.classes:  # training time comes from the member's own metrics, not 0
        assert row.train_s == pytest.approx(sum(float(r["seconds"]) for r in read_metrics(row.run_dir)))
        assert row.train_s > 0
    assert {row.name: (row.run_dir / "model.safetensors").stat().st_mtime_ns for row in again.classes} == weights
    for before, after in zip(first.classes, again.classes):  # same models, same seed: same scores
        assert after.auroc == pytest.approx(before.auroc)


def test_other_settings_are_refused_for_an_existing_member(shapes_protocol):
    out, _ = shapes_protocol
    with pytest.raises(ConfigError, match="without_square: lr was 0.001 when this member was trained, not 0.01"):
        run_anomaly_protocol(TrainConfig(**{**TINY, "lr": 0.01}), out=out, classes=["square"], progress=False)


def test_bad_requests_are_refused_before_anything_is_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(series_mod, "train", lambda *a, **k: pytest.fail("trained despite a bad request"))
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="unknown class 'hexagon'; valid names: square, circle"):
        run_anomaly_protocol(TrainConfig(**TINY), out=out, classes=["square", "hexagon"], progress=False)
    with pytest.raises(ConfigError, match="exclude_classes"):
        run_anomaly_protocol(TrainConfig(**TINY, exclude_classes=["square"]), out=out, progress=False)
    with pytest.raises(ConfigError, match="raise --test-limit"):
        run_anomaly_protocol(TrainConfig(**{**TINY, "test_limit": 1}), out=out, classes=["square"], progress=False)
    assert not out.exists()


def test_an_unknown_class_is_one_error_line_from_the_cli(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["anomaly-protocol", "--dataset", "shapes", "--epochs", "1", "--classes", "hexagon", "--quiet",
                 "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: ") and "unknown class 'hexagon'" in err[0], err
    assert not out.exists()


def test_the_cli_runs_the_protocol_on_fashion_mnist(fashion_mnist_dir, tmp_path, capsys):
    out = tmp_path / "fmnist"
    args = ["anomaly-protocol", "--data-dir", str(fashion_mnist_dir), "--epochs", "1", "--train-limit", "600",
            "--test-limit", "300", "--batch-size", "100", "--precision", "fp32", "--compile", "off",
            "--classes", "bag", "trouser", "--iw-samples", "4", "--quiet", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| Bag |" in printed and "| Trouser |" in printed and "**mean (2)**" in printed
    assert f"results: {out / protocol_mod.PROTOCOL_FILE}" in printed
    assert f"table: {out / protocol_mod.TABLE_FILE}" in printed
    record = json.loads((out / protocol_mod.PROTOCOL_FILE).read_text())
    assert record["dataset"] == "fashion-mnist" and record["latent_dim"] == 8 and record["iw_samples"] == 4
    assert [row["class"] for row in record["classes"]] == ["Bag", "Trouser"]
    assert all(0.0 <= v <= 1.0 for row in record["classes"] for v in row["auroc"].values())
    assert record["command"].startswith("vaekit anomaly-protocol --out ")
    assert "--classes bag trouser" in record["command"] and "--train-limit 600" in record["command"]
    assert (out / "without_bag" / "model.safetensors").is_file()
    # Other settings for the same members: one line, with the CLI's own flag, and nothing trained.
    weights = (out / "without_bag" / "model.safetensors").read_bytes()
    assert main([*args[:-2], "--ema", "none", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without_bag: --ema was 0.999 when this member was trained, not None" in err[0], err
    assert (out / "without_bag" / "model.safetensors").read_bytes() == weights


def test_the_recorded_command_keeps_options_typed_as_none():
    from vaekit.cli import build_parser
    from vaekit.cli.anomaly_protocol import _command

    args = build_parser().parse_args(["anomaly-protocol", "--out", "p", "--ema", "none", "--grad-clip", "none",
                                      "--epochs", "5"])
    assert _command(args) == "vaekit anomaly-protocol --out p --epochs 5 --grad-clip none --ema none"
