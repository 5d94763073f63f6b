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
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.analysis.inference import inference_for
from vaekit.analysis.limits import LIMITS, check_allocation, check_count, image_bytes
from vaekit.data.classes import resolve_class
from vaekit.errors import ConfigError, DataError
from vaekit.runs.run import Run

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
    kind = "attribute" if names else "class"  # no annotations: the classes are the attributes
    names = names or tuple(dataset.class_names)
    try:
        column = resolve_class(attr, names, what=kind)
    except ConfigError as error:
        raise ConfigError(f"attr: {error} (dataset {dataset.name!r})", param="attr") from None
    mask = dataset.attributes[:, column].bool() if kind == "attribute" else dataset.labels == column
    return names[column], mask.cpu().numpy().astype(bool)


def encode_means(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Posterior means ``E[z|x]`` of uint8 images ``(N, C, H, W)``, float32 ``(N, latent_dim)`` on the CPU."""
    return inference_for(model).encode(images)[0]


def attribute_direction(
    model,
    dataset,
    attr: str,
    max_images: int | None = None,
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
        max_images = check_count("max_images", max_images, LIMITS["probe"], minimum=2)
        if max_images < len(index):
            rng = np.random.default_rng(seed)
            # Sorted: the images are memory-mapped, and in-order reads are fastest.
            index = np.sort(rng.choice(index, size=max_images, replace=False))
    mask = mask[index]
    n_with, n_without = int(mask.sum()), int((~mask).sum())
    if n_with == 0 or n_without == 0:
        which = "has" if n_with == 0 else "lacks"
        raise DataError(f"attr {name}: none of the {len(index)} images of dataset {dataset.name!r} {which} "
                        "it, so there is no direction to measure")
    z = encode_means(model, dataset.images[torch.as_tensor(index)]).numpy()
    mean_with, mean_without = z[mask].mean(0), z[~mask].mean(0)
    return AttributeDirection(name, (mean_with - mean_without).astype(np.float32), mean_with.astype(np.float32),
                              mean_without.astype(np.float32), n_with, n_without)


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
    inference = inference_for(model)
    z = encode_means(inference, images)
    d = torch.as_tensor(np.asarray(direction), dtype=torch.float32)
    if d.shape != (z.shape[1],):
        raise ConfigError(f"the direction has shape {tuple(d.shape)}, the model's latent space ({z.shape[1]},)",
                          param="direction")
    alphas = torch.as_tensor(list(strengths), dtype=torch.float32)
    codes = z[:, None, :] + alphas[None, :, None] * d  # (n, S, latent)
    decoded = inference.decode(codes.reshape(-1, z.shape[1]))
    return decoded.reshape(len(images), len(alphas), *decoded.shape[1:]).numpy()


def attribute_edit(
    run: Run | str | os.PathLike[str],
    attr: str,
    n: int = 4,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    max_images: int | None = 5000,
    split: str = "test",
    dataset: str | None = None,
    seed: int = 0,
) -> AttributeEdit:
    """Measure ``attr``'s direction on a run's training images and apply it to ``n`` images of ``split``.

    Parameters
    ----------
    run
        A :class:`~vaekit.runs.Run` (its device, precision and data folder are
        used) or a run directory.
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
    dataset
        Another dataset than the run's.
    seed
        Seed of the image choices.

    Returns
    -------
    AttributeEdit
    """
    n = check_count("n", n)
    strengths = list(strengths)
    if not strengths:
        raise ConfigError("strengths: give at least one value", param="strengths")
    check_count("strengths", len(strengths))
    strengths = [float(s) for s in strengths]
    run = run if isinstance(run, Run) else Run.open(run)
    check_allocation("n", n * len(strengths), image_bytes(run.model.image_shape))
    direction = attribute_direction(inference_for(run), run.dataset("train", name=dataset), attr, max_images=max_images,
                                    seed=seed)
    edit_set = run.dataset(split, name=dataset)
    _, mask = attribute_mask(edit_set, direction.attribute)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(edit_set), generator=generator)[: min(n, len(edit_set))]
    images = edit_set.images[picked]
    edited = apply_direction(inference_for(run), images, direction.direction, strengths)
    return AttributeEdit(direction, np.asarray(strengths, dtype=np.float32),
                         images.float().div(255.0).numpy(), edited, mask[picked.numpy()])
