"""Retrain and repackage the pretrained models shipped in ``src/vaekit/zoo/weights/``.

    python scripts/build_pretrained.py            # train what is missing, then package (make pretrained)
    python scripts/build_pretrained.py train      # only train (resumes interrupted runs)
    python scripts/build_pretrained.py package    # only package the finished runs

The recipe is vaekit's defaults of the time the set was trained (``--init
vaekit --batch-size 128 --ema none``, :data:`RECIPE`; today's defaults train a
better model, see docs/training.md) for 30 epochs on all 60,000 Fashion-MNIST
training images: the report's model (``fashion28``, latent 2) at beta 1, 2, 3
and 5 (one ``train-family``), plus latent 16 at beta 1. Runs go to
``build/pretrained/`` and resume when interrupted; about an hour each on 2
CPU cores, a few minutes each on a GPU. ``--jobs N`` trains N at a time
(``make pretrained JOBS=2``; see ``benchmarks/parallel_runs.py``).

Packaging a finished run stores its weights in fp16 when that moves the test
-ELBO by less than 0.1 nats (else fp32), scores the stored weights on the full
test set (ELBO, IWAE, active units), saves the class means, and writes the
model card (``card.json``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import vaekit
from vaekit.analysis.bounds import Evaluation, evaluate_run
from vaekit.analysis.explorer import Explorer
from vaekit.cli import main as vaekit_main
from vaekit.errors import VaekitError
from vaekit.files import read_json, write_json
from vaekit.runs import Run, read_metrics
from vaekit.training import TrainConfig
from vaekit.training.config import options_since
from vaekit.training.family import member_name
from vaekit.training.series import TrainJob, member_state, train_jobs
from vaekit.training.trainer import TrainingInterrupted
from vaekit.zoo import CARD_FILE, WEIGHTS_DIR

EPOCHS = 30
#: The shipped set's settings besides epochs, beta and latent size: the defaults when it was trained.
RECIPE = {"init": "vaekit", "batch_size": 128, "ema_decay": None, "grad_clip": None}
#: The options that give :data:`RECIPE` under today's defaults (the cards' commands name them).
RECIPE_FLAGS = tuple(options_since(RECIPE, "fashion28"))
FAMILY_BETAS = (1, 2, 3, 5)
FP16_TOLERANCE = 0.1  # nats of test -ELBO the fp16 copy may move
IW_SAMPLES, IW_IMAGES = 1000, 200
EVAL_SEED = 0
TEST_LIMIT: int | None = None  # score on the whole test split (tests cut it)


@dataclass(frozen=True)
class Member:
    name: str
    beta: float
    latent_dim: int | None
    summary: str

    def run_dir(self, work: Path) -> Path:
        if self.latent_dim is None:
            return work / "family" / member_name("fashion28", self.beta)
        return work / f"latent{self.latent_dim}"

    def config(self) -> TrainConfig:
        """The settings of ``command()``: vaekit's defaults but for these and :data:`RECIPE`."""
        latent = {} if self.latent_dim is None else {"latent_dim": self.latent_dim}
        return TrainConfig(epochs=EPOCHS, beta=float(self.beta), **latent, **RECIPE)

    def command(self) -> str:
        if self.latent_dim is None:
            return (f"vaekit train-family --epochs {EPOCHS} --betas {' '.join(map(str, FAMILY_BETAS))} "
                    f"{' '.join(RECIPE_FLAGS)} --out FAMILY  (member beta {self.beta:g})")
        return f"vaekit train --epochs {EPOCHS} --latent-dim {self.latent_dim} {' '.join(RECIPE_FLAGS)} --out RUN"


MEMBERS = (
    Member("fashion28-beta1", 1, None, "the report's model (latent 2, beta 1)"),
    Member("fashion28-beta2", 2, None, "latent 2, beta 2"),
    Member("fashion28-beta3", 3, None, "latent 2, beta 3"),
    Member("fashion28-beta5", 5, None, "latent 2, beta 5"),
    Member("fashion28-latent16", 1, 16, "latent 16, beta 1, for quality work"),
)


def train(work: Path, jobs: int = 1) -> None:
    """Train every member, ``jobs`` at a time (finished ones are skipped, interrupted ones resume).

    The members are the runs ``train-family`` and ``train`` would make (same settings, same folders);
    a last ``train-family`` call, with every member finished, writes the family's files.
    """
    todo = []
    for member in MEMBERS:
        config, run_dir = member.config(), member.run_dir(work)
        try:
            state = member_state(run_dir, config, "pretrained set")
        except VaekitError as error:
            sys.exit(f"build_pretrained: {error}")
        if state != "complete":
            todo.append(TrainJob(config, run_dir, resume=state == "resume"))
    try:
        train_jobs(todo, jobs)
    except TrainingInterrupted:
        sys.exit("interrupted; every running model was saved: run the same command to resume")
    betas = [str(b) for b in FAMILY_BETAS]
    status = vaekit_main(["train-family", "--epochs", str(EPOCHS), "--betas", *betas, *RECIPE_FLAGS,
                          "--out", str(work / "family"), "--quiet"])
    if status:
        sys.exit(status)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "config.json").is_file() and len(read_metrics(run_dir)) >= EPOCHS


