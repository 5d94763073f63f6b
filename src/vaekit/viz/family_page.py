"""The family page: ``family.html`` comparing the members of a beta-VAE family."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from vaekit.files import read_json
from vaekit.models.pretrained import CONFIG_FILE
from vaekit.viz.page import png_img, render_page

_STYLE = """
table.family th, table.family td { text-align: right; } .name { text-align: left; } td.name { font-family: monospace; }
.pair { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.pair figure { margin: 0; min-width: 320px; }
.pair figure:first-child { flex: 3 1 0; } .pair figure:last-child { flex: 2 1 0; }
.pair figure img { width: 100%; }
"""


def render_family_page(family: dict[str, Any], metrics: list[Any], out: Path, plot: Path | None) -> str:
    """The family page: summary, comparison table, rate-distortion plot and each member's two figures.

    Parameters
    ----------
    family
        The family description (``family.json``).
    metrics
        Each member's final metrics (:class:`vaekit.training.family.MemberMetrics`).
    out
        The family directory (member figures are read from its run directories).
    plot
        The rate-distortion PNG, or None.
    """
    by_name = {m.name: m for m in metrics}
    title = f"β-VAE family: {family['arch']} on {family['dataset']}"
    parts = [f"<p>{_summary(family, out)}</p>"]
    if str(family["dataset"]).lower().startswith("celeba"):
        parts.append('<p class="note">This page shows CelebA images: research use only, '
                     "do not publish or commit it (CelebA terms).</p>")
    parts += ["<h2>Comparison</h2>", _table(family, by_name)]
    if plot is not None:
        parts.append(f'<figure style="max-width:640px">{png_img(plot, "rate-distortion plot")}</figure>')
    parts.append("<h2>Members</h2>")
    for member in family["members"]:
        parts.append(_member_section(out / member["name"], member["name"], float(member["beta"])))
    return render_page(title, parts, _STYLE)


def _summary(family: dict[str, Any], out: Path) -> str:
    settings = family.get("train", {})
    dataset = {}
    for member in family["members"]:
        config_path = out / member["name"] / CONFIG_FILE
        if config_path.is_file():
            dataset = read_json(config_path).get("dataset", {})
            break
    sizes = ""
    if dataset:
        sizes = f" on {_count(dataset.get('train_size'))} training images (test: {_count(dataset.get('test_size'))})"
    return html.escape(
        f"{len(family['members'])} members with the same {family['arch']} encoder and decoder, differing only in β, "
        f"the weight of the KL term against the reconstruction term. Each trained for {_epochs(settings)}"
        f"{sizes}. Metrics are means over the test split in nats per image; the test −ELBO is taken at "
        "β = 1 (reconstruction + KL), so it compares members on one scale."
    )


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _epochs(settings: dict[str, Any]) -> str:
    epochs = settings.get("epochs", "?")
    return f"{epochs} epoch" if epochs == 1 else f"{epochs} epochs"


def _table(family: dict[str, Any], by_name: dict[str, Any]) -> str:
    head = ("β", "member", "epochs", "reconstruction error", "KL (rate)", "active units", "test −ELBO")
    rows = ['<table class="family">', "<tr>" + "".join(
        f'<th class="name">{html.escape(h)}</th>' if i == 1 else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(head)) + "</tr>"]
    for member in family["members"]:
        m = by_name.get(member["name"])
        cells = [f"{float(member['beta']):g}", html.escape(member["name"])]
        if m is None:
            cells += ['<span class="missing">not trained yet</span>', "", "", "", ""]
        else:
            epochs = f"{m.epochs}" + ("" if m.complete else " (unfinished)")
            cells += [epochs, f"{m.recon:.2f}", f"{m.kl:.2f}", f"{m.active_units} / {m.latent_dim}", f"{m.elbo:.2f}"]
        rows.append("<tr>" + "".join(
            f'<td class="name">{c}</td>' if i == 1 else f"<td>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _member_section(run_dir: Path, name: str, beta: float) -> str:
    figures = []
    for file_name, caption in (("reconstructions.png", "Prediction from dataset"),
                               ("samples.png", "Random point in the latent space")):
        path = run_dir / file_name
        body = png_img(path, caption) if path.is_file() else '<p class="missing">not available yet</p>'
        figures.append(f"<figure><figcaption>{caption}</figcaption>{body}</figure>")
    return (f'<section id="{html.escape(name)}"><h3>{html.escape(name)} (β = {beta:g})</h3>'
            f'<div class="pair">{"".join(figures)}</div></section>')
