"""A beta-VAE family: one architecture, several betas, one comparison.

:func:`train_family` trains one run per beta into ``OUT/<member>`` (the
CelebA module docs name them ``vae_model_NN3_w1``, ``_w2``, ``_w3``,
``_w5``), skipping finished members and resuming interrupted ones, so the
same command can be run again after Ctrl-C (under ``torchrun`` the members
train one after another in one process group, and rank 0 alone writes the
family's files). It then writes
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
      vae_model_NN3_w1/    one run directory per member (see vaekit.runs)
      ...
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vaekit.errors import ConfigError, RunDirError
from vaekit.files import atomic_write_text, read_json, write_json
from vaekit.guard import writer_lock
from vaekit.models.pretrained import read_config
from vaekit.models.spec import get_arch
from vaekit.runs.run import METRICS_FILE, read_metrics
from vaekit.runtime import is_main_process, resolve_device
from vaekit.training import distributed
from vaekit.training.api import train
from vaekit.training.config import TrainConfig
from vaekit.training.series import (
    SeriesInterrupted,
    TrainJob,
    check_jobs,
    member_state,
    train_jobs,
)
from vaekit.training.trainer import TrainingInterrupted
from vaekit.viz.evaluation_figures import save_rate_distortion
from vaekit.viz.family_page import render_family_page

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


class FamilyInterrupted(SeriesInterrupted):
    """Ctrl-C during a family: the member was saved; the same command resumes."""


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
    jobs: int = 1,
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
        Called as ``on_step(member_name, epoch, step)`` after every step
        (with ``jobs=1`` only: other jobs train in other processes).
    jobs
        Members trained at once, each in its own process
        (:func:`vaekit.training.series.train_jobs`); 1 trains them here, one
        after the other.

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
        raise ConfigError("out: a family directory is required", param="out")
    out = Path(out)
    base = dataclasses.replace(config or TrainConfig(), **overrides)
    check_jobs(jobs)
    if jobs > 1 and on_step is not None:
        raise ConfigError("on_step: not available with jobs > 1 (the members train in other processes)",
                          param="on_step")
    plan = _plan(base, betas, out)
    # Under torchrun every member trains in one process group; rank 0 alone writes the family's files,
    # and its checks and errors reach every rank (distributed.main_first).
    distributed.init(distributed.rank_device(resolve_device(base.device)))
    family = distributed.main_first(lambda: _family_record(base, plan, out))
    with contextlib.ExitStack() as stack:
        # One process writes a family at a time.
        distributed.main_first(lambda: stack.enter_context(writer_lock(out, what="family")), broadcast_result=False)
        if jobs > 1:
            members = _train_members_at_once(base, plan, out, jobs, progress, family)
            write_json(out / FAMILY_FILE, family)
        else:
            members = _train_members_in_turn(base, plan, out, progress, on_step, family)
        report, metrics = distributed.main_first(lambda: (write_family_report(out), family_metrics(out)))
    return FamilyResult(out, members, metrics, report, out / RATE_DISTORTION_FILE)


def _plan(base: TrainConfig, betas: Sequence[float], out: Path) -> list[tuple[float, str]]:
    """Validate every member's settings; return ``(beta, name)`` pairs in beta order."""
    betas = [float(beta) for beta in betas]
    if not betas:
        raise ConfigError("betas: give at least one beta", param="betas")
    get_arch(base.arch, base.latent_dim)  # unknown architecture: one line, before anything
    for beta in betas:
        dataclasses.replace(base, beta=beta).validate()
    names: dict[str, float] = {}
    for beta in sorted(betas):
        name = member_name(base.arch, beta, base.latent_dim)
        if name in names:
            raise ConfigError(f"betas: {beta:g} is given twice (both would train {name})", param="betas")
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
        existing = _read_family(out)
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
    state = distributed.main_first(lambda: member_state(run_dir, config, "family"))
    if state == "complete":
        return state
    step = None if on_step is None else (lambda epoch, i: on_step(run_dir.name, epoch, i))
    try:
        if state == "resume":
            train(out=run_dir, resume=True, progress=progress, on_step=step, **config.to_dict())
            return "resumed"
        train(config, out=run_dir, progress=progress, on_step=step)
        return "trained"
    except TrainingInterrupted:
        raise FamilyInterrupted(run_dir, out) from None


def _train_members_in_turn(base: TrainConfig, plan: list[tuple[float, str]], out: Path, progress: bool,
                           on_step: Callable[[str, int, int], None] | None,
                           family: dict[str, Any]) -> list[FamilyMember]:
    """Train, resume or skip each member in turn, in this process (or this torchrun process group)."""
    members = []
    for index, (beta, name) in enumerate(plan, start=1):
        run_dir = out / name
        if progress:
            _say(f"[{index}/{len(plan)}] {name} (beta = {beta:g})")
        status = _train_member(dataclasses.replace(base, beta=beta), run_dir, out, progress, on_step)
        members.append(FamilyMember(name, beta, run_dir, status))
        # After the first success only, then idempotent.
        distributed.main_first(lambda: write_json(out / FAMILY_FILE, family), broadcast_result=False)
        if progress and status == "complete":
            _say(f"{name}: already complete, left as is")
    return members


def _train_members_at_once(base: TrainConfig, plan: list[tuple[float, str]], out: Path, jobs: int, progress: bool,
                           family: dict[str, Any]) -> list[FamilyMember]:
    """Train the unfinished members ``jobs`` at a time (every member is checked before any starts)."""
    configs = {name: dataclasses.replace(base, beta=beta) for beta, name in plan}
    states = {name: member_state(out / name, configs[name], "family") for _, name in plan}
    todo = [TrainJob(configs[name], out / name, resume=states[name] == "resume")
            for _, name in plan if states[name] != "complete"]
    if progress:
        _say(f"{len(todo)} of {len(plan)} members to train, {min(jobs, max(len(todo), 1))} at a time")
    try:
        train_jobs(todo, jobs, progress, on_done=lambda job, seconds: write_json(out / FAMILY_FILE, family))
    except TrainingInterrupted as stop:
        raise FamilyInterrupted(stop.run_dir, out) from None
    done = {"new": "trained", "resume": "resumed", "complete": "complete"}
    return [FamilyMember(name, beta, out / name, done[states[name]]) for beta, name in plan]


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    if not is_main_process():
        return
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
    for index, member in enumerate(family["members"]):
        if not (isinstance(member, dict) and _is_member_name(member.get("name"))
                and isinstance(member.get("beta"), (int, float)) and not isinstance(member["beta"], bool)):
            raise RunDirError(f"{path}: members[{index}] is not a member (a folder name and a numeric beta)")
    return family


def _is_member_name(name: Any) -> bool:
    """A member's folder: one plain name inside the family directory."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


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
    page = render_family_page(family, metrics, out, plot if metrics else None)
    atomic_write_text(out / REPORT_FILE, page)
    return out / REPORT_FILE
