"""The ``vaekit-models`` directive: the Models page, drawn at build time from the shipped weights.

For every pretrained model (:func:`vaekit.pretrained_names`) it writes, under
``docs/_generated/models/`` (never committed), the figures the CelebA module
docs show, "Prediction from dataset" and "Random point in the latent space",
plus the latent map and the report's class transitions, and lays them out
with the model card.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import vaekit
from vaekit.analysis.explorer import Explorer
from vaekit.runs import Run
from vaekit.viz.figures import save_figure, save_reconstructions, save_samples
from vaekit.viz.sections import latent_map_section, transitions_section

OUT = Path(__file__).resolve().parents[1] / "_generated" / "models"
#: Test images encoded for the latent map: enough for a dense map, quick on a CPU.
MAP_IMAGES = 5000


def draw_figures(name: str) -> dict[str, Path]:
    """The model's four figures as PNGs, by caption."""
    folder = OUT / name
    run = Run.open(name, device="cpu", precision="fp32")
    explorer = Explorer(run, limit=MAP_IMAGES)
    figures = {
        "Prediction from dataset": save_reconstructions(run, run.dataset("test"), folder / f"{name}-prediction.png"),
        "Random point in the latent space": save_samples(run, folder / f"{name}-samples.png"),
        "Latent map of the test set": save_figure(latent_map_section(explorer).figure, folder / f"{name}-latent-map.png"),
        "The report's class transitions": save_figure(transitions_section(explorer).figure,
                                                       folder / f"{name}-transitions.png"),
    }
    return figures


def card_table(card: vaekit.zoo.ModelCard) -> nodes.Node:
    rows = [
        ("architecture", f"{card.arch}, latent {card.latent_dim}, beta {card.beta:g}"),
        ("trained", f"{card.epochs} epochs on {card.trained_on}, {card.train_seconds / 60:.0f} min wall time"),
        ("command", card.command),
        ("test -ELBO", f"{card.test_elbo:.2f} nats (recon {card.test_recon:.2f} + KL {card.test_kl:.2f})"),
        ("test IWAE", f"{card.iwae:.2f} nats (K = {card.iw_samples}, first {card.iw_images} test images, "
                      f"whose -ELBO is {card.elbo_iw_images:.2f})"),
        ("active units", f"{card.active_units} of {card.latent_dim}"),
        ("weights", f"{card.weights_dtype}, {card.weights_bytes / 1e6:.2f} MB"),
    ]
    field_list = nodes.field_list()
    for key, value in rows:
        body = nodes.literal(text=value) if key == "command" else nodes.Text(value)
        field_list += nodes.field("", nodes.field_name(text=key), nodes.field_body("", nodes.paragraph("", "", body)))
    return field_list


class ModelsDirective(SphinxDirective):
    """One section per shipped model: its card, then its figures."""

    def run(self) -> list[nodes.Node]:
        names = vaekit.pretrained_names()
        if not names:
            return [nodes.paragraph(text="No pretrained models are installed in this build.")]
        source_dir = Path(self.env.srcdir)
        result: list[nodes.Node] = []
        for name in names:
            card = vaekit.model_card(name)
            section = nodes.section(ids=[nodes.make_id(name)])
            section += nodes.title(text=name)
            section += nodes.paragraph(text=f"{card.summary}. Load it with vaekit.load_pretrained({name!r}), "
                                            f"or give {name} to any command that takes a run directory.")
            section += card_table(card)
            for caption, path in draw_figures(name).items():
                section += nodes.rubric(text=caption)
                uri = Path("/") / path.relative_to(source_dir)  # absolute within the source folder
                section += nodes.image(uri=uri.as_posix(), alt=f"{name}: {caption}")
            result.append(section)
        return result


def _always_redraw(app, env, added, changed, removed) -> list[str]:
    # The page depends on the shipped weights, which Sphinx does not track: re-read it every build.
    return [name for name in env.found_docs if name == "models"]


def setup(app):
    app.add_directive("vaekit-models", ModelsDirective)
    app.connect("env-get-outdated", _always_redraw)
    return {"parallel_read_safe": True, "version": vaekit.__version__}
