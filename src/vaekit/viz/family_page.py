"""The family page: ``family.html`` comparing the members of a beta-VAE family."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vaekit.files import read_json
from vaekit.models.pretrained import CONFIG_FILE

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1280px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.7em; text-align: right; }
th { background: #f2f2f2; } .name { text-align: left; } td.name { font-family: monospace; }
.pair { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.pair figure { margin: 0; min-width: 320px; }
.pair figure:first-child { flex: 3 1 0; } .pair figure:last-child { flex: 2 1 0; }
figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
.note { color: #a00; } .missing { color: #888; font-style: italic; }
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
    esc = html.escape
    by_name = {m.name: m for m in metrics}
    title = f"β-VAE family: {family['arch']} on {family['dataset']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{_summary(family, out)}</p>",
    ]
    if str(family["dataset"]).lower().startswith("celeba"):
        parts.append('<p class="note">This page shows CelebA images: research use only, '
                     "do not publish or commit it (CelebA terms).</p>")
    parts += ["<h2>Comparison</h2>", _table(family, by_name)]
    if plot is not None:
        parts.append(f'<figure style="max-width:640px">{_img(plot, "rate-distortion plot")}</figure>')
    parts.append("<h2>Members</h2>")
    for member in family["members"]:
        parts.append(_member_section(out / member["name"], member["name"], float(member["beta"])))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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
    rows = ["<table>", "<tr>" + "".join(
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
        body = _img(path, caption) if path.is_file() else '<p class="missing">not available yet</p>'
        figures.append(f"<figure><figcaption>{caption}</figcaption>{body}</figure>")
    return (f'<section id="{html.escape(name)}"><h3>{html.escape(name)} (β = {beta:g})</h3>'
            f'<div class="pair">{"".join(figures)}</div></section>')


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
