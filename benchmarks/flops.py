"""FLOP counts and FLOP/s ceilings for the GPU throughput benchmark.

* :func:`training_flops_per_image`: analytic FLOPs of one training step per
  image: the multiply-adds of every ``Conv2d``, ``ConvTranspose2d`` and
  ``Linear`` in one forward pass (counted by forward hooks on a batch of 1),
  x2 for FLOPs, x3 for forward + backward (the backward pass computes the
  gradients of both the inputs and the weights, each as large as the forward).
  Activations, the loss, the sampling and the optimiser are left out: they are
  a few percent at most and run on no matrix unit.
* :func:`peak_flops`: a GPU's dense datasheet peak, from a small table matched
  on ``torch.cuda.get_device_name()``.
* :func:`measured_matmul_flops`: FLOP/s of large square matrix products timed
  on the device (warm-up, synchronize, median of repeats): the measured matmul
  ceiling, the only one available for CPUs.
* :func:`cpu_name`: the CPU's model name and the flags that decide its bf16 speed.

Usage::

    python benchmarks/flops.py                      # FLOPs per image of each architecture
    python benchmarks/flops.py --matmul cpu fp32    # and a measured matmul ceiling
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch import nn

#: Dense peak TFLOP/s (no sparsity) by dtype, matched in order on the CUDA device name (lower case).
PEAK_TFLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("h200",), {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),  # same chip as the H100 SXM
    (("h100", "pcie"), {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    (("h100",), {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),  # SXM (HBM3)
    (("a100",), {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]
#: CPU flags that decide how fast bf16 (and float32) matrix products are.
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}


def forward_macs(model: nn.Module, image_shape: tuple[int, ...] | None = None) -> dict[str, int]:
    """Multiply-adds of one forward pass on one image, per Conv2d / ConvTranspose2d / Linear layer.

    Counted from the shapes each layer sees, through forward hooks on a batch of 1
    (float32, on the CPU, on a copy-free eval pass with no gradients).
    """
    shape = tuple(image_shape or model.image_shape)
    macs: dict[str, int] = {}
    hooks = []

    def hook(name: str):
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                # every output element: C_in / groups * kH * kW multiply-adds
                per = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                n = output[0].numel() * per
            elif isinstance(module, nn.ConvTranspose2d):
                # every input element is scattered into C_out / groups * kH * kW outputs
                per = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                n = x[0].numel() * per
            else:  # Linear
                n = x[0].numel() // module.in_features * module.in_features * module.out_features
            macs[name] = macs.get(name, 0) + int(n)
        return count

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.rand((1, *shape), device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return macs


def training_flops_per_image(model: nn.Module) -> float:
    """FLOPs of one training step per image: 2 x 3 x the forward multiply-adds of the matrix layers."""
    return 6.0 * sum(forward_macs(model).values())


def peak_flops(device: torch.device | str, dtype: str | torch.dtype = "bf16") -> float | None:
    """Dense datasheet peak FLOP/s of a CUDA device for ``dtype`` (bf16, fp16, tf32, fp32); None if unknown.

    CPUs have no entry: use :func:`measured_matmul_flops` there.
    """
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_for_name(torch.cuda.get_device_name(device), dtype)


def peak_for_name(name: str, dtype: str | torch.dtype = "bf16") -> float | None:
    """:func:`peak_flops` for a device name (testable without a GPU)."""
    key = _dtype_name(dtype)
    lowered = name.lower()
    for needles, table in PEAK_TFLOPS:
        if all(n in lowered for n in needles):
            return table[key] * 1e12 if key in table else None
    return None


def measured_matmul_flops(device: torch.device | str, dtype: str | torch.dtype = "bf16", n: int | None = None,
                          repeats: int = 10, warmup: int = 3) -> float:
    """FLOP/s of ``n x n`` matrix products on ``device``: median of ``repeats`` timed products after ``warmup``.

    ``n`` defaults to 8192 on a GPU and 2048 on a CPU. Inputs are random (never
    zeros, which can run faster than real data); ``dtype="tf32"`` is float32
    with TF32 matrix units allowed, ``"fp32"`` with them forbidden.
    """
    device = torch.device(device)
    key = _dtype_name(dtype)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(_DTYPES[key])
    b = torch.randn(n, n, device=device).to(_DTYPES[key])
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
    try:
        for _ in range(warmup):
            torch.mm(a, b)
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2.0 * n ** 3 / statistics.median(times)


def cpu_name() -> dict[str, Any]:
    """The CPU's model name (from /proc/cpuinfo), its flags of interest and torch's thread count."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            for line in handle:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import platform

    return {"model": model or platform.processor() or platform.machine(),
            "flags": [f for f in CPU_FLAGS if f in flags], "threads": torch.get_num_threads()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype_name(dtype: str | torch.dtype) -> str:
    if isinstance(dtype, torch.dtype):
        return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description="training FLOPs per image and matmul ceilings")
    parser.add_argument("--matmul", nargs=2, metavar=("DEVICE", "DTYPE"), default=None,
                        help="also time square matrix products, e.g. --matmul cuda bf16")
    args = parser.parse_args()
    from vaekit.models import build_model

    for arch in ("fashion28", "nn3-128"):
        model = build_model(arch)
        macs = forward_macs(model)
        print(f"{arch}: {training_flops_per_image(model) / 1e6:,.1f} MFLOP per image per training step "
              f"({sum(macs.values()) / 1e6:,.1f} M forward multiply-adds)")
        for name, count in macs.items():
            print(f"  {name:<14} {count / 1e6:>10.2f} M MAC")
    if args.matmul:
        device, dtype = args.matmul
        print(f"matmul {dtype} on {device}: {measured_matmul_flops(device, dtype) / 1e12:.2f} TFLOP/s")
    print(cpu_name())


if __name__ == "__main__":
    main()
