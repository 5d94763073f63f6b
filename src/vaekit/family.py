"""A beta-VAE family: one architecture, several betas, one comparison.

:func:`train_family` trains one run per beta into ``OUT/<member>`` (the
CelebA module docs name them ``vae_model_NN3_w1``, ``_w2``, ``_w3``,
``_w5``), skipping finished members and resuming interrupted ones, so the
same command can be run again after Ctrl-C. It then writes
``OUT/family.html``: a table of reconstruction error, KL (the rate), active
units and test -ELBO against beta, a rate-distortion plot, and per member the
"prediction from dataset" and "random point in the latent space" figures
side by side. The page is self-contained (images are embedded), so it can be
mailed or archived as one file; a page made from CelebA holds CelebA images
and must not be published.

Layout::

    OUT/
      family.json          architecture, dataset, settings and members
      family.html          the comparison
      rate_distortion.png  KL against reconstruction error, labelled by beta
      vae_model_NN3_w1/    one run directory per member (see vaekit.rundir)
      ...
"""

from __future__ import annotations

import base64
import dataclasses
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vaekit.errors import ConfigError, RunDirError
from vaekit.models import get_arch
from vaekit.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    atomic_write_text,
    read_config,
    read_json,
    read_metrics,
    write_json,
)
from vaekit.training import TrainConfig, TrainingInterrupted, train

__all__ = [
    "DOCS_BETAS",
    "FAMILY_FILE",
    "RATE_DISTORTION_FILE",
    "REPORT_FILE",
    "FamilyInterrupted",
    "FamilyMember",
    "FamilyResult",
    "MemberMetrics",
    "family_metrics",
    "member_name",
    "save_rate_distortion",
    "train_family",
    "write_family_report",
]

FAMILY_FILE = "family.json"
REPORT_FILE = "family.html"
RATE_DISTORTION_FILE = "rate_distortion.png"
#: The betas of the module docs' family.
DOCS_BETAS: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
#: Architectures whose members are named as in the module docs.
_DOCS_NAMES = {"nn3-128": "NN3"}
_FORMAT = "vaekit-family"
# Settings that may differ when a member is resumed (as for `vaekit train --resume`).
_RUNTIME_FIELDS = ("epochs", "device", "data_dir")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class FamilyMember:
    """One member of a family and what :func:`train_family` did with it.

    ``status`` is ``"trained"`` (new), ``"resumed"`` (continued from its
    checkpoint) or ``"complete"`` (already finished: left untouched).
    """

    name: str
    beta: float
    run_dir: Path
    status: str


@dataclass
class MemberMetrics:
    """A member's final metrics (last row of its ``metrics.csv``), nats per test image.

    ``recon`` is the reconstruction error (the distortion), ``kl`` the KL
    term (the rate), ``elbo`` the negative ELBO at beta = 1 (recon + KL), so
    members with different betas compare on the same scale.
    """

    name: str
    beta: float
    run_dir: Path
    epochs: int
    recon: float
    kl: float
    active_units: int
    latent_dim: int
    elbo: float
    complete: bool


@dataclass
class FamilyResult:
    """What :func:`train_family` returns."""

    out: Path
    members: list[FamilyMember]
    metrics: list[MemberMetrics]
    report: Path
    rate_distortion: Path


class FamilyInterrupted(TrainingInterrupted):
    """Ctrl-C during a family: the member was saved; the same command resumes."""

    def __init__(self, run_dir: Path, out: Path) -> None:
        super().__init__(run_dir)
        self.args = (f"interrupted; {run_dir.name} was saved: run the same `vaekit train-family ... --out {out}` "
                     "to resume it and train the remaining members",)


def member_name(arch: str, beta: float, latent_dim: int | None = None) -> str:
    """Directory name of the member with ``beta``.

    ``vae_model_NN3_w{beta}`` for ``nn3-128`` (as in the module docs),
    ``vae_model_<arch>_w{beta}`` otherwise; ``_z{latent_dim}`` is appended
    when the latent size is not the architecture's default.

    Examples
    --------
    >>> member_name("nn3-128", 2.0)
    'vae_model_NN3_w2'
    >>> member_name("fashion28", 0.5)
    'vae_model_fashion28_w0.5'
    """
    name = f"vae_model_{_DOCS_NAMES.get(arch, arch)}_w{beta:g}"
    default = get_arch(arch).latent_dim
    if latent_dim is not None and latent_dim != default:
        name += f"_z{latent_dim}"
    return name


