"""Where training batches come from: resident on the device, or streamed from disk.

Training reads one uint8 batch per step. When the training split fits the
memory budget (half the free GPU memory on a GPU, half the available RAM on
a CPU, or ``memory_budget_gb``), it is kept **resident**: copied to the device
once, each batch one ``index_select``. When it does not, batches are
**streamed** from the (memory-mapped) uint8 cache: a background thread
gathers the next batches (indices sorted, so the disk is read in order) into
page-locked buffers and copies them to the device asynchronously, two batches
ahead of the step that needs them. Training then never holds the whole
dataset in memory, and each rank of a distributed run reads only its own
share of every global batch.

Both sources serve the same images in the same order, so a run trains to the
same weights whichever is chosen.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

import torch

from vaekit.errors import ConfigError

#: ``data_placement`` choices.
PLACEMENTS = ("auto", "resident", "stream")
#: Fraction of the free device memory (or available RAM) a resident training split may take.
BUDGET_FRACTION = 0.5
#: Batches prepared ahead of the one being trained on (double buffering).
PREFETCH = 2


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: free GPU memory, or the available RAM for a CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def memory_budget(device: torch.device, budget_gb: float | None = None) -> int:
    """Bytes a resident training split may take on ``device`` (``budget_gb`` overrides)."""
    if budget_gb is not None:
        return int(budget_gb * 2**30)
    return int(available_memory(device) * BUDGET_FRACTION)


def choose_placement(nbytes: int, device: torch.device, placement: str = "auto",
                     budget_gb: float | None = None) -> str:
    """``"resident"`` or ``"stream"`` for a training split of ``nbytes`` bytes.

    Parameters
    ----------
    nbytes
        Size of the uint8 training images this process would hold.
    device
        Where training runs.
    placement
        ``"auto"`` (resident when it fits :func:`memory_budget`), or a forced
        ``"resident"`` or ``"stream"``.
    budget_gb
        The budget in GiB instead of the measured one.
    """
    if placement not in PLACEMENTS:
        raise ConfigError(f"data_placement must be one of {', '.join(PLACEMENTS)}, got '{placement}'",
                          param="data_placement")
    if placement != "auto":
        return placement
    return "resident" if nbytes <= memory_budget(device, budget_gb) else "stream"


def step_indices(order: torch.Tensor, start_step: int, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> Iterator[torch.Tensor]:
    """This rank's share of each global batch of ``order``, from ``start_step`` on.

    The global batch ``order[s * batch_size : (s + 1) * batch_size]`` is dealt
    out round-robin (``[rank::world_size]``), so ranks get equal shares up to
    one image and together cover every image once.
    """
    steps = -(-len(order) // batch_size)
    for step in range(start_step, steps):
        yield order[step * batch_size:(step + 1) * batch_size][rank::world_size]


class ResidentBatches:
    """The whole training split on the device; a batch is one ``index_select``."""

    placement = "resident"

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.device = device
        self.images = images.to(device)

    def epoch(self, order: torch.Tensor, start_step: int, batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[torch.Tensor]:
        """uint8 batches on the device for the steps of this epoch from ``start_step``."""
        order = order.to(self.device, non_blocking=True)
        for index in step_indices(order, start_step, batch_size, rank, world_size):
            yield self.images.index_select(0, index)


class StreamedBatches:
    """Batches gathered from host (memory-mapped) images by a background thread, two steps ahead.

    On a GPU the gathered batch lands in a page-locked buffer and is copied to
    the device on a side stream; the training stream waits for that copy only.
    """

    placement = "stream"

    def __init__(self, images: torch.Tensor, device: torch.device, prefetch: int = PREFETCH) -> None:
        self.images, self.device, self.prefetch = images, device, max(1, prefetch)
        self.pin = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if self.pin else None

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        # Read rows in file order (sequential disk access), then restore the batch order.
        sorted_index, position = index.sort()
        rows = self.images.index_select(0, sorted_index)
        batch = torch.empty_like(rows, pin_memory=self.pin)
        batch.index_copy_(0, position, rows)
        return batch

    def _to_device(self, batch: torch.Tensor) -> tuple[torch.Tensor, object]:
        if self.copy_stream is None:
            return batch.to(self.device), None
        with torch.cuda.stream(self.copy_stream):
            moved = batch.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.copy_stream)
        return moved, (event, batch)  # keep the pinned buffer alive until the copy is done

    def epoch(self, order: torch.Tensor, start_step: int, batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[torch.Tensor]:
        """uint8 batches on the device for the steps of this epoch from ``start_step``."""
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def offer(item: object) -> bool:
            # Wait for room, but give up once the consumer has gone: a blocking
            # put would leave this thread (and its batches) alive for good.
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for index in step_indices(order.cpu(), start_step, batch_size, rank, world_size):
                    if not offer(self._to_device(self._gather(index))):
                        return
                offer(done)
            except BaseException as error:  # noqa: BLE001 - handed to the training thread
                offer(error)

        worker = threading.Thread(target=produce, name="vaekit-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                batch, pending = item
                if pending is not None:
                    torch.cuda.current_stream(self.device).wait_event(pending[0])
                    batch.record_stream(torch.cuda.current_stream(self.device))
                yield batch
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)


def batch_source(images: torch.Tensor, device: torch.device, placement: str = "auto",
                 budget_gb: float | None = None) -> ResidentBatches | StreamedBatches:
    """The batch source for training on ``images`` (uint8 ``(N, C, H, W)``) on ``device``.

    ``placement`` and ``budget_gb`` are as in :func:`choose_placement`.
    """
    nbytes = images.numel() * images.element_size()
    chosen = choose_placement(nbytes, device, placement, budget_gb)
    return ResidentBatches(images, device) if chosen == "resident" else StreamedBatches(images, device)
