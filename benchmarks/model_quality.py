"""The model-quality table: fashion28 on the real Fashion-MNIST, over latent size and beta.

For each cell (latent_dim, beta) and seed it trains the ``fashion28`` VAE with
the project's defaults (``vaekit.TrainConfig``: Adam 1e-3, batch 128, the
Bernoulli likelihood of the seed model) with one class held out of training
(``--holdout``, default Bag), then measures on the test split:

* -ELBO, reconstruction and KL over the test images of the nine training
  classes; the IWAE bound with K importance samples on the first
  ``--iw-images`` of them (and the -ELBO of exactly those images);
* active latent units (variance over the data of E[z|x] above 0.01);
* k-NN and linear-probe label accuracy of z_mean against PCA with as many
  components (probes fitted on ``--probe-train`` training images of the nine
  classes, scored on the nine-class test images);
* AUROC of the held-out class against the other test images for each
  anomaly score of :mod:`vaekit.evaluation`;
* training time (the training loop only, and the whole ``train`` call).

It writes ``results.md`` (the tables, with the exact command), ``results.json``
and ``results.csv`` (raw numbers) into ``--results-dir`` (default ``docs``).
Runs go to ``--out`` (default ``runs/model-quality``); a finished run with the
same settings is reused rather than retrained, so the table can be extended
cell by cell. The full grid (3 latent sizes x 4 betas, 10 epochs)::

    python benchmarks/model_quality.py --epochs 10

A quick subset::

    python benchmarks/model_quality.py --cells 2:1 8:1 32:1 2:2 2:3 2:5 --epochs 1
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import vaekit
from vaekit.analysis import anomaly, bounds, embedding
from vaekit.files import write_json
from vaekit.models.pretrained import read_config
from vaekit.runs.run import read_metrics
from vaekit.training import train
from vaekit.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="where models train and are measured (default: auto)")
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--cells", nargs="+", default=None, metavar="LATENT:BETA",
                        help="explicit cells instead of the latent-dims x betas grid, e.g. 2:1 8:1")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout", default="Bag", help="class held out of training (anomaly protocol)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: vaekit's search order)")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the IWAE bound")
    parser.add_argument("--iw-images", default="100", help="test images for the IWAE bound, or 'all'")
    parser.add_argument("--anomaly-iw-samples", type=int, default=16, help="K of the IWAE-based anomaly scores")
    parser.add_argument("--anomaly-limit", type=int, default=None,
                        help="score only the first N test images for AUROC (default: all 10,000)")
    parser.add_argument("--probe-train", type=int, default=10000, help="training images the probes are fitted on")
    parser.add_argument("-k", type=int, default=10, help="neighbours of the k-NN probe")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="train on the first N images only (quick checks of the script, not for the table)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "model-quality", help="where runs are kept")
    parser.add_argument("--results-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite results.md from the results.json already there (no training, no evaluation)")
    args = parser.parse_args(argv)
    args.iw_images = None if args.iw_images == "all" else int(args.iw_images)
    args.grid = [_cell(text) for text in args.cells] if args.cells else \
        [(latent, beta) for latent in args.latent_dims for beta in args.betas]
    return args


def _cell(text: str) -> tuple[int, float]:
    latent, _, beta = text.partition(":")
    try:
        return int(latent), float(beta)
    except ValueError:
        raise SystemExit(f"--cells: expected LATENT:BETA such as 8:1, got '{text}'") from None


def command_line(args: argparse.Namespace) -> str:
    """The exact command that reproduces these results (explicit options, repository-relative paths)."""
    parts = ["python", "benchmarks/model_quality.py"]
    parts += ["--cells", *[f"{latent}:{beta:g}" for latent, beta in args.grid]]
    parts += ["--epochs", str(args.epochs), "--seeds", *map(str, args.seeds), "--holdout", args.holdout]
    parts += ["--iw-samples", str(args.iw_samples), "--iw-images", str(args.iw_images or "all")]
    parts += ["--anomaly-iw-samples", str(args.anomaly_iw_samples), "--probe-train", str(args.probe_train),
              "-k", str(args.k)]
    if args.anomaly_limit is not None:
        parts += ["--anomaly-limit", str(args.anomaly_limit)]
    if args.train_limit is not None:
        parts += ["--train-limit", str(args.train_limit)]
    return shlex.join(parts)


# ----------------------------------------------------------------------------
# One cell


def train_cell(args: argparse.Namespace, latent: int, beta: float, seed: int) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) one run; return its directory and timing."""
    config = TrainConfig(device=args.device, latent_dim=latent, beta=beta, epochs=args.epochs, seed=seed, data_dir=args.data_dir,
                         exclude_classes=[args.holdout], train_limit=args.train_limit,
                         test_limit=2000)  # only the per-epoch metrics.csv; the table uses the whole test split
    limit = f"-n{args.train_limit}" if args.train_limit else ""
    run_dir = args.out / f"z{latent}-beta{beta:g}-e{args.epochs}-s{seed}{limit}-no-{args.holdout.replace('/', '_')}"
    started = time.perf_counter()
    reused = _finished_run(run_dir, config)
    if not reused:
        if run_dir.exists():
            raise SystemExit(f"{run_dir}: exists but is not a finished run with these settings; remove it")
        train(config, out=run_dir, progress=False)
    metrics = read_metrics(run_dir)
    return run_dir, {
        "train_loop_seconds": round(sum(float(row["seconds"]) for row in metrics), 1),
        "train_call_seconds": None if reused else round(time.perf_counter() - started, 1),
        "reused_run": reused,
        "precision": read_config(run_dir)["resolved"]["precision"],
    }


