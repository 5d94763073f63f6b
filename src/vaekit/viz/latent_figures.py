"""Figures of the latent space. Each function draws one result of :mod:`vaekit.analysis`.

Every ``*_figure`` function takes the dataclass the matching
:mod:`vaekit.analysis` function returns and gives back a matplotlib Figure;
save it with :func:`vaekit.viz.figures.save_figure` (atomic PNG) or show it in a
notebook. Nothing here computes a number that is not already in the result.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.patches import Rectangle

from vaekit.analysis.latent import (
    Arithmetic,
    ClassMeans,
    Interpolation,
    Morph,
    Traversal,
)
from vaekit.analysis.manifold import Holes, Manifold
from vaekit.analysis.separation import LatentMap
from vaekit.viz.figures import new_figure, show_image, to_display

__all__ = [
    "arithmetic_figure",
    "class_means_figure",
    "image_rows_figure",
    "interpolation_figure",
    "latent_map_figure",
    "manifold_figure",
    "morph_figure",
    "transitions_figure",
    "traversal_figure",
]

_ARROW = "\u2192"


def _x_label(x: float) -> str:
    return f"x = {round(float(x), 2):g}"


def image_rows_figure(
    rows: Sequence[np.ndarray],
    cell_titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell: float = 1.25,
    label_width: float = 1.6,
    frame: Sequence[Sequence[bool]] | None = None,
):
    """Rows of images ``(N, C, H, W)`` with optional titles per cell, row labels and framed cells.

    Unlike :func:`vaekit.viz.figures.image_grid_figure` every cell may have its own
    title (class names, x values, predictions), and ``frame`` outlines cells
    (the two inputs of a morph, the merge) so they stand out.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    title_lines = max((t.count("\n") + 1 for titles in cell_titles or [] for t in titles), default=0)
    width = cell * n_cols + (label_width if row_labels else 0.2)
    height = (cell + 0.2 * title_lines) * n_rows + (0.55 if suptitle else 0.1)
    fig = new_figure(figsize=(width, height))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, images in enumerate(rows):
        shown = to_display(np.asarray(images))
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(shown):
                ax.axis("off")
                continue
            show_image(ax, shown[c])
            if cell_titles is not None and c < len(cell_titles[r]) and cell_titles[r][c]:
                ax.set_title(cell_titles[r][c], fontsize=8)
            if frame is not None and frame[r][c]:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("tab:orange")
                    spine.set_linewidth(2.5)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9, labelpad=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# Latent map


def _class_colours(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def latent_map_figure(result: LatentMap, split: str = "test"):
    """Scatter of the projected z_mean coloured by class, class centres as stars, legend of class names."""
    projection, sep = result.projection, result.separation
    fig = new_figure(figsize=(8.6, 6.6))
    ax = fig.subplots()
    colours = _class_colours(len(result.class_names))
    size = 4 if len(result.labels) > 3000 else 9
    for c, name in enumerate(result.class_names):
        points = projection.coords[result.labels == c]
        if len(points):
            ax.scatter(points[:, 0], points[:, 1], s=size, color=colours[c], alpha=0.55, linewidths=0,
                       label=name, rasterized=True)
    centres = ~np.isnan(result.class_centres[:, 0])
    ax.scatter(result.class_centres[centres, 0], result.class_centres[centres, 1], marker="*", s=260,
               c=[colours[c] for c in np.flatnonzero(centres)], edgecolors="black", linewidths=1.0, zorder=3)
    ax.scatter([], [], marker="*", s=120, c="white", edgecolors="black", label="class centre")
    ax.set_xlabel(projection.axis_labels[0])
    ax.set_ylabel(projection.axis_labels[1])
    ax.set_title(f"Latent map: z_mean of {result.n_total:,} {split} images\n{projection.description}; "
                 f"{sep.k}-NN accuracy {sep.accuracy:.3f} (chance {sep.chance:.2f})", fontsize=10)
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, markerscale=2.5 if size < 9 else 1.6,
                       frameon=False, title="class")
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# Manifold


