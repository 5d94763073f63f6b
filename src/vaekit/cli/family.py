"""``vaekit train-family`` and ``vaekit attribute``: the beta family and latent attribute directions."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# Imported for their side effect: they register the "celeba" and "folder:PATH"
# datasets, so `--dataset celeba` works from every command.
import vaekit.data  # noqa: F401
from vaekit.errors import ConfigError


def register(commands) -> None:
    """Add ``train-family`` and ``attribute`` to the CLI's sub-parsers."""
    _register_train_family(commands)
    _register_attribute(commands)


# ----------------------------------------------------------------------------
# train-family


def _register_train_family(commands) -> None:
    from vaekit.cli import add_training_options
    from vaekit.cli.options import add_jobs_option
    from vaekit.training.family import DOCS_BETAS

    parser = commands.add_parser(
        "train-family",
        help="train one VAE per beta (the beta-VAE family) and compare them in DIR/family.html",
        description="Train one run per beta into DIR/vae_model_<ARCH>_w<BETA> (vae_model_NN3_w1 ... for nn3-128), "
                    "skipping finished members and resuming interrupted ones, then write DIR/family.html.",
    )
    options = add_training_options(parser)
    # One beta per member replaces --beta; keep it out of the help (and refuse it, in cmd_train_family).
    options["beta"].help = argparse.SUPPRESS
    parser.add_argument("--betas", type=_beta, nargs="+", default=list(DOCS_BETAS), metavar="BETA",
                        help="one member per beta (default: 1 2 3 5, as in the module docs)")
    parser.add_argument("--out", type=Path, required=True, help="family directory (created, or resumed)")
    add_jobs_option(parser, "members")
    parser.set_defaults(func=cmd_train_family)


def _beta(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text}")
    return value


def cmd_train_family(args: argparse.Namespace) -> int:
    from vaekit.cli import train_config_from_args
    from vaekit.cli.options import explicit_overrides
    from vaekit.training.config import TrainConfig
    from vaekit.training.family import train_family

    if "beta" in explicit_overrides(TrainConfig, args):
        raise ConfigError("beta: use --betas for a family (one member per beta)", param="beta")
    from vaekit.runtime import is_main_process

    result = train_family(train_config_from_args(args), betas=args.betas, out=args.out, progress=not args.quiet,
                          jobs=args.jobs)
    if not is_main_process():  # under torchrun, rank 0 speaks for all
        return 0
    for member, metrics in _with_metrics(result):
        summary = "" if metrics is None else (
            f"  recon {metrics.recon:.2f}  KL {metrics.kl:.2f}  active units {metrics.active_units}"
            f"  test -ELBO {metrics.elbo:.2f}"
        )
        print(f"{member.name} (beta {member.beta:g}, {member.status}): {member.run_dir}{summary}")
    print(f"report: {result.report}")
    if result.rate_distortion.is_file():
        print(f"figure: {result.rate_distortion}")
    return 0


def _with_metrics(result):
    by_name = {m.name: m for m in result.metrics}
    return [(member, by_name.get(member.name)) for member in result.members]


# ----------------------------------------------------------------------------
# attribute


def _register_attribute(commands) -> None:
    from vaekit.analysis.attributes import DEFAULT_STRENGTHS
    from vaekit.cli import add_output_option, add_runtime_options, positive_int
    from vaekit.cli.options import add_data_options, finite_float

    parser = commands.add_parser(
        "attribute",
        help="latent direction of an attribute (e.g. Smiling) applied to images with strength steps",
        description="Measure the latent direction from images without ATTR to images with it (mean E[z|x] "
                    "difference on the run's training images) and decode test images moved along it.",
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--attr", required=True,
                        help="attribute name, any case (CelebA: Smiling, Eyeglasses, ...); a class name for "
                             "datasets without attributes")
    parser.add_argument("-n", type=positive_int, default=4, help="images to edit (default 4)")
    parser.add_argument("--strengths", type=finite_float, nargs="+", default=list(DEFAULT_STRENGTHS), metavar="ALPHA",
                        help="multiples of the direction to add (default: -2 -1 0 1 2)")
    parser.add_argument("--max-images", type=positive_int, default=5000,
                        help="training images used to measure the direction (default 5000)")
    add_data_options(parser, seed=True)  # --split: where the edited images come from
    add_runtime_options(parser)
    add_output_option(parser, "attribute_<ATTR>.png")
    parser.set_defaults(func=cmd_attribute)


def cmd_attribute(args: argparse.Namespace) -> int:
    from vaekit.analysis.attributes import attribute_edit
    from vaekit.guard import check_output
    from vaekit.runs import Run
    from vaekit.viz.evaluation_figures import save_attribute_figure

    if args.output is not None:
        check_output(args.output)  # refused before any work
    run = Run.open(args.run, device=args.device, precision=args.precision, data_dir=args.data_dir)
    edit = attribute_edit(run, args.attr, n=args.n, strengths=args.strengths, max_images=args.max_images,
                          split=args.split, dataset=args.dataset, seed=args.seed)
    direction = edit.direction
    path = check_output(args.output if args.output is not None else args.run / f"attribute_{direction.attribute}.png")
    save_attribute_figure(edit, path)
    print(f"{direction.attribute}: direction measured on {direction.n_with} images with it and "
          f"{direction.n_without} without (length {direction.norm:.2f})")
    print(path)
    return 0
