"""Declarative VAE architectures: :class:`ArchSpec` and the named ones.

An :class:`ArchSpec` lists the layers of the encoder and decoder; :class:`VAE`
turns any spec into a ``torch.nn.Module``. The named architectures
(:data:`ARCHITECTURES`) are specs, not classes, so adding one is a few lines.

``fashion28``
    The Fashion-MNIST report's model, layer for layer: Conv2D(32, 14, valid),
    Conv2D(64, 6, valid), Dense(168), Dense(16), z_mean/z_log_var; decoder
    Dense(7*7*128), ConvTranspose(128, 3, stride 2, same),
    ConvTranspose(32, 3, stride 2, same), ConvTranspose(1, 3, same) and a
    sigmoid. 1,361,821 parameters for ``latent_dim=2``, as in Keras.
``nn3-128``
    The "NN3" model of the CelebA beta-VAE module docs: 128x128x3 input,
    four stride-2 convolutions (32, 64, 128, 256 channels) to 8x8x256,
    z_mean/z_log_var of 256, and a decoder of Dense(16384) then six transposed
    convolutions (256, 256, 128, 64, 32, 3 channels). The docs give only the
    output shapes; vaekit chooses **kernel size 3** for every (transposed)
    convolution, with "same" padding, as in the Keras VAE example the docs
    grew from. Stride 2 wherever the spatial size doubles or halves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vaekit.errors import ConfigError


@dataclass(frozen=True)
class ConvLayer:
    """One (transposed) convolution: output channels, kernel, stride, padding."""

    channels: int
    kernel: int
    stride: int = 1
    padding: str = "same"  # "same" (output = ceil(input / stride)) or "valid"


@dataclass(frozen=True)
class ArchSpec:
    """Declarative description of a convolutional VAE.

    Parameters
    ----------
    name
        Architecture name, stored in run configs.
    input_shape
        ``(channels, height, width)`` of the images.
    latent_dim
        Size of the latent vector z.
    encoder_convs
        Convolutions of the encoder, each followed by ReLU.
    encoder_dense
        Hidden widths of the dense layers after flattening, each with ReLU.
    decoder_start
        ``(channels, height, width)`` the decoder's first dense layer is
        reshaped to.
    decoder_convs
        Transposed convolutions of the decoder; all but the last are followed
        by ReLU, the last produces logits (a sigmoid gives pixel values).
    """

    name: str
    input_shape: tuple[int, int, int]
    latent_dim: int
    encoder_convs: tuple[ConvLayer, ...]
    encoder_dense: tuple[int, ...]
    decoder_start: tuple[int, int, int]
    decoder_convs: tuple[ConvLayer, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        data = dict(data)
        for key in ("encoder_convs", "decoder_convs"):
            data[key] = tuple(ConvLayer(**layer) for layer in data[key])
        for key in ("input_shape", "encoder_dense", "decoder_start"):
            data[key] = tuple(data[key])
        return cls(**data)


FASHION28 = ArchSpec(
    name="fashion28",
    input_shape=(1, 28, 28),
    latent_dim=2,
    encoder_convs=(ConvLayer(32, 14, padding="valid"), ConvLayer(64, 6, padding="valid")),
    encoder_dense=(168, 16),
    decoder_start=(128, 7, 7),
    decoder_convs=(ConvLayer(128, 3, 2), ConvLayer(32, 3, 2), ConvLayer(1, 3, 1)),
)

NN3_128 = ArchSpec(
    name="nn3-128",
    input_shape=(3, 128, 128),
    latent_dim=256,
    encoder_convs=(ConvLayer(32, 3, 2), ConvLayer(64, 3, 2), ConvLayer(128, 3, 2), ConvLayer(256, 3, 2)),
    encoder_dense=(),
    decoder_start=(256, 8, 8),
    decoder_convs=(
        ConvLayer(256, 3, 1),
        ConvLayer(256, 3, 2),
        ConvLayer(128, 3, 2),
        ConvLayer(64, 3, 2),
        ConvLayer(32, 3, 2),
        ConvLayer(3, 3, 1),
    ),
)

ARCHITECTURES: dict[str, ArchSpec] = {spec.name: spec for spec in (FASHION28, NN3_128)}


def get_arch(name: str, latent_dim: int | None = None) -> ArchSpec:
    """Return the named architecture, optionally with another latent size."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"arch: unknown architecture '{name}'; choose one of: {', '.join(ARCHITECTURES)}",
                          param="arch")
    spec = ARCHITECTURES[name]
    if latent_dim is not None:
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be at least 1, got {latent_dim}", param="latent_dim")
        spec = replace(spec, latent_dim=latent_dim)
    return spec
