"""The training checkpoint: everything needed to resume to bit-identical weights.

``RUN/checkpoint.pt`` holds the model, optimiser and grad-scaler states, the
shuffling generator and every RNG state, the epoch reached and, for a run
stopped mid-epoch, that epoch's order, step and partial loss sums. A run
trained under ``torchrun`` also records ``world_size`` and every rank's RNG
state (``rng_ranks``; ``rng`` is rank 0's). It holds
tensors and plain containers only, written atomically and read back with
``torch.load(weights_only=True)``, which cannot execute code.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import RunDirError
from vaekit.files import atomic_write_bytes
from vaekit.models.pretrained import check_state
from vaekit.runs.run import CHECKPOINT_FILE
from vaekit.training.config import MAX_EPOCHS


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``run_dir/checkpoint.pt`` atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(run_dir: Path, model: torch.nn.Module | None = None, n_train: int | None = None,
                    steps_per_epoch: int | None = None) -> dict[str, Any] | None:
    """The checkpoint of ``run_dir``, checked by :func:`validate_checkpoint`, or None when there is none.

    Without the optional arguments only the structure is checked; pass the
    model being resumed, the number of training images and the steps per
    epoch to check what depends on them too.

    Raises
    ------
    RunDirError
        One line naming the file and the problem, if the file is there but
        is not a sound vaekit checkpoint.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        # weights_only=True: only tensors and plain containers, never arbitrary objects. Torch's
        # warnings (about pickle protocols, say) would add lines to the one-line error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message is multi-line and advises loading unsafely
        raise RunDirError(f"{path}: not a vaekit checkpoint (unreadable, or holds more than tensors and "
                          "plain containers)") from None
    return validate_checkpoint(payload, path, model=model, n_train=n_train, steps_per_epoch=steps_per_epoch)


#: What every checkpoint holds (``scaler`` is optional).
CHECKPOINT_KEYS = ("model", "optimizer", "order_rng", "rng", "epoch", "epoch_state")
_GENERATOR_STATE_SIZE = torch.Generator().get_state().numel()