def _canvas(images: np.ndarray) -> np.ndarray:
    """(n, m, C, H, W) grid -> one (n*H, m*W[, 3]) picture."""
    n, m = images.shape[:2]
    tiles = to_display(images.reshape(n * m, *images.shape[2:]))
    h, w = tiles.shape[1:3]
    tiles = tiles.reshape(n, m, h, w, *tiles.shape[3:])
    return np.concatenate([np.concatenate(list(row), axis=1) for row in tiles], axis=0)


def _tick_positions(n: int, limit: int = 12) -> np.ndarray:
    # Label every cell when they fit, else every other, so tick labels never collide.
    return np.arange(0, n, 1 if n <= limit else 2)


def manifold_figure(result: Manifold, holes: Holes | None = None):
    """The decoded grid as one picture, with axis ticks at the grid's latent coordinates and holes outlined."""
    n, m = result.images.shape[:2]
    h, w = result.images.shape[-2:]
    canvas = _canvas(result.images)
    side = min(9.0, max(5.0, 0.42 * max(n, m)))
    fig = new_figure(figsize=(side + 0.8, side + 0.9))
    ax = fig.subplots()
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    cols, rows = _tick_positions(m), _tick_positions(n)
    ax.set_xticks(cols * w + (w - 1) / 2, [f"{result.u[i]:.2f}" for i in cols], rotation=90, fontsize=8)
    ax.set_yticks(rows * h + (h - 1) / 2, [f"{result.v[i]:.2f}" for i in rows], fontsize=8)
    ax.set_xlabel(result.axis_labels[0])
    ax.set_ylabel(result.axis_labels[1])
    title = f"Manifold: {result.description}\n{n} x {m} grid at prior quantiles"
    if holes is not None:
        for r, c in zip(*np.nonzero(holes.mask)):
            ax.add_patch(Rectangle((c * w - 0.5, r * h - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.0))
        title += f"; holes (red): {int(holes.mask.sum())} of {holes.mask.size} ({100 * holes.fraction:.1f}%)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# Class means, interpolations, morphs


def class_means_figure(means: ClassMeans, images: np.ndarray):
    """One labelled row: the decoded mean latent vector of each class."""
    present = np.flatnonzero(means.counts > 0)
    titles = [_class_mean_title(means, i) for i in present]
    return image_rows_figure([images[present]], cell_titles=[titles],
                             suptitle=f"Decoded class averages (mean z_mean of each class, {means.split} split)",
                             cell=1.35)


def _class_mean_title(means: ClassMeans, i: int) -> str:
    title = f"{means.class_names[i]}\nn = {int(means.counts[i]):,}"
    if means.vectors.shape[1] <= 2:
        title += "\n(" + ", ".join(f"{v:.2f}" for v in means.vectors[i]) + ")"
    return title


def _method_name(method: str) -> str:
    return "spherical" if method == "slerp" else "linear"


def interpolation_figure(result: Interpolation):
    """One row of frames titled with x, endpoints named, smoothness in the title."""
    titles = [_x_label(x) for x in result.xs]
    titles[0] += f"\n{result.start}" if result.start else ""
    titles[-1] += f"\n{result.end}" if result.end else ""
    titles = [t if "\n" in t else t + "\n" for t in titles]  # keep all images level
    name = f"{result.start} {_ARROW} {result.end}" if result.start else "Interpolation"
    suptitle = (f"{name} ({_method_name(result.method)}): x*z_to + (1-x)*z_from\n"
                f"smoothness: {result.smoothness.summary()}")
    return image_rows_figure([result.images], cell_titles=[titles], suptitle=suptitle, cell=1.45)


def transitions_figure(results: Sequence[Interpolation]):
    """One row per transition, as in the report; each row label gives its largest step."""
    titles = [[_x_label(x) for x in r.xs] if i == 0 else [] for i, r in enumerate(results)]
    labels = [f"{r.start} {_ARROW} {r.end}\nlargest step {100 * r.smoothness.max_step_fraction:.1f}%"
              for r in results]
    method = _method_name(results[0].method) if results else "linear"
    suptitle = (f"Transitions between class averages ({method}); largest step = biggest change between "
                f"consecutive frames\nas % of the whole change, over {results[0].smoothness.frames} frames "
                f"({100 * results[0].smoothness.even_fraction:.1f}% if perfectly even)")
    return image_rows_figure([r.images for r in results], cell_titles=titles, row_labels=labels,
                             suptitle=suptitle, cell=1.3, label_width=2.0)


def morph_figure(result: Morph, labels: tuple[str, str] = ("A", "B")):
    """The two inputs at both ends of their decoded interpolation; the merge (x = 0.5) framed."""
    interp = result.interpolation
    images = np.concatenate([result.inputs[:1], interp.images, result.inputs[1:]])
    titles = [f"input\n{labels[0]}"] + [_x_label(x) + "\n" for x in interp.xs] + [f"input\n{labels[1]}"]
    frame = [True] + [bool(np.isclose(x, 0.5)) for x in interp.xs] + [True]
    for i, x in enumerate(interp.xs, start=1):
        if np.isclose(x, 0.5):
            titles[i] = _x_label(x) + "\nmerge"
    suptitle = (f"Morph {labels[0]} {_ARROW} {labels[1]} ({_method_name(interp.method)} in the latent space)\n"
                f"smoothness: {interp.smoothness.summary()}")
    return image_rows_figure([images], cell_titles=[titles], frame=[frame], suptitle=suptitle, cell=1.45)


# ----------------------------------------------------------------------------
# Traversals, arithmetic


def traversal_figure(result: Traversal, reference_label: str = "reference point"):
    """One row per latent coordinate swept over its values; rows labelled with KL and change."""
    titles = [[f"{v:+.3g}" for v in result.values]] + [[] for _ in result.dims[1:]]
    labels = []
    for i, d in enumerate(result.dims):
        label = f"z[{d}]"
        if result.kl is not None:
            label += f"  KL {result.kl[d]:.2f}"
        labels.append(label + f"\nchange {result.change[i]:.2f}")
    order = "by mean KL, highest first" if result.kl is not None else "in order"
    suptitle = (f"Latent traversals: each row sets one coordinate to the value on top, the others at the "
                f"{reference_label}\ndimensions {order}; change = summed RMS pixel change along the row")
    return image_rows_figure(list(result.images), cell_titles=titles, row_labels=labels, suptitle=suptitle,
                             cell=1.2, label_width=1.9)


def arithmetic_figure(result: Arithmetic, labels: Sequence[str] | None = None,
                      class_names: Sequence[str] | None = None):
    """Per image: input, reconstruction and ``z - mean(from) + mean(to)`` decoded (with its k-NN reading)."""
    factor = "" if result.strength == 1.0 else f"{result.strength:g} "
    op = f"- {factor}{result.from_class} + {factor}{result.to_class}"
    rows, titles = [], []
    for i in range(len(result.inputs)):
        rows.append(np.stack([result.inputs[i], result.reconstructions[i], result.results[i]]))
        read = ""
        if result.read_as is not None and class_names is not None:
            read = f"\nread as {class_names[int(result.read_as[i])]}"
        else:
            read = "\n"
        titles.append([f"input\n{labels[i] if labels else ''}", "reconstruction\n", op + read])
    hits = ""
    if result.read_as is not None and class_names is not None:
        target = list(class_names).index(result.to_class)
        hits = (f"\n{int((result.read_as == target).sum())} of {len(result.read_as)} results read as "
                f"{result.to_class} by k-NN")
    suptitle = f"Latent arithmetic: z(image) - mean({result.from_class}) + mean({result.to_class}){hits}"
    return _arithmetic_grid(rows, titles, suptitle)


def _arithmetic_grid(rows: list[np.ndarray], titles: list[list[str]], suptitle: str):
    # Several images side by side (3 columns each) keep the figure wide rather than tall.
    per_line = 2 if len(rows) > 2 else len(rows)
    lines = [np.concatenate(rows[i : i + per_line]) for i in range(0, len(rows), per_line)]
    line_titles = [sum(titles[i : i + per_line], []) for i in range(0, len(rows), per_line)]
    return image_rows_figure(lines, cell_titles=line_titles, suptitle=suptitle, cell=1.35)
