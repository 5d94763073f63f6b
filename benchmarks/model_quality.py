"""The model-quality grid: fashion28 on the real Fashion-MNIST, over latent size, beta and seed.

The defaults are the full protocol (issue "Research-grade results", item 1):
latent 2, 8, 32 x beta 1, 2, 3, 5 x seeds 0, 1, 2, 30 epochs on all 60,000
training images with the project's training defaults (``vaekit.TrainConfig``,
the Bernoulli likelihood of the seed model); ``--train-settings
init=vaekit,batch_size=128`` changes fields of every run, and ``results.md``
states the recipe it was made with. Each run is measured in fp32 on the test
split:

* -ELBO, reconstruction and KL over all test images; the IWAE bound with
  ``--iw-samples`` K (default 5000) on ``--iw-images`` of them (default all)
  and the -ELBO of exactly those images;
* active latent units (variance over the data of E[z|x] above 0.01);
* k-NN and linear-probe label accuracy of z_mean against PCA with as many
  components (probes fitted on ``--probe-train`` training images);
* with ``--holdout CLASS`` only: that class is left out of training and the
  AUROC of each anomaly score is added (the protocol over every class is
  ``vaekit anomaly-protocol``).

Outputs in ``--results-dir`` (default ``docs``): ``results.json`` (every
per-seed row and ``meta``: command, machine, threads, torch, date, wall time),
``results.csv``, and ``results.md`` with ``results_rate_distortion.png``, both
rendered from the JSON alone (``--render-only`` redoes just that; see
``benchmarks/quality_report.py``).

Runs go to ``--out`` (default ``runs/model-quality``). A finished run with the
same settings there, or in a ``--reuse`` folder (searched two levels deep, e.g.
the pretrained family of ``scripts/build_pretrained.py``), is reused rather than
retrained, and finished measurements are kept in ``OUT/measurements``, so an
interrupted grid continues: a run that Ctrl-C or a kill stopped resumes from its
checkpoint (one with other settings in its folder is refused). ``--jobs N`` trains the missing runs first, N at a
time, each in its own process with its share of the cores (or of the GPU): small
models train more images per second in all this way (``benchmarks/parallel_runs.py``). The full grid on a GPU::

    python benchmarks/model_quality.py --device cuda --reuse build/pretrained

A quick subset::

    python benchmarks/model_quality.py --cells 2:1 8:1 --seeds 0 --epochs 1 --iw-samples 100 --iw-images 200
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_report
from pythae_reference import parse_variant, with_overrides

import vaekit
from vaekit.analysis import anomaly, bounds, embedding
from vaekit.errors import VaekitError
from vaekit.files import atomic_write_text, read_json, write_json
from vaekit.models.pretrained import read_config
from vaekit.runs.run import read_metrics
from vaekit.runtime import resolve_device, stop_on_sigterm
from vaekit.training.config import TrainConfig
from vaekit.training.series import TrainJob, member_state, run_job, train_jobs
from vaekit.training.trainer import TrainingInterrupted
from vaekit.training.tuning import machine_name

REPO = Path(__file__).resolve().parents[1]
# Training settings a reused run must share with the cell (latent_dim is compared at the config's top level).
MATCHED_TRAIN_KEYS = ("beta", "epochs", "seed", "lr", "lr_schedule", "batch_size", "recon", "init", "train_limit",
                      "kl_warmup_epochs", "grad_clip", "ema_decay")
# The training settings results.md states (meta["train_settings"]).
RECIPE_KEYS = ("lr", "batch_size", "init", "lr_schedule", "ema_decay", "grad_clip")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="where models train and are measured (default: auto)")
    parser.add_argument("--latent-dims", type=int, nargs="+", default=list(quality_report.FULL_LATENTS))
    parser.add_argument("--betas", type=float, nargs="+", default=list(quality_report.FULL_BETAS))
    parser.add_argument("--cells", nargs="+", default=None, metavar="LATENT:BETA[:SEEDS]",
                        help="explicit cells instead of the latent-dims x betas grid, e.g. 2:1 8:1; a cell's "
                             "own seeds after a second colon (2:1:0,1,2) replace --seeds for that cell")
    parser.add_argument("--epochs", type=int, default=quality_report.FULL_EPOCHS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(quality_report.FULL_SEEDS))
    parser.add_argument("--holdout", default=None, metavar="CLASS",
                        help="leave CLASS out of training and add its anomaly AUROC (default: train on every class)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: vaekit's search order)")
    parser.add_argument("--iw-samples", type=int, default=quality_report.FULL_IW_SAMPLES, help="K of the IWAE bound")
    parser.add_argument("--iw-images", default="all", help="test images for the IWAE bound (the first N), or 'all'")
    parser.add_argument("--anomaly-iw-samples", type=int, default=16, help="K of the IWAE-based anomaly scores")
    parser.add_argument("--anomaly-limit", type=int, default=None,
                        help="with --holdout: score only the first N test images for AUROC (default: all)")
    parser.add_argument("--probe-train", type=int, default=10000, help="training images the probes are fitted on")
    parser.add_argument("-k", type=int, default=10, help="neighbours of the k-NN probe")
    parser.add_argument("--train-settings", default=None, metavar="NAME=VALUE[,NAME=VALUE]",
                        help="TrainConfig fields that differ from vaekit's defaults for every run, "
                             "e.g. init=vaekit,batch_size=128,ema_decay=none (default: the defaults)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="train on the first N images only (quick checks of the script, not for the table)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "model-quality", help="where runs are kept")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each in its own process (vaekit.training.series.train_jobs); "
                             "then all are measured")
    parser.add_argument("--reuse", type=Path, nargs="+", default=[], metavar="DIR",
                        help="more folders searched (two levels deep) for finished runs with a cell's exact settings")
    parser.add_argument("--results-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite results.md and the figure from the results.json already there")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of the results.json already in --results-dir for the runs this command "
                             "does not measure (they must have been measured with the same settings); the page "
                             "then names each part's command, machine and date")
    args = parser.parse_args(argv)
    args.iw_images = None if args.iw_images == "all" else int(args.iw_images)
    args.train_overrides = parse_variant(args.train_settings, "--train-settings") if args.train_settings else {}
    cells = [_cell(text, args.seeds) for text in args.cells] if args.cells else \
        [(latent, beta, tuple(args.seeds)) for latent in args.latent_dims for beta in args.betas]
    args.grid = [(latent, beta) for latent, beta, _ in cells]
    args.cell_seeds = {(latent, beta): seeds for latent, beta, seeds in cells}
    return args


def _cell(text: str, default_seeds: list[int]) -> tuple[int, float, tuple[int, ...]]:
    try:
        latent, beta, *seeds = text.split(":")
        if len(seeds) > 1 or (seeds and not seeds[0]):
            raise ValueError
        return int(latent), float(beta), tuple(int(seed) for seed in seeds[0].split(",")) if seeds else \
            tuple(default_seeds)
    except ValueError:
        raise SystemExit(f"--cells: expected LATENT:BETA or LATENT:BETA:SEED,SEED such as 8:1 or 2:1:0,1,2, "
                         f"got '{text}'") from None


def planned_runs(args: argparse.Namespace) -> list[tuple[int, float, int]]:
    """Every (latent, beta, seed) of the grid, seed by seed, so that a cut-short grid has the first seed of every cell."""
    seeds = sorted({seed for cell_seeds in args.cell_seeds.values() for seed in cell_seeds})
    return [(latent, beta, seed) for seed in seeds for latent, beta in args.grid
            if seed in args.cell_seeds[latent, beta]]


def _repo_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def command_line(args: argparse.Namespace) -> str:
    """The exact command that reproduces these results (explicit options, repository-relative paths)."""
    parts = ["python", "benchmarks/model_quality.py", "--device", args.device]
    own_seeds = {cell: "" if list(seeds) == args.seeds else ":" + ",".join(map(str, seeds))
                 for cell, seeds in args.cell_seeds.items()}
    parts += ["--cells", *[f"{latent}:{beta:g}{own_seeds[latent, beta]}" for latent, beta in args.grid]]
    parts += ["--epochs", str(args.epochs), "--seeds", *map(str, args.seeds)]
    parts += ["--iw-samples", str(args.iw_samples), "--iw-images", str(args.iw_images or "all")]
    parts += ["--probe-train", str(args.probe_train), "-k", str(args.k)]
    if args.holdout:
        parts += ["--holdout", args.holdout, "--anomaly-iw-samples", str(args.anomaly_iw_samples)]
        parts += ["--anomaly-limit", str(args.anomaly_limit)] if args.anomaly_limit is not None else []
    if args.train_settings:
        parts += ["--train-settings", args.train_settings]
    if args.train_limit is not None:
        parts += ["--train-limit", str(args.train_limit)]
    if args.reuse:
        parts += ["--reuse", *map(_repo_path, args.reuse)]
    if args.jobs > 1:
        parts += ["--jobs", str(args.jobs)]
    if args.merge:
        parts += ["--merge"]
    return shlex.join(parts)


# ----------------------------------------------------------------------------- training (or reuse)


def cell_config(args: argparse.Namespace, latent: int, beta: float, seed: int) -> TrainConfig:
    config = TrainConfig(device=args.device, latent_dim=latent, beta=beta, epochs=args.epochs, seed=seed,
                         data_dir=args.data_dir, exclude_classes=[args.holdout] if args.holdout else [],
                         train_limit=args.train_limit,
                         test_limit=2000)  # only the per-epoch metrics.csv; the table uses the whole test split
    return with_overrides(config, args.train_overrides, "model_quality: error: --train-settings")


def run_matches(saved: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a saved run's ``config.json`` is a finished fashion28 run with exactly the cell's settings."""
    trained = saved.get("train") or {}
    # A setting a run's config lacks predates that setting: the run trained with its default.
    settled = (TrainConfig.from_dict(trained) if isinstance(trained, dict) else TrainConfig()).comparable()
    wanted = config.comparable()
    return (saved.get("status") == "complete" and saved.get("arch") == "fashion28"
            and trained.get("arch") == "fashion28" and trained.get("dataset") == "fashion-mnist"
            and saved.get("latent_dim") == config.latent_dim
            and sorted(trained.get("exclude_classes") or []) == sorted(config.exclude_classes)
            and all(settled[key] == wanted[key] for key in MATCHED_TRAIN_KEYS))


