"""The :class:`VAE` module: any :class:`~vaekit.models.spec.ArchSpec` as a ``torch.nn.Module``."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from vaekit.errors import ConfigError
from vaekit.models.init import initialize_weights
from vaekit.models.spec import ArchSpec, ConvLayer, check_spec, get_arch, same_padding


def _same_padding(layer: ConvLayer) -> int:
    return same_padding(layer)


def _conv(in_channels: int, layer: ConvLayer) -> nn.Conv2d:
    return nn.Conv2d(in_channels, layer.channels, layer.kernel, layer.stride, _same_padding(layer))


def _conv_transpose(in_channels: int, layer: ConvLayer) -> nn.ConvTranspose2d:
    # Keras "same" for a transposed convolution multiplies the size by the
    # stride; PyTorch needs output_padding to get there for odd kernels.
    padding = _same_padding(layer) if layer.padding == "same" else 0
    output_padding = 2 * padding - (layer.kernel - layer.stride) if layer.padding == "same" else 0
    return nn.ConvTranspose2d(
        in_channels, layer.channels, layer.kernel, layer.stride, padding, output_padding=output_padding
    )


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns; ``output[0]`` is the reconstruction."""

    reconstruction: torch.Tensor  # pixel values in [0, 1]
    z_mean: torch.Tensor
    z_log_var: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor  # pre-sigmoid decoder output, for a stable loss


class VAE(nn.Module):
    """A convolutional VAE built from an :class:`ArchSpec`.

    ``forward(x)`` encodes images ``x`` (float in [0, 1], shape
    ``(N, C, H, W)``), samples ``z`` with the reparameterisation trick and
    decodes it, returning a :class:`VAEOutput`.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        if not isinstance(spec, ArchSpec):
            raise ConfigError(f"spec must be an ArchSpec, got {type(spec).__name__}", param="spec")
        check_spec(spec)  # by arithmetic: nothing absurd or mismatched is ever allocated
        self.spec = spec
        self.encoder = self._build_encoder(spec)
        hidden = spec.encoder_dense[-1] if spec.encoder_dense else self._flat_size(spec)
        self.z_mean = nn.Linear(hidden, spec.latent_dim)
        self.z_log_var = nn.Linear(hidden, spec.latent_dim)
        self.decoder = self._build_decoder(spec)
        self._check_output_shape()

    @staticmethod
    def _flat_size(spec: ArchSpec) -> int:
        convs = nn.Sequential(*_encoder_conv_layers(spec))
        with torch.no_grad():
            return convs(torch.zeros(1, *spec.input_shape)).numel()

    def _build_encoder(self, spec: ArchSpec) -> nn.Sequential:
        layers: list[nn.Module] = [*_encoder_conv_layers(spec), nn.Flatten()]
        width = self._flat_size(spec)
        for hidden in spec.encoder_dense:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        return nn.Sequential(*layers)

    @staticmethod
    def _build_decoder(spec: ArchSpec) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Linear(spec.latent_dim, math.prod(spec.decoder_start)),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, spec.decoder_start),
        ]
        channels = spec.decoder_start[0]
        for i, layer in enumerate(spec.decoder_convs):
            layers.append(_conv_transpose(channels, layer))
            if i < len(spec.decoder_convs) - 1:
                layers.append(nn.ReLU(inplace=True))
            channels = layer.channels
        return nn.Sequential(*layers)

    def _check_output_shape(self) -> None:
        with torch.no_grad():
            shape = tuple(self.decoder(torch.zeros(1, self.spec.latent_dim)).shape[1:])
        if shape != tuple(self.spec.input_shape):
            raise ConfigError(
                f"architecture '{self.spec.name}': decoder produces {shape}, input is {self.spec.input_shape}"
            )

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.spec.input_shape)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z_mean, z_log_var)`` of q(z|x), always in float32."""
        hidden = self.encoder(x)
        with _float32(hidden):
            hidden = hidden.float()
            return self.z_mean(hidden), self.z_log_var(hidden)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latent vectors to pixel logits."""
        layers = iter(self.decoder)
        with _float32(z):  # the layer reading z, as the heads writing it: see _float32
            hidden = next(layers)(z.float())
        for layer in layers:
            hidden = layer(hidden)
        return hidden

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latent vectors to images with values in [0, 1] (``sigmoid`` of :meth:`decode_logits`)."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterize(z_mean: torch.Tensor, z_log_var: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z = mean + sigma * eps; pass ``noise`` to make it deterministic."""
        if noise is None:
            noise = torch.randn_like(z_mean)
        return z_mean + torch.exp(0.5 * z_log_var) * noise

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        z_mean, z_log_var = self.encode(x)
        z = self.reparameterize(z_mean, z_log_var, noise)
        logits = self.decode_logits(z)
        return VAEOutput(torch.sigmoid(logits), z_mean, z_log_var, z, logits)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images decoded from their posterior means (no sampling noise), values in [0, 1].

        One forward pass on ``x`` as given; for whole datasets on any device
        use :class:`vaekit.analysis.Inference`.
        """
        z_mean, _ = self.encode(x)
        return self.decode(z_mean)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws of the prior N(0, I), values in [0, 1], on the model's device."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decode(z)

    def config(self) -> dict[str, Any]:
        """The architecture as plain values (enough to rebuild the module)."""
        return {"arch": self.spec.name, "latent_dim": self.spec.latent_dim, "spec": self.spec.to_dict()}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a fresh ``config.json`` (with a format version) and ``model.safetensors`` into ``directory``."""
        from vaekit.models.pretrained import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> VAE:
        """Build ``cls`` from a directory written by :meth:`save_pretrained` or by training, in eval mode."""
        from vaekit.models.pretrained import load

        return load(directory, device=device, cls=cls)


