"""benchmarks/model_quality.py: a tiny end-to-end grid on the real Fashion-MNIST, and the --reuse matching."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "model_quality.py"


@pytest.fixture(scope="module")
def model_quality():
    return load_script("benchmarks/model_quality.py")


@pytest.fixture(scope="module")
def tiny_grid(model_quality, fashion_mnist_dir, tmp_path_factory):
    """Latent 2 / beta 1, seeds 0 and 1, one epoch on 300 images: the results folder."""
    tmp = tmp_path_factory.mktemp("model-quality")
    results = tmp / "results"
    assert model_quality.main([*TINY_GRID, "--data-dir", str(fashion_mnist_dir), "--out", str(tmp / "runs"),
                               "--results-dir", str(results)]) == 0
    return results


TINY_GRID = ["--train-limit", "300", "--epochs", "1", "--jobs", "2", "--cells", "2:1", "--seeds", "0", "1",
             "--iw-samples", "4", "--iw-images", "16", "--probe-train", "200", "--device", "cpu"]


def test_json_keeps_every_seed_and_the_meta(tiny_grid):
    data = json.loads((tiny_grid / "results.json").read_text())
    assert [(r["latent_dim"], r["beta"], r["seed"]) for r in data["rows"]] == [(2, 1.0, 0), (2, 1.0, 1)]
    assert all(r["iw_images"] == 16 and r["iw_samples"] == 4 and r["train_images"] == 300 for r in data["rows"])
    meta = data["meta"]
    for key in ("command", "machine", "threads", "torch", "date", "wall_minutes", "train_seconds"):
        assert key in meta
    assert meta["holdout"] is None and meta["test_images"] == 10000
    # --jobs 2: both seeds trained at once in their own processes, then measured here.
    assert "--jobs 2" in meta["command"]
    assert all(not r["reused_run"] and r["train_call_seconds"] > 0 for r in data["rows"])
    assert "auroc_iwae" not in data["rows"][0]  # no held-out class by default


def test_cell_row_is_the_mean_over_seeds(tiny_grid):
    rows = json.loads((tiny_grid / "results.json").read_text())["rows"]
    page = (tiny_grid / "results.md").read_text()
    match = re.search(r"^\| 2 \| 1 \| 0, 1 \(2\) \| ([\d.]+) ± ([\d.]+) \|", page, re.MULTILINE)
    assert match, page
    mean = (rows[0]["elbo"] + rows[1]["elbo"]) / 2
    assert float(match.group(1)) == pytest.approx(mean, abs=0.051)


def test_figure_and_render_only_reproduce_the_page(model_quality, tiny_grid):
    png = tiny_grid / "results_rate_distortion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    page = (tiny_grid / "results.md").read_bytes()
    assert "(results_rate_distortion.png)" in page.decode()
    (tiny_grid / "results.md").write_text("stale")
    png.unlink()
    assert model_quality.main(["--render-only", "--results-dir", str(tiny_grid)]) == 0
    assert (tiny_grid / "results.md").read_bytes() == page
    assert png.stat().st_size > 5000


def test_a_second_run_reuses_runs_and_measurements(model_quality, tiny_grid, fashion_mnist_dir, tmp_path):
    first = json.loads((tiny_grid / "results.json").read_text())["rows"]
    assert model_quality.main([*TINY_GRID, "--data-dir", str(fashion_mnist_dir), "--out", str(tiny_grid.parent / "runs"),
                               "--results-dir", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert all(row["reused_run"] for row in again)
    assert [row["elbo"] for row in again] == [row["elbo"] for row in first]
    assert [row["evaluate_seconds"] for row in again] == [row["evaluate_seconds"] for row in first]  # kept


def test_not_measured_yet_names_what_is_missing(tiny_grid):
    page = (tiny_grid / "results.md").read_text()
    missing = page[page.index("## Not measured yet"):]
    assert "latent 8 beta 1" in missing and "latent 32 beta 5" in missing and "latent 2 beta 2" in missing
    assert "**Seed 2 not run**: latent 2 beta 1." in missing
    # Both seeds fall short in the same ways: one line for both, not one per seed.
    assert "* Every run on this page (2): 1 epoch (< 30);" in missing
    assert "1 epoch (< 30)" in missing and "train_limit 300" in missing
    assert "K = 4 (< 5000)" in missing and "16 of 10,000 test images" in missing
    assert "h of training" in missing
    # The grid ran with today's defaults and reused nothing: the full protocol is the script's defaults.
    assert "```\npython benchmarks/model_quality.py --device cuda\n```" in missing
    assert "Not comparable yet" in page and "260.76" in page  # the Keras anchor row


def test_reuse_finds_only_an_exactly_matching_run(model_quality, tiny_grid, tmp_path):
    # A real finished run of the tiny grid (latent 2, beta 1, 1 epoch, 300 images, seed 0), stored the way
    # build/pretrained/family/<member> is: two levels below the --reuse folder.
    store = tmp_path / "pretrained" / "family"
    shutil.copytree(tiny_grid.parent / "runs" / "z2-beta1-e1-s0-n300", store / "member")
    args = model_quality.parse_args(["--epochs", "1", "--train-limit", "300", "--out", str(tmp_path / "runs"),
                                     "--reuse", str(tmp_path / "pretrained")])
    config = model_quality.cell_config(args, 2, 1.0, 0)
    assert model_quality.find_reusable(args.reuse, config) == store / "member"
    for key, value in (("beta", 2.0), ("seed", 1), ("epochs", 30), ("train_limit", None), ("latent_dim", 8),
                       ("exclude_classes", ["Bag"]), ("lr", 3e-4), ("lr_schedule", "cosine"), ("ema_decay", 0.99),
                       ("init", "keras")):
        other = model_quality.cell_config(args, 2, 1.0, 0)
        setattr(other, key, value)
        assert model_quality.find_reusable(args.reuse, other) is None, key
    # "auto" is PyTorch's init on fashion28: a run that named "pytorch" (before auto existed) is the same run.
    assert config.init == "auto" and model_quality.find_reusable(args.reuse, replace(config, init="pytorch"))
    assert model_quality.find_reusable(args.reuse, replace(config, init="vaekit")) is None
    run_dir, timing = model_quality.train_cell(args, 2, 1.0, 0)  # reused: nothing is trained
    assert run_dir == store / "member" and timing["reused_run"] and not (tmp_path / "runs").exists()


def test_reuse_compares_the_top_level_latent_dim(model_quality, tiny_grid, tmp_path):
    """fashion28's default latent (2) is recorded as null in config['train'] when not given explicitly."""
    member = tmp_path / "family" / "member"
    shutil.copytree(tiny_grid.parent / "runs" / "z2-beta1-e1-s0-n300", member)
    saved = json.loads((member / "config.json").read_text())
    saved["train"]["latent_dim"] = None
    (member / "config.json").write_text(json.dumps(saved))
    args = model_quality.parse_args(["--epochs", "1", "--train-limit", "300"])
    config = model_quality.cell_config(args, 2, 1.0, 0)
    assert model_quality.find_reusable([tmp_path], config) == member
    saved["status"] = "running"
    (member / "config.json").write_text(json.dumps(saved))
    assert model_quality.find_reusable([tmp_path], config) is None


