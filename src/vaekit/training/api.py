""":func:`train`: names or objects in, a trained run directory out.

A thin layer over :class:`~vaekit.training.trainer.Trainer`: it resolves
``arch="fashion28"`` and ``dataset="fashion-mnist"`` (or takes an
:class:`~vaekit.models.ArchSpec`, any module following the VAE protocol and
any dataset of images), prepares or resumes the run directory, and runs the
trainer with the default callbacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vaekit.data.convert import as_image_dataset
from vaekit.data.dataset import ImageDataset
from vaekit.data.registry import load_dataset
from vaekit.data.source import data_source
from vaekit.errors import ConfigError, RunDirError
from vaekit.guard import LOCK_FILE, is_temporary, remove_stale_temporaries, writer_lock
from vaekit.models.pretrained import CONFIG_FILE, read_config
from vaekit.models.spec import ArchSpec
from vaekit.models.vae import build_model
from vaekit.runs.run import CHECKPOINT_FILE, parse_metrics_row, read_metrics
from vaekit.runtime import resolve_device
from vaekit.training import distributed
from vaekit.training.callbacks import (
    Callback,
    CSVLogger,
    ProgressBar,
    StepHook,
    tracker_callbacks,
)
from vaekit.training.checkpoint import check_world_size, load_checkpoint
from vaekit.training.config import CHANGEABLE_ON_RESUME, TrainConfig
from vaekit.training.trainer import Trainer, TrainResult
from vaekit.training.tuning import check_speed_settings

ModelLike = str | ArchSpec | torch.nn.Module


def train(
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    callbacks: Sequence[Callback] = (),
    model: ModelLike | None = None,
    dataset: Any = None,
    test_dataset: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Train a VAE and save it in a run directory.

    Parameters
    ----------
    config
        Training settings; keyword ``overrides`` replace single fields, e.g.
        ``train(out="runs/a", epochs=5, beta=2)``.
    out
        The run directory. It must not hold a run yet, unless ``resume``.
        Under ``torchrun`` rank 0 alone writes it; ``config.batch_size`` is
        the global batch, shared by the processes.
    resume
        Continue the run in ``out`` (its saved config is used; ``epochs``,
        ``device``, ``data_dir`` and ``log`` may be overridden).
    progress
        Show a progress bar and per-epoch summaries.
    on_step
        Called as ``on_step(epoch, step)`` after every optimiser step.
    callbacks
        More :class:`~vaekit.training.callbacks.Callback` objects.
    model
        Instead of ``config.arch``: an :class:`~vaekit.models.ArchSpec` (built
        and initialised as ``config.init`` says) or a module following the VAE
        protocol (used as it is).
    dataset, test_dataset
        Instead of ``config.dataset``: an :class:`~vaekit.data.ImageDataset` or
        any dataset of images (see :func:`vaekit.data.convert.as_image_dataset`).
        Without ``test_dataset``, the last 10% of ``dataset`` is held out.

    Returns
    -------
    TrainResult
        The run directory, the trained model (eval mode) and the metrics rows.
    """
    if out is None:
        raise ConfigError("out: a run directory is required", param="out")
    run_dir = Path(out)
    check_setting_names(overrides)
    if resume:
        config = resume_overrides(TrainConfig.from_dict(read_config(run_dir).get("train", {})), overrides)
    else:
        config = dataclasses.replace(config or TrainConfig(), **overrides)
        config = _describe_objects(config, model, dataset)
    config.validate()
    device = resolve_device(config.device)
    check_speed_settings(config.precision, config.compile, device)  # refused before anything is written
    trackers = tracker_callbacks(config, run_dir)  # a tracker's missing package too
    # Under torchrun: join the process group (once per process) and refuse a global batch too small to share.
    distributed.check_batch_size(config.batch_size)
    distributed.init(distributed.rank_device(device))
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    network = _build(config, model)
    train_set, test_set = _datasets(config, tuple(network.image_shape), dataset, test_dataset)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)

    with contextlib.ExitStack() as stack:
        def prepare() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            # Rank 0 alone checks and writes the run directory; its errors reach every rank (main_first).
            if not resume:
                check_new_run_dir(run_dir)
            # One writer per run directory: a second training with the same out, or a
            # resume while the run still trains, is refused here.
            stack.enter_context(writer_lock(run_dir))
            checkpoint, rows = None, []
            if resume:
                checkpoint = load_checkpoint(run_dir, model=network, n_train=len(train_set),
                                             steps_per_epoch=steps_per_epoch)
                if checkpoint is None:
                    raise RunDirError(f"{run_dir / CHECKPOINT_FILE}: no checkpoint to resume from")
                check_world_size(checkpoint, run_dir / CHECKPOINT_FILE, distributed.world_size())
                rows = [parse_metrics_row(row) for row in read_metrics(run_dir)]
                if int(checkpoint["epoch"]) > len(rows):
                    raise RunDirError(f"{run_dir / CHECKPOINT_FILE}: epoch {checkpoint['epoch']} but metrics.csv "
                                      f"has {len(rows)} rows; the run directory was changed by hand")
            else:
                check_new_run_dir(run_dir)  # again, now that no one else can write it
            remove_stale_temporaries(run_dir)
            return checkpoint, rows

        # The checkpoint travels from rank 0 to the others: nodes need not share a file system to resume.
        checkpoint, rows = distributed.main_first(prepare)
        trainer = Trainer(config, run_dir, network, train_set, test_set,
                          # Trackers first: a step a later callback interrupts is logged before it resumes.
                          trackers + default_callbacks(progress, on_step) + list(callbacks),
                          extra_config={"dataset": _dataset_record(config, train_set, test_set),
                                        "data": _data_record(config, dataset)})
        if resume:
            trainer.restore(checkpoint, rows)
        return trainer.fit()


