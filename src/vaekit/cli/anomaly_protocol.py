"""``vaekit anomaly-protocol``: the held-out-class anomaly-detection protocol as one command."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

# Imported for their side effect: they register the "celeba" and "folder:PATH"
# datasets, so `--dataset celeba` works from every command.
import vaekit.data  # noqa: F401


def register(commands) -> None:
    """Add ``anomaly-protocol`` to the CLI's sub-parsers."""
    from vaekit.cli import add_training_options, positive_int
    from vaekit.cli.options import add_jobs_option
    from vaekit.training.anomaly_protocol import PROTOCOL_LATENT_DIM

    parser = commands.add_parser(
        "anomaly-protocol",
        help="train one model per held-out class and report the AUROC of every anomaly score (one table)",
        description="For each class in turn, train DIR/without_<CLASS> without it (skipping finished members and "
                    "resuming interrupted ones), score the test split with every anomaly score (the held-out "
                    "class is anomalous), and write DIR/anomaly_protocol.json and DIR/anomaly_protocol.md: "
                    f"AUROC per class and score, and the mean. The latent size defaults to {PROTOCOL_LATENT_DIM}.",
    )
    add_training_options(parser, defaults={"latent_dim": PROTOCOL_LATENT_DIM}, exclude=("exclude_classes",))
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                        help="classes to hold out, one model each (default: every class of the dataset)")
    parser.add_argument("--iw-samples", type=positive_int, default=16, metavar="K",
                        help="samples of the IWAE and complexity-corrected scores (default 16)")
    parser.add_argument("--out", type=Path, required=True, help="protocol directory (created, or resumed)")
    add_jobs_option(parser, "models")
    parser.set_defaults(func=cmd_anomaly_protocol)


def cmd_anomaly_protocol(args: argparse.Namespace) -> int:
    from vaekit.cli import train_config_from_args
    from vaekit.training.anomaly_protocol import run_anomaly_protocol

    result = run_anomaly_protocol(train_config_from_args(args), out=args.out, classes=args.classes,
                                  iw_samples=args.iw_samples, progress=not args.quiet, command=_command(args),
                                  jobs=args.jobs)
    print(result.table, end="")
    for row in result.classes:
        print(f"{row.name} ({row.status}): {row.run_dir}")
    print(f"results: {result.json_path}")
    print(f"table: {result.table_path}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this protocol (the options that were typed)."""
    from vaekit.cli.options import explicit_overrides
    from vaekit.training.config import TrainConfig, option_flag

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    words = ["vaekit", "anomaly-protocol", "--out", str(args.out)]
    for name, value in explicit_overrides(TrainConfig, args).items():
        flag = option_flag(fields[name])
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:  # a typed "none" (--ema none, --grad-clip none) is a setting too
            words += [flag, "none" if value is None else str(value)]
    if args.classes:
        words += ["--classes", *args.classes]
    if args.iw_samples != 16:
        words += ["--iw-samples", str(args.iw_samples)]
    if args.jobs != 1:
        words += ["--jobs", str(args.jobs)]
    if args.quiet:
        words.append("--quiet")
    return shlex.join(words)
