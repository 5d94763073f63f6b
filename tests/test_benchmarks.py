"""benchmarks/flops.py and benchmarks/gpu_throughput.py: FLOP counts, and a tiny CPU run of every section."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_throughput.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from conftest import load_script
from flops import cpu_name, peak_for_name, training_flops_per_image


def _env(tmp_path: Path) -> dict[str, str]:
    # The tuner's and the datasets' caches go to the test's folder, never the user's.
    return {**os.environ, "VAEKIT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("arch, expected", [("fashion28", 145e6), ("nn3-128", 2.33e9)])
def test_training_flops_per_image_match_the_issue(arch, expected):
    from vaekit.models import build_model

    flops = training_flops_per_image(build_model(arch))
    assert abs(flops - expected) / expected < 0.10, flops


def test_peak_table_and_cpu_name():
    assert peak_for_name("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_for_name("NVIDIA H100 80GB HBM3", "fp32") == 67e12
    assert peak_for_name("NVIDIA H200") == 989e12
    assert peak_for_name("NVIDIA H100 PCIe") == 756e12
    assert peak_for_name("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_for_name("Tesla T4") is None
    info = cpu_name()
    assert info["model"] and isinstance(info["flags"], list)


def test_cuda_without_gpu_says_so_and_exits_0(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "none.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[0] == \
        "no GPU on this machine (torch.cuda.is_available() is False); nothing measured"
    report = json.loads(out.read_text())
    assert report["measured"] is False and "no GPU" in report["reason"]


def test_smoke_run_on_cpu(tmp_path, fashion_mnist_dir):
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out),
                           "--scratch", str(tmp_path / "scratch"), "--fashion-dir", str(fashion_mnist_dir)],
                          capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path), timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["measured"] is True and report["device"] == "cpu"
    assert report["torch_version"] and report["settings"]["smoke"] is True
    assert report["ceilings"]["mfu_peak"] > 0 and "measured matmul" in report["ceilings"]["mfu_peak_is"]

    rows = report["throughput"]
    assert {(r["arch"], r["variant"]) for r in rows} == {
        (a, v) for a in ("fashion28", "nn3-128") for v in ("vaekit default", "fp32 eager")}
    for row in rows:
        assert "error" not in row, row
        for key in ("images_per_s_median", "images_per_s_best", "mfu", "tflops_per_s", "flops_per_image"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        if row["variant"] == "vaekit default":
            assert row["speed"]["precision"] == row["precision"] and row["speed"]["how"]

    celeba = report["celeba_epoch"]
    assert [r["data_placement"] for r in celeba["runs"]] == ["resident", "stream"]
    for run in celeba["runs"]:
        assert "error" not in run, run
        assert run["images_per_s"] > 0 and math.isfinite(run["epoch_s"]) and math.isfinite(run["test_elbo"])
        assert run["resolved"]["data_placement"] == run["data_placement"]
    assert not Path(celeba["file"]).exists()  # the synthetic cache is removed unless --keep-cache

    seed = report["seed_run"]
    assert "error" not in seed and "skipped" not in seed, seed
    assert seed["wall_s"] > 0 and math.isfinite(seed["final_test_elbo"])

    targets = {t["target"]: t for t in report["targets"]}
    assert len(targets) == 4
    assert targets["nn3-128 training >= 30,000 img/s"]["pass"] is False
    assert "d. targets from the issue" in done.stdout


def test_collapse_sweep_json_grows_seed_by_seed():
    sweep = load_script("benchmarks/collapse_sweep.py")
    first = [{"init": "pytorch", "seed": s, "epoch": 1, "test_elbo": 270.0 + s} for s in (0, 1)]
    later = [{"init": "pytorch", "seed": 1, "epoch": 1, "test_elbo": 1.0},
             {"init": "keras", "seed": 5, "epoch": 1, "test_elbo": 2.0}]
    merged = sweep.merge_rows(first, later)
    assert [(r["init"], r["seed"]) for r in merged] == [("keras", 5), ("pytorch", 0), ("pytorch", 1)]
    assert merged[2]["test_elbo"] == 1.0 and merged[1]["test_elbo"] == 270.0  # same key: the new row wins
    # A batch size of its own is another row; rows written before --batch-size count as batch 128.
    batch64 = [{"init": "pytorch", "batch_size": 64, "seed": 1, "epoch": 1, "test_elbo": 3.0}]
    both = sweep.merge_rows(merged, batch64 + [{"init": "pytorch", "batch_size": 128, "seed": 1, "epoch": 1,
                                                "test_elbo": 4.0}])
    assert [(r["init"], r.get("batch_size"), r["seed"], r["test_elbo"]) for r in both] == [
        ("keras", None, 5, 2.0), ("pytorch", 64, 1, 3.0), ("pytorch", None, 0, 270.0), ("pytorch", 128, 1, 4.0)]
    # So is a gradient-norm limit; rows written before it count as unclipped.
    clipped = sweep.merge_rows(both, [{**batch64[0], "grad_clip": 1000.0, "test_elbo": 5.0},
                                      {**batch64[0], "grad_clip": None, "test_elbo": 6.0}])
    assert [(r.get("grad_clip"), r["test_elbo"]) for r in clipped if r.get("batch_size") == 64] == [
        (None, 6.0), (1000.0, 5.0)]


def test_collapse_sweep_refuses_a_foreign_json_in_one_line(tmp_path):
    sweep = load_script("benchmarks/collapse_sweep.py")
    foreign = tmp_path / "other.json"
    foreign.write_text('{"not": "rows"}')
    with pytest.raises(SystemExit, match="--json .*other.json: not the rows of an earlier sweep"):
        sweep.read_rows(foreign)
    assert sweep.read_rows(tmp_path / "new.json") == []


@pytest.mark.parametrize("value, message", [
    ("often", "collapse_sweep.py: error: argument --grad-clip: expected auto, none or a number, got 'often'"),
    ("-1", "collapse_sweep: error: grad_clip must be auto, none or a positive number, got -1.0"),
])
def test_collapse_sweep_refuses_a_bad_grad_clip_in_one_line_before_training(value, message, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "collapse_sweep.py"), "--grad-clip", value,
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_ema_cost_times_a_step_and_its_averaging_update(tmp_path):
    ema_cost = load_script("benchmarks/ema_cost.py")
    out = tmp_path / "ema.json"
    rows = ema_cost.main(["--batch-size", "8", "16", "--steps", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == rows
    assert [(r["arch"], r["batch_size"]) for r in rows] == [("fashion28", 8), ("fashion28", 16)]
    for row in rows:
        assert row["step_ms"] > 0 and row["ema_update_ms"] > 0 and row["threads"] == 1
        assert row["ema_share"] == pytest.approx(row["ema_update_ms"] / (row["step_ms"] + row["ema_update_ms"]),
                                                 abs=1e-3)
        assert row["grad_clip"] == 1000.0 and 0 < row["grad_clip_ms"] < row["step_ms"]