def _finished_run(run_dir: Path, config: TrainConfig) -> bool:
    if not (run_dir / "config.json").is_file():
        return False
    saved = read_config(run_dir)
    keys = ("latent_dim", "beta", "epochs", "seed", "exclude_classes", "lr", "batch_size", "recon", "init",
            "train_limit")
    same = all(saved["train"].get(key) == getattr(config, key) for key in keys)
    return same and saved.get("status") == "complete"


def measure_cell(args: argparse.Namespace, run_dir: Path, data: dict[str, vaekit.ImageDataset]) -> dict[str, Any]:
    """Every number of one row of the table."""
    run = vaekit.Run.open(run_dir, device=args.device, precision="fp32")
    model = vaekit.Inference(run.model, "fp32")
    likelihood = bounds.run_likelihood(run.config)
    row: dict[str, Any] = {}
    started = time.perf_counter()
    result = bounds.evaluate_model(model, data["test_in"], likelihood, args.iw_samples, args.iw_images, seed=0)
    row.update(elbo=result.elbo, recon=result.recon, kl=result.kl, iwae=result.iwae,
               elbo_iw_images=result.elbo_iw_images, iw_images=result.iw_images,
               iwae_bits_per_dim=result.iwae_bits_per_dim, elbo_bits_per_dim=result.elbo_bits_per_dim,
               active_units=result.active_units, kl_per_dim=[round(v, 3) for v in result.kl_per_dim],
               test_images=result.n_images, evaluate_seconds=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    quality = embedding.embedding_quality(model, data["probe_train"], data["test_in"], args.k)
    row.update(knn=quality.knn_accuracy, linear=quality.linear_accuracy, pca_knn=quality.pca_knn_accuracy,
               pca_linear=quality.pca_linear_accuracy, probe_seconds=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    protocol = anomaly.anomaly_protocol(model, data["test_all"], [args.holdout], likelihood, args.anomaly_iw_samples)
    row.update({f"auroc_{name}": value for name, value in protocol.auroc.items()})
    row.update(anomaly_images=len(protocol.dataset), anomaly_seconds=round(time.perf_counter() - started, 1))
    return row


# ----------------------------------------------------------------------------
# Output


def write_results(args: argparse.Namespace, rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[Path]:
    from vaekit.files import atomic_write_text

    args.results_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, md_path = (args.results_dir / f"results.{ext}" for ext in ("json", "csv", "md"))
    write_json(json_path, {"meta": meta, "rows": rows})
    buffer = io.StringIO()
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()} for row in rows]
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(md_path, render_markdown(rows, meta))
    return [md_path, json_path, csv_path]


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def render_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """``docs/results.md``: how the numbers were made, then the two tables."""
    holdout, k, iw_k = meta["holdout"], meta["k"], meta["iw_samples"]
    iw_n = rows[0]["iw_images"]
    lines = [
        "# Model-quality results: fashion28 on Fashion-MNIST",
        "",
        "Generated by `benchmarks/model_quality.py`; do not edit by hand. Raw numbers: "
        "[`results.json`](results.json), [`results.csv`](results.csv). What every number means: "
        "[evaluation.md](evaluation.md).",
        "",
        "## How these numbers were made",
        "",
        "```",
        meta["command"],
        "```",
        "",
        "(plus `--data-dir DIR` where Fashion-MNIST is not in vaekit's search path; `--render-only` rewrites this "
        "page from `results.json`)",
        "",
        f"* **Model and training**: `fashion28`, the project's training defaults (Adam, lr 1e-3, batch 128, "
        f"`vaekit` init, Bernoulli likelihood = the seed's binary cross-entropy) for **{meta['epochs']} "
        f"epoch{'s' if meta['epochs'] != 1 else ''}**, **seed{'s' if len(meta['seeds']) > 1 else ''} "
        f"{', '.join(map(str, meta['seeds']))}**, on the {meta['train_images']:,} training images of the nine "
        f"classes other than **{holdout}** (held out for the anomaly protocol). Precision: "
        f"{', '.join(sorted(set(r['precision'] for r in rows)))}.",
        f"* **Test numbers** (-ELBO, recon, KL, IWAE, active units, probes) use the {rows[0]['test_images']:,} "
        f"test images of those nine classes. All bounds are in nats per image under the Bernoulli likelihood on "
        f"grey values, which is **not normalised** for non-binary pixels: they are bounds of the training loss, "
        f"not of -log p(x), and not comparable with published Fashion-MNIST likelihoods.",
        f"* **IWAE**: K = {iw_k} importance samples on the first {iw_n} of those test images (each costs K "
        f"decoder passes); \"-ELBO (same)\" is the -ELBO of exactly those images, so the gap between the two "
        f"is meaningful even though {iw_n} images give a noisy absolute level.",
        f"* **Probes**: k-NN (k = {k}) and logistic-regression label accuracy of z_mean, fitted on "
        f"{meta['probe_train']:,} training images, against PCA of the pixels with as many components as latent "
        f"units.",
        f"* **Anomaly AUROC**: the {holdout} test images against the other test images "
        f"({rows[0]['anomaly_images']:,} images in all), per score; 0.5 is chance. IWAE-based scores use "
        f"K = {meta['anomaly_iw_samples']}.",
        f"* **Machine**: {meta['machine']}; torch {meta['torch']}, {meta['threads']} threads. Wall time of the "
        f"whole script: {meta['wall_minutes']:.1f} min. Training time is the training loop alone (no per-epoch "
        f"evaluation).",
        "",
        "## Model quality",
        "",
        "| latent | beta | seed | -ELBO | recon | KL | IWAE | -ELBO (same) | IWAE bits/dim | active units "
        "| k-NN VAE | k-NN PCA | linear VAE | linear PCA | train s | train img/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['latent_dim']} | {r['beta']:g} | {r['seed']} | {_f(r['elbo'])} | {_f(r['recon'])} | {_f(r['kl'])} "
            f"| {_f(r['iwae'])} | {_f(r['elbo_iw_images'])} | {_f(r['iwae_bits_per_dim'], 4)} "
            f"| {r['active_units']}/{r['latent_dim']} | {_f(r['knn'], 3)} | {_f(r['pca_knn'], 3)} "
            f"| {_f(r['linear'], 3)} | {_f(r['pca_linear'], 3)} | {_f(r['train_loop_seconds'], 0)} "
            f"| {_f(images_per_second(r, meta), 0)} |")
    lines += [
        "",
        f"## Anomaly detection: AUROC of the held-out class ({holdout})",
        "",
        "| latent | beta | seed | -ELBO | reconstruction error | IWAE | complexity-corrected (Serrà et al.) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['latent_dim']} | {r['beta']:g} | {r['seed']} | {_f(r['auroc_neg_elbo'], 3)} "
                     f"| {_f(r['auroc_recon_error'], 3)} | {_f(r['auroc_iwae'], 3)} "
                     f"| {_f(r['auroc_complexity'], 3)} |")
    lines += ["", *throughput_notes(rows, meta), "",
              *completion_notes(parse_args(shlex.split(meta["command"])[2:]),
                                statistics.median(images_per_second(r, meta) for r in rows))]
    return "\n".join(lines).rstrip() + "\n"


def images_per_second(row: dict[str, Any], meta: dict[str, Any]) -> float:
    return meta["train_images"] * row["epochs"] / max(row["train_loop_seconds"], 1e-9)


def throughput_notes(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Say how far training times can be compared between rows."""
    speeds = [images_per_second(row, meta) for row in rows]
    if len(speeds) < 2 or max(speeds) < 1.3 * min(speeds):
        return []
    return [f"Training speed ranged from {min(speeds):.0f} to {max(speeds):.0f} images/s between rows whose "
            "training costs about the same: the machine was shared with other jobs, so the `train s` column "
            "measures that machine's load as much as the model, and is not comparable between rows."]


FULL_GRID = [(latent, beta) for latent in (2, 8, 32) for beta in (1.0, 2.0, 3.0, 5.0)]
FULL_TRAIN_IMAGES = 54000  # Fashion-MNIST training images of nine classes


def completion_notes(args: argparse.Namespace, speed: float | None = None) -> list[str]:
    """Say what is missing from the full protocol, and the command that adds it.

    ``speed`` (median training images/s measured) turns into a time estimate.
    """
    missing = [cell for cell in FULL_GRID if cell not in args.grid]
    default_epochs = TrainConfig().epochs
    if not missing and args.epochs >= default_epochs and args.train_limit is None:
        return []
    paragraphs = []
    if missing:
        paragraphs.append("This table is a **subset** of the 3 x 4 grid (latent 2, 8, 32 x beta 1, 2, 3, 5); "
                          "missing: " + ", ".join(f"latent {latent} beta {beta:g}" for latent, beta in missing) + ".")
    if args.epochs < default_epochs:
        paragraphs.append(
            f"The models trained for {args.epochs} epoch{'s' if args.epochs != 1 else ''}, not the project's "
            f"default {default_epochs}, to fit the time available on this machine. They are far from converged, "
            "and with one seed per cell the differences between rows mix the effect of the setting with "
            "run-to-run variation, which this table does not measure.")
    if args.train_limit is not None:
        paragraphs.append(f"Only the first {args.train_limit:,} training images (of the nine classes) were used, "
                          "to fit the time available; the full protocol trains on all of them.")
    command = f"python benchmarks/model_quality.py --epochs {default_epochs} --seeds {' '.join(map(str, args.seeds))}"
    estimate = ""
    if speed:
        hours = len(FULL_GRID) * default_epochs * FULL_TRAIN_IMAGES * len(args.seeds) / speed / 3600
        estimate = (f" At the median training speed measured here ({speed:.0f} images/s) its training alone "
                    f"takes about {hours:.0f} hours on this machine")
    paragraphs.append("The full grid with the default number of epochs (a finished run in `runs/model-quality` "
                      "with the same settings is reused, so an interrupted grid continues where it stopped; on a "
                      f"GPU add `--iw-images all` and drop `--anomaly-limit`).{estimate}:")
    notes = ["## Not measured yet"]
    for paragraph in paragraphs:
        notes += ["", paragraph]
    return notes + ["", "```", command, "```"]


# ----------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict[str, vaekit.ImageDataset]:
    train_set = vaekit.load_dataset("fashion-mnist", "train", data_dir=args.data_dir)
    test_all = vaekit.load_dataset("fashion-mnist", "test", data_dir=args.data_dir)
    train_in = train_set.exclude_classes([args.holdout])
    if args.train_limit is not None:
        train_in = train_in.subset(torch.arange(min(args.train_limit, len(train_in))))
    probe_train = train_in.subset(torch.arange(min(args.probe_train, len(train_in))))
    if args.anomaly_limit is not None:
        test_all = test_all.subset(torch.arange(min(args.anomaly_limit, len(test_all))))
    return {"train_in": train_in, "probe_train": probe_train, "test_all": test_all,
            "test_in": vaekit.load_dataset("fashion-mnist", "test", data_dir=args.data_dir)
            .exclude_classes([args.holdout])}


def render_only(args: argparse.Namespace) -> int:
    from vaekit.files import atomic_write_text, read_json

    saved = read_json(args.results_dir / "results.json")
    path = args.results_dir / "results.md"
    atomic_write_text(path, render_markdown(saved["rows"], saved["meta"]))
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_only(args)
    started = time.perf_counter()
    data = load_data(args)
    rows = []
    for seed in args.seeds:
        for latent, beta in args.grid:
            cell_started = time.perf_counter()
            run_dir, timing = train_cell(args, latent, beta, seed)
            row = {"latent_dim": latent, "beta": beta, "seed": seed, "epochs": args.epochs,
                   "run": os.path.relpath(run_dir, REPO), **timing}
            row.update(measure_cell(args, run_dir, data))
            row["cell_seconds"] = round(time.perf_counter() - cell_started, 1)
            rows.append(row)
            print(f"latent {latent:2d} beta {beta:g} seed {seed}: -ELBO {row['elbo']:.1f}  IWAE {row['iwae']:.1f}  "
                  f"AU {row['active_units']}  kNN {row['knn']:.3f} (PCA {row['pca_knn']:.3f})  "
                  f"AUROC iwae {row['auroc_iwae']:.3f} complexity {row['auroc_complexity']:.3f}  "
                  f"[{row['cell_seconds']:.0f} s]", flush=True)
    meta = {
        "command": command_line(args), "epochs": args.epochs, "seeds": args.seeds, "holdout": args.holdout,
        "iw_samples": args.iw_samples, "anomaly_iw_samples": args.anomaly_iw_samples, "k": args.k,
        "probe_train": len(data["probe_train"]), "train_images": len(data["train_in"]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "vaekit": vaekit.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    for path in write_results(args, rows, meta):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
