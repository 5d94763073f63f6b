"""Latent-space exploration commands: latent-map, manifold, class-means, interpolate,
transitions, morph, traverse, arithmetic and report.

Each command builds one :class:`vaekit.viz.sections.Section` (figure plus numbers)
from a run directory, writes the figure as a PNG and prints the numbers and
the path. See ``docs/latent.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from vaekit.cli.options import (
    add_data_options,
    add_output_option,
    add_runtime_options,
    add_seed_option,
    finite_float,
    output_path,
    positive_int,
)
from vaekit.guard import check_output

DEFAULT_NAMES = {
    "latent-map": "latent_map.png",
    "manifold": "manifold.png",
    "class-means": "class_means.png",
    "interpolate": "interpolation.png",
    "transitions": "transitions.png",
    "morph": "morph.png",
    "traverse": "traversals.png",
    "arithmetic": "arithmetic.png",
    "report": "report.html",
}


def _pair(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":")
    if not sep or not source.strip() or not target.strip():
        raise argparse.ArgumentTypeError(f"expected FROM:TO (e.g. bag:sneaker), got {text!r}")
    return source.strip(), target.strip()


def _checked_output(args: argparse.Namespace, suffix: str) -> Path:
    """The output path, refused before any work if it has the wrong extension or could lose a file."""
    path = output_path(args, DEFAULT_NAMES[args.command], suffixes=(suffix,))
    if suffix == ".html":
        check_output(path.with_suffix(".json"))  # the report's numbers go beside it
    return path


def _open_run(args: argparse.Namespace):
    from vaekit.analysis.explorer import Explorer

    return Explorer.open(args.run, split=args.split, data_dir=args.data_dir, limit=args.limit, device=args.device,
                         precision=args.precision)


def _write_section(args: argparse.Namespace, build: Callable) -> int:
    from vaekit.viz.figures import save_figure

    path = _checked_output(args, ".png")
    explorer = _open_run(args)
    section = build(explorer)
    save_figure(section.figure, path)
    for line in section.lines:
        print(line)
    if section.key == "class_means":
        print(explorer.save_class_means(section.result))  # this command's second output
    print(path)
    return 0


# ----------------------------------------------------------------------------
# Handlers


def cmd_latent_map(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import latent_map_section

    return _write_section(args, lambda run: latent_map_section(run, args.projection, args.k, args.seed))


def cmd_manifold(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import manifold_section

    return _write_section(args, lambda run: manifold_section(run, args.grid, args.reference_images, args.percentile))


def cmd_class_means(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import class_means_section

    return _write_section(args, lambda run: class_means_section(run, args.refresh))


def cmd_interpolate(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import interpolation_section

    return _write_section(args, lambda run: interpolation_section(run, args.source, args.target, args.steps,
                                                                  args.method))


def cmd_transitions(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import transitions_section

    return _write_section(args, lambda run: transitions_section(run, args.pair, args.steps, args.method))


def cmd_morph(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import morph_section

    return _write_section(args, lambda run: morph_section(run, args.image_a, args.image_b, args.steps, args.method,
                                                          args.invert))


def cmd_traverse(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import traversal_section

    return _write_section(args, lambda run: traversal_section(run, args.reference, args.steps, args.span, args.dims,
                                                              args.invert))


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from vaekit.viz.sections import arithmetic_section

    return _write_section(args, lambda run: arithmetic_section(run, args.source, args.target, args.images, args.n,
                                                               args.strength, args.invert, args.k))


def cmd_report(args: argparse.Namespace) -> int:
    from vaekit.viz.report import build_report

    path = _checked_output(args, ".html")
    page, numbers = build_report(_open_run(args), path, args.projection, args.grid, args.steps, args.method,
                                 progress=None if args.quiet else lambda message: print(message, flush=True))
    print(numbers)
    print(page)
    return 0


# ----------------------------------------------------------------------------
# Parsers


def _common(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("run", type=Path, help="a run directory (made by `vaekit train`)")
    add_data_options(parser, dataset=False, limit="use only the first N images of the split (default: all)")
    add_runtime_options(parser)
    add_output_option(parser, DEFAULT_NAMES[name])


def _interpolation_options(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("--steps", type=positive_int, default=steps,
                        help=f"frames, both ends included (default {steps})")
    parser.add_argument("--method", choices=("linear", "slerp"), default="linear",
                        help="linear (default, as in the report) or slerp (spherical, for large latents)")


def _add(commands, name: str, handler, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    _common(parser, name)
    parser.set_defaults(func=handler)
    return parser


def register(commands) -> None:
    """Add the exploration sub-commands to the ``vaekit`` parser."""
    p = _add(commands, "latent-map", cmd_latent_map, "scatter of the test set's z_mean by class, with k-NN separation")
    p.add_argument("--projection", choices=("auto", "pca", "tsne"), default="auto",
                   help="2-D projection for latents above 2-D: pca (auto) or tsne (scikit-learn)")
    p.add_argument("-k", type=positive_int, default=5, help="neighbours of the k-NN separation score (default 5)")
    add_seed_option(p)  # t-SNE's and its subsample's

    p = _add(commands, "manifold", cmd_manifold, "grid of decoded images over the latent plane, holes outlined")
    p.add_argument("--grid", type=positive_int, default=20, help="grid points per side (default 20)")
    p.add_argument("--reference-images", type=positive_int, default=2000, metavar="N",
                   help="test reconstructions the holes are measured against (default 2000)")
    p.add_argument("--percentile", type=finite_float, default=95.0,
                   help="hole threshold: this percentile of the reconstructions' nearest-neighbour distances")

    p = _add(commands, "class-means", cmd_class_means, "decoded mean latent vector of each class (also saved as JSON)")
    p.add_argument("--refresh", action="store_true", help="recompute even if RUN/class_means.json is up to date")

    p = _add(commands, "interpolate", cmd_interpolate, "decoded interpolation between two class averages")
    p.add_argument("--from", dest="source", default=None, metavar="CLASS", help="start class (default: bag)")
    p.add_argument("--to", dest="target", default=None, metavar="CLASS", help="end class (default: sneaker)")
    _interpolation_options(p, 6)

    p = _add(commands, "transitions", cmd_transitions, "the report's five class transitions, one row each")
    p.add_argument("--pair", type=_pair, action="append", default=None, metavar="FROM:TO",
                   help="a transition to show instead (repeat for several), e.g. --pair coat:bag")
    _interpolation_options(p, 6)

    p = _add(commands, "morph", cmd_morph, "encode two images, interpolate and decode (morph and merge)")
    p.add_argument("image_a", metavar="A", help="image file, or a dataset image as test:123 / train:5")
    p.add_argument("image_b", metavar="B", help="image file, or a dataset image as test:123 / train:5")
    p.add_argument("--invert", action="store_true", help="invert image files (dark objects on a light background)")
    _interpolation_options(p, 7)

    p = _add(commands, "traverse", cmd_traverse, "sweep each latent dimension over [-3, 3], highest KL first")
    p.add_argument("--reference", default="mean",
                   help="point the other dimensions are held at: mean (of the data, default), zero, or an image "
                        "(file or test:123)")
    p.add_argument("--steps", type=positive_int, default=9, help="values per dimension (default 9)")
    p.add_argument("--span", type=finite_float, default=3.0, help="sweep from -SPAN to SPAN (default 3)")
    p.add_argument("--dims", type=positive_int, default=10, help="at most this many dimensions, highest KL first")
    p.add_argument("--invert", action="store_true", help="invert a reference image file")

    p = _add(commands, "arithmetic", cmd_arithmetic, "z(image) - mean(class A) + mean(class B), decoded")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files or test:123 references (default: the first -n images of --from)")
    p.add_argument("--from", dest="source", required=True, metavar="CLASS", help="class to take away, e.g. shirt")
    p.add_argument("--to", dest="target", required=True, metavar="CLASS", help="class to add, e.g. dress")
    p.add_argument("--strength", type=finite_float, default=1.0, help="multiply the class difference (default 1)")
    p.add_argument("-n", type=positive_int, default=4, help="images of --from when none are given (default 4)")
    p.add_argument("-k", type=positive_int, default=5, help="neighbours of the k-NN that reads the results")
    p.add_argument("--invert", action="store_true", help="invert image files")

    p = _add(commands, "report", cmd_report, "every figure and number above in one self-contained report.html")
    p.add_argument("--projection", choices=("auto", "pca", "tsne"), default="auto")
    p.add_argument("--grid", type=positive_int, default=20, help="manifold grid points per side")
    p.add_argument("--steps", type=positive_int, default=6, help="frames of the interpolations")
    p.add_argument("--method", choices=("linear", "slerp"), default="linear")
    p.add_argument("--quiet", action="store_true", help="do not print progress")
