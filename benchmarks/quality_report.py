"""``results.md`` and the rate-distortion figure of ``benchmarks/model_quality.py``, from ``results.json`` alone.

Everything here reads only the JSON written by the benchmark (``meta`` and the
per-seed ``rows``), so ``model_quality.py --render-only`` reproduces the page
and the figure exactly. Figures use matplotlib's object API (never pyplot).
"""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path
from typing import Any

from vaekit.training.config import ema_and_clip_text

FIGURE_FILE = "results_rate_distortion.png"

# The full protocol of the issue "Research-grade results", item 1.
FULL_LATENTS = (2, 8, 32)
FULL_BETAS = (1.0, 2.0, 3.0, 5.0)
FULL_GRID = [(latent, beta) for latent in FULL_LATENTS for beta in FULL_BETAS]
FULL_SEEDS = (0, 1, 2)
FULL_EPOCHS = 30
FULL_TRAIN_IMAGES = 60000
FULL_TEST_IMAGES = 10000
FULL_IW_SAMPLES = 5000
FULL_COMMAND = "python benchmarks/model_quality.py --device cuda"

# The Keras anchor: the seed's Keras model (the report this project ports), trained with the report's
# settings (Adam lr 1e-3, batch 128, 30 epochs, all 60,000 training images, latent 2, beta 1). Its test
# -ELBO and collapse count are the report's numbers, not measured here. benchmarks/keras_reference.py
# times Keras training only; a benchmarks/results/keras_reference*.json holding a "test_elbo" for
# fashion28 (a measured Keras run) takes precedence, see keras_anchor().
KERAS_ANCHOR = {
    "test_elbo": 260.76, "epochs": 30, "lr": 1e-3, "batch_size": 128, "train_images": 60000,
    "latent_dim": 2, "beta": 1.0, "collapsed_seeds": 2, "seeds": 4,
    "source": "the seed's Keras model as reported; not re-measured here",
}


# The recipe of a results.json written before meta["train_settings"] existed: its runs' config.json files
# record these settings, which were vaekit's training defaults when they were trained.
RECIPE_OF_OLDER_RESULTS = {"lr": 1e-3, "batch_size": 128, "init": "vaekit", "lr_schedule": "constant",
                           "ema_decay": None, "grad_clip": None,
                           "overrides": "init=vaekit,batch_size=128,ema_decay=none,grad_clip=none"}


# The provenance of one part (one invocation of model_quality.py) of a page merged with --merge.
PART_KEYS = ("command", "machine", "device", "threads", "torch", "vaekit", "date", "wall_minutes")


def run_key(row: dict[str, Any]) -> str:
    """``8:2:0``: latent, beta and seed of a row, as a part of a merged page lists its runs."""
    return f"{row['latent_dim']}:{row['beta']:g}:{row['seed']}"


