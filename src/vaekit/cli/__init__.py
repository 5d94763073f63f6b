"""The ``vaekit`` command: a thin layer over the Python API.

Each sub-command parses its options, calls one API function and prints where
the results went. User mistakes raise :class:`~vaekit.errors.VaekitError`,
printed here as one line with exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from vaekit.errors import VaekitError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# Modules that add their own sub-commands: each has ``register(commands)``,
# which adds parsers to the sub-parser action and sets ``func`` on each.
COMMAND_MODULES = (
    "vaekit.cli.explore",  # latent-map, manifold, interpolate, ... report
    "vaekit.cli.evaluate",  # evaluate, embed, anomaly, denoise
    "vaekit.cli.family",  # train-family, attribute
)


def add_output_option(parser: argparse.ArgumentParser, default_name: str, what: str = "figure") -> None:
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"where to write the {what} (default: RUN/{default_name})")


def output_path(args: argparse.Namespace, default_name: str) -> Path:
    return args.output if args.output is not None else Path(args.run) / default_name


# ----------------------------------------------------------------------------
# train / demo


def add_training_options(parser: argparse.ArgumentParser, defaults) -> None:
    parser.add_argument("--dataset", default=defaults.dataset, help="fashion-mnist (default), shapes, celeba, or folder:PATH")
    parser.add_argument("--arch", default=defaults.arch, help="fashion28 (default) or nn3-128")
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim,
                        help="latent size (default: the architecture's, 2 for fashion28)")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="weight of the KL term (beta-VAE)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--kl-warmup", dest="kl_warmup_epochs", type=float, default=defaults.kl_warmup_epochs,
                        help="ramp beta linearly from 0 over this many epochs")
    parser.add_argument("--recon", default=defaults.recon, help="reconstruction likelihood: bernoulli or gaussian")
    parser.add_argument("--init", default=defaults.init,
                        help="weight init: vaekit (default), keras (the original; may collapse), pytorch")
    parser.add_argument("--grad-clip", type=float, default=defaults.grad_clip)
    parser.add_argument("--exclude-classes", nargs="*", default=[], metavar="CLASS",
                        help="leave these classes out of training (anomaly-detection protocol)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    parser.add_argument("--device", default=defaults.device, help="auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default=defaults.precision, help="auto (default), fp32, bf16, fp16")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true", help="use torch.compile")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


_TRAIN_FIELDS = ("dataset", "arch", "latent_dim", "beta", "epochs", "batch_size", "lr", "seed", "kl_warmup_epochs",
                 "recon", "init", "grad_clip", "exclude_classes", "train_limit", "test_limit", "data_dir", "device",
                 "precision", "channels_last", "compile")


def train_config_from_args(args: argparse.Namespace):
    from vaekit.training.config import TrainConfig

    return TrainConfig(**{name: getattr(args, name) for name in _TRAIN_FIELDS})


def _explicit_overrides(args: argparse.Namespace, parser_defaults: dict) -> dict:
    """Options given on the command line that differ from their defaults."""
    return {name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name) != parser_defaults.get(name)}


def _print_run_summary(result) -> None:
    last = result.metrics[-1] if result.metrics else {}
    print(f"run directory: {result.run_dir}")
    if last:
        print(f"test -ELBO after {last['epoch']} epochs: {float(last['test_elbo']):.2f} nats per image")
    for name in ("reconstructions.png", "samples.png"):
        print(f"figure: {result.run_dir / name}")


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.training.trainer import train

    if args.resume is not None:
        overrides = _explicit_overrides(args, args.parser_defaults)
        result = train(out=args.resume, resume=True, progress=not args.quiet, **overrides)
    else:
        if args.out is None:
            raise VaekitError("--out: give a run directory for the new run (or --resume RUN)")
        result = train(train_config_from_args(args), out=args.out, progress=not args.quiet)
    _print_run_summary(result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vaekit.training.config import TrainConfig
    from vaekit.training.trainer import train

    out = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    print(f"vaekit demo: training the Fashion-MNIST VAE (fashion28, 2-D latent) for {args.epochs} epochs into {out}")
    config = TrainConfig(dataset="fashion-mnist", arch="fashion28", latent_dim=2, epochs=args.epochs,
                         data_dir=args.data_dir, seed=args.seed)
    result = train(config, out=out, progress=not args.quiet)
    _print_run_summary(result)
    return 0


# ----------------------------------------------------------------------------
# figures from a run


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit.data import load_dataset
    from vaekit.models.pretrained import load, read_config
    from vaekit.viz.figures import save_reconstructions

    model = load(args.run)
    config = read_config(args.run)
    train_config = config.get("train", {})
    dataset = load_dataset(args.dataset or config["dataset"]["name"], args.split,
                           data_dir=args.data_dir or train_config.get("data_dir"))
    path = save_reconstructions(model, dataset, output_path(args, "reconstructions.png"), n=args.n, seed=args.seed)
    print(path)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaekit.models.pretrained import load
    from vaekit.viz.figures import save_samples

    model = load(args.run)
    path = save_samples(model, output_path(args, "samples.png"), n=args.n, seed=args.seed)
    print(path)
    return 0


# ----------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from vaekit import __version__
    from vaekit.training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="vaekit", description="Variational autoencoders on images.")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train_parser = commands.add_parser("train", help="train a VAE into a run directory")
    add_training_options(train_parser, TrainConfig())
    train_parser.add_argument("--out", type=Path, help="new run directory")
    train_parser.add_argument("--resume", type=Path, metavar="RUN",
                              help="continue an interrupted run (optionally with a larger --epochs)")
    train_parser.set_defaults(func=cmd_train, parser_defaults=vars(train_parser.parse_args([])))

    demo = commands.add_parser("demo", help="train the seed Fashion-MNIST model for 3 epochs (about 4 min on 2 CPU cores)")
    demo.add_argument("--epochs", type=positive_int, default=3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--data-dir", default=None)
    demo.add_argument("--out", type=Path, default=None, help="run directory (default: runs/demo-DATE-TIME)")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    reconstruct = commands.add_parser("reconstruct", help="'prediction from dataset' figure of a run")
    reconstruct.add_argument("run", type=Path)
    reconstruct.add_argument("-n", type=positive_int, default=10, help="number of images")
    reconstruct.add_argument("--split", default="test")
    reconstruct.add_argument("--dataset", default=None, help="default: the run's dataset")
    reconstruct.add_argument("--data-dir", default=None)
    reconstruct.add_argument("--seed", type=int, default=0)
    add_output_option(reconstruct, "reconstructions.png")
    reconstruct.set_defaults(func=cmd_reconstruct)

    sample = commands.add_parser("sample", help="'random point in the latent space' figure of a run")
    sample.add_argument("run", type=Path)
    sample.add_argument("-n", type=positive_int, default=64, help="number of samples")
    sample.add_argument("--seed", type=int, default=0)
    add_output_option(sample, "samples.png")
    sample.set_defaults(func=cmd_sample)

    for module_name in COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(commands)
    return parser


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (``kill``, job schedulers, preemption) like Ctrl-C: save, then exit."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # A shell's background job starts with SIGINT ignored; Ctrl-C should still save.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaekit`` command; returns the exit status."""
    from vaekit.training.trainer import TrainingInterrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    _stop_on_sigterm()
    try:
        return args.func(args) or 0
    except TrainingInterrupted as interrupted:
        print(f"vaekit: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VaekitError as error:
        print(f"vaekit: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
