"""vaekit: variational autoencoders (VAE and beta-VAE) on images.

Train, inspect, generate and score, from one command or a few lines::

    import vaekit
    result = vaekit.train(out="runs/fmnist", epochs=10)
    model = vaekit.load("runs/fmnist")
"""

__version__ = "0.1.0"

from vaekit.data import ImageDataset, load_dataset  # noqa: E402  (registers every dataset)
from vaekit.errors import ConfigError, DataError, RunDirError, VaekitError  # noqa: E402
from vaekit.models import (  # noqa: E402
    ARCHITECTURES,
    VAE,
    ArchSpec,
    ConvLayer,
    build_model,
    load,
    vae_loss,
)
from vaekit.training.config import TrainConfig  # noqa: E402
from vaekit.training.trainer import TrainResult, train  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "ConfigError",
    "ConvLayer",
    "DataError",
    "ImageDataset",
    "RunDirError",
    "TrainConfig",
    "TrainResult",
    "VAE",
    "VaekitError",
    "__version__",
    "build_model",
    "load",
    "load_dataset",
    "train",
    "vae_loss",
]
