"""
:func:`train` trains a VAE on an in-memory dataset and persists everything in
a run directory (see :mod:`vaekit.rundir`). Images stay uint8 tensors (on the
accelerator when there is one) and each batch is one ``index_select`` on
them, so there is no per-sample Python on the hot path.

Mid-epoch interruption (Ctrl-C) saves a checkpoint holding the epoch's
shuffling order, the step reached and every RNG state, so ``resume=True``
continues to the same weights an uninterrupted run reaches.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vaekit import __version__
from vaekit.data.dataset import ImageDataset
from vaekit.data.registry import load_dataset
from vaekit.errors import ConfigError, RunDirError
from vaekit.files import atomic_write_bytes, write_csv
from vaekit.models.init import initialize_weights
from vaekit.models.losses import kl_divergence, reconstruction_nll, vae_loss
from vaekit.models.pretrained import CONFIG_FILE, read_config, save_model
from vaekit.models.vae import VAE, build_model
from vaekit.runs.run import CHECKPOINT_FILE, METRICS_FILE, read_metrics
from vaekit.runtime import autocast_context, resolve_device, resolve_precision
from vaekit.training.config import TrainConfig
from vaekit.training.diagnostics import CollapseReport, diagnose_collapse


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    model: VAE
    metrics: list[dict[str, Any]]


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the run has been saved for ``--resume``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted; saved to {run_dir}: resume with `vaekit train --resume {run_dir}`")
        self.run_dir = run_dir



def is_main_process() -> bool:
    """True on rank 0 (or when not running distributed): only it logs and saves."""
    return int(os.environ.get("RANK", "0")) == 0



def prepare_images(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1], in the layout the model uses."""
    images = batch.float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


