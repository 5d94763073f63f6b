"""Batch delivery from RAM against batches streamed from a memory-mapped uint8 cache.

Builds a synthetic uint8 cache file (``N x C x H x W``, default 2 GiB of
``nn3-128`` images, 3x128x128) in a temporary folder (or ``--dir``), maps it
copy-on-write as :mod:`vaekit.data.cache` does, and measures images/s of

* ``resident``: :class:`~vaekit.training.batches.ResidentBatches` over the
  images loaded into memory (on a GPU: copied to it) -- the time to load is
  reported separately;
* ``stream``: :class:`~vaekit.training.batches.StreamedBatches` over the
  memory-mapped file, its pages first dropped from the page cache
  (``posix_fadvise(DONTNEED)``, best effort) so the first pass reads the disk.

Batch delivery alone (no model) is always measured; ``--arch fashion28`` or
``--arch nn3-128`` adds one Adam training step per batch (float32, eager), so
the numbers show whether streaming keeps up with training. The image shape
follows ``--arch``. Prints one JSON object; nothing is written but the
temporary cache, removed at the end unless ``--keep``.

Usage::

    python benchmarks/streaming_throughput.py --gib 0.5
    python benchmarks/streaming_throughput.py --gib 2 --arch nn3-128 --steps 20 --dir /mnt/scratch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.models.losses import vae_loss
from vaekit.models.vae import build_model
from vaekit.training.batches import ResidentBatches, StreamedBatches

SHAPES = {"fashion28": (1, 28, 28), "nn3-128": (3, 128, 128)}
CHUNK = 64 << 20  # bytes written per piece while building the cache


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (what lscpu shows), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_cache(path: Path, n: int, shape: tuple[int, ...], seed: int = 0) -> float:
    """Write ``n`` random uint8 images of ``shape`` to ``path``; returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    total = n * int(np.prod(shape))
    with open(path, "wb") as handle:
        for offset in range(0, total, CHUNK):
            handle.write(rng.bytes(min(CHUNK, total - offset)))
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - start


def drop_page_cache(path: Path) -> bool:
    """Ask the kernel to forget ``path``'s cached pages (best effort; True if it was asked)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    finally:
        os.close(fd)


def measure(source, order: torch.Tensor, batch_size: int, steps: int, step_fn) -> dict[str, float]:
    """images/s over the first ``steps`` batches of an epoch in ``order`` (first batch timed apart)."""
    batches = source.epoch(order, 0, batch_size)
    start = time.perf_counter()
    first = step_fn(next(batches))
    first_s = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for _, batch in zip(range(steps), batches):
        images += step_fn(batch)
    seconds = time.perf_counter() - start
    batches.close()
    return {"images_per_s": round(images / seconds, 1) if seconds else float("inf"), "images": images,
            "seconds": round(seconds, 3), "first_batch_s": round(first_s, 4), "first_batch_images": first}


def delivery_only(device: torch.device):
    """A step that only makes the batch usable on the device (waits for it on a GPU)."""
    def step(batch: torch.Tensor) -> int:
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        return len(batch)
    return step


def training_step(arch: str, device: torch.device, seed: int = 0):
    """A float32 Adam step of ``arch`` on each batch (the trainer's loss, eager, NCHW)."""
    torch.manual_seed(seed)
    model = build_model(arch, 256 if arch == "nn3-128" else 2).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch: torch.Tensor) -> int:
        x = batch.float().div_(255.0)
        output = model(x)
        terms = vae_loss(output.logits, x, output.z_mean, output.z_log_var, 1.0, "bernoulli")
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        return len(batch)
    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="cache size in GiB (default 2)")
    parser.add_argument("--arch", choices=("none", *SHAPES), default="none",
                        help="also time a training step of this architecture (default: none, delivery only)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed batches per measurement (default: one pass over the data for delivery, "
                             "20 with --arch)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--dir", default=None, help="folder for the cache file (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the cache file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.gib <= 0 or args.batch_size < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--gib, --batch-size and --steps must be positive")

    device = torch.device(args.device)
    shape = SHAPES["nn3-128" if args.arch == "none" else args.arch]
    image_bytes = int(np.prod(shape))
    n = max(args.batch_size + 1, int(args.gib * 2**30) // image_bytes)
    folder = Path(tempfile.mkdtemp(prefix="vaekit-stream-", dir=args.dir))
    path = folder / "images.u8"
    try:
        build_s = build_cache(path, n, shape, args.seed)
        mapped = torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", shape=(n, *shape)))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
        steps_per_pass = -(-n // args.batch_size) - 1  # after the first batch
        report: dict = {
            "machine": {"processor": platform.processor(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
                        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device)},
            "cache": {"images": n, "shape": list(shape), "gib": round(n * image_bytes / 2**30, 3),
                      "build_s": round(build_s, 2), "folder": str(folder)},
            "batch_size": args.batch_size, "results": {},
        }
        modes = [("delivery", None)] + ([("train_" + args.arch, args.arch)] if args.arch != "none" else [])
        for mode, arch in modes:
            steps = args.steps or (steps_per_pass if arch is None else 20)
            steps = min(steps, steps_per_pass)
            step_fn = delivery_only(device) if arch is None else training_step(arch, device, args.seed)
            dropped = drop_page_cache(path)
            streamed = measure(StreamedBatches(mapped, device), order, args.batch_size, steps, step_fn)
            streamed["page_cache_dropped"] = dropped
            start = time.perf_counter()
            in_memory = mapped.clone() if device.type == "cpu" else mapped  # .to(cuda) copies anyway
            resident_source = ResidentBatches(in_memory, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            load_s = time.perf_counter() - start
            resident = measure(resident_source, order, args.batch_size, steps, step_fn)
            resident["load_s"] = round(load_s, 2)
            del resident_source, in_memory
            report["results"][mode] = {"stream": streamed, "resident": resident,
                                       "stream_vs_resident": round(streamed["images_per_s"]
                                                                   / resident["images_per_s"], 3)}
        print(json.dumps(report, indent=2))
        return report
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