def _float32(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off: the latent heads, the sampling and the decoder's first layer run in float32.

    They are a tiny share of the work, but a 2-D latent rounded to bf16's
    8-bit mantissa cost the 30-epoch seed run 1.2% of its test ELBO.
    """
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put ``model``'s weights in the channels-last layout, except convolutions that read one channel.

    Channels-last convolutions are faster on CPUs and tensor-core GPUs, but a
    convolution over a single input channel (fashion28's first, 14x14) ran
    2.5x slower in it on a CPU (``benchmarks/train_throughput.py``); kept in
    NCHW, it hands the next layer an NCHW output that is converted once.
    """
    model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 1:
            module.weight.data = module.weight.data.contiguous()
    return model


def _encoder_conv_layers(spec: ArchSpec) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = spec.input_shape[0]
    for layer in spec.encoder_convs:
        layers += [_conv(channels, layer), nn.ReLU(inplace=True)]
        channels = layer.channels
    return layers


def build_model(name: str = "fashion28", latent_dim: int | None = None, spec: ArchSpec | None = None,
                init: str = "auto") -> VAE:
    """Build a VAE by architecture name (or from an explicit spec), initialised as training does.

    Parameters
    ----------
    name
        One of :data:`ARCHITECTURES` (``"fashion28"``, ``"nn3-128"``).
    latent_dim
        Latent size; defaults to the architecture's (2 and 256).
    spec
        A custom :class:`ArchSpec`; overrides ``name``.
    init
        Weight initialisation (:func:`vaekit.models.init.initialize_weights`):
        ``"auto"`` (default, as :func:`vaekit.train`: the architecture's own,
        :data:`vaekit.models.init.AUTO_INITS`), ``"vaekit"``, ``"keras"`` or ``"pytorch"``.
        Seed with :func:`torch.manual_seed` first for reproducible weights.

    Examples
    --------
    >>> model = build_model("fashion28", latent_dim=2)
    >>> sum(p.numel() for p in model.parameters())
    1361821
    """
    if spec is None:
        spec = get_arch(name, latent_dim)
    elif latent_dim is not None:
        spec = replace(spec, latent_dim=latent_dim)
    model = VAE(spec)
    initialize_weights(model, init)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
