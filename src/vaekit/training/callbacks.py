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

The progress bar and the CSV logger are callbacks; so is the TensorBoard
logger (:class:`TensorBoardLogger`) that ``log="tensorboard"`` adds
(:func:`tracker_callbacks`), the example of a new one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from vaekit.errors import ConfigError
from vaekit.files import write_csv
from vaekit.runs.run import METRICS_FILE

if TYPE_CHECKING:
    from vaekit.training.config import TrainConfig
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
    """Writes a TensorBoard log: loss terms per step, the metrics row and reconstructions per epoch.

    Needs the ``tensorboard`` package (``pip install 'vaekit[tensorboard]'``).
    Every event's step is the trainer's ``global_step`` (optimiser steps since
    the run began), so the per-epoch scalars and images line up with the
    per-step losses and a resumed run continues where it left off: the writer
    appends to the same ``log_dir`` and drops events a killed session logged
    past its checkpoint. The writer opens in :meth:`on_train_start`, which
    runs on rank 0 alone under ``torchrun``.

    Tags: ``train/loss``, ``train/recon``, ``train/kl`` and ``train/beta`` per
    step; ``test/elbo``, ``test/recon``, ``test/kl``, ``test/active_units``
    and ``train/epoch_loss`` per epoch; ``reconstructions``, an image with the
    first ``n_images`` test images above their reconstructions, per epoch.
    """

    def __init__(self, log_dir: str | Path, n_images: int = 8) -> None:
        check_tensorboard()
        self.log_dir, self.n_images = Path(log_dir), n_images
        self.writer = None

    def on_train_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # On resume, events a killed session wrote past the checkpoint are purged from the view.
        purge = trainer.global_step + 1 if trainer.global_step else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge)

    def on_step_end(self, trainer: Trainer, terms: dict[str, float]) -> None:
        for name in ("loss", "recon", "kl"):
            if math.isfinite(terms[name]):  # a diverged step is reported by the trainer, not plotted
                self.writer.add_scalar(f"train/{name}", terms[name], trainer.global_step)
        self.writer.add_scalar("train/beta", terms["beta"], trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        step = trainer.global_step
        for name in ("elbo", "recon", "kl"):
            self.writer.add_scalar(f"test/{name}", row[f"test_{name}"], step)
        self.writer.add_scalar("test/active_units", row["active_units"], step)
        self.writer.add_scalar("train/epoch_loss", row["train_loss"], step)
        if self.n_images > 0:
            self.writer.add_image("reconstructions", self.reconstruction_grid(trainer), step, dataformats="CHW")
        self.writer.flush()

    def reconstruction_grid(self, trainer: Trainer) -> torch.Tensor:
        """The first test images (top row) above their reconstructions: float ``(C, 2H, nW)`` in [0, 1]."""
        from vaekit.analysis.inference import Inference, as_float_images

        images = trainer.test_set.images[: self.n_images]
        recon = Inference(trainer.model, trainer.precision, channels_last=trainer.config.channels_last
                          ).reconstruct(images)
        rows = torch.stack([as_float_images(images.cpu()), recon])  # (2, n, C, H, W)
        two, n, c, h, w = rows.shape
        return rows.permute(2, 0, 3, 1, 4).reshape(c, two * h, n * w)

    def on_train_end(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the log (also after Ctrl-C or a divergence)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def check_tensorboard() -> None:
    """Raise :class:`~vaekit.errors.ConfigError` (``param="log"``) unless TensorBoard logging can work."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("--log tensorboard: needs the tensorboard package (pip install 'vaekit[tensorboard]')",
                          param="log") from None


def tracker_callbacks(config: TrainConfig, run_dir: str | Path) -> list[Callback]:
    """The callbacks of the experiment trackers ``config.log`` names, each checked to be usable.

    Called before training starts, so a missing package is one error line
    before anything is written. ``tensorboard`` logs into ``RUN/tensorboard``.
    """
    callbacks: list[Callback] = []
    for tracker in config.trackers:
        if tracker == "tensorboard":
            callbacks.append(TensorBoardLogger(Path(run_dir) / "tensorboard"))
    return callbacks
