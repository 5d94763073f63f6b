"""Figures: image grids and the two figures of every run.

Figures are built as :class:`matplotlib.figure.Figure` objects, never through
pyplot's global state, so importing vaekit never changes the user's backend.
Every ``save_*`` function writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaekit.analysis.inference import inference_for
from vaekit.analysis.limits import LIMITS, check_count
from vaekit.files import atomic_write_bytes

DPI = 120


def new_figure(**kwargs: Any) -> Figure:
    """A :class:`~matplotlib.figure.Figure` with its own Agg canvas: no pyplot, no global backend."""
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def to_display(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` values in [0, 1] (or uint8) -> ``(N, H, W)`` or ``(N, H, W, 3)`` floats."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    array = np.clip(array.astype(np.float32), 0.0, 1.0)
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def show_image(ax, image: np.ndarray) -> None:
    """Draw one image (greyscale or RGB) without axes."""
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes: every vaekit figure, saved or embedded in a page, at :data:`DPI`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically; returns the path."""
    atomic_write_bytes(path, figure_png(fig))
    return Path(path)


def image_grid_figure(
    rows: Sequence[np.ndarray],
    row_labels: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell: float = 1.2,
):
    """A figure with one row of images per entry of ``rows``.

    Each row is drawn as one image, its images side by side with a thin white
    gap: one axes per row rather than per image keeps a 64-image grid quick to
    draw and save (every training run saves two grids).
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = new_figure(figsize=(cell * n_cols + (1.2 if row_labels else 0), cell * n_rows + 0.4))
    axes = fig.subplots(n_rows, 1, squeeze=False)[:, 0]
    for r, images in enumerate(rows):
        strip, pitch = _strip(np.asarray(images), n_cols)
        show_image(axes[r], strip)
        if titles is not None and r == 0:
            height = strip.shape[0]
            for c, title in enumerate(titles[:n_cols]):
                axes[r].text(c * pitch + (pitch - _gap(height)) / 2, -0.04 * height, title, ha="center",
                             va="bottom", fontsize=8)
        if row_labels is not None:
            axes[r].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig


def _gap(height: int) -> int:
    return max(1, height // 14)


def _strip(images: np.ndarray, slots: int) -> tuple[np.ndarray, int]:
    """``images`` (N, H, W[, 3]) side by side in ``slots`` slots on white; the strip and its column pitch."""
    height, width = images.shape[1:3]
    pitch = width + _gap(height)
    strip = np.ones((height, slots * pitch - _gap(height), *images.shape[3:]), dtype=np.float32)
    for c, image in enumerate(images[:slots]):
        strip[:, c * pitch : c * pitch + width] = image
    return strip, pitch


def save_reconstructions(model: Any, dataset: Any, path: str | os.PathLike, n: int = 10, seed: int = 0) -> Path:
    """"Prediction from dataset": ``n`` random images (top row) above their reconstructions.

    ``model`` is a VAE, a :class:`~vaekit.runs.Run` or an :class:`~vaekit.analysis.Inference`.
    """
    n = check_count("n", n, LIMITS["figure_images"])
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=generator)[:n]
    originals = dataset.images[index]
    recon = inference_for(model).reconstruct(originals)
    # Datasets without classes (faces) get no column titles.
    has_classes = len(dataset.class_names) > 1
    labels = [dataset.class_names[int(i)] for i in dataset.labels[index]] if has_classes else None
    fig = image_grid_figure([to_display(originals), to_display(recon)], row_labels=["input", "reconstruction"],
                            titles=labels, suptitle="Prediction from dataset")
    return save_figure(fig, path)


def save_samples(model: Any, path: str | os.PathLike, n: int = 64, seed: int = 0) -> Path:
    """"Random point in the latent space": ``n`` decoded draws of the prior (seeded), in a square grid."""
    n = check_count("n", n, LIMITS["figure_images"])
    images = to_display(inference_for(model).sample(n, seed))
    side = int(np.ceil(np.sqrt(n)))
    rows = [images[i : i + side] for i in range(0, n, side)]
    fig = image_grid_figure(rows, suptitle="Random points in the latent space", cell=1.0)
    return save_figure(fig, path)
