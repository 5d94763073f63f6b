"""The VAE objective: reconstruction negative log-likelihood plus beta * KL.

All terms are per image (summed over pixels or latent units), then averaged
over the batch, in nats. With ``beta = 1`` the loss is the negative ELBO.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

RECONSTRUCTIONS = ("bernoulli", "gaussian")


class LossTerms(NamedTuple):
    """Batch means of the objective and its two parts (nats per image)."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def reconstruction_nll(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "bernoulli", sigma: float = 0.1
) -> torch.Tensor:
    """Per-image reconstruction loss, shape ``(N,)``.

    ``"bernoulli"`` is the summed binary cross-entropy of the seed model,
    computed from logits so it never takes ``log(0)``. ``"gaussian"`` is the
    negative log-density of ``N(x; sigmoid(logits), sigma^2)`` per pixel, a
    normalised likelihood for continuous pixels (an MSE loss scaled by
    ``1 / (2 sigma^2)``).
    """
    logits = logits.float()
    if kind == "bernoulli":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "gaussian":
        squared = (torch.sigmoid(logits) - target).square()
        per_pixel = squared / (2 * sigma**2) + math.log(sigma * math.sqrt(2 * math.pi))
    else:
        raise ValueError(f"unknown reconstruction loss '{kind}'")
    return per_pixel.flatten(1).sum(1)


def kl_divergence(z_mean: torch.Tensor, z_log_var: torch.Tensor) -> torch.Tensor:
    """Per-image KL(q(z|x) || N(0, I)), shape ``(N,)``."""
    return kl_per_dimension(z_mean, z_log_var).sum(1)


def kl_per_dimension(z_mean: torch.Tensor, z_log_var: torch.Tensor) -> torch.Tensor:
    """KL of each latent unit, shape ``(N, latent_dim)``."""
    z_mean, z_log_var = z_mean.float(), z_log_var.float()
    return -0.5 * (1 + z_log_var - z_mean.square() - z_log_var.exp())


def vae_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    z_mean: torch.Tensor,
    z_log_var: torch.Tensor,
    beta: float = 1.0,
    kind: str = "bernoulli",
    sigma: float = 0.1,
) -> LossTerms:
    """Batch-mean ``recon + beta * KL`` with both parts reported separately."""
    recon = reconstruction_nll(logits, target, kind, sigma).mean()
    kl = kl_divergence(z_mean, z_log_var).mean()
    return LossTerms(recon + beta * kl, recon, kl)
