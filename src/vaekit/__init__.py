"""vaekit: variational autoencoders (VAE and beta-VAE) on images.

Train, inspect, generate and score, from one command or a few lines::

    import vaekit
    result = vaekit.train(out="runs/fmnist", epochs=10)
    model = vaekit.load("runs/fmnist")
    model = vaekit.load_pretrained("fashion28-beta1")   # shipped, no training
    run = vaekit.Run.open("runs/fmnist")      # model, config, metrics, dataset

The package is layered (each layer uses only the ones below it):
``cli`` > ``training`` > ``app`` > ``viz`` > ``analysis`` > ``runs`` > ``zoo`` > ``models`` | ``data``
> ``files`` | ``runtime`` > ``errors``. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"

from vaekit.analysis.inference import Inference  # noqa: E402
from vaekit.data import ImageDataset, load_dataset  # noqa: E402  (registers every dataset)
from vaekit.errors import ConfigError, DataError, RunDirError, VaekitError  # noqa: E402
from vaekit.export import export_onnx  # noqa: E402
from vaekit.models import (  # noqa: E402
    ARCHITECTURES,
    VAE,
    ArchSpec,
    ConvLayer,
    build_model,
    load,
    vae_loss,
)
from vaekit.models.pretrained import save_pretrained  # noqa: E402
from vaekit.runs import Run  # noqa: E402
from vaekit.training import Callback, TrainConfig, Trainer, TrainResult, train  # noqa: E402
from vaekit.zoo import load_pretrained, model_card, pretrained_names  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "Callback",
    "ConfigError",
    "ConvLayer",
    "DataError",
    "ImageDataset",
    "Inference",
    "Run",
    "RunDirError",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "VAE",
    "VaekitError",
    "__version__",
    "build_model",
    "export_onnx",
    "load",
    "load_dataset",
    "load_pretrained",
    "model_card",
    "pretrained_names",
    "save_pretrained",
    "train",
    "vae_loss",
]
