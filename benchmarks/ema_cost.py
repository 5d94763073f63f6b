"""What the default weight averaging (``--ema 0.999``) and gradient clipping cost per training step.

Times, on one device, a real training step of each architecture (random
uint8 images, fp32, eager, the trainer's ``train_step`` without clipping), the
moving-average update that follows it
(:class:`vaekit.training.averaging.WeightAverage`) and the gradient-norm clip
that ``--grad-clip`` adds inside the step (``clip_grad_norm_`` over every
parameter, at the limit ``auto`` resolves to, 1000 where it resolves to none),
each as the median over ``--steps`` repeats after a warm-up, and prints each
extra's share of the step. The result is a JSON list on stdout (and in
``--json`` if given).

Usage::

    python benchmarks/ema_cost.py                                # fashion28 at batch 64, 1 thread
    python benchmarks/ema_cost.py --arch nn3-128 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from vaekit.models import build_model
from vaekit.runtime import resolve_device
from vaekit.training.averaging import WeightAverage
from vaekit.training.config import TrainConfig
from vaekit.training.step import prepare_images, train_step
from vaekit.training.tuning import machine_name, make_optimizer


def median_ms(action: Callable[[], None], steps: int, device: torch.device) -> float:
    """Median wall time of ``action`` in milliseconds (synchronised on a GPU)."""
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        action()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def measure(arch: str, batch_size: int, device: torch.device, steps: int) -> dict[str, Any]:
    """Milliseconds per training step and per averaging update, and the update's share."""
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    config = TrainConfig(arch=arch, batch_size=batch_size, grad_clip=None)  # the clip is timed on its own
    limit = TrainConfig(arch=arch).effective_grad_clip or 1000.0
    optimizer = make_optimizer(model, config.lr, False)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    images = torch.randint(0, 256, (batch_size, *model.image_shape), dtype=torch.uint8, device=device)
    average = WeightAverage(model, config.ema_decay or 0.999)

    def step() -> None:
        train_step(model, optimizer, scaler, prepare_images(images, False), 1.0, config, device, "fp32")

    for _ in range(3):
        step()
        average.update(model)
    step_ms = median_ms(step, steps, device)
    update_ms = median_ms(lambda: average.update(model), steps, device)
    clip_ms = median_ms(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), limit), steps, device)
    return {"arch": arch, "batch_size": batch_size, "device": machine_name(device), "threads": torch.get_num_threads(),
            "step_ms": round(step_ms, 3), "ema_update_ms": round(update_ms, 3),
            "ema_share": round(update_ms / (step_ms + update_ms), 4),
            "grad_clip": limit, "grad_clip_ms": round(clip_ms, 3), "grad_clip_share": round(clip_ms / (step_ms + clip_ms), 4)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["fashion28"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (ignored on a GPU)")
    parser.add_argument("--steps", type=int, default=50, help="timed repeats of each")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device, threads = resolve_device(args.device), torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = [measure(arch, batch, device, args.steps) for arch in args.arch for batch in args.batch_size]
    finally:
        torch.set_num_threads(threads)  # as it was, for a caller in the same process
    text = json.dumps(rows, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
