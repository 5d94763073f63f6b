"""Train a beta family until every member's test -ELBO stops improving; publish rate, distortion and -ELBO per beta.

Issue "Research-grade results", item 4: the CelebA family of the module docs
(``nn3-128``, latent 256, beta 1, 2, 3 and 5) on the 3,000-image sample
(2,220 official-train images; the sample has no test-split images, so the
780 val images are the test split). The family grows in rounds: each round
calls :func:`vaekit.training.family.train_family` with ``--round-epochs``
more epochs, which extends every member from its checkpoint. It stops once
every member has converged, at ``--max-epochs``, or on Ctrl-C / SIGTERM
(the running member is saved; the same command resumes).

A member has *converged* when its best test -ELBO is at least ``--patience``
epochs old. The page reports each member's last epoch and its best one.

Outputs: ``--results`` (default ``docs/celeba_family.json``) and the page
rendered from it alone, the same name with ``.md`` (``--render-only`` redoes
just that). Both hold numbers only: CelebA's terms forbid redistributing its
images or anything made from them, so neither faces nor figures are written
outside ``--out``. The runs (and their ``family.html``) stay in ``--out``.

Usage::

    python benchmarks/family_convergence.py --data-dir ../shared/data/celeba-sample --out build/celeba-family

A quick check on Fashion-MNIST::

    python benchmarks/family_convergence.py --dataset fashion-mnist --arch fashion28 --betas 1 2 \\
        --train-limit 500 --round-epochs 1 --max-epochs 2 --out /tmp/fam --results /tmp/fam.json
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pythae_reference import parse_variant, with_overrides

import vaekit
from vaekit.errors import VaekitError
from vaekit.files import atomic_write_text, read_json, write_json
from vaekit.models.pretrained import read_config
from vaekit.runs.run import read_metrics
from vaekit.runtime import resolve_device, stop_on_sigterm
from vaekit.training.config import (
    SETTINGS_BEFORE_THEY_EXISTED,
    TrainConfig,
    settings_since,
)
from vaekit.training.family import (
    DOCS_BETAS,
    FamilyInterrupted,
    member_name,
    train_family,
)
from vaekit.training.tuning import machine_name

REPO = Path(__file__).resolve().parents[1]
#: Settings of the family shown on the page (the rest are vaekit's defaults).
SHOWN_SETTINGS = ("batch_size", "lr", "lr_schedule", "recon", "init", "ema_decay", "grad_clip", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="celeba")
    parser.add_argument("--arch", default="nn3-128")
    parser.add_argument("--betas", type=float, nargs="+", default=list(DOCS_BETAS))
    parser.add_argument("--data-dir", default=None, help="the dataset's folder (default: the dataset's own)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-settings", default=None, metavar="NAME=VALUE[,NAME=VALUE]",
                        help="more TrainConfig fields for every member, e.g. init=vaekit,ema_decay=none")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images (quick runs)")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--round-epochs", type=int, default=5, help="epochs added to every member per round")
    parser.add_argument("--max-epochs", type=int, default=100, help="stop extending the family here")
    parser.add_argument("--patience", type=int, default=5,
                        help="a member has converged when its best test -ELBO is this many epochs old")
    parser.add_argument("--out", type=Path, default=Path("build/celeba-family"), help="the family directory")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "celeba_family.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from --results alone")
    args = parser.parse_args(argv)
    args.train_overrides = parse_variant(args.train_settings, "--train-settings") if args.train_settings else {}
    for name in ("round_epochs", "max_epochs", "patience"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1")
    return args


def base_config(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(dataset=args.dataset, arch=args.arch, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, train_limit=args.train_limit, test_limit=args.test_limit,
                         data_dir=args.data_dir, device=args.device)
    return with_overrides(config, args.train_overrides, "family_convergence: error: --train-settings")


def where(path: Path | str) -> str:
    """``path`` relative to the repository when inside it, else as given."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces (or continues) the family, with repository-relative paths."""
    parts = ["python", "benchmarks/family_convergence.py", "--dataset", args.dataset, "--arch", args.arch,
             "--betas", *[f"{beta:g}" for beta in args.betas], "--batch-size", str(args.batch_size),
             "--lr", f"{args.lr:g}", "--seed", str(args.seed), "--round-epochs", str(args.round_epochs),
             "--max-epochs", str(args.max_epochs), "--patience", str(args.patience), "--out", where(args.out)]
    if args.data_dir:
        parts += ["--data-dir", where(args.data_dir)]
    if args.train_settings:
        parts += ["--train-settings", args.train_settings]
    for option in ("train_limit", "test_limit"):
        if getattr(args, option) is not None:
            parts += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return shlex.join(parts)


