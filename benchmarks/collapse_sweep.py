"""Does the seed architecture train reliably? A seed sweep, Keras init vs vaekit's.

The report's model trained exactly like the Keras original (Glorot-uniform
weights, zero biases, Adam 1e-3, batch 128) collapses in some seeds: every
unit of the Dense(16) ReLU layer dies in the first epoch, the KL falls to 0
and the decoder outputs the mean image. This script trains ``fashion28``
(latent 2) on the real Fashion-MNIST for ``--epochs`` epochs per seed with
both initialisations and prints, per run, the test -ELBO and the collapse
diagnostics that ``vaekit train`` records in ``metrics.csv``.

Usage::

    python benchmarks/collapse_sweep.py --seeds 0 1 2 3 4 --epochs 1 --out runs/collapse

``--json FILE`` adds the rows to those already in FILE (a row of the same
init, seed and epoch is replaced), so a sweep can be extended seed by seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vaekit import TrainConfig, train
from vaekit.cli.options import add_dataclass_options
from vaekit.errors import VaekitError


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` and ``new`` rows together, sorted by init and seed; a new row replaces an old one of the same key."""
    def key(row: dict) -> tuple:
        # Older rows: batch 128, no clipping (0).
        return row["init"], row.get("batch_size", 128), row.get("grad_clip") or 0.0, row["seed"], row["epoch"]

    merged = {key(row): row for row in old} | {key(row): row for row in new}
    return [merged[k] for k in sorted(merged)]


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier sweep's ``--json`` file (none if it does not exist); anything else is one line."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        merge_rows(rows, [])
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"collapse_sweep: error: --json {path}: not the rows of an earlier sweep") from None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--inits", nargs="+", default=["keras", "vaekit"])
    parser.add_argument("--batch-size", type=int, default=128)
    add_dataclass_options(parser, TrainConfig, include=["grad_clip"])  # vaekit train's --grad-clip, declared once
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()

    try:  # a bad option is one line, before any training
        for init in args.inits:
            TrainConfig(arch="fashion28", epochs=args.epochs, batch_size=args.batch_size, grad_clip=args.grad_clip,
                        init=init).validate()
    except VaekitError as error:
        raise SystemExit(f"collapse_sweep: error: {error}") from None
    root = args.out or Path(tempfile.mkdtemp(prefix="vaekit-collapse-"))
    rows = []
    print("| init | seed | test -ELBO (nats) | KL | active units | dead encoder units | collapsed |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for init in args.inits:
        for seed in args.seeds:
            config = TrainConfig(arch="fashion28", latent_dim=2, epochs=args.epochs, seed=seed, init=init,
                                 batch_size=args.batch_size, grad_clip=args.grad_clip, data_dir=args.data_dir)
            result = train(config, out=root / f"{init}-batch{args.batch_size}-seed{seed}", progress=False)
            last = result.metrics[-1]
            rows.append({"init": init, "batch_size": args.batch_size, "grad_clip": config.effective_grad_clip,
                         "seed": seed, **last})
            print(f"| {init} | {seed} | {last['test_elbo']:.1f} | {last['test_kl']:.2f} | {last['active_units']} | "
                  f"{last['dead_encoder_units']} | {'yes' if last['collapsed'] else 'no'} |", flush=True)
    for init in args.inits:
        collapsed = sum(r["collapsed"] for r in rows if r["init"] == init)
        print(f"{init}: {collapsed} of {len(args.seeds)} seeds collapsed")
    if args.json:
        args.json.write_text(json.dumps(merge_rows(read_rows(args.json), rows), indent=2))


if __name__ == "__main__":
    main()
