"""The inference layer: every forward pass vaekit makes outside the training step.

One :class:`Inference` wraps a model with the device, the precision and the
batch size to run it at. Its methods take images as uint8 or float tensors
(or NumPy arrays) anywhere in memory and return float32 results on the CPU,
so callers never move, cast or batch anything themselves:

* :meth:`Inference.encode`: posterior parameters ``(z_mean, z_log_var)``;
* :meth:`Inference.decode` / :meth:`Inference.decode_logits`: latent vectors to images;
* :meth:`Inference.reconstruct`: images decoded from their posterior means;
* :meth:`Inference.sample`: decoded draws of the prior;
* :meth:`Inference.elbo_parts`: per-image reconstruction NLL and KL from one
  posterior sample, the numbers behind the test -ELBO.

Every result is checked to be finite (:func:`~vaekit.analysis.limits.check_finite_tensor`):
a model whose weights diverged raises one
:class:`~vaekit.analysis.limits.NonFiniteResultError` here, before any number
reaches a file or a figure. Every call runs in eval mode under :func:`torch.inference_mode` and restores
the model's training flag afterwards, so it is safe in the middle of training.
Any module that follows the VAE protocol works: ``encode(x) -> (z_mean,
z_log_var)``, ``decode_logits(z)``, ``latent_dim`` and ``image_shape``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch

from vaekit.analysis.limits import check_allocation, check_count, check_finite_tensor
from vaekit.errors import ConfigError
from vaekit.models.losses import kl_divergence, reconstruction_nll
from vaekit.runs.run import Run
from vaekit.runtime import autocast_context, resolve_precision

#: Floats of input per batch: about 1,300 images at 28x28, 21 at 128x128x3.
#: A decoder layer holds up to ~32 floats per output pixel, so this bounds
#: activation memory near 130 MB whatever the image size.
FLOATS_PER_BATCH = 2**20
MAX_BATCH = 1000

ArrayLike = torch.Tensor | np.ndarray


def default_batch_size(image_shape: tuple[int, ...]) -> int:
    """Images per forward pass for images of ``image_shape``, bounded in memory."""
    return max(1, min(MAX_BATCH, FLOATS_PER_BATCH // math.prod(image_shape)))


def as_float_images(images: ArrayLike) -> torch.Tensor:
    """uint8 or float ``(N, C, H, W)`` (tensor or array) -> float32 tensor in [0, 1], same device."""
    tensor = torch.as_tensor(images)
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (cpu for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class Inference:
    """A model ready to run: device, precision and batch size decided once.

    Parameters
    ----------
    model
        A :class:`~vaekit.models.VAE` or any module following the VAE protocol.
        It is used where it is (see :func:`vaekit.runs.Run.open` to load one
        onto a device).
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see
        :func:`vaekit.runtime.resolve_precision`); autocast runs the model in
        that precision, results are always float32.
    batch_size
        Images (or latent vectors) per forward pass; default
        :func:`default_batch_size`.
    channels_last
        Feed images in the channels-last layout (faster convolutions on CPUs).
        Defaults to whether the model's weights are channels-last.
    """

    def __init__(self, model: torch.nn.Module, precision: str = "fp32", batch_size: int | None = None,
                 channels_last: bool | None = None) -> None:
        self.model = model
        self.device = model_device(model)
        self.precision = resolve_precision(precision, self.device)
        self.image_shape = tuple(int(s) for s in model.image_shape)
        self.latent_dim = int(model.latent_dim)
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}", param="batch_size")
        self.batch_size = batch_size or default_batch_size(self.image_shape)
        self.channels_last = _is_channels_last(model) if channels_last is None else channels_last

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Eval mode, no autograd and the chosen precision; the training flag comes back afterwards."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast_context(self.device, self.precision):
                yield
        finally:
            self.model.train(was_training)

    def to_input(self, images: ArrayLike) -> torch.Tensor:
        """One batch of images as the model's input: float in [0, 1], on the device, in its layout."""
        x = as_float_images(torch.as_tensor(images).to(self.device, non_blocking=True))
        if tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(f"images have shape {tuple(x.shape[1:])}, the model expects {self.image_shape}",
                              param="images")
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batches(self, n: int) -> Iterator[slice]:
        """Slices of ``range(n)`` of at most :attr:`batch_size`."""
        for start in range(0, n, self.batch_size):
            yield slice(start, min(start + self.batch_size, n))

    # ------------------------------------------------------------------ images -> latents

    def encode(self, images: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of images ``(N, C, H, W)``: ``z_mean, z_log_var``, float32 ``(N, D)`` on the CPU."""
        means, log_vars = [], []
        with self.running():
            for part in self.batches(len(images)):
                z_mean, z_log_var = self.model.encode(self.to_input(images[part]))
                means.append(z_mean.float().cpu())
                log_vars.append(z_log_var.float().cpu())
        if not means:
            return torch.zeros(0, self.latent_dim), torch.zeros(0, self.latent_dim)
        return (check_finite_tensor(torch.cat(means), "the model's posterior means (z_mean)"),
                check_finite_tensor(torch.cat(log_vars), "the model's posterior log-variances (z_log_var)"))

    # ------------------------------------------------------------------ latents -> images

    def _latents(self, z: ArrayLike) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if isinstance(z, np.ndarray) else z).float()
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ConfigError(f"latent vectors have shape {tuple(z.shape)}, the model expects (N, {self.latent_dim})",
                              param="z")
        return z

    def decode_logits(self, z: ArrayLike) -> torch.Tensor:
        """Pixel logits of latent vectors ``(N, D)``, float32 ``(N, C, H, W)`` on the CPU."""
        z = self._latents(z)
        parts = []
        with self.running():
            for part in self.batches(len(z)):
                parts.append(self.model.decode_logits(z[part].to(self.device)).float().cpu())
        return check_finite_tensor(torch.cat(parts), "the model's decoded images") if parts \
            else torch.zeros(0, *self.image_shape)

    def decode(self, z: ArrayLike) -> torch.Tensor:
        """Images of latent vectors ``(N, D)``: float32 ``(N, C, H, W)`` in [0, 1] on the CPU."""
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, images: ArrayLike) -> torch.Tensor:
        """Images decoded from their posterior means (no sampling noise), float32 in [0, 1]."""
        parts = []
        with self.running():
            for part in self.batches(len(images)):
                z_mean, _ = self.model.encode(self.to_input(images[part]))
                check_finite_tensor(z_mean, "the model's posterior means (z_mean)")
                parts.append(torch.sigmoid(self.model.decode_logits(z_mean).float()).cpu())
        return check_finite_tensor(torch.cat(parts), "the model's reconstructions") if parts \
            else torch.zeros(0, *self.image_shape)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Decode ``n`` draws of the prior N(0, I) (seeded), float32 in [0, 1]."""
        n = check_count("n", n)
        check_allocation("n", n, 4 * (math.prod(self.image_shape) + self.latent_dim))
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        return self.decode(z)

    # ------------------------------------------------------------------ the ELBO

    def elbo_parts(self, images: ArrayLike, recon: str = "bernoulli", sigma: float = 0.1,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-image reconstruction NLL and KL, nats, float64 ``(N,)`` each, from one posterior sample.

        The noise comes from a private generator on the model's device seeded
        with ``seed`` and drawn batch after batch, so the numbers depend on the
        seed and the batch size only and never disturb the global RNG.
        """
        generator = torch.Generator(device=self.device).manual_seed(seed)
        recons, kls = [], []
        with self.running():
            for part in self.batches(len(images)):
                x = self.to_input(images[part])
                z_mean, z_log_var = self.model.encode(x)
                noise = torch.randn(z_mean.shape, generator=generator, device=self.device).to(z_mean.dtype)
                z = z_mean + torch.exp(0.5 * z_log_var) * noise
                logits = self.model.decode_logits(z)
                recons.append(reconstruction_nll(logits, x, recon, sigma).double().cpu())
                kls.append(kl_divergence(z_mean, z_log_var).double().cpu())
        if not recons:
            return np.zeros(0), np.zeros(0)
        return (check_finite_tensor(torch.cat(recons), "the test reconstruction NLL").numpy(),
                check_finite_tensor(torch.cat(kls), "the test KL").numpy())


def _is_channels_last(model: torch.nn.Module) -> bool:
    # Any 4-D weight will do (a single-channel first convolution stays NCHW, see to_channels_last).
    return any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters())


#: What every analysis function takes as ``model``: :func:`inference_for` turns any of them into an Inference.
ModelLike = torch.nn.Module | Inference | Run


def inference_for(model: ModelLike, precision: str = "fp32") -> Inference:
    """An :class:`Inference` for whatever names a model: an Inference (as it is), a
    :class:`~vaekit.runs.Run` (its device and precision) or a module (where it is, in ``precision``).

    Every analysis function accepts any of the three where it takes ``model``.
    """
    if isinstance(model, Inference):
        return model
    if isinstance(model, Run):
        return Inference(model.model, model.precision)
    if isinstance(model, torch.nn.Module):
        return Inference(model, precision)
    raise ConfigError(f"model: expected a VAE, a Run or an Inference, got {type(model).__name__}", param="model")