def test_a_run_saved_before_a_setting_existed_matches_its_default(model_quality, tiny_grid, tmp_path):
    """The shipped runs predate lr_schedule: their configs lack it, and they trained with a constant rate."""
    member = tmp_path / "family" / "member"
    shutil.copytree(tiny_grid.parent / "runs" / "z2-beta1-e1-s0-n300", member)
    saved = json.loads((member / "config.json").read_text())
    del saved["train"]["lr_schedule"]
    (member / "config.json").write_text(json.dumps(saved))
    args = model_quality.parse_args(["--epochs", "1", "--train-limit", "300"])
    config = model_quality.cell_config(args, 2, 1.0, 0)
    assert model_quality.find_reusable([tmp_path], config) == member
    config.lr_schedule = "cosine"
    assert model_quality.find_reusable([tmp_path], config) is None


def test_the_published_results_page_is_rendered_from_its_json(model_quality, tmp_path):
    """docs/results.md is generated from docs/results.json, never edited by hand."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    shutil.copy(docs / "results.json", tmp_path / "results.json")
    model_quality.render(tmp_path)
    assert (tmp_path / "results.md").read_text() == (docs / "results.md").read_text()


def test_train_settings_pin_the_recipe_and_the_page_states_it(model_quality, tiny_grid, tmp_path):
    pinned = "init=keras,batch_size=32,ema_decay=0.99"
    args = model_quality.parse_args(["--epochs", "1", "--train-settings", pinned])
    config = model_quality.cell_config(args, 8, 2.0, 1)
    assert (config.init, config.batch_size, config.ema_decay, config.latent_dim, config.beta) == \
        ("keras", 32, 0.99, 8, 2.0)
    assert f"--train-settings {pinned}" in model_quality.command_line(args)
    assert model_quality.train_settings(args) == {"lr": config.lr, "batch_size": 32, "init": "keras",
                                                   "lr_schedule": config.lr_schedule, "ema_decay": 0.99,
                                                   "grad_clip": 1000.0, "overrides": pinned}
    # The tiny grid ran with the defaults, and its page says which they were.
    data = json.loads((tiny_grid / "results.json").read_text())
    defaults = model_quality.train_settings(model_quality.parse_args([]))
    assert data["meta"]["train_settings"] == defaults
    assert f"vaekit's training defaults: Adam, lr {defaults['lr']:g}, batch {defaults['batch_size']}" in \
        (tiny_grid / "results.md").read_text()
    data["meta"]["train_settings"] = model_quality.train_settings(args)
    (tmp_path / "results.json").write_text(json.dumps(data))
    model_quality.render(tmp_path)
    page = (tmp_path / "results.md").read_text()
    assert f"defaults with `--train-settings {pinned}`: Adam, lr 0.001, batch 32, `keras` init" in page
    assert "weights averaged (EMA 0.99), gradient norm clipped at 1000," in page and "| Adam 0.001, batch 32 |" in page


def test_a_bad_train_setting_is_one_line_naming_the_option(model_quality):
    with pytest.raises(SystemExit, match="--train-settings: .*batch_size.*at least 1"):
        model_quality.cell_config(model_quality.parse_args(["--train-settings", "batch_size=0"]), 2, 1.0, 0)
    with pytest.raises(SystemExit, match="^--train-settings: 'colour=red' is not NAME=VALUE"):
        model_quality.parse_args(["--train-settings", "colour=red"])


def test_a_cell_can_have_its_own_seeds_and_the_command_says_so(model_quality):
    args = model_quality.parse_args(["--cells", "2:1:0,1,2", "8:1", "32:5", "--seeds", "0"])
    # Seed by seed: a grid cut short still has the first seed of every cell.
    assert model_quality.planned_runs(args) == [(2, 1.0, 0), (8, 1.0, 0), (32, 5.0, 0), (2, 1.0, 1), (2, 1.0, 2)]
    command = model_quality.command_line(args)
    assert "--cells 2:1:0,1,2 8:1 32:5 " in command and "--seeds 0 " in command
    again = model_quality.parse_args(command.split()[2:])
    assert model_quality.planned_runs(again) == model_quality.planned_runs(args)
    everywhere = model_quality.parse_args(["--cells", "2:1", "8:1", "--seeds", "0", "1"])
    assert model_quality.planned_runs(everywhere) == [(2, 1.0, 0), (8, 1.0, 0), (2, 1.0, 1), (8, 1.0, 1)]


@pytest.mark.parametrize("cell", ["2", "2:x", "2:1:", "2:1:0,a", "2:1:0:1"])
def test_a_bad_cell_is_one_line_naming_the_option(model_quality, cell):
    with pytest.raises(SystemExit, match=f"^--cells: expected LATENT:BETA .* got '{cell}'$"):
        model_quality.parse_args(["--cells", cell])


def test_render_only_without_results_names_the_missing_file(model_quality, tmp_path):
    with pytest.raises(SystemExit, match=r"results\.json: not found; run the grid first"):
        model_quality.main(["--render-only", "--results-dir", str(tmp_path)])


def test_the_page_states_seeds_per_cell_and_the_training_precision(tiny_grid):
    quality_report = load_script("benchmarks/quality_report.py")
    rows = json.loads((tiny_grid / "results.json").read_text())["rows"]
    assert quality_report.seeds_text(rows) == "seeds 0, 1"
    other_cell = [{**rows[0], "latent_dim": 8}]
    assert quality_report.seeds_text(rows + other_cell) == "seeds 0, 1 (cells 2:1); 0 (cells 8:1)"
    page = (tiny_grid / "results.md").read_text()
    assert f"trained in **{rows[0]['precision']}**" in page
    assert "measured as the faster" in quality_report.precision_text([{**rows[0], "precision": "bf16"}])
    assert quality_report.precision_text([{**rows[0], "precision": "fp32"}]) == "trained in **fp32**"
    mixed = [{**rows[0], "precision": "bf16"}, {**rows[0], "latent_dim": 8, "precision": "fp32"}]
    assert quality_report.precision_text(mixed).startswith("trained in **bf16** (cells 2:1) and **fp32** (cells 8:1), ")


def test_missing_seeds_and_shortfalls_are_grouped_across_runs():
    quality_report = load_script("benchmarks/quality_report.py")
    data = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results.json").read_text())
    # Latent 2 / beta 1 with all three seeds, latent 8 / beta 1 and 2 / beta 5 with seed 0 only.
    rows = [row for row in data["rows"] if (row["latent_dim"], row["beta"]) == (2, 1)
            or (row["latent_dim"], row["beta"], row["seed"]) in {(8, 1, 0), (2, 5, 0)}]
    rows = [{**row, "iw_images": 10000} if (row["latent_dim"], row["beta"], row["seed"]) == (2, 1, 0) else row
            for row in rows]
    missing = quality_report.not_measured(data["meta"], rows)
    assert "* **Seeds 1, 2 not run**: latent 2 beta 5, latent 8 beta 1." in missing
    short = [line for line in missing if "IWAE on 64 of 10,000" in line]
    assert short == ["* latent 2 beta 1 seeds 1, 2; latent 2 beta 5 seed 0; latent 8 beta 1 seed 0: IWAE on 64 of "
                     "10,000 test images (iw-images < all)."]


def test_the_completing_command_keeps_the_pages_recipe_and_reuse_folders():
    quality_report = load_script("benchmarks/quality_report.py")
    meta = {"command": "python benchmarks/model_quality.py --cells 2:1 --reuse build/a 'b c' --seeds 0",
            "train_settings": {"overrides": "init=vaekit,batch_size=128"}}
    assert quality_report.completing_command(meta) == ("python benchmarks/model_quality.py --device cuda "
                                                       "--train-settings init=vaekit,batch_size=128 "
                                                       "--reuse build/a 'b c'")


def test_the_anchor_row_says_whether_the_optimiser_settings_match_too():
    quality_report = load_script("benchmarks/quality_report.py")
    anchor = quality_report.KERAS_ANCHOR
    assert quality_report.anchor_comparison(anchor, {"lr": 1e-3, "batch_size": 128}) == "Same settings as the anchor."
    differs = quality_report.anchor_comparison(anchor, {"lr": 1e-3, "batch_size": 64})
    assert differs.startswith("Same epochs and training images as the anchor") and "(batch 64, lr 0.001" in differs
    assert "(batch 128, lr 0.001)" in differs


def _merge_args(fashion_mnist_dir: Path, tiny_grid: Path, results: Path, *extra: str) -> list[str]:
    """The tiny grid's settings for seed 1 alone (a finished run, so nothing trains), adding to ``results``."""
    args = [*TINY_GRID, "--data-dir", str(fashion_mnist_dir), "--out", str(tiny_grid.parent / "runs"),
            "--results-dir", str(results), "--merge", *extra]
    args[args.index("--cells") + 1] = "2:1:1"
    return args


