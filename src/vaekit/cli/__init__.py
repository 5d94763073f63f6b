"""The ``vaekit`` command: a thin layer over the Python API.

Each sub-command parses its options, calls one API function and prints where
the results went. User mistakes raise :class:`~vaekit.errors.VaekitError`,
printed here as one line with exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping, NoReturn, Sequence

from vaekit.cli.options import (
    add_data_options,
    add_dataclass_options,
    add_output_option,
    add_runtime_options,
    add_seed_option,
    command_parser,
    config_from_args,
    explicit_overrides,
    output_path,
    positive_int,
    translate_error,
)
from vaekit.errors import VaekitError
from vaekit.runtime import stop_on_sigterm

if TYPE_CHECKING:  # the training package is imported only by the commands that train
    from vaekit.training.config import TrainConfig

__all__ = ["add_output_option", "add_runtime_options", "add_training_options", "main", "output_path",
           "positive_int", "train_config_from_args"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# Modules that add their own sub-commands: each has ``register(commands)``,
# which adds parsers to the sub-parser action and sets ``func`` on each.
COMMAND_MODULES = (
    "vaekit.cli.explore",  # latent-map, manifold, interpolate, ... report
    "vaekit.cli.evaluate",  # evaluate, embed, anomaly, denoise
    "vaekit.cli.family",  # train-family, attribute
    "vaekit.cli.export",  # export (ONNX)
    "vaekit.cli.zoo",  # pretrained (the shipped models)
    "vaekit.cli.live",  # explore (the live latent explorer in the browser)
    "vaekit.cli.anomaly_protocol",  # anomaly-protocol
)


# ----------------------------------------------------------------------------
# train / demo


def add_training_options(parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None,
                         exclude: Collection[str] = ()) -> dict[str, argparse.Action]:
    """One option per :class:`~vaekit.training.config.TrainConfig` field, and ``--quiet``.

    ``defaults`` and ``exclude`` are as for :func:`vaekit.cli.options.add_dataclass_options`.
    """
    from vaekit.training.config import TrainConfig

    actions = add_dataclass_options(parser, TrainConfig, defaults=defaults, exclude=exclude)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return actions


def train_config_from_args(args: argparse.Namespace, **changes: Any) -> TrainConfig:
    """The :class:`~vaekit.training.config.TrainConfig` of parsed training options, with ``changes`` applied."""
    from vaekit.training.config import TrainConfig

    return config_from_args(TrainConfig, args, **changes)


def _print_run_summary(result) -> None:
    from vaekit.runtime import is_main_process

    if not is_main_process():  # under torchrun, rank 0 speaks for all
        return
    last = result.metrics[-1] if result.metrics else {}
    print(f"run directory: {result.run_dir}")
    if last:
        print(f"test -ELBO after {last['epoch']} epochs: {float(last['test_elbo']):.2f} nats per image")
    for name in ("reconstructions.png", "samples.png"):
        print(f"figure: {result.run_dir / name}")


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit import train
    from vaekit.training.config import TrainConfig

    if args.resume is not None:
        overrides = explicit_overrides(TrainConfig, args)
        result = train(out=args.resume, resume=True, progress=not args.quiet, **overrides)
    else:
        if args.out is None:
            raise VaekitError("--out: give a run directory for the new run (or --resume RUN)")
        result = train(train_config_from_args(args), out=args.out, progress=not args.quiet)
    _print_run_summary(result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vaekit import train

    out = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    print(f"vaekit demo: training the Fashion-MNIST VAE (fashion28, 2-D latent) for {args.epochs} epochs into {out}")
    config = train_config_from_args(args, dataset="fashion-mnist", arch="fashion28", latent_dim=2)
    result = train(config, out=out, progress=not args.quiet)
    _print_run_summary(result)
    return 0


# ----------------------------------------------------------------------------
# figures from a run


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit.runs import Run
    from vaekit.viz.figures import save_reconstructions

    run = Run.open(args.run, device=args.device, precision=args.precision, data_dir=args.data_dir)
    dataset = run.dataset(args.split, name=args.dataset)
    print(save_reconstructions(run, dataset, output_path(args, "reconstructions.png"), n=args.n, seed=args.seed))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaekit.runs import Run
    from vaekit.viz.figures import save_samples

    run = Run.open(args.run, device=args.device, precision=args.precision)
    print(save_samples(run, output_path(args, "samples.png"), n=args.n, seed=args.seed))
    return 0


# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from vaekit import __version__
    from vaekit.training.config import TrainConfig

    parser = OneLineParser(prog="vaekit", description="Variational autoencoders on images.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train_parser = commands.add_parser("train", help="train a VAE into a run directory")
    add_training_options(train_parser)
    train_parser.add_argument("--out", type=Path, help="new run directory")
    train_parser.add_argument("--resume", type=Path, metavar="RUN",
                              help="continue an interrupted run (optionally with a larger --epochs)")
    train_parser.set_defaults(func=cmd_train)

    demo = commands.add_parser("demo", help="train the seed Fashion-MNIST model for 3 epochs (about 4 min on 2 CPU cores)")
    add_dataclass_options(demo, TrainConfig, defaults={"epochs": 3}, include=("epochs", "seed", "data_dir"))
    demo.add_argument("--out", type=Path, default=None, help="run directory (default: runs/demo-DATE-TIME)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

    reconstruct = commands.add_parser("reconstruct", help="'prediction from dataset' figure of a run")
    reconstruct.add_argument("run", type=Path)
    reconstruct.add_argument("-n", type=positive_int, default=10, help="number of images")
    add_data_options(reconstruct, seed=True)
    add_runtime_options(reconstruct)
    add_output_option(reconstruct, "reconstructions.png")
    reconstruct.set_defaults(func=cmd_reconstruct)

    sample = commands.add_parser("sample", help="'random point in the latent space' figure of a run")
    sample.add_argument("run", type=Path)
    sample.add_argument("-n", type=positive_int, default=64, help="number of samples")
    add_seed_option(sample)
    add_runtime_options(sample)
    add_output_option(sample, "samples.png")
    sample.set_defaults(func=cmd_sample)

    for module_name in COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(commands)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors as the one ``vaekit: error: ...`` line every other error gets."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"vaekit: error: {' '.join(message.split())}\n")


def _os_error_line(error: OSError) -> str:
    """An operating-system error (disk full, permission, a folder where a file belongs) as one line."""
    reason = error.strerror or type(error).__name__
    return f"{error.filename}: {reason}" if error.filename else " ".join(str(error).split()) or reason


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaekit`` command; returns the exit status."""
    from vaekit.training.trainer import TrainingInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    stop_on_sigterm()
    try:
        return args.func(args) or 0
    except TrainingInterrupted as interrupted:
        print(f"vaekit: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VaekitError as error:
        print(f"vaekit: error: {translate_error(error, command_parser(parser, args))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        print(f"vaekit: error: {_os_error_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        print("vaekit: error: not enough memory for this request; use smaller options", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, leave the process group training joined (no-op otherwise, and torch not imported)."""
    if "vaekit.training.distributed" in sys.modules:
        sys.modules["vaekit.training.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