def _finished_run(run_dir: Path, config: TrainConfig) -> bool:
    return (run_dir / "config.json").is_file() and run_matches(read_config(run_dir), config)


def find_reusable(folders: list[Path], config: TrainConfig) -> Path | None:
    """The first finished run matching ``config`` in ``folders``, their subfolders or theirs."""
    for folder in folders:
        candidates = [folder, *sorted(folder.glob("*")), *sorted(folder.glob("*/*"))]
        for candidate in candidates:
            if candidate.is_dir() and _finished_run(candidate, config):
                return candidate
    return None


def cell_dir(args: argparse.Namespace, latent: int, beta: float, seed: int) -> Path:
    limit = f"-n{args.train_limit}" if args.train_limit else ""
    holdout = f"-no-{args.holdout.replace('/', '_')}" if args.holdout else ""
    return args.out / f"z{latent}-beta{beta:g}-e{args.epochs}-s{seed}{limit}{holdout}"


def planned_job(args: argparse.Namespace, latent: int, beta: float, seed: int) -> tuple[TrainJob, Path | None]:
    """The cell's training (a new run, or an interrupted one resumed) and the finished run to reuse instead, if any."""
    config, run_dir = cell_config(args, latent, beta, seed), cell_dir(args, latent, beta, seed)
    reused = run_dir if _finished_run(run_dir, config) else find_reusable(args.reuse, config)
    try:  # a run in --out that a kill or Ctrl-C stopped resumes; one with other settings is refused
        state = "new" if reused else member_state(run_dir, config, "grid")
    except VaekitError as error:
        raise SystemExit(str(error)) from None
    return TrainJob(config, run_dir, resume=state == "resume"), reused


