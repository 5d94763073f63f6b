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
from vaekit.data.classes import class_mask, resolve_class, resolve_classes
from vaekit.data.dataset import ImageDataset
from vaekit.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402
from vaekit.data.images import load_image, read_image
from vaekit.data.registry import DATASETS, dataset_names, load_dataset, register_dataset
from vaekit.data.shapes import SHAPES_CLASSES, make_shapes  # noqa: E402
from vaekit.data.source import data_source, verify_source

__all__ = [
    "DATASETS", "FASHION_MNIST_CLASSES", "SHAPES_CLASSES", "ImageDataset", "class_mask", "data_source",
    "dataset_names", "load_dataset", "load_fashion_mnist", "load_image", "make_shapes", "read_image",
    "register_dataset", "resolve_class", "resolve_classes", "verify_source",
]