# ----------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    dataset: ImageDataset,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    recon: str = "bernoulli",
    gaussian_sigma: float = 0.1,
    seed: int = 0,
    channels_last: bool = False,
) -> dict[str, float]:
    """Mean negative ELBO (beta = 1) and its parts over a dataset, nats per image.

    One posterior sample per image, drawn from a private generator so
    evaluation never disturbs the training RNG.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    images = dataset.images.to(device)
    total_recon = torch.zeros((), device=device, dtype=torch.float64)
    total_kl = torch.zeros((), device=device, dtype=torch.float64)
    for start in range(0, len(dataset), batch_size):
        x = prepare_images(images[start : start + batch_size], channels_last)
        with autocast_context(device, precision):
            z_mean, z_log_var = model.encode(x)
            noise = torch.randn(z_mean.shape, generator=generator, device=device)
            logits = model.decode_logits(model.reparameterize(z_mean, z_log_var, noise.to(z_mean.dtype)))
        total_recon += reconstruction_nll(logits, x, recon, gaussian_sigma).sum().double()
        total_kl += kl_divergence(z_mean, z_log_var).sum().double()
    model.train(was_training)
    n = len(dataset)
    recon_mean, kl_mean = total_recon.item() / n, total_kl.item() / n
    return {"elbo": recon_mean + kl_mean, "recon": recon_mean, "kl": kl_mean}


# ----------------------------------------------------------------------------
# The run directory


def _prepare_new_run(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    if (out / CONFIG_FILE).exists():
        raise RunDirError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out}: directory is not empty; choose a new --out so nothing is overwritten")
    out.mkdir(parents=True, exist_ok=True)


def _load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        # weights_only=True: only tensors and plain containers, never arbitrary objects.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is a user-facing problem
        raise RunDirError(f"{path}: unreadable checkpoint ({type(error).__name__}: {error})") from None


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ----------------------------------------------------------------------------
# Training


def _load_data(config: TrainConfig, image_shape: tuple[int, int, int]) -> tuple[ImageDataset, ImageDataset]:
    # A folder of images is resized to whatever the architecture takes.
    extra = {"image_shape": image_shape} if config.dataset.strip().lower().startswith("folder:") else {}
    train_set = load_dataset(config.dataset, "train", data_dir=config.data_dir, **extra)
    test_set = load_dataset(config.dataset, "test", data_dir=config.data_dir, **extra)
    if config.exclude_classes:
        train_set = train_set.exclude_classes(config.exclude_classes)
    if config.train_limit:
        train_set = train_set.subset(torch.arange(min(config.train_limit, len(train_set))))
    if config.test_limit:
        test_set = test_set.subset(torch.arange(min(config.test_limit, len(test_set))))
    if tuple(train_set.image_shape) != tuple(image_shape):
        raise ConfigError(
            f"dataset '{config.dataset}' has images of shape {tuple(train_set.image_shape)} (C, H, W), "
            f"but architecture '{config.arch}' expects {tuple(image_shape)}"
        )
    return train_set, test_set


def train(
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
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
    resume
        Continue the run in ``out`` (its saved config is used; ``epochs`` may
        be overridden to train longer).
    progress
        Show a progress bar and per-epoch summaries.
    on_step
        Called as ``on_step(epoch, step)`` after every optimiser step (for
        callbacks and tests).

    Returns
    -------
    TrainResult
        The run directory, the trained model (eval mode) and the metrics rows.
    """
    if out is None:
        raise ConfigError("--out: a run directory is required")
    run_dir = Path(out)
    checkpoint = None
    if resume:
        saved = read_config(run_dir)
        config = TrainConfig.from_dict(saved["train"])
        for key in set(overrides) - {"epochs", "device", "data_dir"}:
            if overrides[key] != getattr(config, key, overrides[key]):
                raise ConfigError(f"--{key.replace('_', '-')}: cannot change a saved run's setting when resuming")
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in ("epochs", "device", "data_dir")})
        checkpoint = _load_checkpoint(run_dir)
    else:
        config = dataclasses.replace(config or TrainConfig(), **overrides)
    config.validate()

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.latent_dim)
    initialize_weights(model, config.init)
    train_set, test_set = _load_data(config, model.image_shape)
    if not resume:
        _prepare_new_run(run_dir)

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    order_generator = torch.Generator().manual_seed(config.seed)
    metrics: list[dict[str, Any]] = [_numeric_row(row) for row in read_metrics(run_dir)] if resume else []
    start_epoch, epoch_state = 0, None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if precision == "fp16" and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        order_generator.set_state(checkpoint["order_rng"])
        _set_rng_state(checkpoint["rng"], device)
        start_epoch = int(checkpoint["epoch"])
        epoch_state = checkpoint.get("epoch_state")
        metrics = metrics[:start_epoch]
    elif resume:
        raise RunDirError(f"{run_dir / CHECKPOINT_FILE}: no checkpoint to resume from")

    run_config = {
        "vaekit_version": __version__,
        "torch_version": torch.__version__,
        "status": "running",
        "dataset": {
            "name": config.dataset,
            "image_shape": list(train_set.image_shape),
            "class_names": list(train_set.class_names),
            "train_size": len(train_set),
            "test_size": len(test_set),
        },
        "train": config.to_dict(),
        "resolved": {"device": str(device), "precision": precision},
    }
    if is_main_process():
        save_model(model, run_dir, run_config)

    step_model = torch.compile(model) if config.compile else model
    train_images = train_set.images.to(device)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    state = {"epoch": start_epoch}

    def save_checkpoint(epoch: int, epoch_state: dict[str, Any] | None) -> None:
        if not is_main_process():
            return
        payload = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "order_rng": order_generator.get_state(),
            "rng": _rng_state(device),
            "epoch": epoch,
            "epoch_state": epoch_state,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())

    try:
        for epoch in range(start_epoch, config.epochs):
            state["epoch"] = epoch
            if epoch_state is None:
                epoch_state = {
                    "order": torch.randperm(len(train_set), generator=order_generator),
                    "step": 0,
                    "sums": torch.zeros(3, dtype=torch.float64),
                    "seconds": 0.0,
                }
            state["epoch_state"] = epoch_state
            _run_epoch(step_model, optimizer, scaler, train_images, config, device, precision,
                       epoch, epoch_state, steps_per_epoch, progress, on_step)
            row, report = _end_of_epoch(model, test_set, config, device, precision, epoch, epoch_state, len(train_set))
            metrics.append(row)
            epoch_state = None
            state["epoch_state"] = None
            if is_main_process():
                save_model(model, run_dir, {"epochs_done": epoch + 1})
                write_csv(run_dir / METRICS_FILE, metrics)
                save_checkpoint(epoch + 1, None)
                if progress:
                    _print_epoch(row, report, config.epochs)
    except KeyboardInterrupt:
        save_checkpoint(state["epoch"], state.get("epoch_state"))
        if is_main_process():
            save_model(model, run_dir, {"status": "interrupted"})
        raise TrainingInterrupted(run_dir) from None

    model.eval()
    if is_main_process():
        from vaekit.viz.figures import save_reconstructions, save_samples

        save_reconstructions(model, test_set, run_dir / "reconstructions.png")
        save_samples(model, run_dir / "samples.png", seed=config.seed)
        save_model(model, run_dir, {"status": "complete"})
    return TrainResult(run_dir, model, metrics)


def _numeric_row(row: dict[str, str]) -> dict[str, Any]:
    """A metrics.csv row with its numbers parsed (as :func:`train` returns fresh rows)."""
    return {key: (int(value) if value.lstrip("-").isdigit() else float(value)) for key, value in row.items()}


