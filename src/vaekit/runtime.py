"""Where and in which precision models run: devices, autocast, CPU features.

One owner for the choice of device (``auto`` picks cuda, then mps, then cpu)
and precision (``auto`` picks bf16 or fp16 on GPUs, else fp32; training
measures instead, see :mod:`vaekit.training.tuning`), used by training and by
every command that runs a model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

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


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to run a model in on ``device``; ``"auto"`` is bf16 (else fp16) on GPUs, float32 elsewhere.

    Training resolves ``"auto"`` by measurement instead
    (:func:`vaekit.training.tuning.choose_speed`): which precision is faster
    on a CPU depends on the CPU, and no feature flag predicts it.
    """
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("precision fp16 is for GPUs; use bf16 or fp32 on the CPU", param="precision")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16 or fp16 on ``device`` for ``precision``; nothing for ``"fp32"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def stop_on_sigterm() -> None:
    """Treat SIGTERM (``kill``, job schedulers, preemption) like Ctrl-C: the training saves, then stops.

    Call it once at the start of a program that trains (the CLI does). A shell's
    background job starts with SIGINT ignored; Ctrl-C then saves too. Outside
    the main thread it does nothing (Python sets signal handlers there only).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