def test_merge_adds_a_part_and_keeps_the_rows_it_does_not_measure(model_quality, tiny_grid, fashion_mnist_dir,
                                                                   tmp_path):
    first = json.loads((tiny_grid / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**first, "rows": first["rows"][:1]}))  # seed 0 only
    assert model_quality.main(_merge_args(fashion_mnist_dir, tiny_grid, tmp_path)) == 0
    merged = json.loads((tmp_path / "results.json").read_text())
    assert [(r["seed"], r["elbo"]) for r in merged["rows"]] == [(r["seed"], r["elbo"]) for r in first["rows"]]
    parts = merged["meta"]["parts"]
    assert [part["runs"] for part in parts] == [["2:1:0"], ["2:1:1"]]
    assert parts[0]["command"] == first["meta"]["command"] and parts[1]["command"].endswith("--merge")
    assert merged["meta"]["seeds"] == [0, 1]
    page = (tmp_path / "results.md").read_text()
    assert "In 2 parts" in page and f"   {parts[1]['command']}" in page
    assert "  * Part 1 (latent 2 beta 1 seed 0): " in page and "  * Part 2 (latent 2 beta 1 seed 1): " in page
    assert "| 2 | 1 | 0, 1 (2) |" in page  # one cell, its two seeds from two parts