def train_all_at_once(args: argparse.Namespace) -> dict[Path, float]:
    """With ``--jobs N`` above 1: train every missing cell first, N at a time; return their seconds."""
    todo = [job for job, reused in (planned_job(args, *run) for run in planned_runs(args)) if reused is None]
    if todo:
        print(f"training {len(todo)} runs, {args.jobs} at a time", flush=True)
    return {job.run_dir: seconds for job, seconds in zip(todo, train_jobs(todo, args.jobs))}


def train_cell(args: argparse.Namespace, latent: int, beta: float, seed: int,
               trained: dict[Path, float] | None = None) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) one run; return its directory and how it was made (``trained``: by train_all_at_once)."""
    trained = trained or {}
    job, reused = planned_job(args, latent, beta, seed)
    if job.run_dir in trained:
        reused, call_seconds = None, trained[job.run_dir]
    elif reused is None:
        call_seconds = run_job(job, progress=False)
    run_dir = reused or job.run_dir
    metrics = read_metrics(run_dir)
    return run_dir, {
        "train_loop_seconds": round(sum(float(row["seconds"]) for row in metrics), 1),
        "train_call_seconds": None if reused else round(call_seconds, 1),
        "reused_run": reused is not None,
        "collapsed": int(float(metrics[-1].get("collapsed") or 0)) if metrics else 0,
        "precision": read_config(run_dir)["resolved"]["precision"],
    }


# ----------------------------------------------------------------------------- measuring


def measure_settings(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """What a measurement depends on (a kept measurement is reused only when all of it is the same)."""
    weights = run_dir / "model.safetensors"
    return {"run": str(run_dir.resolve()), "weights_mtime": weights.stat().st_mtime if weights.exists() else None,
            "iw_samples": args.iw_samples, "iw_images": args.iw_images, "probe_train": args.probe_train,
            "k": args.k, "holdout": args.holdout, "anomaly_iw_samples": args.anomaly_iw_samples,
            "anomaly_limit": args.anomaly_limit, "data_dir": args.data_dir}


def measure_cached(args: argparse.Namespace, run_dir: Path, data: dict[str, vaekit.ImageDataset]) -> dict[str, Any]:
    """``measure_cell``, or the kept result of the same measurement."""
    settings = measure_settings(args, run_dir)
    key = hashlib.sha256(settings["run"].encode()).hexdigest()[:12]
    path = args.out / "measurements" / f"{run_dir.name}-{key}.json"
    if path.is_file():
        kept = read_json(path)
        if kept.get("settings") == settings:
            return kept["row"]
    row = measure_cell(args, run_dir, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"settings": settings, "row": row})
    return row


def measure_cell(args: argparse.Namespace, run_dir: Path, data: dict[str, vaekit.ImageDataset]) -> dict[str, Any]:
    """Every measured number of one row of the table (fp32)."""
    run = vaekit.Run.open(run_dir, device=args.device, precision="fp32")
    model = vaekit.Inference(run.model, "fp32")
    likelihood = bounds.run_likelihood(run.config)
    started = time.perf_counter()
    result = bounds.evaluate_model(model, data["test_in"], likelihood, args.iw_samples, args.iw_images, seed=0)
    row: dict[str, Any] = dict(
        elbo=result.elbo, recon=result.recon, kl=result.kl, iwae=result.iwae, iw_samples=args.iw_samples,
        elbo_iw_images=result.elbo_iw_images, iw_images=result.iw_images,
        iwae_bits_per_dim=result.iwae_bits_per_dim, elbo_bits_per_dim=result.elbo_bits_per_dim,
        active_units=result.active_units, kl_per_dim=[round(v, 3) for v in result.kl_per_dim],
        test_images=result.n_images, evaluate_seconds=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    quality = embedding.embedding_quality(model, data["probe_train"], data["test_in"], args.k)
    row.update(knn=quality.knn_accuracy, linear=quality.linear_accuracy, pca_knn=quality.pca_knn_accuracy,
               pca_linear=quality.pca_linear_accuracy, probe_seconds=round(time.perf_counter() - started, 1))
    if args.holdout:
        started = time.perf_counter()
        protocol = anomaly.anomaly_protocol(model, data["test_all"], [args.holdout], likelihood,
                                            args.anomaly_iw_samples)
        row.update({f"auroc_{name}": value for name, value in protocol.auroc.items()})
        row.update(anomaly_images=len(protocol.dataset), anomaly_seconds=round(time.perf_counter() - started, 1))
    return row


def load_data(args: argparse.Namespace) -> dict[str, vaekit.ImageDataset]:
    train_set = vaekit.load_dataset("fashion-mnist", "train", data_dir=args.data_dir)
    test_all = vaekit.load_dataset("fashion-mnist", "test", data_dir=args.data_dir)
    holdout = [args.holdout] if args.holdout else []
    train_in = train_set.exclude_classes(holdout) if holdout else train_set
    if args.train_limit is not None:
        train_in = train_in.subset(torch.arange(min(args.train_limit, len(train_in))))
    probe_train = train_in.subset(torch.arange(min(args.probe_train, len(train_in))))
    test_in = test_all.exclude_classes(holdout) if holdout else test_all
    if args.anomaly_limit is not None:
        test_all = test_all.subset(torch.arange(min(args.anomaly_limit, len(test_all))))
    return {"train_in": train_in, "probe_train": probe_train, "test_all": test_all, "test_in": test_in}


# ----------------------------------------------------------------------------- output


def write_results(results_dir: Path, data: dict[str, Any]) -> list[Path]:
    """``results.json`` and ``results.csv`` (raw), then the page and figure rendered from the JSON."""
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = results_dir / "results.json", results_dir / "results.csv"
    write_json(json_path, data)
    buffer = io.StringIO()
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()} for row in data["rows"]]
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(csv_path, buffer.getvalue())
    return [*render(results_dir), json_path, csv_path]


def render(results_dir: Path) -> list[Path]:
    """Write ``results.md`` and the rate-distortion PNG from ``results.json`` alone."""
    json_path = results_dir / "results.json"
    if not json_path.is_file():
        raise SystemExit(f"{json_path}: not found; run the grid first (--render-only rewrites an existing page)")
    data = read_json(json_path)
    md_path, png_path = results_dir / "results.md", results_dir / quality_report.FIGURE_FILE
    atomic_write_text(md_path, quality_report.render_markdown(data))
    quality_report.write_figure(data, png_path)
    return [md_path, png_path]


def build_meta(args: argparse.Namespace, data: dict[str, vaekit.ImageDataset], rows: list[dict[str, Any]],
               started: float) -> dict[str, Any]:
    device = resolve_device(args.device)
    return {
        "command": command_line(args), "epochs": args.epochs,
        "seeds": sorted({seed for _, _, seed in planned_runs(args)}), "holdout": args.holdout,
        "train_limit": args.train_limit, "iw_samples": args.iw_samples, "iw_images": args.iw_images,
        "anomaly_iw_samples": args.anomaly_iw_samples, "anomaly_limit": args.anomaly_limit, "k": args.k,
        "probe_train": len(data["probe_train"]), "train_images": len(data["train_in"]),
        "test_images": len(data["test_in"]), "machine": machine_name(device), "device": device.type,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "vaekit": vaekit.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_minutes": round((time.perf_counter() - started) / 60, 2),
        "train_seconds": {row["run"]: row["train_loop_seconds"] for row in rows},
        "keras_anchor": quality_report.keras_anchor(REPO / "benchmarks" / "results"),
        "train_settings": train_settings(args),
    }


def train_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe every run of the grid is trained with, as results.md states it."""
    config = cell_config(args, *args.grid[0], args.seeds[0])
    recipe = config.comparable()  # init as it resolves for fashion28, so the page names the scheme used
    return {**{key: recipe[key] for key in RECIPE_KEYS}, "overrides": args.train_settings}


