"""The training engine: one :class:`Trainer`, one loop you can read top to bottom.

A :class:`Trainer` keeps all its state on the object (model, optimiser,
epoch, step, the epoch's shuffling order and loss sums) and persists it in a
run directory (:mod:`vaekit.runs`). Images stay uint8 tensors (on the
accelerator when there is one) and each batch is one ``index_select`` on
them, so there is no per-sample Python on the hot path.

Ctrl-C or SIGTERM mid-epoch saves a checkpoint holding the epoch's order, the
step reached and every RNG state, so :meth:`Trainer.restore` continues to the
same weights an uninterrupted run reaches.

Under ``torchrun`` (:mod:`vaekit.training.distributed`) every rank trains on
its share of each global batch through ``DistributedDataParallel``; rank 0
alone evaluates and writes the run directory. Signals only set a flag there,
read with the divergence flag in one all-reduce, so all ranks stop at the
same step and save once.

A loss that turns NaN or infinite (a learning rate far too high, badly scaled
data) stops training with :class:`TrainingDiverged`. Each step records the
first non-finite step in a device-side tensor (no sync); the trainer reads it
every :data:`DIVERGENCE_CHECK_EVERY` steps, at the end of every epoch and
before anything is saved, so the run directory keeps the last good epoch's
weights and checkpoint and ``config.json`` says ``"status": "diverged"``. :func:`vaekit.train` builds a
trainer from names (``arch="fashion28"``) or objects.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from vaekit import __version__
from vaekit.analysis.inference import Inference
from vaekit.analysis.limits import NonFiniteResultError, check_finite
from vaekit.data.dataset import ImageDataset
from vaekit.errors import VaekitError
from vaekit.files import read_json, write_json
from vaekit.models.pretrained import CONFIG_FILE, save_model
from vaekit.models.vae import to_channels_last
from vaekit.runtime import (
    is_main_process,
    resolve_device,
)
from vaekit.training import distributed
from vaekit.training.averaging import make_average
from vaekit.training.batches import batch_source
from vaekit.training.callbacks import Callback
from vaekit.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from vaekit.training.config import TrainConfig
from vaekit.training.coordination import RankCoordination
from vaekit.training.diagnostics import CollapseReport, diagnose_collapse
from vaekit.training.schedule import scheduled_lr
from vaekit.training.step import prepare_images, train_step
from vaekit.training.tuning import (
    choose_speed_on_all_ranks,
    compile_model,
    make_optimizer,
)

#: Figures written into the run directory when training ends.
FIGURES = ("reconstructions.png", "samples.png")
#: Steps between two reads of the device-side divergence flag (the progress bar syncs as often).
DIVERGENCE_CHECK_EVERY = 20


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` and :func:`vaekit.train` return."""

    run_dir: Path
    model: torch.nn.Module
    metrics: list[dict[str, Any]]


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the run has been saved for ``--resume``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted; saved to {run_dir}: resume with `vaekit train --resume {run_dir}`")
        self.run_dir = run_dir

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so a training process of a series can hand it to its parent (vaekit.training.series).
        return (TrainingInterrupted, (self.run_dir,))


class TrainingDiverged(VaekitError):
    """The loss (or the test ELBO) became NaN or infinite; the run keeps its last good epoch."""

    def __init__(self, message: str, run_dir: Path, epoch: int, step: int | None) -> None:
        super().__init__(message, param="lr")
        self.run_dir, self.epoch, self.step = run_dir, epoch, step

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so the rank that found the divergence can hand the error to the others.
        return (type(self), (self.args[0], self.run_dir, self.epoch, self.step))