def package(work: Path, only: list[str] | None = None) -> None:
    """Copy each finished run into the package with its card."""
    for member in MEMBERS:
        if only and member.name not in only:
            continue
        source = member.run_dir(work)
        if not is_finished(source):
            print(f"{member.name}: not trained to {EPOCHS} epochs yet ({source}); skipped")
            continue
        print(f"{member.name}: packaging {source}")
        write_card(member, *store(member, source))


def store(member: Member, source: Path) -> tuple[Path, Evaluation, Evaluation]:
    """Write config, metrics and weights (fp16 if close enough) into the package.

    Returns the folder and the test scores of the stored and of the original weights, both with
    the same posterior samples, so their difference is the storage's alone.
    """
    target = WEIGHTS_DIR / member.name
    target.mkdir(parents=True, exist_ok=True)
    config = read_json(source / "config.json")
    config.pop("data", None)  # where the data was on the training machine means nothing elsewhere
    config["train"]["data_dir"] = None
    write_json(target / "config.json", config)
    shutil.copyfile(source / "metrics.csv", target / "metrics.csv")
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, target / "model.safetensors",
              metadata={"format": "pt"})
    fp16, fp32 = _elbo(target), _elbo(source)
    if abs(fp16.elbo - fp32.elbo) >= FP16_TOLERANCE:
        print(f"{member.name}: fp16 moves the test -ELBO by {fp16.elbo - fp32.elbo:+.3f} nats; storing fp32")
        shutil.copyfile(source / "model.safetensors", target / "model.safetensors")
        fp16 = fp32
    return target, fp16, fp32


def _elbo(run_dir: Path) -> Evaluation:
    return evaluate_run(Run.open(run_dir, device="cpu", precision="fp32"), iw_samples=1, iw_images=1,
                        limit=TEST_LIMIT, seed=EVAL_SEED)


def write_card(member: Member, target: Path, scores: Evaluation, scores_fp32: Evaluation) -> None:
    run = Run.open(target, device="cpu", precision="fp32")
    bound = evaluate_run(run, iw_samples=IW_SAMPLES, iw_images=IW_IMAGES, limit=TEST_LIMIT, seed=EVAL_SEED)
    explorer = Explorer(run)
    explorer.save_class_means(explorer.class_means(refresh=True))
    config, metrics = run.config, run.metrics
    dtype = str(next(iter(load_file(target / "model.safetensors").values())).dtype).removeprefix("torch.")
    card = {
        "name": member.name, "summary": member.summary, "arch": config["arch"], "latent_dim": config["latent_dim"],
        "beta": member.beta, "epochs": len(metrics), "command": member.command(),
        "test_elbo": round(scores.elbo, 3), "test_recon": round(scores.recon, 3), "test_kl": round(scores.kl, 3),
        "iwae": round(bound.iwae, 3), "iw_samples": bound.iw_samples, "iw_images": bound.iw_images,
        "elbo_iw_images": round(bound.elbo_iw_images, 3),
        "active_units": scores.active_units, "trained_on": _machine(config),
        "train_seconds": round(sum(row["seconds"] for row in metrics), 1), "weights_dtype": dtype,
        "weights_bytes": (target / "model.safetensors").stat().st_size,
        "test_elbo_fp32": round(scores_fp32.elbo, 3),
        "vaekit_version": config.get("vaekit_version", vaekit.__version__),
        "torch_version": config.get("torch_version", torch.__version__),
    }
    write_json(target / CARD_FILE, card)
    print(f"{member.name}: test -ELBO {card['test_elbo']:.2f} (fp32 {card['test_elbo_fp32']:.2f}), "
          f"IWAE {card['iwae']:.2f}, active units {card['active_units']}, {dtype}, {card['weights_bytes']:,} bytes")


def _machine(config: dict) -> str:
    """The CPU model or GPU name the run trained on, from its recorded speed key."""
    resolved = config.get("resolved") or {}
    key = (resolved.get("speed") or {}).get("key") or ""
    where = key.split("|")[0].strip() or resolved.get("device", "unknown")
    return f"{where} ({resolved.get('device', '?')}, {resolved.get('precision', '?')})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", nargs="?", choices=("train", "package", "all"), default="all")
    parser.add_argument("--work", type=Path, default=Path("build/pretrained"), help="where the runs go")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="package only these models")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once (see benchmarks/parallel_runs.py for this machine's best)")
    args = parser.parse_args(argv)
    if args.stage in ("train", "all"):
        train(args.work, args.jobs)
    if args.stage in ("package", "all"):
        package(args.work, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
