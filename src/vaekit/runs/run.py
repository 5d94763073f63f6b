"""A run directory and what it holds: config, model, metrics, and its dataset.

:meth:`Run.open` is how every analysis command and API function gets at a
trained model::

    run = vaekit.Run.open("runs/fmnist", device="auto", precision="auto")
    run.model                    # the VAE, eval mode, on the device
    run.config, run.metrics      # config.json and metrics.csv, parsed
    test = run.dataset("test")   # loaded on first use, from where training found it

The run directory records where its data was found (``config["data"]``: the
absolute folder and a content fingerprint), so a run trained in one shell
(with ``VAEKIT_DATA_DIR`` set, say) is analysed from any other. If the data
has moved since, the usual search order applies.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit.data.classes import resolve_classes
from vaekit.data.dataset import ImageDataset
from vaekit.data.registry import load_dataset
from vaekit.data.source import verify_source
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, load, read_config
from vaekit.models.vae import to_channels_last
from vaekit.runtime import resolve_device, resolve_precision
from vaekit.zoo import resolve_run_dir

METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"

__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "METRICS_COLUMNS", "METRICS_FILE", "WEIGHTS_FILE", "Run", "parse_metrics_row",
           "read_metrics"]


#: Columns every ``metrics.csv`` row has (the trainer writes more).
METRICS_COLUMNS = ("epoch", "test_elbo", "test_recon", "test_kl")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` as strings (empty if training has not finished an epoch).

    Every row is checked first: the required columns (:data:`METRICS_COLUMNS`)
    are there, every cell is a finite number, epochs count 1, 2, 3...

    Raises
    ------
    RunDirError
        One line naming the file, the row and the column of the first bad cell.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not a UTF-8 text file") from None
    except OSError as error:
        raise RunDirError(f"{path}: unreadable ({error.strerror or error})") from None
    if not text.strip():
        return []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as error:
        raise RunDirError(f"{path}: not a CSV file ({error})") from None
    missing = [column for column in METRICS_COLUMNS if column not in header]
    if missing:
        raise RunDirError(f"{path}: missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header) or any(not name for name in header):
        raise RunDirError(f"{path}: the header has blank or repeated column names")
    if not rows:
        raise RunDirError(f"{path}: a header but no rows")
    for number, row in enumerate(rows, start=1):
        parse_metrics_row(row, path, number)
        if int(row["epoch"]) != number:
            raise RunDirError(f"{path}: row {number}, column epoch: expected epoch {number}, got {row['epoch']}")
    return rows


def parse_metrics_row(row: dict[str, str], path: str | os.PathLike = METRICS_FILE,
                      number: int | None = None) -> dict[str, Any]:
    """A ``metrics.csv`` row with its numbers parsed: ints stay ints, the rest become floats.

    Raises :class:`RunDirError` naming ``path``, the row ``number`` and the
    column unless every cell is a finite number (``epoch`` a positive integer).
    A cell outside :data:`METRICS_COLUMNS` may be empty (a column that a newer
    vaekit added when it resumed the run): it reads as ``None``.
    """
    where = f"{path}: row {number}" if number is not None else f"{path}: a row"
    if None in row:
        raise RunDirError(f"{where} has more cells than the header has columns")
    parsed: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            raise RunDirError(f"{where}, column {key}: missing cell")
        text = value.strip()
        if not text and key not in METRICS_COLUMNS:
            parsed[key] = None
            continue
        try:
            number_ = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise RunDirError(f"{where}, column {key}: not a number ({value[:40]!r})") from None
        if not math.isfinite(number_):
            raise RunDirError(f"{where}, column {key}: not a finite number ({value[:40]!r})")
        parsed[key] = number_
    epoch = parsed.get("epoch")
    if epoch is not None and (not isinstance(epoch, int) or epoch < 1):
        raise RunDirError(f"{where}, column epoch: must be a positive integer, got {row['epoch']!r}")
    return parsed


@dataclass(eq=False)
class Run:
    """A trained run directory: its config, model, metrics and (lazily) its dataset.

    Create one with :meth:`open`.
    """

    path: Path
    config: dict[str, Any]
    model: torch.nn.Module
    precision: str
    data_dir: str | None = None
    pretrained: str | None = None
    _datasets: dict[str, ImageDataset] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike, device: str | torch.device = "auto", precision: str = "auto",
             data_dir: str | os.PathLike | None = None, model: torch.nn.Module | None = None) -> Run:
        """Open a run directory and load its model onto ``device``.

        Parameters
        ----------
        path
            The run directory (made by :func:`vaekit.train`), or the name of
            a shipped model (see :func:`vaekit.zoo.pretrained_names`).
        device
            ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda:1"``...
        precision
            ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``: what the model
            runs in (see :func:`vaekit.runtime.resolve_precision`).
        data_dir
            Where the dataset is; default: where training found it.
        model
            A module to load the weights into, for runs of a custom model class.

        Raises
        ------
        RunDirError
            If the directory holds no run, or its weights do not match its config.
        """
        target = resolve_device(device) if isinstance(device, str) else torch.device(device)
        resolved = resolve_precision(precision, target)  # bad options are refused before any file is read
        path, pretrained = resolve_run_dir(path)
        config = read_config(path)
        loaded = load(path, device=target, model=model)
        if target.type != "mps":
            # Channels-last convolutions decode about twice as fast on CPUs and are no slower on GPUs.
            loaded = to_channels_last(loaded)
        return cls(path, config, loaded, resolved, None if data_dir is None else str(data_dir), pretrained)

    # ------------------------------------------------------------------ what the run is

    @property
    def device(self) -> torch.device:
        """Where the model is."""
        return next(self.model.parameters()).device

    @property
    def output_dir(self) -> Path:
        """Where figures and files made from this run go by default: the run directory, or
        ``./NAME`` for a shipped model (whose own folder is part of the installed package)."""
        return Path(self.pretrained) if self.pretrained else self.path

    @property
    def train_settings(self) -> dict[str, Any]:
        """The training settings (``config["train"]``)."""
        return dict(self.config.get("train") or {})

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.csv`` with numbers parsed, one per finished epoch."""
        path = self.path / METRICS_FILE
        return [parse_metrics_row(row, path, i) for i, row in enumerate(read_metrics(self.path), start=1)]

    @property
    def dataset_name(self) -> str:
        """The name of the dataset the run was trained on."""
        name = (self.config.get("dataset") or {}).get("name") or self.train_settings.get("dataset")
        if not name:
            raise RunDirError(f"{self.path / CONFIG_FILE}: no dataset name (config['dataset']['name'])")
        return str(name)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the run's dataset, as recorded at training time."""
        names = (self.config.get("dataset") or {}).get("class_names")
        return tuple(names) if names else self.dataset("test").class_names

    @property
    def excluded_classes(self) -> list[str]:
        """The classes the run was trained without (``exclude_classes``), by their canonical names."""
        wanted = [str(c) for c in self.train_settings.get("exclude_classes") or []]
        if not wanted:
            return []
        return [self.class_names[i] for i in resolve_classes(wanted, self.class_names)]

    # ------------------------------------------------------------------ its data

    def data_location(self) -> str | None:
        """The folder to load the dataset from: the explicit one, else where training found it.

        ``None`` means the usual search order (also when the recorded folder
        has moved or changed since training).
        """
        if self.data_dir is not None:
            return self.data_dir
        source = self.config.get("data") or {}
        if source.get("path") and verify_source(source):
            return str(source["path"])
        return self.train_settings.get("data_dir")

    def _name_to_load(self) -> str:
        """The run's dataset as the loader takes it: a folder by the absolute path recorded at training.

        ``folder:PATH`` is kept as typed, possibly relative to the directory training ran in.
        """
        recorded = str((self.config.get("data") or {}).get("name") or "")
        if self.dataset_name.lower().startswith("folder:") and recorded.lower().startswith("folder:"):
            return recorded
        return self.dataset_name

    def dataset(self, split: str = "test", limit: int | None = None, in_distribution: bool = False,
                name: str | None = None) -> ImageDataset:
        """A split of the run's dataset (loaded once per split and cached).

        Parameters
        ----------
        split
            ``"train"`` or ``"test"`` (or any split the dataset has).
        limit
            Keep only the first ``limit`` images.
        in_distribution
            Leave out the classes the run was trained without.
        name
            Another dataset than the run's (its images must fit the model).
        """
        key = f"{name or ''}:{split}"
        if key not in self._datasets:
            dataset_name = name or self._name_to_load()
            data_dir = self.data_location() if name is None else self.data_dir
            extra = {"image_shape": self.model.image_shape} if dataset_name.lower().startswith("folder:") else {}
            loaded = load_dataset(dataset_name, split, data_dir=data_dir, **extra)
            if tuple(loaded.image_shape) != tuple(self.model.image_shape):
                raise DataError(f"{self.path}: dataset {dataset_name!r} has images of shape "
                                f"{tuple(loaded.image_shape)} (C, H, W), the model expects "
                                f"{tuple(self.model.image_shape)}")
            self._datasets[key] = loaded
        dataset = self._datasets[key]
        if in_distribution and self.excluded_classes and tuple(dataset.class_names) == self.class_names:
            dataset = dataset.exclude_classes(self.excluded_classes)
        if limit is not None:
            if limit < 1:
                raise ConfigError(f"limit must be at least 1, got {limit}", param="limit")
            if limit < len(dataset):
                dataset = dataset.subset(slice(0, limit))
        return dataset

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, dataset={self.config.get('dataset', {}).get('name')!r}, device={self.device})"
