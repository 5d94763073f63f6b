"""Latent-space sections: one figure with its numbers each.

A :class:`Section` is what one ``vaekit`` exploration command shows, and one
part of ``report.html`` (:mod:`vaekit.viz.report`). The section functions
here are what the commands call, so a figure and its numbers are the same
from the CLI, from a notebook and in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vaekit.analysis import latent, separation
from vaekit.analysis import manifold as manifold_ops
from vaekit.analysis.explorer import Explorer
from vaekit.analysis.latent import ClassMeans
from vaekit.analysis.limits import LIMITS, check_count
from vaekit.data.classes import resolve_class
from vaekit.errors import ConfigError
from vaekit.viz import latent_figures as lp

__all__ = [
    "Section",
    "arithmetic_section",
    "class_means_section",
    "interpolation_section",
    "latent_map_section",
    "manifold_section",
    "morph_section",
    "transitions_section",
    "traversal_section",
]


@dataclass
class Section:
    """One figure and the numbers measured with it."""

    key: str  # stable identifier, e.g. "latent_map"
    title: str
    figure: Any  # matplotlib Figure
    lines: list[str]  # the numbers, one readable line each (printed by the CLI)
    metrics: dict[str, Any] = field(default_factory=dict)  # the same numbers, machine-readable
    explanation: str = ""  # what the figure shows and how the numbers are defined
    result: Any = None  # the analysis result drawn, for callers that keep it (e.g. ClassMeans)


# ----------------------------------------------------------------------------
# Sections


def latent_map_section(run: Explorer, projection: str = "auto", k: int = 5, seed: int = 0) -> Section:
    """Issue item 1 and the class-separation number of item 10."""
    if run.model.latent_dim < 2:
        raise ConfigError(f"latent-map needs a latent space of at least 2 dimensions; this run has "
                          f"{run.model.latent_dim}")
    result = separation.latent_map(run.codes, projection, k, seed)
    sep = result.separation
    lines = [sep.summary()]
    lines += [f"overlap {a} / {b}: {100 * rate:.1f}% of their images get the other's k-NN vote"
              for a, b, rate in sep.overlaps]
    worst = sorted(sep.per_class.items(), key=lambda item: item[1])[:3]
    lines.append("least separated classes: " + ", ".join(f"{name} {acc:.2f}" for name, acc in worst))
    metrics = {"knn_accuracy": round(sep.accuracy, 4), "k": sep.k, "images": sep.n, "chance": round(sep.chance, 4),
               "projection": result.projection.method,
               "per_class_accuracy": {name: round(acc, 4) for name, acc in sep.per_class.items()},
               "overlaps": [{"classes": [a, b], "rate": round(rate, 4)} for a, b, rate in sep.overlaps]}
    explanation = (f"Each point is the posterior mean z_mean of one {run.split} image, coloured by its class; stars "
                   f"are class centres. Class separation is the leave-one-out {sep.k}-nearest-neighbour accuracy of "
                   f"z_mean in the full {run.codes.latent_dim}-D latent space: the fraction of images whose {sep.k} "
                   "nearest other images mostly share their class. Overlap of two classes is the share of their "
                   "images whose neighbours vote for the other one.")
    return Section("latent_map", "Latent map", lp.latent_map_figure(result, run.split), lines, metrics, explanation)


def manifold_section(run: Explorer, grid: int = 20, n_reference: int = 2000, percentile: float = 95.0) -> Section:
    """Issue item 2 with the hole fraction of item 10."""
    grid = check_count("grid", grid, minimum=2)
    n_reference = check_count("reference_images", n_reference, LIMITS["probe"], minimum=2)
    z_data = run.codes.z_mean if run.model.latent_dim > 2 else None
    if run.model.latent_dim < 2:
        manifold_ops.latent_plane(run.model.latent_dim)  # raises the one-line error
    result = manifold_ops.manifold(run.model, grid, z_data)
    reconstructions = latent.decode(run.model, run.codes.z_mean[:n_reference])
    holes = manifold_ops.find_holes(result.images, reconstructions, percentile)
    lines = [holes.summary(),
             f"plane: {result.description}; grid {grid} x {grid} from {result.u[0]:.2f} to {result.u[-1]:.2f}"]
    metrics = {"grid": grid, "hole_fraction": round(holes.fraction, 4), "holes": int(holes.mask.sum()),
               "hole_threshold_rms": round(holes.threshold, 5), "reference_images": holes.n_reference,
               "percentile": percentile}
    explanation = ("Decoded images at grid points placed at quantiles of the N(0, 1) prior (the midpoints of equal-"
                   "probability bins), so the grid covers where the prior puts its mass. A grid point is a hole "
                   "(outlined in red) when its decoded image is farther, in RMS pixel distance, from every "
                   f"reconstruction of {holes.n_reference:,} {run.split} images than {percentile:g}% of those "
                   "reconstructions are from their own nearest neighbour: the decoder makes there an image unlike "
                   "anything the data maps to.")
    return Section("manifold", "Manifold", lp.manifold_figure(result, holes), lines, metrics, explanation)


def class_means_section(run: Explorer, refresh: bool = False, means: ClassMeans | None = None) -> Section:
    """The decoded class averages; ``means`` when given, else :meth:`Explorer.class_means`."""
    means = means if means is not None else run.class_means(refresh=refresh)
    images = latent.decode(run.model, np.nan_to_num(means.vectors))
    lines = [f"class means of {int(means.counts.sum()):,} {means.split} images"]
    if means.vectors.shape[1] <= 4:
        lines += [f"{name}: ({', '.join(f'{v:.3f}' for v in vec)})"
                  for name, vec, c in zip(means.class_names, means.vectors, means.counts) if c]
    metrics = {"split": means.split, "count": int(means.counts.sum()),
               "means": {n: [round(float(v), 5) for v in vec] for n, vec, c in
                         zip(means.class_names, means.vectors, means.counts) if c}}
    explanation = ("The mean z_mean of each class, decoded: the model's 'average' item of the class. `vaekit class-means` "
                   f"saves the vectors in {latent.CLASS_MEANS_FILE} in the run directory, where interpolation, "
                   "transitions and arithmetic reuse them without the dataset.")
    return Section("class_means", "Class averages", lp.class_means_figure(means, images), lines, metrics, explanation,
                   result=means)


def _check_path_options(run: Explorer, steps: int, method: str) -> None:
    """Validate interpolation options before any work (and before the class means are cached)."""
    latent.interpolation_weights(steps)
    latent.check_method(method)
    if method == "slerp" and run.model.latent_dim < 2:
        raise ConfigError("slerp needs a latent space of at least 2 dimensions; this run has 1: use --method linear")


def _resolve_pair(run: Explorer, source: str, target: str) -> tuple[int, int]:
    return resolve_class(source, run.class_names), resolve_class(target, run.class_names)


def _class_interpolation(run: Explorer, means: latent.ClassMeans, pair: tuple[int, int], steps: int,
                         method: str) -> latent.Interpolation:
    a, b = pair
    return latent.interpolate(run.model, means.vector(a), means.vector(b), steps, method,
                              start=means.class_names[a], end=means.class_names[b])


def _smoothness_metrics(result: latent.Interpolation) -> dict[str, Any]:
    s = result.smoothness
    return {"from": result.start, "to": result.end, "method": result.method,
            "max_step_fraction": round(s.max_step_fraction, 4), "unevenness": round(s.unevenness, 3),
            "max_step_at_x": round(s.max_step_at, 3), "frames_measured": s.frames}


_SMOOTHNESS_TEXT = ("Smoothness is measured on {frames} evenly spaced frames along the path: the largest pixel change "
                    "(L2 norm) between two consecutive frames as a fraction of the sum of all of them. "
                    "{even:.1f}% would be a perfectly even transition; 100% a single jump.")


def interpolation_section(run: Explorer, source: str | None = None, target: str | None = None, steps: int = 6,
                          method: str = "linear") -> Section:
    """Issue item 4: one transition between two class averages."""
    if (source is None) != (target is None):
        raise ConfigError("give both --from and --to (or neither, for the report's first transition)")
    pair = _resolve_pair(run, source, target) if source else latent.default_transition_pairs(run.class_names)[0]
    _check_path_options(run, steps, method)
    result = _class_interpolation(run, run.class_means(), pair, steps, method)
    lines = [f"{result.start} -> {result.end} ({result.method}, {steps} frames): {result.smoothness.summary()}"]
    explanation = ("Frames decode x*z_to + (1-x)*z_from between the two class averages, x from 0 to 1 "
                   "(linear), or along the great circle with linearly changing norm (slerp). "
                   + _SMOOTHNESS_TEXT.format(frames=result.smoothness.frames,
                                             even=100 * result.smoothness.even_fraction))
    return Section("interpolation", f"Interpolation {result.start} to {result.end}", lp.interpolation_figure(result),
                   lines, _smoothness_metrics(result), explanation)


def transitions_section(run: Explorer, pairs: Sequence[tuple[str, str]] | None = None, steps: int = 6,
                        method: str = "linear") -> Section:
    """Issue item 5: the report's transitions, one row each."""
    ids = ([_resolve_pair(run, a, b) for a, b in pairs] if pairs else latent.default_transition_pairs(run.class_names))
    if not ids:
        raise ConfigError("transitions need at least two classes")
    _check_path_options(run, steps, method)
    means = run.class_means()
    results = [_class_interpolation(run, means, pair, steps, method) for pair in ids]
    lines = [f"{r.start} -> {r.end}: {r.smoothness.summary()}" for r in results]
    smoothest = min(results, key=lambda r: r.smoothness.max_step_fraction)
    roughest = max(results, key=lambda r: r.smoothness.max_step_fraction)
    lines.append(f"smoothest: {smoothest.start} -> {smoothest.end}; least smooth: {roughest.start} -> {roughest.end}")
    explanation = ("The transitions of the Fashion-MNIST report between class averages (for other datasets: between "
                   "consecutive classes). "
                   + _SMOOTHNESS_TEXT.format(frames=results[0].smoothness.frames,
                                             even=100 * results[0].smoothness.even_fraction))
    return Section("transitions", "Transitions", lp.transitions_figure(results), lines,
                   {"transitions": [_smoothness_metrics(r) for r in results]}, explanation)