def train_family(
    config: TrainConfig | None = None,
    betas: Sequence[float] = DOCS_BETAS,
    out: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[str, int, int], None] | None = None,
    **overrides: Any,
) -> FamilyResult:
    """Train one run per beta, then write the family's comparison page.

    Parameters
    ----------
    config
        Settings shared by every member (its ``beta`` is ignored); keyword
        ``overrides`` replace single fields, e.g. ``epochs=5``.
    betas
        The members' betas, e.g. ``(1, 2, 3, 5)``.
    out
        Family directory; members go in ``out/<member_name>``.
    progress
        Show progress bars and per-member headers.
    on_step
        Called as ``on_step(member_name, epoch, step)`` after every step.

    Returns
    -------
    FamilyResult
        Members (with what was done to each), their metrics, and the paths of
        ``family.html`` and ``rate_distortion.png``.

    Raises
    ------
    ConfigError
        For bad settings (checked for every member before anything is
        written), or an existing member or family trained with others.
    FamilyInterrupted
        On Ctrl-C, once the running member is saved; calling again resumes.
    """
    if out is None:
        raise ConfigError("--out: a family directory is required")
    out = Path(out)
    base = dataclasses.replace(config or TrainConfig(), **overrides)
    plan = _plan(base, betas, out)
    family = _family_record(base, plan, out)
    members = []
    for index, (beta, name) in enumerate(plan, start=1):
        run_dir = out / name
        if progress:
            _say(f"[{index}/{len(plan)}] {name} (beta = {beta:g})")
        status = _train_member(dataclasses.replace(base, beta=beta), run_dir, out, progress, on_step)
        members.append(FamilyMember(name, beta, run_dir, status))
        write_json(out / FAMILY_FILE, family)  # after the first success only, then idempotent
        if progress and status == "complete":
            _say(f"{name}: already complete, left as is")
    report = write_family_report(out)
    return FamilyResult(out, members, family_metrics(out), report, out / RATE_DISTORTION_FILE)


def _plan(base: TrainConfig, betas: Sequence[float], out: Path) -> list[tuple[float, str]]:
    """Validate every member's settings; return ``(beta, name)`` pairs in beta order."""
    betas = [float(beta) for beta in betas]
    if not betas:
        raise ConfigError("--betas: give at least one beta")
    get_arch(base.arch, base.latent_dim)  # unknown architecture: one line, before anything
    for beta in betas:
        dataclasses.replace(base, beta=beta).validate()
    names: dict[str, float] = {}
    for beta in sorted(betas):
        name = member_name(base.arch, beta, base.latent_dim)
        if name in names:
            raise ConfigError(f"--betas: {beta:g} is given twice (both would train {name})")
        names[name] = beta
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    return [(beta, name) for name, beta in names.items()]


def _family_record(base: TrainConfig, plan: list[tuple[float, str]], out: Path) -> dict[str, Any]:
    """The ``family.json`` to write: the new members added to any existing family."""
    settings = {k: v for k, v in base.to_dict().items() if k != "beta"}
    members = {name: beta for beta, name in plan}
    path = out / FAMILY_FILE
    if path.is_file():
        existing = read_json(path)
        for key in ("arch", "dataset", "latent_dim"):
            if existing.get(key) != getattr(base, key):
                raise ConfigError(
                    f"{path}: this family has {key} {existing.get(key)!r}, not {getattr(base, key)!r}; "
                    "choose another --out"
                )
        for member in existing.get("members", []):
            members.setdefault(member["name"], float(member["beta"]))
    ordered = sorted(members.items(), key=lambda item: item[1])
    return {
        "format": _FORMAT,
        "arch": base.arch,
        "dataset": base.dataset,
        "latent_dim": base.latent_dim,
        "members": [{"name": name, "beta": beta} for name, beta in ordered],
        "train": settings,
    }


def _train_member(
    config: TrainConfig,
    run_dir: Path,
    out: Path,
    progress: bool,
    on_step: Callable[[str, int, int], None] | None,
) -> str:
    """Train, resume or skip one member; return what was done."""
    state = _member_state(run_dir, config.epochs)
    if state in ("complete", "resume"):
        _check_same_recipe(run_dir, config)
    if state == "complete":
        return state
    step = None if on_step is None else (lambda epoch, i: on_step(run_dir.name, epoch, i))
    try:
        if state == "resume":
            train(out=run_dir, resume=True, progress=progress, on_step=step, **config.to_dict())
            return "resumed"
        if state == "restart":
            _clear_unstarted(run_dir)
        train(config, out=run_dir, progress=progress, on_step=step)
        return "trained"
    except TrainingInterrupted:
        raise FamilyInterrupted(run_dir, out) from None


