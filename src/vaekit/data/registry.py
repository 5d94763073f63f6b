"""Datasets by name: ``register_dataset`` and ``load_dataset``."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError

Loader = Callable[..., ImageDataset]

#: name -> loader, called as ``loader(split=..., data_dir=..., download=...,
#: **kwargs)``. A name given as ``"prefix:arg"`` that is not registered
#: itself goes to the loader registered as ``"prefix"``, with ``arg=arg``.
DATASETS: dict[str, Loader] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(name: str, loader: Loader, aliases: Iterable[str] = ()) -> None:
    """Register a dataset loader under ``name`` (and optional aliases).

    Parameters
    ----------
    name : str
        Canonical name, e.g. ``"celeba"``, or a prefix such as ``"folder"``
        that will receive the rest of ``"folder:PATH"`` as ``arg``.
    loader : callable
        ``loader(split=..., data_dir=..., download=..., **kwargs)`` returning
        an :class:`ImageDataset`.
    aliases : iterable of str
        Other accepted spellings.
    """
    DATASETS[name] = loader
    for alias in aliases:
        _ALIASES[alias] = name


def dataset_names() -> list[str]:
    """Return the canonical names of registered datasets, in registration order."""
    return list(DATASETS)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    """Load a registered dataset by name.

    Parameters
    ----------
    name : str
        ``"fashion-mnist"`` (also ``"fashion_mnist"``, ``"fmnist"``),
        ``"shapes"``, or any name added with :func:`register_dataset`.
    split : {"train", "test"}
        Which split.
    data_dir : path-like, optional
        Where to look for the files (datasets on disk only).
    download : bool, default True
        Whether a missing dataset may be downloaded.
    **kwargs
        Passed on to the loader (e.g. ``n``, ``seed`` for shapes).

    Returns
    -------
    ImageDataset

    Raises
    ------
    ConfigError
        If ``name`` is not a registered dataset.
    """
    key = canonical_dataset_name(name)
    if key in DATASETS:
        return DATASETS[key](split=split, data_dir=data_dir, download=download, **kwargs)
    prefix, _, arg = key.partition(":")
    return DATASETS[prefix](split=split, data_dir=data_dir, download=download, arg=arg, **kwargs)


def canonical_dataset_name(name: str) -> str:
    """The registered spelling of a dataset name: aliases resolved, prefix lower-cased.

    Parameters
    ----------
    name : str
        ``"FMNIST"``, ``"fashion_mnist"``, ``"Folder:~/Pics"``...

    Returns
    -------
    str
        ``"fashion-mnist"``, ``"folder:~/Pics"`` (the part after the prefix
        is kept as given).

    Raises
    ------
    ConfigError
        If ``name`` is not a registered dataset.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset: a dataset name is needed, got {name!r}; choose one of: {', '.join(DATASETS)}",
                          param="dataset")
    if "\0" in name:
        raise ConfigError(f"dataset: the name {name!r} contains a NUL byte", param="dataset")
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in DATASETS:
        return key
    prefix, sep, arg = name.strip().partition(":")
    if sep and prefix.lower() in DATASETS:
        return f"{prefix.lower()}:{arg}"
    raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
