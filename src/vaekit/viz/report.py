"""The one-page HTML latent-space report of a run (``vaekit report``)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vaekit.analysis import latent
from vaekit.analysis.explorer import Explorer
from vaekit.data.classes import resolve_class
from vaekit.errors import ConfigError
from vaekit.files import atomic_write_text, write_json
from vaekit.guard import mark_output
from vaekit.runs.run import read_metrics
from vaekit.viz.figures import figure_png
from vaekit.viz.page import png_img, render_page
from vaekit.viz.sections import (
    Section,
    arithmetic_section,
    class_means_section,
    interpolation_section,
    latent_map_section,
    manifold_section,
    morph_section,
    transitions_section,
    traversal_section,
)

# ----------------------------------------------------------------------------
# The report


def build_report(run: Explorer, output: str | os.PathLike | None = None, projection: str = "auto",
                 grid: int = 20, steps: int = 6, method: str = "linear", progress=None) -> tuple[Path, Path]:
    """Compute every section and write a self-contained ``report.html`` and its numbers as ``report.json``.

    Sections a run cannot have (a manifold of a 1-D latent) are skipped with a
    note. Returns the paths of the HTML page and the JSON file.
    """
    output = Path(output) if output is not None else run.output_dir / "report.html"
    say = progress or (lambda message: None)
    sections, notes = [], []
    pairs = latent.default_transition_pairs(run.class_names)
    morph_a, morph_b = _morph_examples(run, pairs[-1])  # another pair than the interpolation's
    builders = [
        ("latent map", lambda: latent_map_section(run, projection)),
        ("manifold", lambda: manifold_section(run, grid)),
        ("class averages", lambda: class_means_section(run)),
        ("interpolation", lambda: interpolation_section(run, *(run.class_names[i] for i in pairs[0]), steps, method)),
        ("transitions", lambda: transitions_section(run, None, steps, method)),
        ("morph", lambda: morph_section(run, morph_a, morph_b, 7, method)),
        ("traversals", lambda: traversal_section(run)),
        ("arithmetic", lambda: arithmetic_section(run, *_arithmetic_pair(run))),
    ]
    for name, build in builders:
        say(f"computing {name}")
        try:
            sections.append(build())
        except ConfigError as error:
            if run.model.latent_dim >= 2:
                raise
            notes.append(f"{name}: not available ({error})")
    rendered = [(section, figure_png(section.figure)) for section in sections]
    page = render_html(run, rendered, notes)
    numbers = {"run": str(run.run_dir), "split": run.split, "images": len(run.dataset),
               "sections": {s.key: s.metrics for s in sections}, "notes": notes}
    json_path = output.with_suffix(".json")
    atomic_write_text(output, page)
    write_json(json_path, mark_output(numbers))
    return output, json_path


def _morph_examples(run: Explorer, pair: tuple[int, int]) -> tuple[str, str]:
    """The first images of the two classes of ``pair``, as ``split:index`` references."""
    labels = run.dataset.labels.numpy()
    refs = []
    for c in pair:
        found = np.flatnonzero(labels == c)
        refs.append(f"{run.split}:{int(found[0]) if found.size else len(refs)}")
    return refs[0], refs[1]


def _arithmetic_pair(run: Explorer) -> tuple[str, str]:
    try:
        resolve_class("shirt", run.class_names), resolve_class("dress", run.class_names)
        return "shirt", "dress"  # the "turn this shirt into a dress"
    except ConfigError:
        return run.class_names[0], run.class_names[min(1, len(run.class_names) - 1)]


_CSS = """
ul.numbers { background: #f6f8fa; padding: 0.8em 1em 0.8em 2em; border-radius: 4px; }
p.explain { color: #444; font-size: 0.95em; }
"""


def render_html(run: Explorer, rendered: Sequence[tuple[Section, bytes]], notes: Sequence[str] = ()) -> str:
    """The report page: summary, one part per section (embedded PNG, numbers, explanation), metrics, config."""
    esc = html.escape
    config = run.config
    title = f"vaekit latent-space report: {run.run_dir.name}"
    parts = [f"<p>{esc(_run_summary(run))}</p>",
             "<nav>" + "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s, _ in rendered)
             + '<a href="#metrics">Training metrics</a><a href="#config">Config</a></nav>']
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    parts.append("<h2>Measured</h2><ul class=\"numbers\">"
                 + "".join(f"<li><b>{esc(s.title)}</b>: {esc(s.lines[0])}</li>" for s, _ in rendered if s.lines)
                 + "</ul>")
    for section, png in rendered:
        parts.append(f'<h2 id="{esc(section.key)}">{esc(section.title)}</h2>'
                     f'<figure>{png_img(png, section.title)}</figure>'
                     '<ul class="numbers">' + "".join(f"<li>{esc(line)}</li>" for line in section.lines) + "</ul>"
                     f'<p class="explain">{esc(section.explanation)}</p>')
    parts.append('<h2 id="metrics">Training metrics</h2>' + _metrics_table(run))
    parts.append('<h2 id="config">Config</h2><pre>' + esc(json.dumps(config, indent=2)) + "</pre>")
    return render_page(title, parts, _CSS)


def _run_summary(run: Explorer) -> str:
    config = run.config
    train = config.get("train") or {}
    rows = read_metrics(run.run_dir)
    text = (f"{config.get('arch', '?')} with a {run.model.latent_dim}-D latent space, beta {train.get('beta', '?')}, "
            f"trained on {(config.get('dataset') or {}).get('name', '?')} for {config.get('epochs_done', '?')} epochs")
    if rows and rows[-1].get("test_elbo"):
        text += f" (test -ELBO {float(rows[-1]['test_elbo']):.2f} nats per image)"
    return text + f". Figures and numbers use the first {len(run.dataset):,} images of the {run.split} split."


def _metrics_table(run: Explorer) -> str:
    rows = read_metrics(run.run_dir)
    if not rows:
        return "<p>No metrics.csv in the run directory.</p>"
    head = "".join(f"<th>{html.escape(name)}</th>" for name in rows[0])
    body = "".join("<tr>" + "".join(f'<td class="num">{html.escape(str(value))}</td>' for value in row.values())
                   + "</tr>" for row in rows)
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'
