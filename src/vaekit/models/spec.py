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

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from vaekit.errors import ConfigError

PADDINGS = ("same", "valid")


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
    def from_dict(cls, data: Any, where: str = "spec") -> ArchSpec:
        """Rebuild a spec from :meth:`to_dict`'s output, checking every field first.

        Raises :class:`ConfigError` naming the field (``spec.latent_dim must be
        a positive integer, got -3``); nothing is built before the spec is
        known to be sound (see :func:`check_spec`).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be an object (a mapping of fields), got {_kind(data)}", param=where)
        _no_unknown(data, {f.name for f in fields(cls)}, where)
        for key in ("name", "input_shape", "latent_dim", "encoder_convs", "encoder_dense", "decoder_start"):
            if key not in data:
                raise ConfigError(f"{where}.{key} is missing", param=f"{where}.{key}")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}.name must be a non-empty string, got {name!r}", param=f"{where}.name")
        spec = cls(
            name=name,
            input_shape=_int_tuple(data["input_shape"], f"{where}.input_shape", 3),
            latent_dim=_positive_int(data["latent_dim"], f"{where}.latent_dim"),
            encoder_convs=_layers(data["encoder_convs"], f"{where}.encoder_convs"),
            encoder_dense=_int_tuple(data["encoder_dense"], f"{where}.encoder_dense"),
            decoder_start=_int_tuple(data["decoder_start"], f"{where}.decoder_start", 3),
            decoder_convs=_layers(data.get("decoder_convs", ()), f"{where}.decoder_convs"),
        )
        check_spec(spec, where)
        return spec


#: Largest latent size accepted anywhere (configs, options, specs).
MAX_LATENT_DIM = 2**16
#: Largest number of parameters an architecture may have (4 GiB of float32 weights).
MAX_PARAMETERS = 2**30
#: Largest number of values one layer may produce per image (1 GiB of float32).
MAX_ACTIVATION = 2**28


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _no_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown[:3])}", param=where)


def _positive_int(value: Any, where: str) -> int:
    if type(value) is not int or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {_kind(value)}", param=where)
    return value


def _int_tuple(value: Any, where: str, length: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of positive integers, got {_kind(value)}", param=where)
    if length is not None and len(value) != length:
        raise ConfigError(f"{where} must have {length} entries, got {len(value)}", param=where)
    return tuple(_positive_int(v, f"{where}[{i}]") for i, v in enumerate(value))


def _layers(value: Any, where: str) -> tuple[ConvLayer, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of layers, got {_kind(value)}", param=where)
    layers = []
    for i, layer in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(layer, ConvLayer):
            layer = asdict(layer)
        if not isinstance(layer, dict):
            raise ConfigError(f"{here} must be an object (channels, kernel, stride, padding), got {_kind(layer)}",
                              param=here)
        _no_unknown(layer, {"channels", "kernel", "stride", "padding"}, here)
        for key in ("channels", "kernel"):
            if key not in layer:
                raise ConfigError(f"{here}.{key} is missing", param=f"{here}.{key}")
        padding = layer.get("padding", "same")
        if padding not in PADDINGS:
            raise ConfigError(f"{here}.padding must be one of {', '.join(PADDINGS)}, got {padding!r}",
                              param=f"{here}.padding")
        layers.append(ConvLayer(_positive_int(layer["channels"], f"{here}.channels"),
                                _positive_int(layer["kernel"], f"{here}.kernel"),
                                _positive_int(layer.get("stride", 1), f"{here}.stride"), padding))
    return tuple(layers)


def same_padding(layer: ConvLayer) -> int:
    """The zero padding PyTorch gets for a layer ("valid": none)."""
    if layer.padding == "valid":
        return 0
    return max(-(-(layer.kernel - layer.stride) // 2), 0)


def check_spec(spec: ArchSpec, where: str = "spec") -> int:
    """Check a spec by arithmetic alone, before any module is built; return its parameter count.

    Refuses (:class:`ConfigError`, naming the field) non-positive or
    non-integer sizes, unknown paddings, layers whose output would be empty,
    a decoder whose output shape is not the input shape, and absurd sizes:
    more than :data:`MAX_PARAMETERS` parameters, or a layer producing more
    than :data:`MAX_ACTIVATION` values per image.
    """
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise ConfigError(f"{where}.name must be a non-empty string, got {spec.name!r}", param=f"{where}.name")
    _int_tuple(spec.input_shape, f"{where}.input_shape", 3)
    _int_tuple(spec.decoder_start, f"{where}.decoder_start", 3)
    _int_tuple(spec.encoder_dense, f"{where}.encoder_dense")
    latent = _positive_int(spec.latent_dim, f"{where}.latent_dim")
    if latent > MAX_LATENT_DIM:
        raise ConfigError(f"{where}.latent_dim must be at most {MAX_LATENT_DIM}, got {latent}",
                          param=f"{where}.latent_dim")
    _layers(spec.encoder_convs, f"{where}.encoder_convs")
    _layers(spec.decoder_convs, f"{where}.decoder_convs")
    params = 0

    def grow(count: int, values: int, here: str) -> None:
        nonlocal params
        params += count
        if params > MAX_PARAMETERS:
            raise ConfigError(f"{here}: the architecture would have more than {MAX_PARAMETERS} parameters",
                              param=here)
        if values > MAX_ACTIVATION:
            raise ConfigError(f"{here} would produce {values} values per image, more than {MAX_ACTIVATION}",
                              param=here)

    channels, height, width = spec.input_shape
    grow(0, channels * height * width, f"{where}.input_shape")
    for i, layer in enumerate(spec.encoder_convs):
        here, pad = f"{where}.encoder_convs[{i}]", same_padding(layer)
        height = (height + 2 * pad - layer.kernel) // layer.stride + 1
        width = (width + 2 * pad - layer.kernel) // layer.stride + 1
        if height < 1 or width < 1:
            raise ConfigError(f"{here}: kernel {layer.kernel} is larger than its input", param=here)
        grow(channels * layer.channels * layer.kernel**2 + layer.channels, layer.channels * height * width, here)
        channels = layer.channels
    hidden = channels * height * width
    for i, size in enumerate(spec.encoder_dense):
        grow(hidden * size + size, size, f"{where}.encoder_dense[{i}]")
        hidden = size
    grow(2 * (hidden * latent + latent), latent, f"{where}.latent_dim")
    channels, height, width = spec.decoder_start
    grow(latent * channels * height * width + channels * height * width, channels * height * width,
         f"{where}.decoder_start")
    for i, layer in enumerate(spec.decoder_convs):
        here, pad = f"{where}.decoder_convs[{i}]", same_padding(layer)
        extra = 2 * pad - (layer.kernel - layer.stride) if layer.padding == "same" else 0
        if extra != 0 and not 0 < extra < layer.stride:
            raise ConfigError(f"{here}: 'same' padding needs an odd kernel or a stride above 1 "
                              f"(kernel {layer.kernel}, stride {layer.stride})", param=here)
        height = (height - 1) * layer.stride - 2 * pad + layer.kernel + extra
        width = (width - 1) * layer.stride - 2 * pad + layer.kernel + extra
        grow(channels * layer.channels * layer.kernel**2 + layer.channels, layer.channels * height * width, here)
        channels = layer.channels
    if (channels, height, width) != tuple(spec.input_shape):
        raise ConfigError(f"architecture '{spec.name}': decoder produces {(channels, height, width)}, "
                          f"input is {tuple(spec.input_shape)}", param=f"{where}.decoder_convs")
    return params


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
        if type(latent_dim) is not int:
            raise ConfigError(f"latent_dim must be an integer, got {latent_dim!r}", param="latent_dim")
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be at least 1, got {latent_dim}", param="latent_dim")
        if latent_dim > MAX_LATENT_DIM:
            raise ConfigError(f"latent_dim must be at most {MAX_LATENT_DIM}, got {latent_dim}", param="latent_dim")
        spec = replace(spec, latent_dim=latent_dim)
    return spec