def morph_section(run: Explorer, image_a: str = "test:0", image_b: str = "test:1", steps: int = 7,
                  method: str = "linear", invert: bool = False) -> Section:
    """Issue item 6: two images (files or ``split:index``) encoded, blended and decoded."""
    _check_path_options(run, steps, method)
    (first, label_a), (second, label_b) = run.image(image_a, invert), run.image(image_b, invert)
    result = latent.morph(run.model, first, second, steps, method, labels=(label_a, label_b))
    lines = [f"morph {label_a} -> {label_b} ({method}): {result.interpolation.smoothness.summary()}"]
    explanation = ("Both images are converted to the model's size and channels, encoded to z_mean, interpolated and "
                   "decoded; the framed middle frame (x = 0.5, when shown) is the two images merged. "
                   + _SMOOTHNESS_TEXT.format(frames=result.interpolation.smoothness.frames,
                                             even=100 * result.interpolation.smoothness.even_fraction))
    metrics = {"a": label_a, "b": label_b, **_smoothness_metrics(result.interpolation)}
    return Section("morph", "Morph and merge", lp.morph_figure(result, (label_a, label_b)), lines, metrics,
                   explanation)


def traversal_section(run: Explorer, reference: str = "mean", steps: int = 9, span: float = 3.0,
                      max_dims: int = 10, invert: bool = False) -> Section:
    """Issue item 7: each latent coordinate swept over [-span, span], highest-KL first."""
    if not (math.isfinite(span) and span > 0):
        raise ConfigError(f"span must be a finite positive number, got {span}", param="span")
    max_dims = check_count("dims", max_dims)
    check_count("steps", steps, minimum=2)
    point, label = _reference_point(run, reference, invert)
    kl = latent.mean_kl_per_dimension(run.codes.z_mean, run.codes.z_log_var)
    result = latent.traverse(run.model, point, steps=steps, span=span, kl=kl, max_dims=max_dims)
    active = int((kl > 0.01).sum())
    lines = [f"{active} of {len(kl)} latent dimensions carry more than 0.01 nats of KL; showing {len(result.dims)}"]
    lines += [f"z[{d}]: KL {kl[d]:.3f} nats, image change {c:.3f}" for d, c in zip(result.dims, result.change)]
    metrics = {"reference": label, "span": span, "kl_per_dim": [round(float(v), 4) for v in kl],
               "shown_dims": result.dims.tolist(), "change": [round(float(c), 4) for c in result.change]}
    explanation = (f"Each row sets one latent coordinate to the values on top ([-{span:g}, {span:g}]) and holds the "
                   f"others at the {label}. Rows are ordered by the coordinate's mean KL to the prior over the "
                   f"{run.split} images: coordinates with KL near 0 are unused and change nothing. 'change' is the "
                   "summed RMS pixel change along the row. A disentangled model changes one visual factor per row.")
    return Section("traversals", "Latent traversals", lp.traversal_figure(result, label), lines, metrics, explanation)


