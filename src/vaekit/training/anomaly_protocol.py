"""The held-out-class anomaly-detection protocol, as one call.

For each class of the dataset in turn, :func:`run_anomaly_protocol` trains a
model without that class (``exclude_classes=[class]``), then scores the whole
test split with every score of :data:`~vaekit.analysis.anomaly.ANOMALY_SCORES`
(the held-out class is the anomaly) and reports the AUROC per class and score,
and the mean over classes. Finished members are left as they are and
interrupted ones resumed, so the same command can be run again after Ctrl-C;
scoring is always redone (it is cheap next to training).

Layout::

    OUT/
      anomaly_protocol.json   recipe, machine, wall time, AUROC per class and score, means
      anomaly_protocol.md     the table: class x score, last row the mean
      without_bag/            one run directory per held-out class (see vaekit.runs)
      ...
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaekit.analysis.anomaly import ANOMALY_SCORES, anomaly_protocol, held_out_mask
from vaekit.analysis.bounds import run_likelihood
from vaekit.analysis.inference import inference_for
from vaekit.data.classes import resolve_classes
from vaekit.data.dataset import ImageDataset
from vaekit.data.registry import load_dataset
from vaekit.errors import ConfigError, RunDirError
from vaekit.files import atomic_write_text, write_json
from vaekit.guard import writer_lock
from vaekit.models.spec import get_arch
from vaekit.runs.run import Run, read_metrics
from vaekit.runtime import resolve_device
from vaekit.training.config import TrainConfig, ema_and_clip_text, options_since
from vaekit.training.series import (
    SeriesInterrupted,
    TrainJob,
    check_jobs,
    member_state,
    threads_per_job,
    train_jobs,
)
from vaekit.training.trainer import TrainingInterrupted
from vaekit.training.tuning import machine_name

__all__ = [
    "PROTOCOL_FILE",
    "PROTOCOL_LATENT_DIM",
    "SCORE_TITLES",
    "TABLE_FILE",
    "ClassResult",
    "ProtocolInterrupted",
    "ProtocolResult",
    "member_dir_name",
    "protocol_table",
    "run_anomaly_protocol",
]

PROTOCOL_FILE = "anomaly_protocol.json"
TABLE_FILE = "anomaly_protocol.md"
#: The protocol's latent size when none is given (the architecture's own is 2 for fashion28).
PROTOCOL_LATENT_DIM = 8
#: Column titles of the scores in the table.
SCORE_TITLES = {"neg_elbo": "-ELBO", "recon_error": "recon. error", "iwae": "IWAE", "complexity": "complexity"}
_FORMAT = "vaekit-anomaly-protocol"


@dataclass
class ClassResult:
    """One held-out class: its model, what was done to it, and the AUROC of every score.

    ``status`` is ``"trained"``, ``"resumed"`` or ``"complete"`` (already
    finished: left untouched). ``in_distribution_neg_elbo`` is the mean
    negative ELBO (nats) of the test images of the other classes.
    """

    name: str
    run_dir: Path
    status: str
    auroc: dict[str, float]
    n_normal: int
    n_anomalous: int
    in_distribution_neg_elbo: float
    train_s: float
    score_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "run": self.run_dir.name, "status": self.status, "auroc": self.auroc,
                "n_normal": self.n_normal, "n_anomalous": self.n_anomalous,
                "in_distribution_test_neg_elbo": self.in_distribution_neg_elbo,
                "train_s": round(self.train_s, 2), "score_s": round(self.score_s, 2)}


@dataclass
class ProtocolResult:
    """What :func:`run_anomaly_protocol` returns: one row per class, the means, and the files written."""

    out: Path
    classes: list[ClassResult]
    mean: dict[str, float]
    json_path: Path
    table_path: Path
    table: str
    wall_s: float


class ProtocolInterrupted(SeriesInterrupted):
    """Ctrl-C during the protocol: the member was saved; the same command resumes."""

    command, remaining = "anomaly-protocol", "classes"


def member_dir_name(class_name: str) -> str:
    """Directory of the model trained without ``class_name``.

    Examples
    --------
    >>> member_dir_name("T-shirt/top")
    'without_t_shirt_top'
    >>> member_dir_name("Ankle boot")
    'without_ankle_boot'
    """
    slug = re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_")
    return f"without_{slug or 'class'}"


def run_anomaly_protocol(
    base: TrainConfig | None = None,
    out: str | Path | None = None,
    classes: Sequence[str] | None = None,
    iw_samples: int = 16,
    progress: bool = True,
    seed: int = 0,
    command: str | None = None,
    jobs: int = 1,
    **overrides: Any,
) -> ProtocolResult:
    """Train one model per held-out class, score the test split, and report AUROC per class and score.

    Parameters
    ----------
    base
        Training settings shared by every member (default: vaekit's defaults
        with ``latent_dim=8``; a ``latent_dim`` of None also means 8). Keyword
        ``overrides`` replace single fields, e.g. ``epochs=1``. Its
        ``exclude_classes`` must be empty: each member sets its own.
        ``test_limit`` also limits the images scored.
    out
        Protocol directory; members go in ``out/without_<class>``.
    classes
        Classes to hold out, one member each, as users type them
        (default: every class of the dataset).
    iw_samples
        K of the IWAE and complexity-corrected scores.
    progress
        Show progress bars and per-member headers.
    seed
        Seeds the posterior samples of the scores.
    command
        The command line to record in the JSON (the CLI passes its own).
    jobs
        Models trained at once, each in its own process
        (:func:`vaekit.training.series.train_jobs`); then all are scored.
        1 trains and scores them in turn, here.

    Returns
    -------
    ProtocolResult
        The rows, the mean AUROC per score, and the paths of
        ``anomaly_protocol.json`` and ``anomaly_protocol.md``.

    Raises
    ------
    ConfigError
        For bad settings or an unknown class (before anything is trained), or
        an existing member trained with other settings.
    ProtocolInterrupted
        On Ctrl-C, once the running member is saved; calling again resumes.
    """
    started = time.perf_counter()
    if out is None:
        raise ConfigError("out: a protocol directory is required", param="out")
    out = Path(out)
    base = dataclasses.replace(base or TrainConfig(latent_dim=PROTOCOL_LATENT_DIM), **overrides)
    check_jobs(jobs)
    if base.latent_dim is None:
        base = dataclasses.replace(base, latent_dim=PROTOCOL_LATENT_DIM)
    test, names = _plan(base, out, classes, iw_samples)
    device = resolve_device(base.device)
    record = {"format": _FORMAT, "dataset": base.dataset, "arch": base.arch, "latent_dim": base.latent_dim,
              "iw_samples": iw_samples, "seed": seed, "scores": list(ANOMALY_SCORES), "split": test.split,
              "test_images": len(test), "command": command,
              "recipe": {k: v for k, v in base.comparable().items() if k != "exclude_classes"},
              "machine": machine_name(device), "jobs": jobs,
              "training_threads": threads_per_job(jobs) if jobs > 1 else torch.get_num_threads()}
    rows: list[ClassResult] = []
    with writer_lock(out, what="anomaly protocol"):
        # Several at once: all train, then all are scored. One at a time: each is scored (and the table
        # written) as soon as it is trained, so an interrupted protocol keeps the classes it finished.
        trained = _train_members(base, names, out, jobs, progress) if jobs > 1 else None
        for index, name in enumerate(names, start=1):
            if trained is None and progress:
                _say(f"[{index}/{len(names)}] {member_dir_name(name)} ({name} held out)")
            status, train_s = trained[index - 1] if trained else _train_members(base, [name], out, 1, progress)[0]
            rows.append(_score_member(out / member_dir_name(name), name, status, test, base, iw_samples, seed,
                                      train_s))
            table, mean = _write(out, record, rows, time.perf_counter() - started, done=index == len(names))
    return ProtocolResult(out, rows, mean, out / PROTOCOL_FILE, out / TABLE_FILE, table,
                          time.perf_counter() - started)


def _plan(base: TrainConfig, out: Path, classes: Sequence[str] | None,
          iw_samples: int) -> tuple[ImageDataset, list[str]]:
    """Check everything that can be checked before training; return the test images and the class names."""
    if base.exclude_classes:
        raise ConfigError("exclude_classes: the protocol holds out one class per member itself; "
                          "use classes (--classes) to choose them", param="exclude_classes")
    base.validate()
    spec = get_arch(base.arch, base.latent_dim)  # unknown architecture: one line, before anything
    if isinstance(iw_samples, bool) or not isinstance(iw_samples, int) or iw_samples < 1:
        raise ConfigError(f"iw_samples must be at least 1, got {iw_samples!r}", param="iw_samples")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    extra = {"image_shape": spec.input_shape} if base.dataset.strip().lower().startswith("folder:") else {}
    test = load_dataset(base.dataset, "test", data_dir=base.data_dir, **extra)
    if base.test_limit:
        test = test.subset(slice(0, base.test_limit))
    if classes is not None and isinstance(classes, str):
        classes = [classes]
    if classes is not None and not list(classes):
        raise ConfigError("classes: give at least one class to hold out", param="classes")
    ids = resolve_classes(list(classes), test.class_names) if classes is not None else range(len(test.class_names))
    names = [test.class_names[i] for i in dict.fromkeys(ids)]  # each class once, in the given order
    if len(names) < 2 and classes is None:
        raise ConfigError(f"dataset '{base.dataset}' has fewer than two classes: nothing to hold out")
    for name in names:
        held = held_out_mask(test, [name])
        if held.all() or not held.any():
            raise ConfigError(f"classes: the {len(test)} test images scored hold {int(held.sum())} of class "
                              f"{name!r} and {int((~held).sum())} of the others; both are needed "
                              "(raise --test-limit)", param="classes")
    return test, names


def _train_members(base: TrainConfig, names: list[str], out: Path, jobs: int, progress: bool) -> list[tuple[str, float]]:
    """Train the unfinished members, ``jobs`` at a time; return each class's (status, training seconds).

    Every member is checked before any starts; finished ones are left as they are.
    """
    configs = [dataclasses.replace(base, exclude_classes=[name]) for name in names]
    dirs = [out / member_dir_name(name) for name in names]
    states = [member_state(run_dir, config, "protocol") for run_dir, config in zip(dirs, configs)]
    todo = [index for index, state in enumerate(states) if state != "complete"]
    seconds = dict.fromkeys(range(len(names)), 0.0)
    if progress:
        for index in range(len(names)):
            if index not in todo:
                _say(f"{dirs[index].name}: already complete, left as is")
        if todo and jobs > 1:
            _say(f"{len(todo)} of {len(names)} models to train, {min(jobs, len(todo))} at a time")
    try:
        done = train_jobs([TrainJob(configs[i], dirs[i], resume=states[i] == "resume") for i in todo], jobs,
                          progress)
    except TrainingInterrupted as stop:
        raise ProtocolInterrupted(stop.run_dir, out) from None
    seconds.update(zip(todo, done))
    for index in set(range(len(names))) - set(todo):  # finished earlier: the seconds its epochs recorded
        seconds[index] = sum(float(row.get("seconds") or 0) for row in read_metrics(dirs[index]))
    status = {"new": "trained", "resume": "resumed", "complete": "complete"}
    return [(status[state], seconds[index]) for index, state in enumerate(states)]


def _score_member(run_dir: Path, name: str, status: str, test: ImageDataset, base: TrainConfig, iw_samples: int,
                  seed: int, train_s: float) -> ClassResult:
    """Score the test images with the member trained without ``name``."""
    tic = time.perf_counter()
    run = Run.open(run_dir, device=base.device, precision=base.precision, data_dir=base.data_dir)
    result = anomaly_protocol(inference_for(run), test, [name], run_likelihood(run.config), iw_samples, seed)
    normal = ~result.is_anomaly
    return ClassResult(name, run_dir, status, dict(result.auroc), int(normal.sum()), int(result.is_anomaly.sum()),
                       float(np.mean(result.scores.scores["neg_elbo"][normal])), train_s,
                       time.perf_counter() - tic)


def _write(out: Path, record: dict[str, Any], rows: list[ClassResult], wall_s: float,
           done: bool) -> tuple[str, dict[str, float]]:
    """Write the JSON and the Markdown table of the rows so far; return the table and the means."""
    mean = {score: float(np.mean([row.auroc[score] for row in rows])) for score in ANOMALY_SCORES}
    record = {**record, "complete": done, "wall_time_s": round(wall_s, 2),
              "classes": [row.to_dict() for row in rows], "mean": mean}
    write_json(out / PROTOCOL_FILE, record)
    table = protocol_table(record)
    atomic_write_text(out / TABLE_FILE, table)
    return table, mean


def protocol_table(record: dict[str, Any]) -> str:
    """The Markdown page of a protocol: its recipe, machine and wall time, then class x score AUROCs.

    It is rendered from the JSON record alone, so a published page can be
    checked against (or rebuilt from) its ``anomaly_protocol.json``.

    Parameters
    ----------
    record
        The contents of ``anomaly_protocol.json``: the settings (dataset,
        arch, latent_dim, iw_samples, recipe, machine, command, wall_time_s),
        ``classes`` (one dict per held-out class) and ``mean``.

    Returns
    -------
    str
        Markdown, ending with a newline.
    """
    rows, mean = record["classes"], record["mean"]
    lines = ["# Held-out-class anomaly detection: AUROC", "", *_caption(record), ""]
    titles = [SCORE_TITLES.get(score, score) for score in ANOMALY_SCORES]
    lines.append("| held-out class | " + " | ".join(titles) + " | normal | anomalous | in-dist. -ELBO | train s |")
    lines.append("|---|" + "---:|" * (len(titles) + 4))
    for row in rows:
        cells = [f"{row['auroc'][score]:.3f}" for score in ANOMALY_SCORES]
        lines.append(f"| {row['class'].replace('|', '/')} | " + " | ".join(cells)
                     + f" | {row['n_normal']} | {row['n_anomalous']} | {row['in_distribution_test_neg_elbo']:.2f}"
                     + f" | {row['train_s']:.0f} |")
    cells = [f"**{mean[score]:.3f}**" for score in ANOMALY_SCORES]
    lines.append(f"| **mean ({len(rows)})** | " + " | ".join(cells) + " | | | | |")
    best = max(ANOMALY_SCORES, key=lambda score: mean[score])
    lines += ["", f"Best mean: **{SCORE_TITLES.get(best, best)}**, {mean[best]:.3f}."]
    return "\n".join(lines) + "\n"


def _caption(record: dict[str, Any]) -> list[str]:
    """What was trained and scored, where, and how long it took (the lines above the table)."""
    recipe = record.get("recipe", {})
    limit = f", the first {recipe['train_limit']} training images" if recipe.get("train_limit") else ""
    count = record.get("training_threads")
    threads = f"; each model trained with {count} thread{'s' * (count != 1)}" if count else ""
    lines = [f"**Recipe**: {record['dataset']}, `{record['arch']}`, latent {record['latent_dim']}, "
             f"beta {recipe.get('beta')}, {recipe.get('epochs')} epochs{limit}, batch {recipe.get('batch_size')}, "
             f"lr {recipe.get('lr')} ({recipe.get('lr_schedule') or 'constant'}), init `{recipe.get('init')}`, "
             f"{ema_and_clip_text(recipe)}, precision `{recipe.get('precision')}`, seed {recipe.get('seed')}; each row's model is "
             "trained without that class, whose test images are the anomalies (1 is perfect, 0.5 chance).",
             "",
             f"**Scores**: {record['test_images']} {record.get('split', 'test')} images scored by each model; "
             f"IWAE and complexity-corrected scores with K = {record['iw_samples']}. "
             "`in-dist. -ELBO` is the mean test -ELBO (nats) of the images of the other classes; `train s` is "
             "the wall time of the member's training (for a member finished by an earlier call, the seconds "
             "its epochs recorded).",
             "",
             f"**Machine**: {record['machine']}{threads}. **Wall time**: "
             f"{record['wall_time_s'] / 60:.1f} min for the whole protocol (training and scoring)."]
    if record.get("command"):
        lines += ["", "```", record["command"], "```"]
        since = options_since(recipe, record["arch"])
        if since:
            lines += ["", f"Trained with the defaults of the time: to train the same models today, add "
                          f"`{' '.join(since)}`."]
    if not record.get("complete", True):
        done = len(record["classes"])
        lines += ["", f"**Incomplete**: {done} class{'es' * (done != 1)} so far; the same command goes on."]
    return lines


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)