def default_callbacks(progress: bool = True, on_step: Callable[[int, int], None] | None = None) -> list[Callback]:
    """What :func:`train` reports through: ``metrics.csv``, and a progress bar unless ``progress`` is false."""
    callbacks: list[Callback] = [CSVLogger()]
    if progress:
        callbacks.append(ProgressBar())
    if on_step is not None:
        callbacks.append(StepHook(on_step))
    return callbacks


def _describe_objects(config: TrainConfig, model: ModelLike | None, dataset: Any) -> TrainConfig:
    """Record what objects were passed, so config.json names them."""
    changes: dict[str, Any] = {}
    if isinstance(model, str):
        changes["arch"] = model
    elif isinstance(model, ArchSpec):
        changes.update(arch=model.name, latent_dim=model.latent_dim)
    elif isinstance(model, torch.nn.Module):
        changes.update(arch=type(model).__name__, latent_dim=int(model.latent_dim))
    if dataset is not None and not isinstance(dataset, str):
        changes["dataset"] = getattr(dataset, "name", None) or type(dataset).__name__
    elif isinstance(dataset, str):
        changes["dataset"] = dataset
    return dataclasses.replace(config, **changes)


def _build(config: TrainConfig, model: ModelLike | None) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        for name in ("encode", "decode_logits", "latent_dim", "image_shape"):
            if not hasattr(model, name):
                raise ConfigError(f"model: {type(model).__name__} does not follow the VAE protocol (no {name})",
                                  param="model")
        return model
    if isinstance(model, ArchSpec):
        return build_model(spec=model, init=config.init)
    return build_model(config.arch, config.latent_dim, init=config.init)


def _datasets(config: TrainConfig, image_shape: tuple[int, ...], dataset: Any,
              test_dataset: Any) -> tuple[ImageDataset, ImageDataset]:
    if dataset is None or isinstance(dataset, str):
        # A folder of images is resized to whatever the architecture takes.
        extra = {"image_shape": image_shape} if config.dataset.strip().lower().startswith("folder:") else {}
        train_set = load_dataset(config.dataset, "train", data_dir=config.data_dir, **extra)
        test_set = load_dataset(config.dataset, "test", data_dir=config.data_dir, **extra)
    else:
        train_set = as_image_dataset(dataset, name=config.dataset)
        if test_dataset is None:
            cut = max(1, len(train_set) // 10) if len(train_set) > 1 else 0
            test_set = train_set.subset(slice(len(train_set) - cut, None)) if cut else train_set
            train_set = train_set.subset(slice(0, len(train_set) - cut)) if cut else train_set
        else:
            test_set = as_image_dataset(test_dataset, name=config.dataset, split="test",
                                        class_names=train_set.class_names)
    if config.exclude_classes:
        train_set = train_set.exclude_classes(config.exclude_classes)
    if config.train_limit:
        train_set = train_set.subset(slice(0, config.train_limit))
    if config.test_limit:
        test_set = test_set.subset(slice(0, config.test_limit))
    if tuple(train_set.image_shape) != tuple(image_shape):
        raise ConfigError(
            f"dataset '{config.dataset}' has images of shape {tuple(train_set.image_shape)} (C, H, W), "
            f"but architecture '{config.arch}' expects {tuple(image_shape)}", param="dataset"
        )
    return train_set, test_set


def _dataset_record(config: TrainConfig, train_set: ImageDataset, test_set: ImageDataset) -> dict[str, Any]:
    return {"name": config.dataset, "image_shape": list(train_set.image_shape),
            "class_names": list(train_set.class_names), "train_size": len(train_set), "test_size": len(test_set)}


def _data_record(config: TrainConfig, dataset: Any) -> dict[str, Any]:
    """Where the data was found (absolute folder and fingerprint), so analysis finds it from any shell."""
    if dataset is not None and not isinstance(dataset, str):
        return {"name": config.dataset, "path": None, "checksum": None}
    return data_source(config.dataset, config.data_dir)


def check_setting_names(overrides: dict[str, Any]) -> None:
    """Refuse a keyword that is not a :class:`TrainConfig` field (``epoch=20`` would otherwise do nothing on resume).

    Raises
    ------
    ConfigError
        Naming the first unknown keyword and the closest field, if one is close.
    """
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in sorted(set(overrides) - set(fields)):
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{key}: not a training setting (a field of TrainConfig){hint}", param=key)


def resume_overrides(saved: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The saved settings with the few a resumed run may change (:data:`~vaekit.training.config.CHANGEABLE_ON_RESUME`)."""
    allowed = CHANGEABLE_ON_RESUME
    for key in set(overrides) - set(allowed):
        if overrides[key] != getattr(saved, key, overrides[key]):
            raise ConfigError(f"{key}: cannot change a saved run's setting when resuming", param=key)
    if saved.lr_schedule != "constant" and overrides.get("epochs", saved.epochs) != saved.epochs:
        # The schedule's rates follow the planned epochs: other epochs would bend the curve mid-run.
        raise ConfigError(f"epochs: a run with lr_schedule {saved.lr_schedule} keeps its {saved.epochs} epochs "
                          "when resuming; start a new run for another length", param="epochs")
    return dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in allowed})


def check_new_run_dir(out: Path) -> None:
    """Create ``out`` for a new run, refusing anything that would overwrite a file."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    if (out / CONFIG_FILE).exists():
        raise RunDirError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    # The lock file and temporaries of killed writes are not content: they never block a new run.
    if out.exists() and any(not (entry.name == LOCK_FILE or is_temporary(entry.name)) for entry in out.iterdir()):
        raise RunDirError(f"{out}: directory is not empty; choose a new --out so nothing is overwritten")
    out.mkdir(parents=True, exist_ok=True)
