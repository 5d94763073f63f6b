"""Where and in which precision models run: devices, autocast, CPU features.

One owner for the choice of device (``auto`` picks cuda, then mps, then cpu)
and precision (``auto`` picks bf16 or fp16 on GPUs, bf16 on CPUs with AMX,
else fp32), used by training and by every command that runs a model.
"""

from __future__ import annotations

import contextlib
import os

import torch

from vaekit.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``compile`` choices: chosen by measurement, never, always, always with CUDA graphs.
COMPILE_MODES = ("auto", "off", "on", "cudagraphs")


def is_main_process() -> bool:
    """True on rank 0 (or when not running distributed): only it logs and saves."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device '{name}'", param="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: no CUDA GPU is available", param="device")
    return device


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles, the only CPU feature that makes bf16 training faster.

    With AVX512-BF16 alone (no AMX), measured bf16 matrix products run at
    half the float32 speed (``benchmarks/train_throughput.py``).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            return any(line.startswith("flags") and "amx_bf16" in line for line in handle)
    except OSError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Pick the fastest precision that trains as well as float32 on ``device``."""
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("precision fp16 is for GPUs; use bf16 or fp32 on the CPU", param="precision")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_amx():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
