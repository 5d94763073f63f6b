"""vaekit: variational autoencoders (VAE and beta-VAE) on images.

Train, inspect, generate and score, from one command or a few lines::

    import vaekit
    result = vaekit.train(out="runs/fmnist", epochs=10)
    model = vaekit.load("runs/fmnist")
"""

__version__ = "0.1.0"

from vaekit.data import ImageDataset, load_dataset  # noqa: E402
from vaekit.errors import ConfigError, DataError, RunDirError, VaekitError  # noqa: E402
from vaekit.losses import vae_loss  # noqa: E402
from vaekit.models import ARCHITECTURES, VAE, ArchSpec, ConvLayer, build_model  # noqa: E402
from vaekit.rundir import load  # noqa: E402
from vaekit.training import TrainConfig, TrainResult, train  # noqa: E402

# Importing these registers the "celeba" and "folder:PATH" datasets.
import vaekit.celeba  # noqa: E402,F401
import vaekit.folder  # noqa: E402,F401

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
