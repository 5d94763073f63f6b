"""Training throughput of vaekit against Keras at its best, side by side, on this CPU.

For each architecture (``fashion28`` at batch 128, ``nn3-128`` at batch 64)
this measures steady-state training images/s of

* ``vaekit default``: the trainer's own step with the settings ``vaekit
  train`` picks on this machine (``precision`` and ``compile`` ``auto``, chosen
  by :func:`vaekit.training.tuning.choose_speed` for a realistic run length;
  channels-last, fused Adam where it measures faster);
* ``vaekit fp32`` and ``vaekit bf16``: the same step forced to one precision,
  eager, unfused Adam;
* ``keras float32`` and ``keras mixed_bfloat16``: ``benchmarks/keras_reference.py``
  under each Keras dtype policy, in its own virtualenv (``python3 -m venv
  .venv-keras && .venv-keras/bin/pip install tensorflow-cpu keras``). Keras
  at its best is the faster of the two.

It also measures the matmul ceiling of the CPU in fp32 and bf16
(``benchmarks/flops.py``) and prints, for each side, the fraction of the
ceiling of the precision it ran in (images/s x training FLOPs per image /
ceiling). The target: where bf16 matmul is faster than fp32 on this CPU,
vaekit's default must reach 1.3x Keras at its best; elsewhere 1.0x.

Each measurement runs in a fresh subprocess, one after the other, and reports
its best window of steps, so a burst of load from another process does not
decide it. Random uint8 images are used: throughput does not depend on pixel
values.

Usage::

    python benchmarks/train_throughput.py                  # both archs
    python benchmarks/train_throughput.py --arch fashion28 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEFAULTS = {"fashion28": (128, 120), "nn3-128": (64, 24)}  # batch size, timed steps
#: Steps of the run the default settings are chosen for: 10 Fashion-MNIST epochs, 20 CelebA epochs.
RUN_STEPS = {"fashion28": 10 * math.ceil(60000 / 128), "nn3-128": 20 * math.ceil(162770 / 64)}
VARIANTS = {"vaekit default": "auto", "vaekit fp32": "fp32", "vaekit bf16": "bf16"}
KERAS_POLICIES = ("float32", "mixed_bfloat16")
WINDOWS = 5  # timed steps are split in this many windows; the best one counts


def measure_torch(arch: str, batch_size: int, steps: int, precision: str, device: str) -> dict:
    """Time ``steps`` training steps after a warm-up; runs in the current process."""
    import torch

    from vaekit.models import build_model, count_parameters, to_channels_last
    from vaekit.runtime import resolve_device
    from vaekit.training.config import TrainConfig
    from vaekit.training.step import prepare_images, train_step
    from vaekit.training.tuning import choose_speed, compile_model, make_optimizer

    torch.manual_seed(0)
    device_ = resolve_device(device)
    model = build_model(arch)
    if precision == "auto":
        speed = choose_speed(model, device_, "auto", "auto", batch_size, RUN_STEPS[arch], measure=True)
    else:
        speed = choose_speed(model, device_, precision, "off", batch_size, RUN_STEPS[arch], fused="off")
    model = to_channels_last(model.to(device_))
    config = TrainConfig(arch=arch)
    optimizer = make_optimizer(model, config.lr, speed.fused)
    scaler = torch.amp.GradScaler(device_.type, enabled=speed.precision == "fp16")
    step_model = compile_model(model, speed.compile)
    images = torch.randint(0, 256, (batch_size * 4, *model.image_shape), dtype=torch.uint8, device=device_)

    def step(i: int) -> None:
        x = prepare_images(images[(i % 4) * batch_size: (i % 4 + 1) * batch_size], True)
        train_step(step_model, optimizer, scaler, x, 1.0, config, device_, speed.precision)

    for i in range(5):
        step(i)
    window = max(1, steps // WINDOWS)
    rates = []
    for w in range(WINDOWS):
        if device_.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for i in range(window):
            step(i)
        if device_.type == "cuda":
            torch.cuda.synchronize()
        rates.append(window * batch_size / (time.perf_counter() - started))
    return {
        "arch": arch, "batch_size": batch_size, "steps": window * WINDOWS, "precision": speed.precision,
        "compile": speed.compile, "speed": speed.to_dict(), "device": str(device_),
        "params": count_parameters(model), "images_per_s": round(max(rates), 1),
        "median_images_per_s": round(sorted(rates)[len(rates) // 2], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_version": torch.__version__, "threads": torch.get_num_threads(),
    }


def run_subprocess(command: list[str]) -> dict | None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  failed: {' '.join(command)}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def ceilings() -> dict[str, float]:
    """Measured CPU matmul FLOP/s in fp32 and bf16."""
    import torch
    from flops import measured_matmul_flops

    return {dtype: measured_matmul_flops(torch.device("cpu"), dtype) for dtype in ("fp32", "bf16")}


def flops_per_image(arch: str) -> float:
    from flops import training_flops_per_image

    from vaekit.models import build_model

    return training_flops_per_image(build_model(arch))


def compare(arch: str, args: argparse.Namespace, ceiling: dict[str, float]) -> list[dict]:
    batch, steps = DEFAULTS[arch]
    steps = args.steps or steps
    flops = flops_per_image(arch)
    print(f"{arch} (batch {batch}, {steps} timed steps, {flops / 1e6:.0f} MFLOP per image per step)")
    rows: list[dict] = []
    if Path(args.keras_python).exists():
        for policy in KERAS_POLICIES:
            row = run_subprocess([args.keras_python, "benchmarks/keras_reference.py", "--arch", arch, "--json",
                                  "--batch-size", str(batch), "--steps", str(steps), "--policy", policy])
            if row:
                row.update(variant=f"keras {policy}", images_per_s=row.get("best_window_images_per_s",
                                                                          row["images_per_s"]),
                           precision="bf16" if policy == "mixed_bfloat16" else "fp32")
                rows.append(row)
    else:
        print(f"  keras: skipped ({args.keras_python} not found; see this script's docstring)")
    for variant, precision in VARIANTS.items():
        row = run_subprocess([sys.executable, __file__, "--device", args.device, "--worker", arch, str(batch),
                              str(steps), precision])
        if row:
            row["variant"] = variant
            rows.append(row)
    keras_rows = [r for r in rows if r["variant"].startswith("keras")]
    keras_best = max(keras_rows, key=lambda r: r["images_per_s"]) if keras_rows else None
    for row in rows:
        row["ceiling_fraction"] = round(row["images_per_s"] * flops / ceiling[row["precision"]], 3)
        if keras_best:
            row["ratio_to_keras_best"] = round(row["images_per_s"] / keras_best["images_per_s"], 2)
        ratio = f"  {row['ratio_to_keras_best']:.2f}x keras best" if keras_best else ""
        extra = (f"+compile {row['compile']}" if row.get("compile", "off") != "off" else "") + \
            ("+fused" if row.get("speed", {}).get("fused") else "")
        print(f"  {row['variant']:<24} {row['precision'] + extra:<16} {row['images_per_s']:>8.1f} img/s  "
              f"{100 * row['ceiling_fraction']:5.1f}% of the {row['precision']} matmul ceiling{ratio}", flush=True)
    if keras_best:
        default = next((r for r in rows if r["variant"] == "vaekit default"), None)
        target = 1.3 if ceiling["bf16"] > ceiling["fp32"] else 1.0
        if default:
            verdict = "PASS" if default["ratio_to_keras_best"] >= target else "FAIL"
            print(f"  target: vaekit default >= {target}x keras at its best ({keras_best['variant']}): "
                  f"{default['ratio_to_keras_best']:.2f}x {verdict}")
            default["target"] = {"ratio": target, "keras_best": keras_best["variant"], "verdict": verdict}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="vaekit vs Keras (at its best) training throughput")
    parser.add_argument("--arch", choices=[*DEFAULTS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 120 / 24)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keras-python", default=str(ROOT / ".venv-keras" / "bin" / "python"),
                        help="Python with TensorFlow + Keras 3 installed")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--worker", nargs=4, metavar=("ARCH", "BATCH", "STEPS", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        arch, batch, steps, precision = args.worker
        print(json.dumps(measure_torch(arch, int(batch), int(steps), precision, args.device)))
        return

    from flops import cpu_name

    machine = cpu_name()
    ceiling = ceilings()
    print(f"CPU: {machine}")
    print(f"matmul ceiling: fp32 {ceiling['fp32'] / 1e9:.0f} GFLOP/s, bf16 {ceiling['bf16'] / 1e9:.0f} GFLOP/s")
    results = {"machine": machine, "matmul_ceiling_flops": ceiling, "rows": []}
    for arch in list(DEFAULTS) if args.arch == "all" else [args.arch]:
        results["rows"] += compare(arch, args, ceiling)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