def run_grid(args: argparse.Namespace, data: dict[str, vaekit.ImageDataset]) -> list[dict[str, Any]]:
    rows = []
    trained = train_all_at_once(args) if args.jobs > 1 else {}
    for latent, beta, seed in planned_runs(args):
        cell_started = time.perf_counter()
        run_dir, timing = train_cell(args, latent, beta, seed, trained)
        row = {"latent_dim": latent, "beta": beta, "seed": seed, "epochs": args.epochs,
               "train_images": len(data["train_in"]), "run": _repo_path(run_dir), **timing}
        row.update(measure_cached(args, run_dir, data))
        row["cell_seconds"] = round(time.perf_counter() - cell_started, 1)
        rows.append(row)
        print(f"latent {latent:2d} beta {beta:g} seed {seed}: -ELBO {row['elbo']:.1f}  IWAE {row['iwae']:.1f}  "
              f"AU {row['active_units']}  kNN {row['knn']:.3f} (PCA {row['pca_knn']:.3f})  "
              f"[{row['cell_seconds']:.0f} s{', reused run' if row['reused_run'] else ''}]", flush=True)
    return rows


# ----------------------------------------------------------------------------- merging with an earlier page

# What makes two parts' rows one table: the protocol they were trained and measured with.
MERGED_SETTINGS = ("epochs", "holdout", "train_limit", "iw_samples", "iw_images", "anomaly_iw_samples",
                   "anomaly_limit", "k", "probe_train", "train_images", "test_images", "train_settings")


