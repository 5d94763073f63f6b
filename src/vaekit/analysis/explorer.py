"""A trained run with its dataset, for exploring the latent space.

:class:`Explorer` adds to a :class:`~vaekit.runs.Run` what every exploration
needs: one split (optionally cut to its first images), its latent codes
(encoded once), the class means, and images named as users name them
(``test:123`` or a file).

Exploring writes nothing into the run directory: only
:meth:`Explorer.save_class_means` (the ``class-means`` command) stores the
class means, which later explorations then reuse without the dataset.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.analysis.inference import Inference, inference_for
from vaekit.analysis.latent import (
    CLASS_MEANS_FILE,
    ClassMeans,
    LatentCodes,
    compute_class_means,
    encode_dataset,
)
from vaekit.analysis.limits import LIMITS, check_count
from vaekit.data.classes import resolve_class
from vaekit.data.dataset import ImageDataset
from vaekit.data.images import load_image
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.files import read_json, write_json
from vaekit.models.pretrained import WEIGHTS_FILE
from vaekit.runs.run import Run

_IMAGE_REF = re.compile(r"^(train|test):(\d+)$")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Explorer:
    """A run, one split of its dataset and what is computed from them, each once.

    Parameters
    ----------
    run
        The opened run (see :meth:`vaekit.runs.Run.open`).
    split
        Dataset split to explore (``"test"`` by default).
    limit
        Use only the first ``limit`` images of the split (quick looks).
    """

    def __init__(self, run: Run, split: str = "test", limit: int | None = None) -> None:
        if limit is not None:
            limit = check_count("limit", limit, LIMITS["probe"], minimum=2)
        self.run, self.split, self.limit = run, split, limit
        self.model: Inference = inference_for(run)

    @classmethod
    def open(cls, path: str | os.PathLike, split: str = "test", data_dir: str | os.PathLike | None = None,
             limit: int | None = None, device: str | torch.device = "auto", precision: str = "auto") -> Explorer:
        """Open the run in ``path`` (see :meth:`vaekit.runs.Run.open`) and explore ``split``."""
        return cls(Run.open(path, device=device, precision=precision, data_dir=data_dir), split, limit)

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def output_dir(self) -> Path:
        """Where outputs go by default (see :attr:`vaekit.runs.Run.output_dir`)."""
        return self.run.output_dir

    @property
    def config(self) -> dict[str, Any]:
        return self.run.config

    @property
    def dataset_name(self) -> str:
        return self.run.dataset_name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.class_names

    def load_split(self, split: str) -> ImageDataset:
        """The run's dataset for ``split`` (whole; ``limit`` is not applied)."""
        return self.run.dataset(split)

    @cached_property
    def dataset(self) -> ImageDataset:
        """The split explored, cut to ``limit`` images."""
        return self.run.dataset(self.split, limit=self.limit)

    @cached_property
    def codes(self) -> LatentCodes:
        """z_mean and z_log_var of every image of :attr:`dataset`."""
        return encode_dataset(self.model, self.dataset)

    def _class_means_key(self) -> dict[str, Any]:
        return {"weights_sha256": _file_sha256(self.run_dir / WEIGHTS_FILE), "split": self.split, "limit": self.limit}

    def class_means(self, refresh: bool = False) -> ClassMeans:
        """Class means of the split: from ``RUN/class_means.json`` when it was saved from the same
        weights, split and limit (then no dataset is needed), else computed (and not saved)."""
        for path in dict.fromkeys((self.run_dir / CLASS_MEANS_FILE, self.output_dir / CLASS_MEANS_FILE)):
            cached = None if refresh or not path.is_file() else self._read_cache(path, self._class_means_key())
            if cached is not None:
                return cached
        return compute_class_means(self.codes, self.dataset_name)

    def save_class_means(self, means: ClassMeans) -> Path:
        """Store ``means`` as ``class_means.json`` in :attr:`output_dir` for later explorations; returns the path."""
        path = self.output_dir / CLASS_MEANS_FILE
        write_json(path, {**means.to_json(), **self._class_means_key()})
        return path

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
        return load_image(text, self.model.image_shape, fit="pad", invert=invert), Path(text).name

    def first_of_class(self, name: str | int, n: int) -> tuple[np.ndarray, list[str]]:
        """The first ``n`` images of a class in :attr:`dataset`, with ``split:index`` labels."""
        c = resolve_class(name, self.class_names)
        index = np.flatnonzero(self.dataset.labels.numpy() == c)[:n]
        if index.size == 0:
            raise DataError(f"no images of class {self.class_names[c]!r} in the first {len(self.dataset):,} "
                            f"images of the {self.split} split")
        return self.dataset.to_float(index).numpy(), [f"{self.split}:{i}" for i in index]