def _current_beta(config: TrainConfig, epoch_progress: float) -> float:
    if config.kl_warmup_epochs <= 0:
        return config.beta
    return config.beta * min(1.0, epoch_progress / config.kl_warmup_epochs)


def train_step(model, optimizer, scaler, x: torch.Tensor, beta: float, config: TrainConfig,
               device: torch.device, precision: str):
    """One optimiser step on batch ``x``; returns the :class:`~vaekit.losses.LossTerms`."""
    with autocast_context(device, precision):
        output = model(x)
    # The loss is computed in float32 whatever the autocast precision.
    terms = vae_loss(output.logits, x, output.z_mean, output.z_log_var, beta, config.recon, config.gaussian_sigma)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.loss).backward()
    if config.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return terms


def _run_epoch(model, optimizer, scaler, train_images, config, device, precision,
               epoch, epoch_state, steps_per_epoch, progress, on_step) -> None:
    """Train one epoch from ``epoch_state["step"]``, updating the state in place."""
    from tqdm.auto import tqdm

    model.train()
    order = epoch_state["order"].to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    bar = tqdm(total=steps_per_epoch, initial=epoch_state["step"], desc=f"epoch {epoch + 1}/{config.epochs}",
               unit="batch", disable=not (progress and is_main_process()), leave=False, dynamic_ncols=True)
    started = time.perf_counter()
    images_done = 0
    try:
        for step in range(epoch_state["step"], steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = prepare_images(train_images.index_select(0, index), config.channels_last)
            beta = _current_beta(config, epoch + step / steps_per_epoch)
            terms = train_step(model, optimizer, scaler, x, beta, config, device, precision)
            n = x.shape[0]
            sums += torch.stack([terms.loss.detach(), terms.recon.detach(), terms.kl.detach()]).double() * n
            images_done += n
            epoch_state["step"] = step + 1
            bar.update(1)
            if step % 20 == 0 or step == steps_per_epoch - 1:
                _show_progress(bar, sums, images_done, started)
            if on_step is not None:
                on_step(epoch, step)
    finally:
        # Runs on Ctrl-C too, so an interrupted epoch's partial sums are kept.
        epoch_state["sums"] = epoch_state["sums"] + sums.cpu()
        epoch_state["seconds"] += time.perf_counter() - started
        bar.close()


def _show_progress(bar, sums, images_done, started) -> None:
    # Running means of this session's part of the epoch; one sync every 20 steps.
    means = sums.cpu() / max(images_done, 1)
    elapsed = max(time.perf_counter() - started, 1e-9)
    bar.set_postfix(loss=f"{means[0]:.2f}", recon=f"{means[1]:.2f}", kl=f"{means[2]:.2f}",
                    img_s=f"{images_done / elapsed:.0f}", refresh=False)


def _end_of_epoch(model, test_set, config, device, precision, epoch, epoch_state, n_train):
    seconds = epoch_state["seconds"]
    means = (epoch_state["sums"] / n_train).tolist()
    # Bound evaluation memory for large images (256 28x28 images = 4 at 128x128x3).
    pixels = math.prod(test_set.image_shape)
    eval_batch = max(1, min(config.eval_batch_size, config.eval_batch_size * 784 // pixels))
    test = evaluate_elbo(model, test_set, eval_batch, device, precision, config.recon,
                         config.gaussian_sigma, seed=config.seed + epoch, channels_last=config.channels_last)
    report = diagnose_collapse(model, test_set, device=device)
    row = {
        "epoch": epoch + 1,
        "beta": round(_current_beta(config, epoch + 1), 6),
        "train_loss": round(means[0], 4),
        "train_recon": round(means[1], 4),
        "train_kl": round(means[2], 4),
        "test_elbo": round(test["elbo"], 4),
        "test_recon": round(test["recon"], 4),
        "test_kl": round(test["kl"], 4),
        "active_units": report.active_units,
        "dead_encoder_units": report.dead_units,
        "collapsed": int(report.collapsed),
        "seconds": round(seconds, 2),
        "images_per_s": round(n_train / max(seconds, 1e-9), 1),
    }
    return row, report


def _print_epoch(row: dict[str, Any], report: CollapseReport, epochs: int) -> None:
    from tqdm.auto import tqdm

    tqdm.write(
        f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.2f}  recon {row['train_recon']:.2f}  "
        f"kl {row['train_kl']:.2f}  test -ELBO {row['test_elbo']:.2f} nats  "
        f"active units {row['active_units']}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s"
    )
    if report.collapsed:
        tqdm.write(f"WARNING: posterior collapse: {report.reason} (see docs/training.md, 'Posterior collapse')")