def previous_results(args: argparse.Namespace) -> dict[str, Any]:
    """The ``results.json`` that ``--merge`` adds to (read before any training, so a bad one costs nothing)."""
    path = args.results_dir / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; --merge adds to an existing results.json (run without --merge first)")
    previous = read_json(path)
    if not isinstance(previous, dict) or not isinstance(previous.get("meta"), dict) or \
            not isinstance(previous.get("rows"), list):
        raise SystemExit(f"{path}: not a results.json of this script (no meta and rows)")
    return previous


def check_mergeable(path: Path, previous: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse to merge rows made with another protocol, naming the first setting that differs."""
    for key in MERGED_SETTINGS:
        if previous.get(key) != settings[key]:
            raise SystemExit(f"{path}: its rows were made with {key} {previous.get(key)!r}, this command's with "
                             f"{settings[key]!r}; --merge joins only rows made the same way")


def merge_results(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s rows plus ``previous``'s rows of other runs; ``meta["parts"]`` says which command made which."""
    measured_now = {quality_report.run_key(row) for row in new["rows"]}
    kept = [row for row in previous["rows"] if quality_report.run_key(row) not in measured_now]
    rows = sorted(kept + new["rows"], key=lambda r: (r["latent_dim"], r["beta"], r["seed"]))
    earlier = [{**part, "runs": [key for key in part["runs"] if key not in measured_now]}
               for part in quality_report.parts(previous["meta"], previous["rows"])]
    parts = [part for part in earlier if part["runs"]]
    provenance = {key: new["meta"][key] for key in quality_report.PART_KEYS}
    parts.append({**provenance, "runs": [quality_report.run_key(row) for row in new["rows"]]})
    train_seconds = {row["run"]: row["train_loop_seconds"] for row in rows}
    meta = {**new["meta"], "parts": parts, "train_seconds": train_seconds,
            "seeds": sorted({row["seed"] for row in rows}),
            "wall_minutes": round(sum(part["wall_minutes"] for part in parts), 2)}
    return {"meta": meta, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()  # a kill saves the running cell, as Ctrl-C does; the same command resumes it
    if args.render_only:
        paths = render(args.results_dir)
    else:
        started = time.perf_counter()
        previous = previous_results(args) if args.merge else None
        data = load_data(args)
        if previous is not None:
            settings = build_meta(args, data, [], started)
            check_mergeable(args.results_dir / "results.json", previous["meta"], settings)
        try:
            rows = run_grid(args, data)
        except TrainingInterrupted as stop:
            print(f"model_quality: interrupted; {stop.run_dir} was saved: run the same command to resume the grid",
                  file=sys.stderr)
            return 130
        results = {"meta": build_meta(args, data, rows, started), "rows": rows}
        paths = write_results(args.results_dir, merge_results(previous, results) if previous else results)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