def validate_checkpoint(payload: Any, path: Path, model: torch.nn.Module | None = None, n_train: int | None = None,
                        steps_per_epoch: int | None = None) -> dict[str, Any]:
    """Return ``payload`` if it is a sound checkpoint, else raise :class:`RunDirError` (one line).

    Parameters
    ----------
    payload
        What ``torch.load`` returned.
    path
        The file, named in messages.
    model
        The model being resumed: the checkpoint's weights and optimiser
        state must fit it (names, shapes, dtypes, finite values).
    n_train, steps_per_epoch
        The training set size and steps per epoch of the resumed run: a
        mid-epoch state must have an order of ``n_train`` images and a step
        from 0 to ``steps_per_epoch``.
    """
    def bad(message: str) -> RunDirError:
        return RunDirError(f"{path}: {message}")

    if not isinstance(payload, dict):
        raise bad(f"not a vaekit checkpoint (a mapping expected, got {type(payload).__name__})")
    missing = [key for key in CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise bad(f"not a vaekit checkpoint (missing {', '.join(missing)})")
    _check_model_state(payload["model"], model, bad)
    _check_average(payload.get("average"), model, bad)
    _check_optimizer(payload["optimizer"], model, bad)
    if payload.get("scaler") is not None and not isinstance(payload["scaler"], dict):
        raise bad(f"scaler must be a mapping, got {type(payload['scaler']).__name__}")
    _check_generator_state(payload["order_rng"], "order_rng", bad)
    _check_rng(payload["rng"], "rng", bad)
    world = payload.get("world_size", 1)
    if type(world) is not int or world < 1:
        raise bad(f"world_size must be a positive integer, got {world!r}")
    ranks = payload.get("rng_ranks")
    if ranks is not None:
        if not isinstance(ranks, list) or len(ranks) != world:
            raise bad(f"rng_ranks must be a list of {world} RNG states (one per process)")
        for i, state in enumerate(ranks):
            _check_rng(state, f"rng_ranks[{i}]", bad)
    epoch = payload["epoch"]
    if type(epoch) is not int or not 0 <= epoch <= MAX_EPOCHS:
        raise bad(f"epoch must be an integer from 0 to {MAX_EPOCHS}, got {epoch!r}")
    _check_epoch_state(payload["epoch_state"], n_train, steps_per_epoch, bad)
    return payload


def _check_rng(rng: Any, name: str, bad: Any) -> None:
    if not isinstance(rng, dict) or "cpu" not in rng:
        raise bad(f"{name} must be a mapping with a 'cpu' state")
    _check_generator_state(rng["cpu"], f"{name}.cpu", bad)
    if "cuda" in rng and not (isinstance(rng["cuda"], torch.Tensor) and rng["cuda"].dtype == torch.uint8
                              and rng["cuda"].dim() == 1):
        raise bad(f"{name}.cuda must be a 1-D uint8 tensor")


def check_world_size(payload: dict[str, Any], path: Path, world: int) -> None:
    """Refuse to resume a checkpoint written by another number of training processes (one line).

    Each rank's RNG state and share of every batch depend on the number of
    processes, so the run would not continue as it started.
    """
    saved = int(payload.get("world_size", 1))
    if saved != world:
        raise RunDirError(f"{path}: written by {saved} training process{'es' if saved != 1 else ''}, "
                          f"resumed with {world}; resume with the same number (torchrun --nproc-per-node "
                          f"and --nnodes)")


def _check_model_state(state: Any, model: torch.nn.Module | None, bad: Any, what: str = "model") -> None:
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise bad(f"{what} must be a mapping of tensor names to tensors")
    if model is not None:
        try:
            check_state(model, state, what)
        except RunDirError as error:
            raise bad(str(error)) from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise bad(f"{what}: {name} holds NaN or infinite values")


def _check_average(state: Any, model: torch.nn.Module | None, bad: Any) -> None:
    """The moving average of the weights (``ema_decay``): absent, or weights like the model's and a count."""
    if state is None:
        return
    if not isinstance(state, dict) or type(state.get("updates")) is not int or state["updates"] < 0:
        raise bad("average must be a mapping with 'weights' and a non-negative integer 'updates'")
    _check_model_state(state.get("weights"), model, bad, "average.weights")


def _check_optimizer(state: Any, model: torch.nn.Module | None, bad: Any) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) \
            or not isinstance(state.get("param_groups"), list):
        raise bad("optimizer must be a mapping with 'state' and 'param_groups'")
    params = list(model.parameters()) if model is not None else None
    ids = []
    for i, group in enumerate(state["param_groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(type(p) is int for p in group["params"]):
            raise bad(f"optimizer.param_groups[{i}] must be a mapping with a list of parameter ids")
        ids += group["params"]
    if params is not None and len(ids) != len(params):
        raise bad(f"optimizer holds {len(ids)} parameters, the model has {len(params)}")
    shapes = {pid: tuple(p.shape) for pid, p in zip(ids, params)} if params is not None else {}
    for pid, entry in state["state"].items():
        if type(pid) is not int or pid not in ids or not isinstance(entry, dict):
            raise bad(f"optimizer.state has an entry {pid!r} for no parameter")
        for key, value in entry.items():
            if not isinstance(value, torch.Tensor):
                raise bad(f"optimizer.state[{pid}].{key} must be a tensor")
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise bad(f"optimizer.state[{pid}].{key} holds NaN or infinite values")
            if key in ("exp_avg", "exp_avg_sq") and pid in shapes and tuple(value.shape) != shapes[pid]:
                raise bad(f"optimizer.state[{pid}].{key} has shape {tuple(value.shape)}, expected {shapes[pid]}")


def _check_generator_state(state: Any, name: str, bad: Any) -> None:
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1 \
            or state.numel() != _GENERATOR_STATE_SIZE:
        raise bad(f"{name} must be a generator state (a 1-D uint8 tensor of {_GENERATOR_STATE_SIZE} bytes)")
    try:
        torch.Generator().set_state(state)
    except RuntimeError:
        raise bad(f"{name} is not a valid generator state") from None


def _check_epoch_state(state: Any, n_train: int | None, steps_per_epoch: int | None, bad: Any) -> None:
    if state is None:
        return
    if not isinstance(state, dict) or any(k not in state for k in ("order", "step", "sums", "seconds")):
        raise bad("epoch_state must be null or a mapping with order, step, sums and seconds")
    order, step, sums, seconds = state["order"], state["step"], state["sums"], state["seconds"]
    if not isinstance(order, torch.Tensor) or order.dtype != torch.int64 or order.dim() != 1 or order.numel() == 0:
        raise bad("epoch_state.order must be a non-empty 1-D int64 tensor")
    if not torch.equal(order.sort().values, torch.arange(order.numel())):
        raise bad("epoch_state.order is not a permutation of the training images")
    if n_train is not None and order.numel() != n_train:
        raise bad(f"epoch_state.order covers {order.numel()} images, the training set has {n_train}")
    if type(step) is not int or step < 0 or (steps_per_epoch is not None and step > steps_per_epoch):
        limit = "" if steps_per_epoch is None else f" to {steps_per_epoch}"
        raise bad(f"epoch_state.step must be an integer from 0{limit}, got {step!r}")
    if not isinstance(sums, torch.Tensor) or tuple(sums.shape) != (3,) or not sums.is_floating_point() \
            or not bool(torch.isfinite(sums).all()):
        raise bad("epoch_state.sums must be 3 finite floating-point values")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        raise bad(f"epoch_state.seconds must be a finite non-negative number, got {seconds!r}")


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