class Trainer(RankCoordination):
    """Trains a VAE on a train/test pair of datasets into a run directory.

    Parameters
    ----------
    config
        The settings (``config.arch`` and ``config.dataset`` only name what
        ``model`` and ``train_set`` are, for the record).
    run_dir
        The run directory; it must exist and be empty or hold this run.
    model
        A :class:`~vaekit.models.VAE` or any module following the VAE protocol,
        already initialised (see :func:`vaekit.build_model`).
    train_set, test_set
        uint8 image datasets with the model's image shape.
    callbacks
        :class:`~vaekit.training.callbacks.Callback` objects, called on rank 0 (on every rank
        for those with ``all_ranks = True``).
    extra_config
        More entries for ``config.json`` (dataset description, data location).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, model: torch.nn.Module, train_set: ImageDataset,
                 test_set: ImageDataset, callbacks: Sequence[Callback] = (),
                 extra_config: dict[str, Any] | None = None) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        # Under torchrun each rank has its own GPU (cuda:LOCAL_RANK); joining the group is idempotent.
        self.device = distributed.rank_device(resolve_device(config.device))
        distributed.init(self.device)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        distributed.check_batch_size(config.batch_size)
        self.speed = choose_speed_on_all_ranks(
            model, self.device, config.precision, config.compile,
            batch_size=-(-config.batch_size // self.world),
            total_steps=config.epochs * math.ceil(len(train_set) / config.batch_size),
            channels_last=config.channels_last, fused=config.fused_optimizer)
        self.precision = self.speed.precision
        self.model = model.to(self.device)
        if config.channels_last:
            to_channels_last(self.model)
        self.train_set, self.test_set = train_set, test_set
        self.callbacks = [c for c in callbacks if c is not None]
        self.extra_config = extra_config or {}
        self.optimizer = make_optimizer(self.model, config.lr, self.speed.fused)
        self.average = make_average(self.model, config.ema_decay)  # None unless ema_decay is set
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.compile = self.speed.compile
        self.step_model = compile_model(self._parallel(self.model), self.compile)
        # Under torchrun every rank draws the global batch's noise from the same generator state and keeps its
        # share, so N processes train as one does. Models whose forward takes no noise draw their own, per rank.
        self._shared_noise = self.world > 1 and "noise" in inspect.signature(self.model.forward).parameters
        if self.world > 1 and not self._shared_noise:
            torch.manual_seed(config.seed + self.rank)
        self._stop = False  # a stop signal arrived on this rank (distributed runs only)
        self._first_signal: float | None = None
        self._previous_handlers: dict[int, Any] = {}
        self.batches = batch_source(train_set.images, self.device, config.data_placement, config.memory_budget_gb)
        self.steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.order: torch.Tensor | None = None
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, recon, KL x images
        self.seconds = 0.0
        self._clock: float | None = None
        self._clock_step = 0
        self.metrics: list[dict[str, Any]] = []
        self.collapse: CollapseReport | None = None
        # Global index of the first step whose loss was not finite (-1: none) and that loss, on the device.
        self._bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._bad_loss = torch.zeros((), dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Train from the current epoch and step to ``config.epochs``; save everything in the run directory."""
        self._main(lambda: self._save_model({"status": "running"}))
        self._call("on_train_start")
        self._install_stop_handlers()
        try:
            while self.epoch < self.config.epochs:
                if self.world > 1:
                    self._check_all_ranks(stops=True)  # a stop asked for during evaluation
                self._start_epoch()
                for batch in self.batches.epoch(self.order, self.step, self.config.batch_size, self.rank, self.world):
                    x = prepare_images(batch, self.config.channels_last)
                    self._set_lr()
                    terms = train_step(self.step_model, self.optimizer, self.scaler, x, self.beta(), self.config,
                                       self.device, self.precision, self._loss_scale(len(x)), self._noise())
                    if self.average is not None:
                        self.average.update(self.model)
                    if len(x):  # a rank's share of a short last batch may be empty (its mean loss is nan)
                        self.sums += torch.stack([terms.loss.detach(), terms.recon.detach(),
                                                  terms.kl.detach()]) * len(x)
                        self._record_finite(terms.loss.detach())
                    self.step += 1
                    self.global_step += 1
                    if self.step % DIVERGENCE_CHECK_EVERY == 0 or self.step == self.steps_per_epoch:
                        if self.world > 1:
                            self._check_all_ranks(stops=True)
                        else:
                            self.check_divergence()
                    self._call_step_end(terms, len(x))
                self._stop_clock()
                self._end_epoch()
        except TrainingDiverged:
            self._stop_clock()
            self._close_progress()
            raise
        except KeyboardInterrupt:
            self._stop_clock()
            try:  # never save non-finite weights as a checkpoint
                self.check_divergence()
                self._check_weights()
            finally:
                self._close_progress()
            self._save_checkpoint(mid_epoch=self.order is not None)
            self._main(lambda: self._save_model({"status": "interrupted"}))
            self._close_progress()
            raise TrainingInterrupted(self.run_dir) from None
        finally:
            self._restore_stop_handlers()
        self._finish()
        return TrainResult(self.run_dir, self.published_model, self.metrics)

    def _start_epoch(self) -> None:
        if self.order is None:  # a fresh epoch; a resumed one already has its order and sums
            self.order = torch.randperm(len(self.train_set), generator=self.order_generator)
            self.step, self.seconds = 0, 0.0
            self.sums.zero_()
        self.step_model.train()
        self._clock, self._clock_step = time.perf_counter(), self.step

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self.seconds += time.perf_counter() - self._clock
            self._clock = None

    def _end_epoch(self) -> None:
        if self.world > 1:  # the epoch's loss sums over all images; its time is the slowest rank's
            distributed.all_reduce_sum(self.sums)
            seconds = torch.tensor([self.seconds], dtype=torch.float64, device=self.device)
            self.seconds = float(distributed.all_reduce_max(seconds))
        row = self._main(self._evaluate_epoch)  # rank 0 evaluates; the others wait for its row (or error)
        with self._stop_signals_held():
            self.metrics.append(row)
            self.epoch += 1
            self.order = None
            self._main(lambda: self._save_model({"epochs_done": self.epoch}), broadcast_result=False)
            # Callbacks (metrics.csv among them) before the checkpoint: a checkpoint at
            # epoch N always has the N rows it resumes with.
            self._call("on_epoch_end", row)
            self._save_checkpoint(mid_epoch=False)

    def _evaluate_epoch(self) -> dict[str, Any]:
        """The epoch's metrics row, checked finite, and the weights checked before they are saved."""
        try:
            row = self.evaluate()
            check_finite(row, "metrics")
        except NonFiniteResultError:
            self._diverged("the test ELBO is not finite", None)
        self._check_weights()
        return row

    @property
    def published_model(self) -> torch.nn.Module:
        """The weights the run evaluates, saves and draws: the moving average under ``ema_decay``, else the trained ones."""
        return self.model if self.average is None else self.average.module

    def _finish(self) -> None:
        self.model.eval()
        self.published_model.eval()
        self._call("on_train_end")
        self._main(self._write_figures, broadcast_result=False)  # the others wait: no rank leaves early

    def _write_figures(self) -> None:
        if is_main_process():
            from vaekit.viz.figures import save_reconstructions, save_samples

            inference = Inference(self.published_model, self.precision)
            save_reconstructions(inference, self.test_set, self.run_dir / FIGURES[0])
            save_samples(inference, self.run_dir / FIGURES[1], seed=self.config.seed)
            self._save_model({"status": "complete"})

    # ------------------------------------------------------------------ divergence

    def _record_finite(self, loss: torch.Tensor) -> None:
        """Remember the first non-finite loss on the device: a few tiny kernels, no sync."""
        first = (self._bad_step < 0) & ~torch.isfinite(loss)
        self._bad_step = torch.where(first, self.global_step, self._bad_step)
        self._bad_loss = torch.where(first, loss.float(), self._bad_loss)

    def check_divergence(self) -> None:
        """Raise :class:`TrainingDiverged` if any step so far had a non-finite loss (one device sync).

        Under torchrun the ranks' flags are all-reduced first, so every rank raises together.
        """
        if self.world > 1 and distributed.active():
            self._check_all_ranks(stops=False)
        else:
            self._raise_if_bad()

    def _raise_if_bad(self) -> None:
        bad = int(self._bad_step)
        if bad >= 0:
            loss = float(self._bad_loss)
            value = "nan" if math.isnan(loss) else ("inf" if loss > 0 else "-inf")
            self._diverged(f"the loss is {value}", bad)

    def _check_weights(self) -> None:
        """Raise :class:`TrainingDiverged` unless every weight is finite (before they are saved)."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all() \
            if any(True for _ in self.model.parameters()) else torch.tensor(True)
        if not bool(finite):
            self._diverged("the weights are not finite", None)

    def _diverged(self, what: str, global_step: int | None) -> None:
        """Mark the run diverged in config.json (weights and checkpoint stay the last good epoch's) and raise."""
        if global_step is not None:
            epoch, step = global_step // self.steps_per_epoch + 1, global_step % self.steps_per_epoch + 1
            where = f"at epoch {epoch}, step {step}"
        else:
            epoch, step = self.epoch + 1, None
            where = f"after epoch {epoch}"
        good = self.epoch
        kept = f"kept the last good checkpoint (epoch {good})" if good else \
            "no epoch finished yet (epoch 0), so there is no good checkpoint"
        self._set_status({"status": "diverged", "epochs_done": good,
                          "diverged": {"epoch": epoch, "step": step, "what": what}})
        raise TrainingDiverged(f"training diverged: {what} {where}; {kept} in {self.run_dir}; "
                               f"lower lr (now {self.config.lr:g}) or set grad_clip", self.run_dir, epoch, step)

    def _set_status(self, extra: dict[str, Any]) -> None:
        """Update config.json without touching the weights."""
        if not is_main_process():
            return
        path = self.run_dir / CONFIG_FILE
        config = read_json(path) if path.exists() else {}
        config.update(extra)
        write_json(path, config)

    # ------------------------------------------------------------------ measurements

    def beta(self, epoch_progress: float | None = None) -> float:
        """The KL weight at ``epoch_progress`` epochs (default: now), with the linear warm-up."""
        if epoch_progress is None:
            epoch_progress = self.epoch + self.step / self.steps_per_epoch
        if self.config.kl_warmup_epochs <= 0:
            return self.config.beta
        return self.config.beta * min(1.0, epoch_progress / self.config.kl_warmup_epochs)

    def _set_lr(self) -> None:
        if self.config.lr_schedule != "constant":
            lr = scheduled_lr(self.config.lr, self.config.lr_schedule, self.global_step,
                              self.config.epochs * self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def images_per_second(self) -> float:
        """Training speed since this epoch (or this session's part of it) started."""
        if self._clock is None:
            return 0.0
        images = (self.step - self._clock_step) * self.config.batch_size
        return images / max(time.perf_counter() - self._clock, 1e-9)

    def running_means(self) -> list[float]:
        """Mean loss, recon and KL per image over this epoch's steps so far (one device sync)."""
        done = max(1, min(self.step * self.config.batch_size, len(self.train_set)))
        # Under torchrun the sums are this rank's share until the epoch ends: scale to the global count.
        return (self.sums * self.world / done).tolist()

    def evaluate(self) -> dict[str, Any]:
        """The metrics row of the epoch just trained: train means, test -ELBO parts, collapse diagnostics."""
        config, n_train = self.config, len(self.train_set)
        means = (self.sums / n_train).tolist()
        # Bound evaluation memory for large images (256 28x28 images = 4 at 128x128x3).
        batch = max(1, min(config.eval_batch_size, config.eval_batch_size * 784 // math.prod(self.test_set.image_shape)))
        def test_parts(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            inference = Inference(model, self.precision, batch_size=batch, channels_last=config.channels_last)
            return inference.elbo_parts(self.test_set.images, config.recon, config.gaussian_sigma,
                                        seed=config.seed + self.epoch)

        recon, kl = test_parts(self.published_model)
        self.collapse = diagnose_collapse(self.published_model, self.test_set)
        # Under ema_decay the trained weights are scored too: the row then says what the average gained.
        online = {} if self.average is None else {"online_test_elbo": round(float(sum(
            part.mean() for part in test_parts(self.model))), 4)}
        return {
            "epoch": self.epoch + 1,
            "beta": round(self.beta(self.epoch + 1), 6),
            "train_loss": round(means[0], 4),
            "train_recon": round(means[1], 4),
            "train_kl": round(means[2], 4),
            "test_elbo": round(float(recon.mean() + kl.mean()), 4),
            "test_recon": round(float(recon.mean()), 4),
            "test_kl": round(float(kl.mean()), 4),
            "active_units": self.collapse.active_units,
            "dead_encoder_units": self.collapse.dead_units,
            "collapsed": int(self.collapse.collapsed),
            "seconds": round(self.seconds, 2),
            "images_per_s": round(n_train / max(self.seconds, 1e-9), 1),
            "threads": torch.get_num_threads(),  # CPU threads at the epoch's end (a series may raise them)
            **online,
        }

    # ------------------------------------------------------------------ persistence

    def _save_model(self, extra: dict[str, Any]) -> None:
        if not is_main_process():
            return
        record = {"vaekit_version": __version__, "torch_version": torch.__version__, **self.extra_config,
                  "train": self.config.to_dict(), "resolved": {"device": str(self.device), "world_size": self.world,
                                                              "init": self.config.effective_init,
                                                              "grad_clip": self.config.effective_grad_clip,
                                                              "precision": self.precision,
                                                              "compile": self.compile,
                                                              "speed": self.speed.to_dict(),
                                                              "data_placement": self.batches.placement}}
        save_model(self.published_model, self.run_dir, {**record, **extra})

    def _save_checkpoint(self, mid_epoch: bool) -> None:
        # Under torchrun: every rank's RNG state (gathered) and, mid-epoch, the loss sums over all ranks.
        rng_ranks = distributed.all_gather_object(rng_state(self.device)) if self.world > 1 else None
        sums = distributed.all_reduce_sum(self.sums.clone()) if mid_epoch and self.world > 1 else self.sums
        self._main(lambda: self._write_checkpoint(mid_epoch, sums, rng_ranks), broadcast_result=False)

    def _write_checkpoint(self, mid_epoch: bool, sums: torch.Tensor, rng_ranks: list[Any] | None) -> None:
        if not is_main_process():
            return
        epoch_state = None
        if mid_epoch:
            epoch_state = {"order": self.order.cpu(), "step": self.step, "sums": sums.cpu(),
                           "seconds": self.seconds}
        extra = {} if rng_ranks is None else {"world_size": self.world, "rng_ranks": rng_ranks}
        save_checkpoint(self.run_dir, {**extra,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "average": None if self.average is None else self.average.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "order_rng": self.order_generator.get_state(),
            "rng": rng_state(self.device),
            "epoch": self.epoch,
            "epoch_state": epoch_state,
        })

    def restore(self, checkpoint: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
        """Continue from a checkpoint written by this class (``train(out=..., resume=True)`` loads and checks it)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.average is not None and checkpoint.get("average") is not None:
            self.average.load_state_dict(checkpoint["average"])
        if self.precision == "fp16" and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.order_generator.set_state(checkpoint["order_rng"])
        ranks = checkpoint.get("rng_ranks")
        set_rng_state(ranks[self.rank] if ranks else checkpoint["rng"], self.device)
        self.epoch = int(checkpoint["epoch"])
        self.metrics = metrics[: self.epoch]
        state = checkpoint.get("epoch_state")
        if state is not None:
            self.order = state["order"]
            self.step, self.seconds = int(state["step"]), float(state["seconds"])
            # The saved sums cover all ranks: rank 0 carries them, the others start from zero.
            sums = state["sums"] if self.rank == 0 else torch.zeros(3, dtype=torch.float64)
            self.sums = sums.to(self.device, torch.float64)
        self.global_step = self.epoch * self.steps_per_epoch + self.step
