"""Training callbacks: what the :class:`~vaekit.training.Trainer` tells the outside world.

A callback overrides any of four hooks; the trainer calls them on rank 0 (on
every rank for callbacks with ``all_ranks = True``) in this order::

    on_train_start(trainer)
    on_step_end(trainer, terms)      # after every optimiser step
    on_epoch_end(trainer, row)       # the metrics row of the epoch, as in metrics.csv
    on_train_end(trainer)

``terms`` holds the step's batch means as floats (``loss``, ``recon``,
``kl``), ``beta`` and the batch size ``n``. Reading them forces one
device sync per step, so the progress bar reads its own running sums instead.

The progress bar and the CSV logger are callbacks; a TensorBoard logger is
the example of a new one (:class:`TensorBoardLogger`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vaekit.files import write_csv
from vaekit.runs.run import METRICS_FILE

if TYPE_CHECKING:
    from vaekit.training.trainer import Trainer


class Callback:
    """Base class: every hook does nothing.

    Under ``torchrun`` hooks run on rank 0 only, unless ``all_ranks`` is true
    (then on every rank, e.g. to act on one rank in a test).
    """

    #: Run this callback's hooks on every rank of a distributed run, not only on rank 0.
    all_ranks: bool = False

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first step (also when resuming)."""

    def on_step_end(self, trainer: Trainer, terms: dict[str, float]) -> None:
        """Called after each optimiser step with the step's loss terms."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Called after each epoch with its metrics row (test -ELBO, active units, ...)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch, before the run is marked complete."""

    @property
    def needs_terms(self) -> bool:
        """Whether :meth:`on_step_end` reads ``terms`` (reading them costs a device sync per step)."""
        return type(self).on_step_end is not Callback.on_step_end


class CSVLogger(Callback):
    """Writes ``RUN/metrics.csv`` (atomically) after every epoch: all rows so far."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        write_csv(trainer.run_dir / METRICS_FILE, trainer.metrics)


class ProgressBar(Callback):
    """A tqdm bar per epoch with running loss, recon, KL and images/s, and one summary line per epoch."""

    def __init__(self, refresh_every: int = 20) -> None:
        self.refresh_every = refresh_every
        self.bar = None

    def _open(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        # Opened at the first step of the epoch, which is then already done.
        self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.step - 1,
                        desc=f"epoch {trainer.epoch + 1}/{trainer.config.epochs}", unit="batch", leave=False,
                        dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, terms: dict[str, float]) -> None:
        if self.bar is None:
            self._open(trainer)
        self.bar.update(1)
        step = trainer.step - 1
        if step % self.refresh_every == 0 or trainer.step == trainer.steps_per_epoch:
            # Running means of this session's part of the epoch; one device sync every refresh_every steps.
            means = trainer.running_means()
            self.bar.set_postfix(loss=f"{means[0]:.2f}", recon=f"{means[1]:.2f}", kl=f"{means[2]:.2f}",
                                 img_s=f"{trainer.images_per_second():.0f}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        self.close()
        tqdm.write(
            f"epoch {row['epoch']}/{trainer.config.epochs}  loss {row['train_loss']:.2f}  "
            f"recon {row['train_recon']:.2f}  kl {row['train_kl']:.2f}  test -ELBO {row['test_elbo']:.2f} nats  "
            f"active units {row['active_units']}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s"
        )
        if trainer.collapse is not None and trainer.collapse.collapsed:
            tqdm.write(f"WARNING: posterior collapse: {trainer.collapse.reason} "
                       "(see docs/training.md, 'Posterior collapse')")

    def close(self) -> None:
        """Close the bar (also after Ctrl-C)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @property
    def needs_terms(self) -> bool:
        return False


class StepHook(Callback):
    """Calls ``function(epoch, step)`` after every step (zero-based; for tests and simple hooks)."""

    def __init__(self, function: Callable[[int, int], None]) -> None:
        self.function = function

    def on_step_end(self, trainer: Trainer, terms: dict[str, float]) -> None:
        self.function(trainer.epoch, trainer.step - 1)

    @property
    def needs_terms(self) -> bool:
        return False


class TensorBoardLogger(Callback):
    """Loss terms per step and the metrics row per epoch, for TensorBoard (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def on_step_end(self, trainer: Trainer, terms: dict[str, float]) -> None:
        for name in ("loss", "recon", "kl"):
            if math.isfinite(terms[name]):  # a diverged step is reported by the trainer, not plotted
                self.writer.add_scalar(f"train/{name}", terms[name], trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        for name in ("test_elbo", "test_recon", "test_kl", "active_units"):
            self.writer.add_scalar(f"test/{name}", row[name], row["epoch"])

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()