def parts(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which command made which rows, where and when: ``meta["parts"]``, or the one part of an unmerged page."""
    if meta.get("parts"):
        return meta["parts"]
    return [{**{key: meta.get(key) for key in PART_KEYS}, "runs": [run_key(row) for row in rows]}]


def recipe(meta: dict[str, Any]) -> dict[str, Any]:
    """The training settings of the grid's runs (``--train-settings`` on top of the defaults of their time)."""
    return meta.get("train_settings") or RECIPE_OF_OLDER_RESULTS


def recipe_text(settings: dict[str, Any]) -> str:
    """``Adam, lr 0.001, batch 64, `pytorch` init, constant rate, weights averaged (EMA 0.999), gradient norm clipped at 1000``."""
    return (f"Adam, lr {settings['lr']:g}, batch {settings['batch_size']}, `{settings['init']}` init, "
            f"{settings['lr_schedule']} learning rate, {ema_and_clip_text(settings)}")


def keras_anchor(results_dir: Path) -> dict[str, Any]:
    """The anchor: a measured Keras -ELBO from ``benchmarks/results/keras_reference*.json`` if any, else the report's."""
    for path in sorted(results_dir.glob("keras_reference*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for row in data.get("rows", data) if isinstance(data, (dict, list)) else []:
            if isinstance(row, dict) and row.get("arch") == "fashion28" and "test_elbo" in row:
                return {**KERAS_ANCHOR, **row, "source": f"measured: {path.name}"}
    return dict(KERAS_ANCHOR)


# ----------------------------------------------------------------------------- aggregation


def cells(rows: list[dict[str, Any]]) -> dict[tuple[int, float], list[dict[str, Any]]]:
    """Rows grouped by (latent, beta), in grid order."""
    grouped: dict[tuple[int, float], list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["latent_dim"], r["beta"], r["seed"])):
        grouped.setdefault((row["latent_dim"], row["beta"]), []).append(row)
    return grouped


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_mean_sd(values: list[float], digits: int = 1) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def images_per_second(row: dict[str, Any]) -> float:
    return row["train_images"] * row["epochs"] / max(row["train_loop_seconds"], 1e-9)


# ----------------------------------------------------------------------------- page


def render_markdown(data: dict[str, Any]) -> str:
    """The whole page, from ``results.json``'s content."""
    meta, rows = data["meta"], data["rows"]
    lines = ["# Model-quality results: fashion28 on Fashion-MNIST", "",
             "Generated by `benchmarks/model_quality.py` from [`results.json`](results.json); do not edit by hand. "
             "Raw numbers: [`results.json`](results.json), [`results.csv`](results.csv). What every number means: "
             "[evaluation.md](evaluation.md).", ""]
    for section in (how_made, cell_table, rate_distortion_section, seed_table, anchor_section, anomaly_table,
                    not_measured):
        part = section(meta, rows)
        if part:
            lines += [*part, ""]
    return "\n".join(lines).rstrip() + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def how_made(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    iw_images = rows[0]["iw_images"]
    held = (f"the {meta['train_images']:,} training images of the classes other than **{meta['holdout']}** "
            "(held out for the anomaly AUROC)") if meta["holdout"] else f"**{meta['train_images']:,} training images**"
    reused = sum(1 for r in rows if r["reused_run"])
    settings = recipe(meta)
    whose = ("vaekit's training defaults" if not settings.get("overrides") else
             f"vaekit's defaults with `--train-settings {settings['overrides']}`")
    if "train_settings" not in meta:
        whose = (f"the settings its runs were trained with, vaekit's defaults at the time (today: add "
                 f"`--train-settings {settings['overrides']}` to the command to train the same runs)")
    made = parts(meta, rows)
    return [
        "## How these numbers were made", "", *commands_text(made),
        "(plus `--data-dir DIR` where Fashion-MNIST is not in vaekit's search path; `--render-only` rewrites this "
        "page and the figure from `results.json`)", "",
        f"* **Model and training**: `fashion28`, {whose}: {recipe_text(settings)}, Bernoulli likelihood = the "
        f"seed's binary cross-entropy; **{_plural(meta['epochs'], 'epoch')}** "
        f"on {held}; {seeds_text(rows)}; {precision_text(rows)}. {reused} of {len(rows)} runs were reused "
        "(finished runs with exactly these settings)" + (
            "; they were trained earlier, possibly on a shared machine, and each run's `config.json` records "
            "where and with how many threads." if reused else "."),
        f"* **Test numbers** use the {rows[0]['test_images']:,} test images, measured in fp32. Bounds are nats per "
        "image under the Bernoulli likelihood on grey values, which is **not normalised** for non-binary pixels: "
        "bounds of the training loss, not of -log p(x), and not comparable with published likelihoods.",
        f"* **IWAE**: K = {meta['iw_samples']} importance samples on {iw_images:,} of the "
        f"{rows[0]['test_images']:,} test images (the first ones).",
        "* **Active units**: latent units whose E[z|x] varies over the test images by more than 0.01.",
        f"* **Probes**: k-NN (k = {meta['k']}) and logistic-regression label accuracy of z_mean, fitted on "
        f"{meta['probe_train']:,} training images, against PCA of the pixels with as many components as latent units.",
        *machines_text(made, rows),
    ]


def commands_text(made: list[dict[str, Any]]) -> list[str]:
    """The command that made the page, or each part's, numbered, when ``--merge`` joined several."""
    if len(made) == 1:
        return ["```", made[0]["command"], "```", ""]
    lines = [f"In {len(made)} parts, each one command; the later ones added their runs with `--merge`, which joins "
             "only rows trained and measured with the same settings:", ""]
    for number, part in enumerate(made, 1):
        lines += [f"{number}.", "   ```", f"   {part['command']}", "   ```", ""]
    return lines


def _machine(part: dict[str, Any]) -> str:
    return (f"{part['machine']} ({part['device']}); torch {part['torch']}, {part['threads']} threads; {part['date']}; "
            f"wall time of the script **{part['wall_minutes']:.1f} min**")


def machines_text(made: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """Where and when each part ran, and how long the runs trained."""
    training = (f"the training loops of all {len(rows)} runs took "
                f"{sum(r['train_loop_seconds'] for r in rows) / 3600:.1f} h. `train s` in the per-seed table is the "
                "training loop alone, as recorded by the run (also for reused runs).")
    if len(made) == 1:
        return [f"* **Machine**: {_machine(made[0])}; {training}"]
    by_key = {run_key(row): row for row in rows}
    return [f"* **Machines**: {training}",
            *(f"  * Part {number} ({runs_text([by_key[key] for key in part['runs'] if key in by_key])}): "
              f"{_machine(part)}." for number, part in enumerate(made, 1))]


def seeds_text(rows: list[dict[str, Any]]) -> str:
    """``seeds 0, 1, 2``, or which cells have which seeds when they differ."""
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for (latent, beta), group in cells(rows).items():
        by_seeds.setdefault(tuple(r["seed"] for r in group), []).append(f"{latent}:{beta:g}")
    if len(by_seeds) == 1:
        return f"seeds {', '.join(map(str, next(iter(by_seeds))))}"
    return "seeds " + "; ".join(f"{', '.join(map(str, seeds))} (cells {', '.join(names)})"
                                for seeds, names in by_seeds.items())


def precision_text(rows: list[dict[str, Any]]) -> str:
    """The training precision of the runs (``--precision auto`` measures and picks it per machine and threads)."""
    by_precision: dict[str, list[str]] = {}
    for (latent, beta), group in cells(rows).items():
        for precision in sorted({r["precision"] for r in group}):
            by_precision.setdefault(precision, []).append(f"{latent}:{beta:g}")
    if len(by_precision) == 1:
        precision = next(iter(by_precision))
        return f"trained in **{precision}**" + (
            " (bf16 autocast, which `--precision auto` measured as the faster on the machine that trained it)"
            if precision == "bf16" else "")
    return ("trained in " + " and ".join(f"**{p}** (cells {', '.join(names)})" for p, names in by_precision.items())
            + ", as `--precision auto` measured the faster on the machine and thread count that started (or last resumed) each run")


def cell_table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Per cell: mean ± sd over seeds", "",
             "| latent | beta | seeds (n) | -ELBO | recon | KL | IWAE | active units | k-NN VAE | k-NN PCA "
             "| linear VAE | linear PCA |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (latent, beta), group in cells(rows).items():
        nats = [fmt_mean_sd([r[key] for r in group]) for key in ("elbo", "recon", "kl", "iwae")]
        probes = [fmt_mean_sd([r[key] for r in group], 3) for key in ("knn", "pca_knn", "linear", "pca_linear")]
        units = fmt_mean_sd([r["active_units"] for r in group])
        seeds = ", ".join(str(r["seed"]) for r in group)
        lines.append(f"| {latent} | {beta:g} | {seeds} ({len(group)}) | {' | '.join(nats)} | {units} /{latent} "
                     f"| {' | '.join(probes)} |")
    return lines


def seed_table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Per seed", "",
             "| latent | beta | seed | -ELBO | recon | KL | IWAE | -ELBO (IWAE images) | active units | k-NN VAE "
             "| k-NN PCA | linear VAE | linear PCA | collapsed | train s | train img/s | run |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for group in cells(rows).values():
        for r in group:
            lines.append(
                f"| {r['latent_dim']} | {r['beta']:g} | {r['seed']} | {r['elbo']:.1f} | {r['recon']:.1f} "
                f"| {r['kl']:.1f} | {r['iwae']:.1f} | {r['elbo_iw_images']:.1f} | {r['active_units']}/{r['latent_dim']} "
                f"| {r['knn']:.3f} | {r['pca_knn']:.3f} | {r['linear']:.3f} | {r['pca_linear']:.3f} "
                f"| {'yes' if r['collapsed'] else 'no'} | {r['train_loop_seconds']:.0f} "
                f"| {images_per_second(r):.0f} | `{r['run']}` |")
    return lines


def anchor_section(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    anchor = meta["keras_anchor"]
    group = cells(rows).get((anchor["latent_dim"], anchor["beta"]))
    if not group:
        return []
    settings_match = meta["epochs"] == anchor["epochs"] and meta["train_images"] == anchor["train_images"]
    ours = (f"{fmt_mean_sd([r['elbo'] for r in group], 2)} (n = {len(group)})")
    collapsed = sum(1 for r in group if r["collapsed"])
    settings = recipe(meta)
    return [
        "## The seed row beside the Keras anchor", "",
        "| model | epochs | training images | optimiser | test -ELBO (nats) | collapsed seeds |",
        "|---|---:|---:|---|---:|---:|",
        f"| Keras anchor ({anchor['source']}) | {anchor['epochs']} | {anchor['train_images']:,} "
        f"| Adam {anchor['lr']:g}, batch {anchor['batch_size']} | {anchor['test_elbo']:.2f} "
        f"| {anchor['collapsed_seeds']} of {anchor['seeds']} |",
        f"| vaekit fashion28 (latent {anchor['latent_dim']}, beta {anchor['beta']:g}) | {meta['epochs']} "
        f"| {meta['train_images']:,} | Adam {settings['lr']:g}, batch {settings['batch_size']} | {ours} "
        f"| {collapsed} of {len(group)} |",
        "",
        anchor_comparison(anchor, settings) if settings_match else
        "**Not comparable yet**: the vaekit row did not train with the anchor's settings (epochs or training "
        "images differ); see *Not measured yet*.",
    ]


def anchor_comparison(anchor: dict[str, Any], settings: dict[str, Any]) -> str:
    """Whether the vaekit row also shares the anchor's optimiser settings, or is vaekit's recipe on the same budget."""
    if (settings["lr"], settings["batch_size"]) == (anchor["lr"], anchor["batch_size"]):
        return "Same settings as the anchor."
    return (f"Same epochs and training images as the anchor; vaekit trains with its own recipe (batch "
            f"{settings['batch_size']}, lr {settings['lr']:g}, see above), the anchor with the report's (batch "
            f"{anchor['batch_size']}, lr {anchor['lr']:g}).")


def anomaly_table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    if not meta["holdout"]:
        return []
    lines = [f"## Anomaly detection: AUROC of the held-out class ({meta['holdout']})", "",
             "| latent | beta | seed | -ELBO | reconstruction error | IWAE | complexity-corrected (Serrà et al.) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for group in cells(rows).values():
        lines += [f"| {r['latent_dim']} | {r['beta']:g} | {r['seed']} | {r['auroc_neg_elbo']:.3f} "
                  f"| {r['auroc_recon_error']:.3f} | {r['auroc_iwae']:.3f} | {r['auroc_complexity']:.3f} |"
                  for r in group]
    return lines + ["", "The held-out-class protocol over every class is `vaekit anomaly-protocol`."]


# ----------------------------------------------------------------------------- rate-distortion figure


def rate_distortion_section(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    return ["## Rate-distortion", "",
            f"![Test KL (rate) against reconstruction (distortion), one point per cell]({FIGURE_FILE})", "",
            "One point per cell (mean over seeds, bars one sd); colour = latent size, label = beta."]


def write_figure(data: dict[str, Any], path: Path) -> None:
    """KL against recon, one point per cell mean with sd error bars, colour = latent, label = beta."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    axes = figure.add_subplot()
    colours = {latent: f"C{i}" for i, latent in enumerate(sorted({r["latent_dim"] for r in data["rows"]}))}
    labelled: set[int] = set()
    for (latent, beta), group in cells(data["rows"]).items():
        (kl, kl_sd), (recon, recon_sd) = (mean_sd([r[key] for r in group]) for key in ("kl", "recon"))
        axes.errorbar(kl, recon, xerr=kl_sd or 0.0, yerr=recon_sd or 0.0, fmt="o", color=colours[latent],
                      capsize=3, label=None if latent in labelled else f"latent {latent}")
        labelled.add(latent)
        axes.annotate(f"β={beta:g}", (kl, recon), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("test KL, nats per image (rate)")
    axes.set_ylabel("test reconstruction, nats per image (distortion)")
    axes.set_title(f"fashion28 on Fashion-MNIST, {_plural(data['meta']['epochs'], 'epoch')}")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})


# ----------------------------------------------------------------------------- what is missing


def _shortfalls(meta: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """How one row falls short of the full protocol."""
    short = []
    if row["epochs"] < FULL_EPOCHS:
        short.append(f"{_plural(row['epochs'], 'epoch')} (< {FULL_EPOCHS})")
    if row["train_images"] < FULL_TRAIN_IMAGES:
        why = f"train_limit {meta['train_limit']}" if meta["train_limit"] else f"class {meta['holdout']} held out"
        short.append(f"{row['train_images']:,} training images ({why}; full: {FULL_TRAIN_IMAGES:,})")
    if row["iw_images"] < FULL_TEST_IMAGES:
        short.append(f"IWAE on {row['iw_images']:,} of {FULL_TEST_IMAGES:,} test images (iw-images < all)")
    if row["iw_samples"] < FULL_IW_SAMPLES:
        short.append(f"K = {row['iw_samples']} (< {FULL_IW_SAMPLES})")
    return short


def _plural_list(word: str, items: tuple[int, ...] | list[int]) -> str:
    return f"{word}{'' if len(items) == 1 else 's'} {', '.join(map(str, items))}"


def runs_text(rows: list[dict[str, Any]]) -> str:
    """``latent 2 beta 1 seeds 0, 1; latent 8 beta 1 seed 0``: the runs of ``rows``, cell by cell."""
    return "; ".join(f"latent {latent} beta {beta:g} {_plural_list('seed', [r['seed'] for r in group])}"
                     for (latent, beta), group in cells(rows).items())


def _estimate_hours(meta: dict[str, Any], rows: list[dict[str, Any]], runs_to_train: int, runs_to_measure: int) -> str:
    trained = [r for r in rows if r["train_loop_seconds"] > 0]
    if not trained:
        return ""
    speed = statistics.median(images_per_second(r) for r in trained)
    train_h = runs_to_train * FULL_EPOCHS * FULL_TRAIN_IMAGES / speed / 3600
    # IWAE cost: K decoder passes per image. The measured evaluation made one pass per test image (ELBO) plus
    # K per IWAE image; its speed in passes per second prices the full IWAE (a rough, pessimistic estimate).
    passes = statistics.median((r["test_images"] + r["iw_images"] * r["iw_samples"]) / max(r["evaluate_seconds"], 1e-9)
                               for r in rows)
    iwae_h = runs_to_measure * FULL_TEST_IMAGES * FULL_IW_SAMPLES / passes / 3600
    return (f"At the speeds measured here (training {speed:.0f} images/s, evaluation about {passes:,.0f} decoder passes/s; "
            f"{meta['device']}) that is about **{train_h:.1f} h of training** ({runs_to_train} runs x "
            f"{FULL_EPOCHS} epochs x {FULL_TRAIN_IMAGES:,} images) and **{iwae_h:.1f} h of IWAE** ({runs_to_measure} "
            f"runs x {FULL_TEST_IMAGES:,} images x K = {FULL_IW_SAMPLES}) on this machine.")


def not_measured(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Which cells, seeds and settings of the full protocol are missing, the time they take, and the command."""
    by_cell = cells(rows)
    missing_cells = [cell for cell in FULL_GRID if cell not in by_cell]
    lines: list[str] = []
    if missing_cells:
        lines.append("* **Cells not run**: " + ", ".join(f"latent {z} beta {b:g}" for z, b in missing_cells) + ".")
    # One line per set of missing seeds and per shortfall, so a page with many runs stays readable.
    cells_by_missing_seeds: dict[tuple[int, ...], list[tuple[int, float]]] = {}
    for cell, group in by_cell.items():
        seeds = tuple(sorted(set(FULL_SEEDS) - {r["seed"] for r in group}))
        if seeds:
            cells_by_missing_seeds.setdefault(seeds, []).append(cell)
    for seeds, missing_in in cells_by_missing_seeds.items():
        lines.append(f"* **{_plural_list('Seed', seeds)} not run**: "
                     + ", ".join(f"latent {z} beta {b:g}" for z, b in missing_in) + ".")
    short_rows = [(r, _shortfalls(meta, r)) for r in rows]
    short_rows = [(r, short) for r, short in short_rows if short]
    rows_by_shortfall: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r, short in short_rows:
        rows_by_shortfall.setdefault(tuple(short), []).append(r)
    for short, group in rows_by_shortfall.items():
        who = f"Every run on this page ({len(group)})" if len(group) == len(rows) else runs_text(group)
        lines.append(f"* {who}: " + "; ".join(short) + ".")
    if not lines:
        return []
    retrain = sum(1 for r, short in short_rows if r["epochs"] < FULL_EPOCHS or r["train_images"] < FULL_TRAIN_IMAGES)
    absent = len(missing_cells) * len(FULL_SEEDS) + sum(
        len(set(FULL_SEEDS) - {r["seed"] for r in g}) for g in by_cell.values())
    remeasure = absent + len(short_rows)
    estimate = _estimate_hours(meta, rows, absent + retrain, remeasure)
    return ["## Not measured yet", "",
            f"The full protocol: latent {', '.join(map(str, FULL_LATENTS))} x beta "
            f"{', '.join(f'{b:g}' for b in FULL_BETAS)} x seeds {', '.join(map(str, FULL_SEEDS))}, "
            f"{FULL_EPOCHS} epochs on all {FULL_TRAIN_IMAGES:,} training images (no class held out), IWAE with "
            f"K = {FULL_IW_SAMPLES} on all {FULL_TEST_IMAGES:,} test images. Missing from this page:", "",
            *lines, "", *([estimate, ""] if estimate else []),
            "The command that completes it (its defaults are the full protocol; finished runs with the same settings, "
            "in its `--out` folder or in the `--reuse` folders, are reused and finished measurements are kept, so an "
            "interrupted grid continues):", "",
            "```", completing_command(meta), "```"]


def completing_command(meta: dict[str, Any]) -> str:
    """The full protocol with this page's recipe, reusing the runs this page reused."""
    reuse: list[str] = []
    for part in meta.get("parts") or [meta]:
        words = shlex.split(part["command"])
        if "--reuse" in words:
            for word in words[words.index("--reuse") + 1:]:
                if word.startswith("--"):
                    break
                if word not in reuse:
                    reuse.append(word)
    overrides = recipe(meta).get("overrides")
    return shlex.join([*shlex.split(FULL_COMMAND), *(["--train-settings", overrides] if overrides else []),
                       *(["--reuse", *reuse] if reuse else [])])
