"""Does reduced precision cost quality? bf16 against fp32 training, over seeds, at convergence.

Trains the seed run (``fashion28``, latent 2, Fashion-MNIST, 30 epochs) with
``--precision fp32`` and with ``--precision bf16`` (or ``fp16``) for each seed
and compares the final test -ELBO (in nats; lower is better). The gap of the
means must stay within 1% before a reduced precision may be a default.

vaekit keeps float32 where precision matters under autocast: the loss, the
optimizer state (the weights stay float32) and the latent path (the two
heads writing z, the sampling, and the decoder layer reading z).

Usage::

    python benchmarks/precision_quality.py --data-dir ../shared/data/fashion-mnist --device cuda
    python benchmarks/precision_quality.py --epochs 5 --train-limit 10000 --seeds 0 1 2   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reduced", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from flops import cpu_name

    import vaekit

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for precision in ("fp32", args.reduced):
                started = time.perf_counter()
                result = vaekit.train(out=Path(scratch) / f"{precision}-{seed}", data_dir=args.data_dir,
                                      epochs=args.epochs, seed=seed, precision=precision, compile="off",
                                      device=args.device, batch_size=args.batch_size,
                                      train_limit=args.train_limit, progress=False)
                elbo = result.metrics[-1]["test_elbo"]
                rows.append({"seed": seed, "precision": precision, "test_elbo": elbo,
                             "seconds": round(time.perf_counter() - started, 1)})
                print(f"seed {seed} {precision:>5}: test -ELBO {elbo:.2f}  ({rows[-1]['seconds']} s)", flush=True)
    means = {p: statistics.mean(r["test_elbo"] for r in rows if r["precision"] == p) for p in ("fp32", args.reduced)}
    gap = 100 * (means[args.reduced] - means["fp32"]) / means["fp32"]
    verdict = "within 1%" if abs(gap) <= 1.0 else "OUTSIDE 1%"
    print(f"mean test -ELBO: fp32 {means['fp32']:.2f}, {args.reduced} {means[args.reduced]:.2f}: "
          f"gap {gap:+.2f}% ({verdict})")
    if args.json:
        import torch

        machine = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else cpu_name()
        args.json.write_text(json.dumps({"machine": machine, "epochs": args.epochs, "rows": rows, "means": means,
                                         "gap_percent": round(gap, 3), "verdict": verdict}, indent=2))


if __name__ == "__main__":
    main()