def test_merge_refuses_rows_measured_another_way_before_training(model_quality, tiny_grid, fashion_mnist_dir,
                                                                  tmp_path):
    shutil.copy(tiny_grid / "results.json", tmp_path / "results.json")
    before = (tmp_path / "results.json").read_bytes()
    args = _merge_args(fashion_mnist_dir, tiny_grid, tmp_path, "--iw-samples", "8", "--out", str(tmp_path / "new"))
    with pytest.raises(SystemExit, match=r"results\.json: its rows were made with iw_samples 4, this command's "
                                         r"with 8; --merge joins only rows made the same way$"):
        model_quality.main(args)
    assert (tmp_path / "results.json").read_bytes() == before and not (tmp_path / "new").exists()
    with pytest.raises(SystemExit, match=r"results\.json: not found; --merge adds to an existing results\.json"):
        model_quality.main(_merge_args(fashion_mnist_dir, tiny_grid, tmp_path / "empty"))


def test_a_remeasured_run_replaces_its_row_and_leaves_its_old_part(model_quality):
    published = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results.json").read_text())
    old_row = next(r for r in published["rows"] if (r["latent_dim"], r["beta"], r["seed"]) == (8, 1.0, 0))
    meta = {**published["meta"], "parts": None, "command": "python benchmarks/model_quality.py --merge",
            "date": "later", "wall_minutes": 2.0}
    new = {"meta": meta, "rows": [{**old_row, "elbo": 1.0}]}
    merged = model_quality.merge_results(published, new)
    assert len(merged["rows"]) == len(published["rows"])
    assert [r["elbo"] for r in merged["rows"] if (r["latent_dim"], r["seed"]) == (8, 0) and r["beta"] == 1] == [1.0]
    *earlier, last = merged["meta"]["parts"]
    earlier_runs = [key for part in earlier for key in part["runs"]]
    assert "8:1:0" not in earlier_runs and len(earlier_runs) == len(published["rows"]) - 1
    assert last == {**{key: meta[key] for key in ("command", "machine", "device", "threads", "torch", "vaekit",
                                                    "date", "wall_minutes")}, "runs": ["8:1:0"]}