# ----------------------------------------------------------------------------- reading the members


def member_record(run_dir: Path, beta: float, patience: int) -> dict[str, Any] | None:
    """One member's history and summary from its ``metrics.csv`` (None before its first epoch)."""
    if not (run_dir / "metrics.csv").is_file():
        return None
    rows = read_metrics(run_dir)
    if not rows:
        return None
    history = [{"epoch": int(r["epoch"]), "elbo": float(r["test_elbo"]), "recon": float(r["test_recon"]),
                "kl": float(r["test_kl"]), "train_elbo": float(r["train_recon"]) + float(r["train_kl"]),
                "active_units": int(r["active_units"]),
                "seconds": float(r["seconds"])} for r in rows]
    best = min(history, key=lambda h: h["elbo"])
    last = history[-1]
    return {
        "name": run_dir.name, "beta": beta, "epochs": last["epoch"], "best_epoch": best["epoch"],
        "converged": last["epoch"] - best["epoch"] >= patience,
        "final": {k: last[k] for k in ("elbo", "recon", "kl", "train_elbo", "active_units")},
        "best": {k: best[k] for k in ("elbo", "recon", "kl")},
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "history": history,
    }


def read_members(args: argparse.Namespace) -> list[dict[str, Any]]:
    members = []
    for beta in sorted(args.betas):
        record = member_record(args.out / member_name(args.arch, beta), beta, args.patience)
        if record is not None:
            members.append(record)
    return members


def all_converged(members: list[dict[str, Any]], betas: list[float]) -> bool:
    return len(members) == len(betas) and all(m["converged"] for m in members)


# ----------------------------------------------------------------------------- training in rounds