def _member_state(run_dir: Path, epochs: int) -> str:
    """``"new"``, ``"complete"``, ``"resume"`` or ``"restart"`` (killed before its first checkpoint)."""
    if not (run_dir / CONFIG_FILE).is_file():
        return "new"
    saved = read_config(run_dir)
    if saved.get("status") == "complete" and int(saved.get("epochs_done", 0)) >= epochs:
        return "complete"
    if (run_dir / CHECKPOINT_FILE).is_file():
        return "resume"
    return "restart"


def _check_same_recipe(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to reuse a member trained with other settings (only epochs, device and data_dir may differ)."""
    saved = TrainConfig.from_dict(read_config(run_dir).get("train", {})).to_dict()
    wanted = config.to_dict()
    for key, value in wanted.items():
        if key not in _RUNTIME_FIELDS and saved.get(key) != value:
            raise ConfigError(
                f"{run_dir}: this member was trained with --{key.replace('_', '-')} {saved.get(key)!r}, "
                f"not {value!r}; use the same settings to resume the family, or choose another --out"
            )


def _clear_unstarted(run_dir: Path) -> None:
    """Remove the initial config and weights of a member killed before its first epoch ended.

    Only those two files are removed, and only when nothing else is there:
    no epoch was finished, so no work is lost.
    """
    others = [p.name for p in run_dir.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE)]
    if others:
        raise RunDirError(f"{run_dir}: unfinished run without {CHECKPOINT_FILE} (holds {', '.join(sorted(others))}); "
                          "move it away to retrain this member")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (run_dir / name).unlink(missing_ok=True)


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def family_metrics(out: str | Path) -> list[MemberMetrics]:
    """Final metrics of every member of the family in ``out``, in beta order.

    Members without a finished epoch are left out.

    Raises
    ------
    RunDirError
        If ``out`` holds no ``family.json``.
    """
    out = Path(out)
    rows = []
    for member in _read_family(out)["members"]:
        metrics = _member_metrics(out / member["name"], member["name"], float(member["beta"]))
        if metrics is not None:
            rows.append(metrics)
    return rows


def _read_family(out: Path) -> dict[str, Any]:
    path = out / FAMILY_FILE
    if not path.is_file():
        raise RunDirError(f"{out}: not a family directory (no {FAMILY_FILE}); create it with `vaekit train-family`")
    family = read_json(path)
    if not isinstance(family, dict) or family.get("format") != _FORMAT or not isinstance(family.get("members"), list):
        raise RunDirError(f"{path}: not a vaekit family description")
    return family


def _member_metrics(run_dir: Path, name: str, beta: float) -> MemberMetrics | None:
    if not (run_dir / METRICS_FILE).is_file():
        return None
    rows = read_metrics(run_dir)
    if not rows:
        return None
    last = rows[-1]
    config = read_config(run_dir)
    try:
        return MemberMetrics(
            name=name,
            beta=beta,
            run_dir=run_dir,
            epochs=int(last["epoch"]),
            recon=float(last["test_recon"]),
            kl=float(last["test_kl"]),
            active_units=int(last["active_units"]),
            latent_dim=int(config["latent_dim"]),
            elbo=float(last["test_elbo"]),
            complete=config.get("status") == "complete",
        )
    except (KeyError, ValueError) as error:
        raise RunDirError(f"{run_dir / METRICS_FILE}: missing or bad column ({error})") from None


# ---------------------------------------------------------------------------
# Figures and the report
# ---------------------------------------------------------------------------


def save_rate_distortion(metrics: Sequence[MemberMetrics], path: str | Path, title: str | None = None) -> Path:
    """Plot KL (rate) against reconstruction error (distortion), one labelled point per beta."""
    import matplotlib.pyplot as plt

    from vaekit.plots import save_figure

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
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


def write_family_report(out: str | Path) -> Path:
    """Write ``out/family.html`` (and ``out/rate_distortion.png``) from the members' run directories.

    Returns
    -------
    Path
        The page, self-contained (figures embedded as PNG data).
    """
    out = Path(out)
    family = _read_family(out)
    metrics = family_metrics(out)
    plot = out / RATE_DISTORTION_FILE
    if metrics:
        save_rate_distortion(metrics, plot, f"Rate-distortion: {family['arch']} on {family['dataset']} (test split)")
    page = _render(family, metrics, out, plot if metrics else None)
    atomic_write_text(out / REPORT_FILE, page)
    return out / REPORT_FILE


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


def _render(family: dict[str, Any], metrics: list[MemberMetrics], out: Path, plot: Path | None) -> str:
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


def _table(family: dict[str, Any], by_name: dict[str, MemberMetrics]) -> str:
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