def _interrupted_cell(model_quality, argv: list[str], **changes) -> Path:
    """The first cell of ``argv``'s grid, stopped by Ctrl-C at its third step (``changes``: other settings)."""
    from vaekit.training import train
    from vaekit.training.trainer import TrainingInterrupted

    args = model_quality.parse_args(argv)
    latent, beta, seed = model_quality.planned_runs(args)[0]
    config = replace(model_quality.cell_config(args, latent, beta, seed), **changes)
    run_dir = model_quality.cell_dir(args, latent, beta, seed)

    def interrupt(epoch: int, step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(config, out=run_dir, progress=False, on_step=interrupt)
    return run_dir


def _one_cell_grid(fashion_mnist_dir: Path, tmp_path: Path) -> list[str]:
    argv = [*TINY_GRID, "--data-dir", str(fashion_mnist_dir), "--out", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results")]
    argv[argv.index("--cells") + 1], argv[argv.index("--jobs") + 1] = "2:1:0", "1"
    return argv


def test_an_interrupted_cell_resumes_from_its_checkpoint(model_quality, tiny_grid, fashion_mnist_dir, tmp_path):
    argv = _one_cell_grid(fashion_mnist_dir, tmp_path)
    run_dir = _interrupted_cell(model_quality, argv)
    assert json.loads((run_dir / "config.json").read_text())["status"] == "interrupted"
    assert model_quality.main(argv) == 0
    row = json.loads((tmp_path / "results" / "results.json").read_text())["rows"][0]
    assert not row["reused_run"] and row["run"].endswith(run_dir.name)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["status"] == "complete" and saved["epochs_done"] == 1
    # The same run as the tiny grid's uninterrupted seed 0 (trained there in another process, on one thread).
    uninterrupted = json.loads((tiny_grid / "results.json").read_text())["rows"][0]
    assert row["elbo"] == pytest.approx(uninterrupted["elbo"], abs=0.5)


def test_a_cell_folder_holding_other_settings_is_refused_in_one_line(model_quality, fashion_mnist_dir, tmp_path):
    argv = _one_cell_grid(fashion_mnist_dir, tmp_path)
    run_dir = _interrupted_cell(model_quality, argv, lr=0.002)
    before = (run_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(SystemExit, match=rf"^{re.escape(str(run_dir))}: lr was 0.002 when this member was "
                                         r"trained, not 0.001; .*[^\n]$"):
        model_quality.main(argv)
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_ctrl_c_in_a_cell_saves_it_and_says_to_rerun_the_command(model_quality, fashion_mnist_dir, tmp_path,
                                                                 monkeypatch, capsys):
    from vaekit.training.callbacks import Callback

    class CtrlC(Callback):
        def on_step_end(self, trainer, terms) -> None:
            raise KeyboardInterrupt

    real_run_job = model_quality.run_job
    monkeypatch.setattr(model_quality, "run_job", lambda job, progress: real_run_job(job, progress, [CtrlC()]))
    argv = _one_cell_grid(fashion_mnist_dir, tmp_path)
    assert model_quality.main(argv) == 130
    run_dir = tmp_path / "runs" / "z2-beta1-e1-s0-n300"
    assert capsys.readouterr().err == (f"model_quality: interrupted; {run_dir} was saved: run the same command "
                                       "to resume the grid\n")
    assert json.loads((run_dir / "config.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "results").exists()
