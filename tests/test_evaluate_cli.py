"""The evaluate, embed, anomaly and denoise commands, on a real fashion28 run."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

import vaekit.data.registry as registry_mod
import vaekit.data.shapes as shapes_mod
from vaekit.cli import main


@pytest.fixture()
def run(fashion_run, tmp_path):
    """A writable copy of the session's fashion28 run."""
    return shutil.copytree(fashion_run, tmp_path / "run")


@pytest.fixture()
def held_out_run(run):
    """The run, recorded as trained without trousers.

    The protocol reads only config.json, so the weights need no retraining to
    test the command's mechanics.
    """
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["train"]["exclude_classes"] = ["Trouser"]
    path.write_text(json.dumps(config))
    return run


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_evaluate_prints_and_saves_the_bounds(run, capsys):
    assert main(["evaluate", str(run), "--iw-samples", "20", "--iw-images", "8", "--limit", "100"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "evaluation.json").read_text())
    assert f"wrote {run / 'evaluation.json'}" in out
    for key in ("elbo", "recon", "kl", "iwae", "active_units", "kl_per_dim", "elbo_bits_per_dim",
                "iwae_bits_per_dim", "likelihood", "units"):
        assert key in result, key
    assert result["n_images"] == 100 and result["iw_images"] == 8 and result["iw_samples"] == 20
    assert result["iwae"] <= result["elbo_iw_images"]
    assert result["elbo"] == pytest.approx(result["recon"] + result["kl"])
    assert result["likelihood"]["normalised"] is False and "NOT a normalised" in out
    assert f"{result['elbo']:.2f}" in out and "active units" in out


def test_evaluate_binarised_data_under_a_normalised_likelihood(run, tmp_path, capsys):
    out_file = tmp_path / "bin.json"
    argv = ["evaluate", str(run), "--binarize", "threshold", "--iw-samples", "4", "--iw-images", "4",
            "--limit", "40", "-o", str(out_file)]
    assert main(argv) == 0
    result = json.loads(out_file.read_text())
    assert result["likelihood"]["binarize"] == "threshold" and result["likelihood"]["normalised"] is True
    assert not (run / "evaluation.json").exists()


def test_evaluate_rejects_bad_k_and_mismatched_data_and_writes_nothing(run, capsys):
    err = _one_line_error(capsys, ["evaluate", str(run), "--iw-samples", "0", "--limit", "10"])
    assert "--iw-samples" in err
    # A dataset of 3-channel images for a 1-channel model.
    registry_mod.register_dataset(
        "rgb-shapes-test", lambda split="test", data_dir=None, download=True, **kw:
        shapes_mod.make_shapes(n=20, channels=3, split=split))
    try:
        err = _one_line_error(capsys, ["evaluate", str(run), "--dataset", "rgb-shapes-test", "--iw-samples", "2"])
    finally:
        registry_mod.DATASETS.pop("rgb-shapes-test")
    assert "(3, 28, 28)" in err and "expects (1, 28, 28)" in err
    assert not (run / "evaluation.json").exists()
    err = _one_line_error(capsys, ["evaluate", str(run.parent / "nope")])
    assert "nope" in err


def test_embed_writes_npz_and_csv_and_compares_with_pca(run, tmp_path, capsys):
    assert main(["embed", str(run), "--limit", "150", "--probe-train", "1000"]) == 0
    out = capsys.readouterr().out
    with np.load(run / "embeddings.npz") as saved:
        assert saved["z_mean"].shape == (150, 2) and saved["z_log_var"].shape == (150, 2)
        assert saved["labels"].shape == (150,)
    quality = json.loads((run / "embeddings_quality.json").read_text())
    assert quality["n_train"] == 1000 and quality["n_test"] == 150 and quality["dim"] == 2
    assert quality["knn_accuracy"] > quality["chance_accuracy"]
    assert "PCA(2)" in out and "k-NN (k=10)" in out and f"wrote {run / 'embeddings.npz'}" in out
    target = tmp_path / "z.csv"
    assert main(["embed", str(run), "--limit", "30", "--no-probe", "-o", str(target)]) == 0
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 30 and set(rows[0]) >= {"label", "class", "z_mean_0", "z_log_var_1"}
    assert not (tmp_path / "z_quality.json").exists()
    err = _one_line_error(capsys, ["embed", str(run), "-o", str(tmp_path / "z.txt")])
    assert ".npz or .csv" in err


