"""Data-parallel training under ``torchrun``: the process group and the few collectives training needs.

``torchrun --nproc-per-node N -m vaekit train ...`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. When
``WORLD_SIZE`` is above 1, :func:`init` joins them in one process group (NCCL
on GPUs, gloo on CPUs), once per process: ``train-family`` trains its
members one after another in the same group. Each rank runs on its own
device (``cuda:LOCAL_RANK``). Without torchrun every helper here is a cheap
no-op, so single-process training runs exactly as it always did.

Rank 0 alone writes the run directory. Whatever it checks or writes runs
through :func:`main_first`, which hands its result, or its error, to every
rank: a rank never waits for a collective its partner will not reach.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from vaekit.errors import ConfigError, VaekitError

T = TypeVar("T")


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_distributed() -> bool:
    """Whether this process is one of several training together (a process group is or will be used)."""
    return env_world_size() > 1


def world_size() -> int:
    """Number of processes training together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else env_world_size()


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1`` (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine (picks its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on GPUs under torchrun, else ``device``."""
    if is_distributed() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def init(device: torch.device) -> None:
    """Join the process group when ``WORLD_SIZE`` > 1 (idempotent; nothing to do otherwise).

    Parameters
    ----------
    device
        The device training resolved to: NCCL joins GPUs, gloo CPUs. On a GPU
        this rank's ``cuda:LOCAL_RANK`` becomes the current device, which
        NCCL's object collectives rely on.
    """
    if not is_distributed() or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device))
        dist.init_process_group(backend="nccl", device_id=rank_device(device))
    else:
        dist.init_process_group(backend="gloo")


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether collectives are needed: a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``tensor`` over the ranks, in place; returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def broadcast_object(value: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to be raised on the other ranks), else a VaekitError with its line."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any unpicklable error becomes its one line
        return VaekitError(str(error))


def main_first(function: Callable[[], T], broadcast_result: bool = True) -> T | None:
    """Run ``function`` on rank 0 and give its result, or raise its error, on every rank.

    A check that fails on rank 0 (the run directory already holds a run, a
    bad checkpoint) thus fails every rank with the same one-line error,
    instead of leaving them waiting in the next collective. In a single
    process it is just ``function()``.

    Parameters
    ----------
    function
        What rank 0 does (check, read or write the run directory).
    broadcast_result
        Send the result to the other ranks (else they get None).
    """
    if not active():
        return function()
    result, error = None, None
    if rank() == 0:
        try:
            result = function()
        except (Exception, KeyboardInterrupt) as caught:  # noqa: BLE001 - re-raised here and on every rank
            error = caught
        shared = (result if broadcast_result else None, None if error is None else _portable(error))
        broadcast_object(shared)
        if error is not None:
            raise error
        return result
    result, error = broadcast_object()
    if error is not None:
        raise error
    return result


def check_batch_size(batch_size: int) -> None:
    """Refuse a global batch smaller than the number of ranks (some rank would never get an image)."""
    world = world_size()
    if batch_size < world:
        raise ConfigError(f"batch_size {batch_size} is smaller than the {world} training processes; "
                          f"the batch size is global (split over the processes): use at least {world}",
                          param="batch_size")
