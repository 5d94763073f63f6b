"""The training checkpoint: everything needed to resume to bit-identical weights.

``RUN/checkpoint.pt`` holds the model, optimiser and grad-scaler states, the
shuffling generator and every RNG state, the epoch reached and, for a run
stopped mid-epoch, that epoch's order, step and partial loss sums. It holds
tensors and plain containers only, written atomically and read back with
``torch.load(weights_only=True)``, which cannot execute code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import RunDirError
from vaekit.files import atomic_write_bytes
from vaekit.runs.run import CHECKPOINT_FILE


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``run_dir/checkpoint.pt`` atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint of ``run_dir``, or None when there is none.

    Raises
    ------
    RunDirError
        If the file is there but unreadable.
    """
    path = run_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        # weights_only=True: only tensors and plain containers, never arbitrary objects.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is a user-facing problem
        raise RunDirError(f"{path}: unreadable checkpoint ({type(error).__name__}: {error})") from None


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global CPU RNG state, and the device's when it is a GPU."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
