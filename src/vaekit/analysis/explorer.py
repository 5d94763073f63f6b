"""A trained run with its dataset, for exploring the latent space."""

from __future__ import annotations

import hashlib
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.analysis.latent import (
    CLASS_MEANS_FILE,
    ClassMeans,
    LatentCodes,
    compute_class_means,
    encode_dataset,
)
from vaekit.data.classes import resolve_class
from vaekit.data.dataset import ImageDataset
from vaekit.data.images import load_image
from vaekit.data.registry import load_dataset
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.files import read_json, write_json
from vaekit.models.pretrained import WEIGHTS_FILE, load, read_config

_IMAGE_REF = re.compile(r"^(train|test):(\d+)$")


# ----------------------------------------------------------------------------
# A run directory with its data


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LatentRun:
    """A trained run directory with its dataset, for exploration.

    Loads lazily: the model and config at once (so a run without a model
    fails early), the dataset and its latent codes on first use.

    Parameters
    ----------
    run_dir
        A run directory (see :mod:`vaekit.rundir`).
    split
        Dataset split to explore (``"test"`` by default).
    data_dir
        Where the dataset is; default: the one the run was trained with.
    limit
        Use only the first ``limit`` images of the split (quick looks).
    device
        Where the model runs.
    """

    def __init__(self, run_dir: str | os.PathLike, split: str = "test", data_dir: str | os.PathLike | None = None,
                 limit: int | None = None, device: str | torch.device = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.config = read_config(self.run_dir)
        self.model = load(self.run_dir, device=device)
        self.split = split
        self.data_dir = data_dir
        if limit is not None and limit < 2:
            raise ConfigError(f"--limit must be at least 2, got {limit}")
        self.limit = limit
        self._datasets: dict[str, ImageDataset] = {}

    @property
    def dataset_name(self) -> str:
        try:
            return str(self.config["dataset"]["name"])
        except (KeyError, TypeError):
            raise RunDirError(f"{self.run_dir / 'config.json'}: no dataset name (config['dataset']['name'])") from None

    @property
    def class_names(self) -> tuple[str, ...]:
        names = (self.config.get("dataset") or {}).get("class_names")
        return tuple(names) if names else self.dataset.class_names

    def load_split(self, split: str) -> ImageDataset:
        """The run's dataset for ``split`` (whole; ``limit`` is not applied)."""
        if split not in self._datasets:
            data_dir = self.data_dir or (self.config.get("train") or {}).get("data_dir")
            dataset = load_dataset(self.dataset_name, split, data_dir=data_dir)
            if tuple(dataset.image_shape) != tuple(self.model.image_shape):
                raise DataError(f"dataset {self.dataset_name!r} has images of shape {dataset.image_shape}, "
                                f"the model in {self.run_dir} expects {tuple(self.model.image_shape)}")
            self._datasets[split] = dataset
        return self._datasets[split]

    @cached_property
    def dataset(self) -> ImageDataset:
        """The split explored, cut to ``limit`` images."""
        dataset = self.load_split(self.split)
        if self.limit is not None and self.limit < len(dataset):
            dataset = dataset.subset(slice(0, self.limit))
        return dataset

    @cached_property
    def codes(self) -> LatentCodes:
        """z_mean and z_log_var of every image of :attr:`dataset`."""
        return encode_dataset(self.model, self.dataset)

    def class_means(self, refresh: bool = False) -> ClassMeans:
        """Class means of the split, cached in ``RUN/class_means.json``.

        The cache is used when it was made from the same weights, split and
        limit, so commands after the first need no dataset.
        """
        path = self.run_dir / CLASS_MEANS_FILE
        key = {"weights_sha256": _file_sha256(self.run_dir / WEIGHTS_FILE), "split": self.split, "limit": self.limit}
        if not refresh and path.is_file():
            cached = self._read_cache(path, key)
            if cached is not None:
                return cached
        means = compute_class_means(self.codes, self.dataset_name)
        write_json(path, {**means.to_json(), **key})
        return means

    def _read_cache(self, path: Path, key: dict[str, Any]) -> ClassMeans | None:
        try:
            data = read_json(path)
            if not isinstance(data, dict) or any(data.get(name) != value for name, value in key.items()):
                return None
            means = ClassMeans.from_json(data, path)
        except RunDirError:
            return None  # a damaged cache is recomputed, not an error
        return means if means.vectors.shape[1] == self.model.latent_dim else None

    def image(self, ref: str | os.PathLike, invert: bool = False) -> tuple[np.ndarray, str]:
        """An image by reference: ``"test:123"``/``"train:5"`` (dataset index) or a file path.

        Returns the image ``(C, H, W)`` in [0, 1] and a short label for figures.
        """
        text = str(ref)
        match = _IMAGE_REF.match(text)
        if match and not Path(text).exists():
            split, index = match.group(1), int(match.group(2))
            dataset = self.load_split(split)
            if index >= len(dataset):
                raise ConfigError(f"{text}: index out of range; the {split} split has {len(dataset):,} images "
                                  f"(0..{len(dataset) - 1})")
            label = f"{text} ({dataset.class_names[int(dataset.labels[index])]})"
            image = dataset.images[index].float().div(255.0).numpy()
            return (1.0 - image if invert else image), label
        return load_image(text, self.model.image_shape, invert), Path(text).name

    def first_of_class(self, name: str | int, n: int) -> tuple[np.ndarray, list[str]]:
        """The first ``n`` images of a class in :attr:`dataset`, with ``split:index`` labels."""
        c = resolve_class(name, self.class_names)
        index = np.flatnonzero(self.dataset.labels.numpy() == c)[:n]
        if index.size == 0:
            raise DataError(f"no images of class {self.class_names[c]!r} in the first {len(self.dataset):,} "
                            f"images of the {self.split} split")
        return self.dataset.to_float(index).numpy(), [f"{self.split}:{i}" for i in index]