def _reference_point(run: Explorer, reference: str, invert: bool) -> tuple[np.ndarray, str]:
    if reference == "zero":
        return np.zeros(run.model.latent_dim, np.float32), "prior mean (zero)"
    if reference == "mean":
        return run.codes.z_mean.mean(0), f"mean z_mean of the {run.split} images"
    image, label = run.image(reference, invert)
    z, _ = latent.encode(run.model, image[None])
    return z[0], f"z_mean of {label}"


def arithmetic_section(run: Explorer, source: str = "shirt", target: str = "dress",
                       images: Sequence[str] | None = None, n: int = 4, strength: float = 1.0,
                       invert: bool = False, k: int = 5) -> Section:
    """Issue item 8: ``z(image) - mean(source) + mean(target)``, with how often the result reads as the target."""
    a, b = _resolve_pair(run, source, target)
    n = check_count("n", n, LIMITS["figure_images"])
    if images:
        loaded = [run.image(ref, invert) for ref in images]
        inputs, labels = np.stack([image for image, _ in loaded]), [label for _, label in loaded]
    else:
        inputs, labels = run.first_of_class(a, n)
    means = run.class_means()
    result = latent.class_arithmetic(run.model, inputs, means, a, b, strength, run.codes, k)
    target_name = means.class_names[b]
    hits = int((result.read_as == b).sum())
    lines = [f"{hits} of {len(inputs)} results read as {target_name} by {k}-NN on z_mean of the re-encoded image"]
    metrics = {"from": result.from_class, "to": target_name, "strength": strength, "images": labels,
               "read_as": [run.class_names[int(c)] for c in result.read_as], "hit_rate": round(hits / len(inputs), 4)}
    if not images:
        # Four pictures are an anecdote: measure the rate on every image of the class too.
        everything, _ = run.first_of_class(a, len(run.dataset))
        rate, baseline = (float(np.mean(latent.class_arithmetic(run.model, everything, means, a, b, s, run.codes,
                                                                k).read_as == b)) for s in (strength, 0.0))
        lines.insert(0, f"{100 * rate:.1f}% of all {len(everything):,} {run.split} {result.from_class} images read as "
                        f"{target_name} after the arithmetic, {100 * baseline:.1f}% before "
                        f"({k}-NN on z_mean of the re-encoded decoding)")
        metrics.update(class_hit_rate=round(rate, 4), class_baseline_rate=round(baseline, 4),
                       class_images=len(everything))
    lines += [f"{label}: read as {run.class_names[int(c)]}" for label, c in zip(labels, result.read_as)]
    explanation = (f"Each image's z_mean moved by mean({result.from_class}) to mean({target_name}) and decoded. "
                   f"'read as' is the class the {k}-NN classifier of the latent map gives the result after encoding it "
                   "again: it measures whether the result became the target class, in the model's own eyes. Over "
                   "all images of the class, the rate after the arithmetic is compared with the rate before it (the "
                   "plain reconstructions, which are rarely read as the target).")
    return Section("arithmetic", "Latent arithmetic", lp.arithmetic_figure(result, labels, run.class_names), lines,
                   metrics, explanation)
