"""Training throughput of vaekit against the Keras 3 reference, side by side.

For each architecture (``fashion28`` at batch 128, ``nn3-128`` at batch 64)
this measures steady-state training images/s and peak resident memory of

* ``vaekit default``: the trainer's own step (:func:`vaekit.training.train_step`)
  with the settings ``vaekit train`` picks on this machine (precision
  ``auto``, channels_last);
* ``torch eager fp32``: the same step in plain float32, NCHW layout;
* ``torch bf16``: bf16 autocast with channels_last, for comparison;
* ``keras``: ``benchmarks/keras_reference.py`` in its own virtualenv (an
  optional dependency: ``python3 -m venv .venv-keras && .venv-keras/bin/pip
  install tensorflow-cpu keras``), skipped with a note when it is missing.

Each measurement runs in a fresh subprocess so peak memory is its own. Random
uint8 images are used: throughput does not depend on pixel values.

Usage::

    python benchmarks/train_throughput.py                  # both archs, all variants
    python benchmarks/train_throughput.py --arch fashion28 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"fashion28": (128, 150), "nn3-128": (64, 30)}  # batch size, timed steps
VARIANTS = {  # name: (precision, channels_last)
    "vaekit default": ("auto", True),
    "torch eager fp32": ("fp32", False),
    "torch bf16": ("bf16", True),
}


def measure_torch(arch: str, batch_size: int, steps: int, precision: str, channels_last: bool, device: str) -> dict:
    """Time ``steps`` training steps after a warm-up; runs in the current process."""
    import torch

    from vaekit.models import build_model, count_parameters, initialize_weights
    from vaekit.runtime import resolve_device, resolve_precision
    from vaekit.training.config import TrainConfig
    from vaekit.training.trainer import prepare_images, train_step

    torch.manual_seed(0)
    device_ = resolve_device(device)
    precision = resolve_precision(precision, device_)
    model = build_model(arch)
    initialize_weights(model, "vaekit")
    model.to(device_)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device_.type, enabled=precision == "fp16")
    config = TrainConfig(arch=arch, channels_last=channels_last)
    images = torch.randint(0, 256, (batch_size * 4, *model.image_shape), dtype=torch.uint8, device=device_)

    def step(i: int) -> None:
        x = prepare_images(images[(i % 4) * batch_size : (i % 4 + 1) * batch_size], channels_last)
        train_step(model, optimizer, scaler, x, 1.0, config, device_, precision)

    for i in range(5):
        step(i)
    if device_.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    if device_.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {
        "arch": arch, "batch_size": batch_size, "steps": steps, "precision": precision,
        "channels_last": channels_last, "device": str(device_), "params": count_parameters(model),
        "images_per_s": round(steps * batch_size / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_version": torch.__version__, "threads": torch.get_num_threads(),
    }
    if device_.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device_)
    return result


def run_subprocess(command: list[str]) -> dict | None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  failed: {' '.join(command)}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="vaekit vs Keras training throughput")
    parser.add_argument("--arch", choices=[*DEFAULTS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 150 / 30)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--keras-python", default=str(ROOT / ".venv-keras" / "bin" / "python"),
                        help="Python with TensorFlow + Keras 3 installed")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--worker", nargs=5, metavar=("ARCH", "BATCH", "STEPS", "PRECISION", "CHANNELS_LAST"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        arch, batch, steps, precision, channels_last = args.worker
        print(json.dumps(measure_torch(arch, int(batch), int(steps), precision, channels_last == "1", args.device)))
        return

    archs = list(DEFAULTS) if args.arch == "all" else [args.arch]
    results = []
    for arch in archs:
        batch, steps = DEFAULTS[arch]
        steps = args.steps or steps
        print(f"{arch} (batch {batch}, {steps} timed steps)")
        keras = None
        if Path(args.keras_python).exists():
            keras = run_subprocess([args.keras_python, "benchmarks/keras_reference.py", "--arch", arch, "--json",
                                    "--batch-size", str(batch), "--steps", str(steps)])
        else:
            print(f"  keras: skipped ({args.keras_python} not found; see this script's docstring)")
        if keras:
            keras["variant"] = "keras"
            results.append(keras)
            print(f"  {'keras ' + keras.get('keras_version', ''):<22} {keras['images_per_s']:>8.1f} img/s  "
                  f"peak RSS {keras['peak_rss_mb']:.0f} MB")
        for variant in args.variants:
            precision, channels_last = VARIANTS[variant]
            row = run_subprocess([sys.executable, __file__, "--device", args.device, "--worker", arch, str(batch),
                                  str(steps), precision, "1" if channels_last else "0"])
            if row is None:
                continue
            row["variant"] = variant
            if keras:
                row["ratio_to_keras"] = round(row["images_per_s"] / keras["images_per_s"], 2)
            results.append(row)
            ratio = f"  {row['ratio_to_keras']:.2f}x keras" if keras else ""
            print(f"  {variant + ' (' + row['precision'] + ')':<22} {row['images_per_s']:>8.1f} img/s  "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB{ratio}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
