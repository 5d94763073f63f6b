"""Figures of the evaluation results: anomalies, denoising, attribute edits, rate-distortion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.viz.figures import (
    image_grid_figure,
    new_figure,
    save_figure,
    show_image,
    to_display,
)


def anomaly_figure(images: torch.Tensor, scores: dict[str, np.ndarray], captions: Sequence[str], n: int = 10,
                   title: str = "Most anomalous images"):
    """One row per score: the ``n`` images it rates most anomalous, highest first.

    Each image is captioned with ``captions[i]`` (class or file name) and its
    score; returns a Matplotlib figure (see :func:`vaekit.viz.figures.save_figure`).
    """

    n = min(n, images.shape[0])
    names = list(scores)
    fig = new_figure(figsize=(1.25 * n + 1.4, 1.55 * len(names) + 0.5))
    axes = fig.subplots(len(names), n, squeeze=False)
    for r, name in enumerate(names):
        order = np.argsort(-scores[name], kind="stable")[:n]
        # Floats in [0, 1]: to_display would clip a uint8 *tensor* to black and white.
        shown = to_display(images[torch.from_numpy(order.copy())].float().div(255.0))
        for c in range(n):
            ax = axes[r, c]
            show_image(ax, shown[c])
            ax.set_title(f"{_short(captions[order[c]])}\n{scores[name][order[c]]:.3g}", fontsize=7)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _short(text: str, width: int = 13) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def denoise_figure(examples: dict[str, torch.Tensor], corruptions: Sequence[str], n: int = 8):
    """Rows: clean images, then for each corruption the corrupted input and its reconstruction."""

    rows, labels = [to_display(examples["clean"][:n])], ["clean"]
    for kind in corruptions:
        rows += [to_display(examples[kind][:n]), to_display(examples[f"{kind}_output"][:n])]
        labels += [f"{kind}\ninput", f"{kind}\noutput"]
    return image_grid_figure(rows, row_labels=labels, suptitle="Denoising: corrupted input and reconstruction")


def save_attribute_figure(edit: Any, path: str | os.PathLike[str]) -> Path:
    """One row per image: the input, then the decoded code at each strength."""

    rows = [np.concatenate([to_display(original[None]), to_display(edited)])
            for original, edited in zip(edit.originals, edit.edited)]
    name = edit.direction.attribute
    labels = [f"{name}: {'yes' if has else 'no'}" for has in edit.has_attribute]
    titles = ["input"] + [f"α = {alpha:+g}" if alpha else "α = 0" for alpha in edit.strengths]
    fig = image_grid_figure(rows, row_labels=labels, titles=titles,
                            suptitle=f"{name} direction: decode(E[z|x] + α · direction)")
    return save_figure(fig, path)


def save_rate_distortion(metrics: Sequence[Any], path: str | Path, title: str | None = None) -> Path:
    """Plot KL (rate) against reconstruction error (distortion), one labelled point per beta."""

    fig = new_figure(figsize=(5.6, 4.2))
    ax = fig.subplots()
    ordered = sorted(metrics, key=lambda m: m.beta)
    rates, distortions = [m.kl for m in ordered], [m.recon for m in ordered]
    ax.plot(rates, distortions, "-", color="0.7", zorder=1)
    ax.scatter(rates, distortions, c=range(len(ordered)), cmap="viridis", s=45, zorder=2)
    for m in ordered:
        ax.annotate(f"β = {m.beta:g}", (m.kl, m.recon), textcoords="offset points", xytext=(7, 5), fontsize=9)
    ax.set_xlabel("rate: KL(q(z|x) ‖ p(z)), nats per image")
    ax.set_ylabel("distortion: reconstruction error, nats per image")
    ax.set_title(title or "Rate-distortion of the β family (test split)", fontsize=11)
    ax.ticklabel_format(useOffset=False, style="plain")  # show nats, not "+3.39e4" offsets
    ax.grid(alpha=0.3)
    ax.margins(x=0.18, y=0.15)  # room for the labels of the extreme points
    fig.tight_layout()
    return save_figure(fig, path)
