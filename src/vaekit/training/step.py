"""One optimiser step, the unit the trainer, the speed measurement and the benchmarks share.

:func:`prepare_images` turns a uint8 batch into the model's float input;
:func:`train_step` runs the forward pass under the run's autocast precision,
the loss in float32, the backward pass and the optimiser step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vaekit.models.losses import LossTerms, vae_loss
from vaekit.runtime import autocast_context

if TYPE_CHECKING:
    from vaekit.training.config import TrainConfig


def prepare_images(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1], in the layout the model uses."""
    images = batch.float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def train_step(model, optimizer, scaler, x: torch.Tensor, beta: float, config: TrainConfig,
               device: torch.device, precision: str, loss_scale: float = 1.0,
               noise: torch.Tensor | None = None) -> LossTerms:
    """One optimiser step on batch ``x``; returns the :class:`~vaekit.models.losses.LossTerms`.

    ``loss_scale`` multiplies the loss that is differentiated (not the terms
    returned): under DDP, which averages gradients over ranks, a rank's mean
    loss times ``local_n * world / global_n`` makes that average the gradient
    of the global batch's mean loss. ``noise`` is the reparameterisation
    noise (default: drawn by the model).
    """
    with autocast_context(device, precision):
        output = model(x) if noise is None else model(x, noise=noise)
    # The loss is computed in float32 whatever the autocast precision.
    terms = vae_loss(output.logits, x, output.z_mean, output.z_log_var, beta, config.recon, config.gaussian_sigma)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.loss if loss_scale == 1.0 else terms.loss * loss_scale).backward()
    clip = config.effective_grad_clip
    if clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return terms
