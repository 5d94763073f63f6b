"""Do candidate defaults reach the target on the seed model? fashion28, latent 2, beta 1, full length, several seeds.

Issue "Research-grade results", item 3: the seed model trained with vaekit's
defaults for 30 epochs must reach a test -ELBO of at most 256 nats, as the
mean of 3 seeds, on all 60,000 training images. This script trains each
``--variants`` entry (``default`` is ``vaekit.TrainConfig()`` as it is;
``batch_size=128,ema_decay=none`` overrides single fields) for ``--epochs``
with every ``--seeds`` seed, then scores every final model the same way: the
-ELBO on the whole test split with one posterior sample, seed 0
(:func:`vaekit.analysis.bounds.evaluate_model`), so that runs whose per-epoch
metrics used a test subset compare too.

Runs live in ``OUT/<variant>/seed<N>``. A finished run there is kept, an
interrupted one resumes (Ctrl-C or SIGTERM stops a run at a checkpoint), and a
finished run with the same settings in a ``--reuse`` folder (searched two
levels deep, for example ``build/pretrained``) is used instead of training.
``--no-train`` scores only what is finished and names the rest as not run,
so that variants with different numbers of seeds share one table.

Outputs: ``--json`` (default ``benchmarks/results/defaults_check.json``) and
the table rendered from it alone (same name, ``.md``): per variant the mean
and sd of the final test -ELBO over its seeds, the per-epoch test -ELBO of
every run, and the distance to the target and to the Keras anchor.

Usage::

    python benchmarks/defaults_check.py --variants default init=vaekit,batch_size=128,ema_decay=none \\
        lr_schedule=cosine --seeds 0 1 2 --jobs 2 --out build/defaults-check
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_quality
import quality_report
from pythae_reference import parse_variant, with_overrides

import vaekit
from vaekit.analysis.bounds import evaluate_model
from vaekit.errors import VaekitError
from vaekit.files import atomic_write_text, read_json, write_json
from vaekit.models.pretrained import read_config
from vaekit.runs.run import read_metrics
from vaekit.runtime import resolve_device, stop_on_sigterm
from vaekit.training.checkpoint import load_checkpoint
from vaekit.training.config import TrainConfig
from vaekit.training.series import TrainJob, member_state, train_jobs
from vaekit.training.trainer import TrainingInterrupted
from vaekit.training.tuning import machine_name

REPO = Path(__file__).resolve().parents[1]
TARGET_NATS = 256.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help="'default', or NAME=VALUE[,NAME=VALUE] TrainConfig overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(quality_report.FULL_SEEDS))
    parser.add_argument("--epochs", type=int, default=quality_report.FULL_EPOCHS)
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: vaekit's search order)")
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images (quick checks only)")
    parser.add_argument("--test-limit", type=int, default=None, help="first N test images (quick checks only)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "defaults-check")
    parser.add_argument("--reuse", type=Path, nargs="+", default=[], metavar="DIR",
                        help="folders searched (two levels deep) for finished runs with a variant's exact settings")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "defaults_check.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite the table from --json alone")
    parser.add_argument("--no-train", action="store_true",
                        help="score only the runs that are finished already (here or in --reuse); list the rest "
                             "as not run")
    args = parser.parse_args(argv)
    args.overrides = {variant: parse_variant(variant) for variant in args.variants}
    return args


def variant_config(args: argparse.Namespace, variant: str, seed: int) -> TrainConfig:
    base = TrainConfig(arch="fashion28", latent_dim=2, beta=1.0, epochs=args.epochs, seed=seed,
                       data_dir=args.data_dir, train_limit=args.train_limit, test_limit=args.test_limit,
                       device=args.device)
    return with_overrides(base, args.overrides[variant], f"defaults_check: error: --variants {variant}")


def run_dir(args: argparse.Namespace, variant: str, seed: int) -> Path:
    return args.out / variant.replace("=", "-").replace(",", "+") / f"seed{seed}"


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "benchmarks/defaults_check.py", "--variants", *args.variants,
             "--seeds", *map(str, args.seeds), "--epochs", str(args.epochs)]
    for option in ("train_limit", "test_limit"):
        if getattr(args, option) is not None:
            parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.reuse:
        parts += ["--reuse", *map(model_quality._repo_path, args.reuse)]
    parts += ["--no-train"] if args.no_train else []
    return shlex.join(parts + ["--out", model_quality._repo_path(args.out)])


# ----------------------------------------------------------------------------- training (or reuse)


def plan(args: argparse.Namespace) -> tuple[dict[tuple[str, int], Path], list[TrainJob]]:
    """Where each (variant, seed) run is, and the trainings still to do (new or resumed)."""
    where, todo = {}, []
    for variant in args.variants:
        for seed in args.seeds:
            config, folder = variant_config(args, variant, seed), run_dir(args, variant, seed)
            state = member_state(folder, config, "defaults check")
            reused = model_quality.find_reusable(args.reuse, config) if state == "new" else None
            if args.no_train and reused is None and state != "complete":
                continue  # left out, and named as not run on the page
            where[variant, seed] = reused or folder
            if reused is None and state != "complete":
                todo.append(TrainJob(config, folder, resume=state == "resume"))
    return where, todo


def score(folder: Path, test_set: vaekit.ImageDataset, device: torch.device) -> dict[str, Any]:
    """The final model's test scores and the run's per-epoch history."""
    model = vaekit.load(folder, device=device)
    scores = evaluate_model(model, test_set, iw_samples=1, iw_images=1, seed=0)
    history = read_metrics(folder)
    config = read_config(folder)
    recipe = TrainConfig.from_dict(config["train"]).comparable()  # as trained, a setting it predates included
    trained = {}
    if config["train"].get("ema_decay") is not None:  # the saved model is the average: score the trained weights too
        model.load_state_dict(load_checkpoint(folder)["model"])
        trained_scores = evaluate_model(model, test_set, iw_samples=1, iw_images=1, seed=0)
        trained = {"trained_weights_test_elbo": round(trained_scores.elbo, 3)}
    return {
        "run": model_quality._repo_path(folder), "test_elbo": round(scores.elbo, 3), "recon": round(scores.recon, 3),
        "kl": round(scores.kl, 3), "active_units": scores.active_units, "test_images": scores.n_images,
        "epoch_test_elbo": [round(float(row["test_elbo"]), 2) for row in history],
        "epoch_test_images": config["train"].get("test_limit") or config["dataset"]["test_size"],
        "collapsed": any(int(float(row.get("collapsed") or 0)) for row in history),
        "train_seconds": round(sum(float(row["seconds"]) for row in history), 1),
        "images_per_s": round(statistics.median(float(row["images_per_s"]) for row in history), 1),
        "precision": config["resolved"]["precision"], "lr_schedule": recipe["lr_schedule"],
        "settings": f"init {recipe['init']}, batch {recipe['batch_size']}, {recipe['lr_schedule']} rate, "
                    f"EMA {recipe['ema_decay'] if recipe['ema_decay'] else 'none'}, "
                    f"clip {format(recipe['grad_clip'], 'g') if recipe['grad_clip'] else 'none'}",
        "trained_on": config["resolved"]["speed"].get("key", "")
        .split("|")[0],
        **trained,
    }


# ----------------------------------------------------------------------------- the table


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for variant in dict.fromkeys(row["variant"] for row in rows):
        values = [row["test_elbo"] for row in rows if row["variant"] == variant]
        mean = statistics.fmean(values)
        out.append({"variant": variant, "seeds": [r["seed"] for r in rows if r["variant"] == variant],
                    "mean": round(mean, 2), "sd": round(statistics.stdev(values), 2) if len(values) > 1 else None,
                    "meets_target": len(values) >= 3 and mean <= TARGET_NATS})
    return out


def render_markdown(record: dict[str, Any]) -> str:
    meta, rows = record["meta"], record["rows"]
    anchor = meta["keras_anchor"]
    lines = [
        f"fashion28 (latent 2, beta 1), {meta['epochs']} epochs, {meta['train_images']:,} training images; "
        f"test -ELBO of the final model on {meta['test_images']:,} test images, one posterior sample "
        f"(nats, lower is better). Target: at most {TARGET_NATS:g} as the mean of 3 seeds. "
        f"Keras anchor: {anchor['test_elbo']:.2f}. Scored on {meta['machine']}, {meta['date']}.",
        "",
        "| variant | settings | seeds | test -ELBO (mean ± sd) | per seed | vs target | vs Keras anchor |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for cell in record["summary"]:
        mine = [r for r in rows if r["variant"] == cell["variant"]]
        sd = f" ± {cell['sd']:.2f}" if cell["sd"] is not None else ""
        per_seed = ", ".join(f"{r['test_elbo']:.2f} (s{r['seed']})" for r in mine)
        lines.append(f"| {cell['variant']} | {mine[0].get('settings', '')} | {len(mine)} | {cell['mean']:.2f}{sd} "
                     f"| {per_seed} |"
                     f" {cell['mean'] - TARGET_NATS:+.2f} | {cell['mean'] - anchor['test_elbo']:+.2f} |")
    lines += ["", "Per-epoch test -ELBO of each run (from its `metrics.csv`; the last five epochs):", ""]
    for r in rows:
        tail = ", ".join(f"{v:.1f}" for v in r["epoch_test_elbo"][-5:])
        lines.append(f"- {r['variant']}, seed {r['seed']} (`{r['run']}`, trained on {r['trained_on'] or '?'}, "
                     f"{r['precision']}): {tail}")
    averaged = [r for r in rows if "trained_weights_test_elbo" in r]
    if averaged:
        lines += ["", "Runs with `ema_decay` save the moving average of their weights; the table scores the average. "
                      "The trained weights of the same runs, scored the same way:", ""]
        lines += [f"- {r['variant']}, seed {r['seed']}: average {r['test_elbo']:.2f}, trained weights "
                  f"{r['trained_weights_test_elbo']:.2f} ({r['test_elbo'] - r['trained_weights_test_elbo']:+.2f})"
                  for r in averaged]
    lines += at_three_epochs(rows)
    if meta.get("not_run"):
        lines += ["", f"Not run (`--no-train` scored only finished runs): {'; '.join(meta['not_run'])}."]
    lines += ["", f"Command: `{meta['command']}`"]
    return "\n".join(lines) + "\n"


def at_three_epochs(rows: list[dict[str, Any]]) -> list[str]:
    """Each constant-rate variant's epoch-3 test -ELBO: its first three epochs are a 3-epoch run of it."""
    lines = []
    for variant in dict.fromkeys(r["variant"] for r in rows if r.get("lr_schedule") == "constant"):
        values = [r["epoch_test_elbo"][2] for r in rows if r["variant"] == variant and len(r["epoch_test_elbo"]) > 2]
        if values:
            sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            lines.append(f"- {variant}: {statistics.fmean(values):.2f}{sd} ({len(values)} seed{'s' * (len(values) != 1)}: "
                         f"{', '.join(f'{v:.2f}' for v in values)})")
    if not lines:
        return []
    return ["", "At 3 epochs: with a constant rate a run's first three epochs are a 3-epoch run, so the epoch-3 "
                "test -ELBO of each such run (its `metrics.csv`, on the test images it evaluated per epoch) is "
                "its 3-epoch result:", "", *lines]


