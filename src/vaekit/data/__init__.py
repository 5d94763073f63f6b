"""Datasets: one in-memory uint8 type, a registry of loaders, and the files they read.

Importing this package registers every built-in dataset: ``fashion-mnist``,
``shapes``, ``celeba`` and ``folder:PATH``.
"""

# Imported for their side effect: each registers its dataset, in this order.
# isort: off
from vaekit.data import fashion_mnist  # noqa: E402,F401
from vaekit.data import shapes  # noqa: E402,F401
from vaekit.data import folder  # noqa: E402,F401
from vaekit.data import celeba  # noqa: E402,F401
# isort: on
from vaekit.data.dataset import ImageDataset
from vaekit.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402
from vaekit.data.registry import DATASETS, dataset_names, load_dataset, register_dataset
from vaekit.data.shapes import SHAPES_CLASSES, make_shapes  # noqa: E402

__all__ = [
    "DATASETS", "FASHION_MNIST_CLASSES", "SHAPES_CLASSES", "ImageDataset", "dataset_names", "load_dataset",
    "load_fashion_mnist", "make_shapes", "register_dataset",
]