def test_anomaly_runs_the_held_out_protocol(held_out_run, capsys):
    run = held_out_run
    assert main(["anomaly", str(run), "--limit", "120", "--iw-samples", "4", "-n", "5"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "anomaly_scores.json").read_text())
    rows = list(csv.DictReader((run / "anomaly_scores.csv").open()))
    assert len(rows) == 120 and summary["anomalous"] == ["Trouser"]
    is_anomaly = [row["anomalous"] == "1" for row in rows]
    assert is_anomaly == [row["class"] == "Trouser" for row in rows]
    assert summary["n_anomalous"] == sum(is_anomaly)
    for name in ("neg_elbo", "recon_error", "iwae", "complexity"):
        scores = [float(row[name]) for row in rows]
        assert summary["auroc"][name] == pytest.approx(roc_auc_score(is_anomaly, scores), abs=1e-3)
        assert f"{name:12s} {summary['auroc'][name]:.3f}" in out
    with Image.open(run / "anomaly.png") as figure:
        assert figure.width > 400 and figure.height > 300


def test_anomaly_protocol_needs_a_held_out_class(run, capsys):
    err = _one_line_error(capsys, ["anomaly", str(run), "--limit", "20"])
    assert "--exclude-classes" in err
    assert not (run / "anomaly_scores.csv").exists()


def test_anomaly_scores_a_folder_of_images(run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate((0, 120, 255)):
        Image.new("RGB", (50, 40), (colour, colour // 2, 30)).save(folder / f"img{i}.png")
    out_csv = tmp_path / "scores.csv"
    argv = ["anomaly", str(run), "--images", str(folder), "--iw-samples", "3", "-o", str(out_csv),
            "--figure", str(tmp_path / "top.png")]
    assert main(argv) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [row["file"] for row in rows] == ["img0.png", "img1.png", "img2.png"]
    assert all(np.isfinite(float(row["complexity"])) for row in rows)
    assert (tmp_path / "top.png").is_file() and not (tmp_path / "scores.json").exists()


def test_anomaly_against_normal_images_reports_auroc(run, tmp_path, capsys):
    argv = ["anomaly", str(run), "--images", "shapes", "--normal", "fashion-mnist:test", "--limit", "40",
            "--iw-samples", "2", "-o", str(tmp_path / "ood.csv"), "--figure", str(tmp_path / "ood.png")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "ood.json").read_text())
    assert summary["n_anomalous"] == 40 and summary["n_normal"] == 40
    assert summary["auroc"]["complexity"] > 0.9


def test_anomaly_rejects_empty_folders_and_orphan_options(run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _one_line_error(capsys, ["anomaly", str(run), "--images", str(empty)])
    assert "no image files" in err and str(empty) in err
    err = _one_line_error(capsys, ["anomaly", str(run), "--normal", "shapes"])
    assert "--images" in err
    err = _one_line_error(capsys, ["anomaly", str(run), "--images", "shapes", "--iw-samples", "0"])
    assert "--iw-samples" in err
    assert not (run / "anomaly_scores.csv").exists() and not (run / "anomaly.png").exists()


def test_denoise_reports_errors_before_and_after(run, capsys):
    assert main(["denoise", str(run), "--limit", "100", "--noise-sigma", "0.5", "-n", "6"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "denoise.json").read_text())
    gaussian, mask = result["results"]
    assert gaussian["corruption"] == "gaussian" and mask["corruption"] == "mask"
    assert gaussian["mse_output"] < gaussian["mse_input"]
    assert gaussian["n_images"] == 100 and "PSNR" in out and f"wrote {run / 'denoise.png'}" in out
    with Image.open(run / "denoise.png") as figure:
        assert figure.width > 300
    err = _one_line_error(capsys, ["denoise", str(run), "--mask-area", "2", "--limit", "5"])
    assert "--mask-area" in err