def render(path: Path) -> Path:
    page = path.with_suffix(".md")
    atomic_write_text(page, render_markdown(read_json(path)))
    return page


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()  # a kill saves the running member, as Ctrl-C does
    if args.render_only:
        print(f"wrote {render(args.json)}")
        return 0
    started = time.perf_counter()
    try:
        where, todo = plan(args)
    except VaekitError as error:
        print(f"defaults_check: error: {error}", file=sys.stderr)
        return 1
    if todo:
        print(f"training {len(todo)} runs, {args.jobs} at a time", flush=True)
        try:
            train_jobs(todo, args.jobs)
        except TrainingInterrupted as stop:
            print(f"interrupted: {stop}; run the same command to resume", file=sys.stderr)
            return 130
    if not where:
        print(f"defaults_check: error: --no-train: no finished run of {', '.join(args.variants)} in "
              f"{model_quality._repo_path(args.out)} or --reuse", file=sys.stderr)
        return 1
    device = resolve_device(args.device)
    test_set = vaekit.load_dataset("fashion-mnist", "test", data_dir=args.data_dir)
    if args.test_limit is not None:
        test_set = test_set.subset(range(args.test_limit))
    rows = [{"variant": variant, "seed": seed, **score(folder, test_set, device)}
            for (variant, seed), folder in where.items()]
    meta = {"command": command_line(args), "epochs": args.epochs,
            "train_images": args.train_limit or quality_report.FULL_TRAIN_IMAGES, "test_images": len(test_set),
            "machine": machine_name(device), "torch": torch.__version__, "vaekit": vaekit.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_minutes": round((time.perf_counter() - started) / 60, 2),
            "keras_anchor": quality_report.keras_anchor(REPO / "benchmarks" / "results"),
            "not_run": [f"{variant}, seed {seed}" for variant in args.variants for seed in args.seeds
                        if (variant, seed) not in where]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, {"meta": meta, "summary": summary(rows), "rows": rows})
    print(render(args.json).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