def grow(args: argparse.Namespace, after_round: Callable[[], None]) -> bool:
    """Extend the family round by round, calling ``after_round`` after each one.

    Returns False when a round was interrupted (the same command resumes).
    """
    base = base_config(args)
    while True:
        members = read_members(args)
        if all_converged(members, args.betas):
            return True
        epochs = [m["epochs"] for m in members] + [0] * (len(args.betas) - len(members))
        if min(epochs) >= args.max_epochs:
            return True
        # The next round's end, and never fewer epochs than a member already has.
        target = max(min(args.max_epochs, (min(epochs) // args.round_epochs + 1) * args.round_epochs), max(epochs))
        print(f"round: every member to {target} epochs", flush=True)
        try:
            train_family(base, betas=args.betas, out=args.out, epochs=target)
        except FamilyInterrupted as stop:
            print(f"interrupted: {stop.run_dir.name} was saved; run the same command to resume", flush=True)
            after_round()
            return False
        after_round()


# ----------------------------------------------------------------------------- the record and its page


def shown_settings(train: dict[str, Any]) -> dict[str, Any]:
    """The members' settings the page states, as they trained (``init`` resolved); empty before any member has run."""
    if not train:
        return {}
    trained = TrainConfig.from_dict(train).comparable()  # a setting the config lacks predates it
    return {k: trained[k] for k in SHOWN_SETTINGS}


def build_record(args: argparse.Namespace, members: list[dict[str, Any]], wall_seconds: float,
                 earlier: dict[str, Any] | None) -> dict[str, Any]:
    device = resolve_device(args.device)
    config = read_config(args.out / members[0]["name"]) if members else {}
    data = config.get("dataset", {})
    train = config.get("train", {})
    # Earlier calls on the same family directory count towards its wall time.
    before = (earlier or {}).get("meta", {})
    wall = wall_seconds + (float(before.get("wall_seconds", 0.0)) if before.get("out") == where(args.out) else 0.0)
    return {
        "meta": {
            "command": command_line(args), "out": where(args.out), "results_file": args.results.name, "dataset": args.dataset, "arch": args.arch,
            "latent_dim": config.get("latent_dim"), "image_shape": config.get("image_shape"),
            "train_images": args.train_limit or data.get("train_size"), "test_images": args.test_limit or data.get("test_size"),
            "settings": shown_settings(train),
            "precision": config.get("resolved", {}).get("precision"),
            "patience": args.patience, "max_epochs": args.max_epochs,
            "machine": machine_name(device), "device": device.type, "torch": torch.__version__,
            "vaekit": vaekit.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_seconds": round(wall, 1),
            "train_seconds": round(sum(m["train_seconds"] for m in members), 1),
        },
        "members": members,
    }


def render_markdown(record: dict[str, Any]) -> str:
    """The results page, from the record alone."""
    meta, members = record["meta"], record["members"]
    # A record written before a setting existed: its runs trained as a run saved then reads (no averaging).
    shown = {**meta["settings"], **{k: v for k, v in SETTINGS_BEFORE_THEY_EXISTED.items()
                                    if k in SHOWN_SETTINGS and k not in meta["settings"]}}
    settings = ", ".join(f"{k.replace('_', ' ')} {'none' if v is None else v}" for k, v in shown.items())
    lines = [
        f"# The {meta['arch']} beta family on {meta['dataset']}: rate, distortion and -ELBO per beta",
        "",
        f"Generated by `benchmarks/family_convergence.py` from `{meta['results_file']}`; do not edit by hand.",
    ]
    if meta["dataset"] == "celeba":
        lines += ["CelebA's terms forbid redistributing its images or anything made from them, so this page holds",
                  "numbers only. The runs' own pages (`family.html`, with faces) stay in the family directory."]
    lines += [
        "",
        f"- **Data:** {meta['train_images']:,} training images, {meta['test_images']:,} test images"
        f" ({'x'.join(map(str, meta['image_shape'] or []))}), latent {meta['latent_dim']}.",
        f"- **Settings:** {settings}; precision {meta['precision']}; every other setting is vaekit's default of the time.",
        f"- **Converged** means the best test -ELBO is at least {meta['patience']} epochs old"
        f" (the family stops growing at {meta['max_epochs']} epochs).",
        f"- **Machine:** {meta['machine']} ({meta['device']}), torch {meta['torch']}, vaekit {meta['vaekit']},"
        f" {meta['date']}.",
        f"- **Time:** {meta['train_seconds'] / 60:.1f} min of training, {meta['wall_seconds'] / 60:.1f} min wall"
        " (over every call).",
        f"- **Command** (run again to continue): `{continuation_command(meta['command'], meta['arch'], shown)}`",
        "",
        "All values are means over the test images in nats per image. Distortion is the reconstruction term,",
        "rate the KL; -ELBO is distortion + rate (beta = 1 for every member, so the members share one scale).",
        "",
        "| beta | member | epochs | converged | test -ELBO | distortion | rate (KL) | active units |"
        " best epoch | best test -ELBO | train -ELBO | train min |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in members:
        final, best = m["final"], m["best"]
        lines.append(
            f"| {m['beta']:g} | `{m['name']}` | {m['epochs']} | {'yes' if m['converged'] else 'no'} |"
            f" {final['elbo']:,.1f} | {final['recon']:,.1f} | {final['kl']:,.1f} | {final['active_units']} |"
            f" {m['best_epoch']} | {best['elbo']:,.1f} | {final['train_elbo']:,.1f} | {m['train_seconds'] / 60:.1f} |")
    lines += ["", *_reading(members)]
    return "\n".join(lines) + "\n"


def _reading(members: list[dict[str, Any]]) -> list[str]:
    """What the table shows, and what is missing."""
    if not members:
        return ["No member has finished an epoch yet."]
    lines = []
    by_beta = sorted(members, key=lambda m: m["beta"])
    shared = min(m["epochs"] for m in by_beta)
    at_shared = [m["history"][shared - 1] for m in by_beta]
    if any(m["epochs"] != shared for m in by_beta):
        lines += [f"The members have trained for different numbers of epochs; at epoch {shared}, which every member "
                  "has reached, they compare like this:", "",
                  "| beta | test -ELBO | distortion | rate (KL) |", "|---:|---:|---:|---:|"]
        lines += [f"| {m['beta']:g} | {h['elbo']:,.1f} | {h['recon']:,.1f} | {h['kl']:,.1f} |"
                  for m, h in zip(by_beta, at_shared)]
        lines.append("")
    rates = [h["kl"] for h in at_shared]
    if len(by_beta) > 1:
        falls = all(a > b for a, b in itertools.pairwise(rates))
        lines.append(f"- **Rate against beta** (epoch {shared}): the KL {'falls' if falls else 'does not fall monotonically'}"
                     f" from {rates[0]:,.1f} (beta {by_beta[0]['beta']:g}) to {rates[-1]:,.1f}"
                     f" (beta {by_beta[-1]['beta']:g}) nats, and the distortion goes from {at_shared[0]['recon']:,.1f}"
                     f" to {at_shared[-1]['recon']:,.1f}.")
    open_members = [m for m in by_beta if not m["converged"]]
    if open_members:
        names = ", ".join(f"`{m['name']}` (epoch {m['epochs']}, best at {m['best_epoch']})" for m in open_members)
        lines.append(f"- **Not converged yet:** {names}. Running the command again continues them.")
    else:
        lines.append("- **Every member has converged.**")
    return lines


def write_results(path: Path, record: dict[str, Any]) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return [path, render(path)]


#: Settings the command passes through ``--train-settings`` (the others are options of their own).
PINNED_BY_TRAIN_SETTINGS = ("lr_schedule", "recon", "init", "ema_decay", "grad_clip")


def continuation_command(command: str, arch: str, shown: dict[str, Any]) -> str:
    """The recorded command, with ``--train-settings`` for each setting whose default has changed since.

    A family trained before a default changed continues only with the settings it was trained with;
    the recorded command named only what differed from the defaults of its time.
    """
    words = shlex.split(command)
    given = parse_variant(words[words.index("--train-settings") + 1]) if "--train-settings" in words else {}
    changed = settings_since(shown, arch, [k for k in PINNED_BY_TRAIN_SETTINGS if k in shown])
    stale = {k: v for k, v in changed.items() if k not in given}
    if not stale:
        return command
    pinned = ",".join(f"{k}={'none' if v is None else v}" for k, v in {**given, **stale}.items())
    if "--train-settings" in words:
        words[words.index("--train-settings") + 1] = pinned
    else:
        words += ["--train-settings", pinned]
    return shlex.join(words)


def render(path: Path) -> Path:
    page = path.with_suffix(".md")
    atomic_write_text(page, render_markdown(read_json(path)))
    return page


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()  # a kill saves the running member, as Ctrl-C does
    try:
        if args.render_only:
            paths = [render(args.results)]
        else:
            started = time.perf_counter()
            earlier = read_json(args.results) if args.results.is_file() else None

            def publish() -> list[Path]:
                record = build_record(args, read_members(args), time.perf_counter() - started, earlier)
                return write_results(args.results, record)

            finished = grow(args, after_round=publish)
            paths = publish()
            if not finished:
                print("family_convergence: the family is not finished; the results so far are written")
    except VaekitError as error:
        print(f"family_convergence: error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
