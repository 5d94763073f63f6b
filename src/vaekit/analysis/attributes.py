"""Attribute directions: the classic face-VAE demo of latent arithmetic.

The direction of an attribute (``Smiling``, ``Eyeglasses``, ...) is the
mean posterior mean ``E[z|x]`` of the images that have it minus that of the
images that do not. Adding ``alpha`` times the direction to an image's code
and decoding adds (``alpha > 0``) or removes (``alpha < 0``) the attribute;
``alpha = 1`` moves a code by the distance between the two group means.

Attributes come from CelebA's 40 annotations; for datasets without
attributes, class names work the same way (the direction from the other
classes to ``Trouser``, say).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vaekit.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_STRENGTHS",
    "AttributeDirection",
    "AttributeEdit",
    "apply_direction",
    "attribute_direction",
    "attribute_edit",
    "attribute_mask",
    "encode_means",
]

DEFAULT_STRENGTHS: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass
class AttributeDirection:
    """A latent direction and the groups it was measured on.

    Attributes
    ----------
    attribute : str
        Canonical attribute (or class) name.
    direction : numpy.ndarray
        float32 ``(latent_dim,)``: ``mean_with - mean_without``.
    mean_with, mean_without : numpy.ndarray
        float32 ``(latent_dim,)`` mean posterior means of each group.
    n_with, n_without : int
        Images in each group.
    """

    attribute: str
    direction: np.ndarray
    mean_with: np.ndarray
    mean_without: np.ndarray
    n_with: int
    n_without: int

    @property
    def norm(self) -> float:
        """Euclidean length of the direction."""
        return float(np.linalg.norm(self.direction))


@dataclass
class AttributeEdit:
    """Images moved along an attribute direction (what :func:`attribute_edit` returns).

    Attributes
    ----------
    direction : AttributeDirection
    strengths : numpy.ndarray
        float32 ``(S,)``, the ``alpha`` of each column.
    originals : numpy.ndarray
        float32 ``(n, C, H, W)`` in [0, 1], the input images.
    edited : numpy.ndarray
        float32 ``(n, S, C, H, W)`` in [0, 1]: ``decode(E[z|x] + alpha * direction)``.
    has_attribute : numpy.ndarray
        bool ``(n,)``, whether each input has the attribute.
    """

    direction: AttributeDirection
    strengths: np.ndarray
    originals: np.ndarray
    edited: np.ndarray
    has_attribute: np.ndarray


def attribute_mask(dataset, attr: str) -> tuple[str, np.ndarray]:
    """Which images of ``dataset`` have attribute (or class) ``attr``, matched case-insensitively.

    Returns
    -------
    name : str
        The canonical spelling.
    mask : numpy.ndarray
        bool ``(N,)``.

    Raises
    ------
    ConfigError
        One line listing the valid names when ``attr`` is unknown.
    """
    names = tuple(getattr(dataset, "attribute_names", ()) or ())
    kind = "attribute"
    if names:
        values = dataset.attributes
    else:  # no annotations: the classes are the attributes
        names, kind = tuple(dataset.class_names), "class"
        values = None
    lowered = [name.lower() for name in names]
    key = attr.strip().lower()
    if key not in lowered:
        raise ConfigError(f"--attr: unknown {kind} {attr!r} for dataset {dataset.name!r}; "
                          f"choose one of: {', '.join(names)}")
    column = lowered.index(key)
    if values is not None:
        mask = values[:, column].bool()
    else:
        mask = dataset.labels == column
    return names[column], mask.cpu().numpy().astype(bool)


@torch.no_grad()
def encode_means(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means ``E[z|x]`` of uint8 images ``(N, C, H, W)``, float32 ``(N, latent_dim)`` on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255.0)
        means.append(model.encode(x)[0].float().cpu())
    model.train(was_training)
    if not means:
        return torch.empty(0, model.latent_dim)
    return torch.cat(means)


def attribute_direction(
    model,
    dataset,
    attr: str,
    max_images: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> AttributeDirection:
    """Latent direction of ``attr``: mean ``E[z|x]`` with it minus mean without it.

    Parameters
    ----------
    model
        A trained :class:`~vaekit.models.VAE`.
    dataset
        Images with ``attributes``/``attribute_names`` (CelebA) or class labels.
    attr
        Attribute or class name, any case.
    max_images
        Use a random subset of this many images (all when None).
    batch_size
        Images encoded at once.
    seed
        Seed of the subset.

    Returns
    -------
    AttributeDirection

    Raises
    ------
    ConfigError
        For an unknown attribute or a bad ``max_images``.
    DataError
        If no image (of the subset) has the attribute, or every one has it.
    """
    name, mask = attribute_mask(dataset, attr)
    index = np.arange(len(dataset))
    if max_images is not None:
        if max_images < 2:
            raise ConfigError(f"--max-images must be at least 2, got {max_images}")
        if max_images < len(index):
            rng = np.random.default_rng(seed)
            # Sorted: the images are memory-mapped, and in-order reads are fastest.
            index = np.sort(rng.choice(index, size=max_images, replace=False))
    mask = mask[index]
    n_with, n_without = int(mask.sum()), int((~mask).sum())
    if n_with == 0 or n_without == 0:
        which = "has" if n_with == 0 else "lacks"
        raise DataError(f"--attr {name}: none of the {len(index)} images of dataset {dataset.name!r} {which} "
                        "it, so there is no direction to measure")
    z = encode_means(model, dataset.images[torch.as_tensor(index)], batch_size).numpy()
    mean_with, mean_without = z[mask].mean(0), z[~mask].mean(0)
    return AttributeDirection(name, (mean_with - mean_without).astype(np.float32), mean_with.astype(np.float32),
                              mean_without.astype(np.float32), n_with, n_without)


@torch.no_grad()
def apply_direction(
    model,
    images: torch.Tensor,
    direction: np.ndarray | torch.Tensor,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
) -> np.ndarray:
    """Decode ``E[z|x] + alpha * direction`` for every image and strength.

    Parameters
    ----------
    model
        A trained VAE.
    images
        uint8 ``(n, C, H, W)``.
    direction
        ``(latent_dim,)``.
    strengths
        The ``alpha`` values.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, len(strengths), C, H, W)`` in [0, 1].
    """
    device = next(model.parameters()).device
    z = encode_means(model, images).to(device)
    d = torch.as_tensor(np.asarray(direction), dtype=torch.float32, device=device)
    if d.shape != (z.shape[1],):
        raise ConfigError(f"the direction has shape {tuple(d.shape)}, the model's latent space ({z.shape[1]},)")
    alphas = torch.as_tensor(list(strengths), dtype=torch.float32, device=device)
    codes = z[:, None, :] + alphas[None, :, None] * d  # (n, S, latent)
    was_training = model.training
    model.eval()
    decoded = model.decode(codes.reshape(-1, z.shape[1])).float().cpu()
    model.train(was_training)
    return decoded.reshape(len(images), len(alphas), *decoded.shape[1:]).numpy()


def attribute_edit(
    run_dir: str | os.PathLike[str],
    attr: str,
    n: int = 4,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    max_images: int | None = 5000,
    split: str = "test",
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> AttributeEdit:
    """Measure ``attr``'s direction on a run's training images and apply it to ``n`` images of ``split``.

    Parameters
    ----------
    run_dir
        A run directory (see :func:`vaekit.load`).
    attr
        Attribute or class name, any case.
    n
        Images to edit, drawn at random (``seed``) from ``split``.
    strengths
        ``alpha`` values, one column each.
    max_images
        Training images used to measure the direction (a random subset).
    split
        Split the edited images come from.
    dataset, data_dir
        Override the run's dataset and data folder.
    seed
        Seed of the image choices.

    Returns
    -------
    AttributeEdit
    """
    from vaekit.data.registry import load_dataset
    from vaekit.models.pretrained import load, read_config

    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    strengths = [float(s) for s in strengths]
    if not strengths:
        raise ConfigError("--strengths: give at least one value")
    model = load(run_dir)
    config = read_config(run_dir)
    name = dataset or config.get("dataset", {}).get("name")
    if not name:
        raise DataError(f"{Path(run_dir) / 'config.json'}: no dataset recorded; pass --dataset")
    data_dir = data_dir if data_dir is not None else config.get("train", {}).get("data_dir")
    train_set = load_dataset(name, "train", data_dir=data_dir)
    direction = attribute_direction(model, train_set, attr, max_images=max_images, seed=seed)
    edit_set = load_dataset(name, split, data_dir=data_dir)
    _, mask = attribute_mask(edit_set, direction.attribute)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(edit_set), generator=generator)[: min(n, len(edit_set))]
    images = edit_set.images[picked]
    edited = apply_direction(model, images, direction.direction, strengths)
    return AttributeEdit(direction, np.asarray(strengths, dtype=np.float32),
                         images.float().div(255.0).numpy(), edited, mask[picked.numpy()])
