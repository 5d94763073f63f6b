"""A series of trainings: a family's members, a protocol's models, a grid's cells.

This module owns what every series shares. :func:`member_state` decides what
to do with a member's run directory (train it, resume it, or leave it
finished), refusing one trained with other settings. :func:`train_jobs` trains
the members, one after the other or several at once. :class:`SeriesInterrupted`
tells the user how to resume after Ctrl-C.

Several at once
---------------
A small model does not keep a machine busy from one process. Its kernels are
too small to spread over many CPU threads, and too small to fill a GPU. So
``N`` runs side by side, each in its own process, train more images per
second in all than one run at a time. On a 2-core Xeon (no AMX), two
one-thread ``fashion28`` runs trained 800 images/s together, against 483 for
one two-thread run (``benchmarks/parallel_runs.py`` measures this on any
machine). :func:`train_jobs` is the one place that runs trainings in
parallel; ``train_family``, ``run_anomaly_protocol`` and
``benchmarks/model_quality.py`` take its ``jobs`` setting.

Each job runs in a fresh (spawned) process, with ``cores // jobs`` threads
on the CPU; on a GPU the processes share the device. Once no job is left to
start, the cores of each job that ends go to those still running: the parent
sends each the new share through a pipe and the job applies it at its next
step (:class:`ThreadShare`), so the last job of a series does not train on
one thread beside an idle core. Ctrl-C reaches this
process only: it passes one interrupt to every running job, waits for each to
save its checkpoint, and raises :class:`~vaekit.training.trainer.TrainingInterrupted`,
so that the same call resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import ConfigError, RunDirError
from vaekit.guard import LOCK_FILE
from vaekit.models.pretrained import CONFIG_FILE, read_config
from vaekit.runs.run import CHECKPOINT_FILE
from vaekit.training import distributed
from vaekit.training.api import train
from vaekit.training.callbacks import Callback
from vaekit.training.config import CHANGEABLE_ON_RESUME, TrainConfig
from vaekit.training.trainer import TrainingInterrupted

# Seconds between checks of the running jobs (a finished job is noticed at once).
_POLL_SECONDS = 1.0


class SeriesInterrupted(TrainingInterrupted):
    """Ctrl-C during a series of runs (a family, a protocol): the member was saved; the same command resumes."""

    command, remaining = "train-family", "members"

    def __init__(self, run_dir: Path, out: Path) -> None:
        super().__init__(run_dir)
        self.args = (f"interrupted; {run_dir.name} was saved: run the same `vaekit {self.command} ... --out {out}` "
                     f"to resume it and train the remaining {self.remaining}",)


def member_state(run_dir: Path, config: TrainConfig, series: str = "series") -> str:
    """What to do with a member's run directory.

    Parameters
    ----------
    run_dir
        The member's run directory.
    config
        The settings the member is to be trained with.
    series
        What the member belongs to (``"family"``, ``"protocol"``), for messages.

    Returns
    -------
    str
        ``"new"`` (nothing there yet), ``"complete"`` (finished with these
        settings: leave it) or ``"resume"`` (interrupted: continue it).

    Raises
    ------
    ConfigError
        If the member was trained with other settings (only
        :data:`~vaekit.training.config.CHANGEABLE_ON_RESUME` may differ).
    RunDirError
        If the directory holds files but no checkpoint to resume from
        (nothing is deleted).
    """
    if not (run_dir / CONFIG_FILE).is_file():
        return "new"
    saved_config = read_config(run_dir)
    saved = TrainConfig.from_dict(saved_config.get("train", {})).comparable()
    for key, value in config.comparable().items():
        if key not in CHANGEABLE_ON_RESUME and saved.get(key) != value:
            # Named as the API spells it; the CLI shows its own flag (vaekit.cli.options.translate_error).
            raise ConfigError(
                f"{run_dir}: {key} was {saved.get(key)!r} when this member was trained, not {value!r}; "
                f"use the same settings to resume the {series}, or choose another --out", param=key)
    if saved_config.get("status") == "complete" and int(saved_config.get("epochs_done", 0)) >= config.epochs:
        return "complete"
    if (run_dir / CHECKPOINT_FILE).is_file():
        return "resume"
    found = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
    raise RunDirError(f"{run_dir}: holds {', '.join(found)} but no {CHECKPOINT_FILE} to resume from; "
                      "nothing was deleted: move it away to retrain this member")


@dataclass(frozen=True)
class TrainJob:
    """One training to run.

    Parameters
    ----------
    config
        Its settings.
    run_dir
        Its run directory.
    resume
        Continue the run saved in ``run_dir`` rather than start a new one.
    """

    config: TrainConfig
    run_dir: Path
    resume: bool = False


class JobFailed(RuntimeError):
    """A job's process ended with an unexpected error (its message and type are kept)."""


def check_jobs(jobs: int) -> int:
    """Validate a number of parallel jobs; return it.

    Raises
    ------
    ConfigError
        If ``jobs`` is not an integer of at least 1, or is above 1 under
        ``torchrun`` (there the processes are already one training's).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer of at least 1, got {jobs!r}", param="jobs")
    if jobs > 1 and distributed.world_size() > 1:
        raise ConfigError("jobs: under torchrun every process is part of one training; use jobs=1", param="jobs")
    return jobs


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` parallel trainings: this process's cores, shared out (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def run_job(job: TrainJob, progress: bool = True, callbacks: Sequence[Callback] = ()) -> float:
    """Train one job in this process; return its wall-clock seconds."""
    started = time.perf_counter()
    if job.resume:
        train(out=job.run_dir, resume=True, progress=progress, callbacks=callbacks, **job.config.to_dict())
    else:
        train(job.config, out=job.run_dir, progress=progress, callbacks=callbacks)
    return time.perf_counter() - started


class ThreadShare(Callback):
    """Applies the CPU thread counts the parent sends through ``control``, between two steps.

    Checking costs one ``poll`` (a system call of a few microseconds) per step.
    """

    def __init__(self, control: Connection) -> None:
        self.control = control

    def on_step_end(self, trainer: Any, terms: dict[str, float]) -> None:
        while self.control.poll():
            torch.set_num_threads(self.control.recv())

    @property
    def needs_terms(self) -> bool:
        return False


def train_jobs(jobs: Sequence[TrainJob], workers: int = 1, progress: bool = True,
               on_done: Callable[[TrainJob, float], None] | None = None) -> list[float]:
    """Train every job, ``workers`` at a time.

    Parameters
    ----------
    jobs
        The trainings, started in this order.
    workers
        How many run at once. With 1 they run here, one after the other (with
        progress bars); above 1 each runs in its own process, without bars,
        and a line is printed as each one ends.
    progress
        Show progress (bars, or one line per finished job).
    on_done
        Called as ``on_done(job, seconds)`` in this process as each job ends.

    Returns
    -------
    list of float
        Each job's wall-clock seconds, in the order of ``jobs``.

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C, once every running job has saved its checkpoint (it names
        the first job that was running).
    VaekitError
        The first job's error (a bad setting, a locked run directory...),
        raised once the other running jobs have been stopped and saved.
    JobFailed
        A job's process crashed.
    """
    check_jobs(workers)
    if workers == 1 or len(jobs) <= 1:
        seconds = []
        for job in jobs:
            seconds.append(run_job(job, progress))
            if on_done is not None:
                on_done(job, seconds[-1])
        return seconds
    return _Pool(workers, progress, on_done).run(list(jobs))


class _Pool:
    """A process per job, at most ``workers`` alive; results come back through pipes."""

    def __init__(self, workers: int, progress: bool, on_done: Callable[[TrainJob, float], None] | None) -> None:
        self.workers, self.progress, self.on_done = workers, progress, on_done
        self.threads = threads_per_job(workers)
        self.context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        self.running: dict[Connection, tuple[int, Any]] = {}  # pipe -> (job index, process)
        self.controls: dict[Connection, Connection] = {}  # result pipe -> the pipe that sends the job its threads

    def run(self, jobs: list[TrainJob]) -> list[float]:
        seconds: list[float | None] = [None] * len(jobs)
        failure: BaseException | None = None
        next_job = 0
        try:
            while next_job < len(jobs) or self.running:
                while failure is None and next_job < len(jobs) and len(self.running) < self.workers:
                    self._start(next_job, jobs[next_job])
                    next_job += 1
                if failure is not None and not self.running:
                    break
                if next_job == len(jobs):
                    self._share_cores()
                for pipe in wait(list(self.running), timeout=_POLL_SECONDS):
                    index, outcome = self._collect(pipe)
                    if isinstance(outcome, BaseException):
                        if failure is None:
                            failure = outcome
                            self._interrupt_all()  # the others save and stop: one error ends the series
                        continue
                    seconds[index] = outcome
                    self._report(jobs[index], outcome)
        except KeyboardInterrupt:
            first = min((index for index, _ in self.running.values()), default=max(next_job - 1, 0))
            self._interrupt_all()
            self._drain()
            failure = TrainingInterrupted(jobs[first].run_dir)
        if failure is not None:
            raise failure
        return [s for s in seconds if s is not None]

    def _start(self, index: int, job: TrainJob) -> None:
        receive, send = self.context.Pipe(duplex=False)
        control_receive, control = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_job_process, args=(job, self.threads, send, control_receive),
                                       daemon=False)
        process.start()
        send.close()
        control_receive.close()
        self.running[receive] = (index, process)
        self.controls[receive] = control

    def _share_cores(self) -> None:
        """Give the running jobs the cores of those that ended (nothing is left to start)."""
        share = threads_per_job(len(self.running)) if self.running else self.threads
        if share > self.threads:
            for control in self.controls.values():
                try:
                    control.send(share)
                except OSError:  # the job just ended; its result is waiting to be collected
                    pass
            self.threads = share

    def _collect(self, pipe: Connection) -> tuple[int, Any]:
        index, process = self.running.pop(pipe)
        self.controls.pop(pipe).close()
        try:
            outcome = pipe.recv()
        except EOFError:  # the process died without a word (killed, out of memory)
            outcome = None
        process.join()
        pipe.close()
        if outcome is None:
            outcome = JobFailed(f"training process for job {index + 1} ended with exit code {process.exitcode}")
        return index, outcome

    def _report(self, job: TrainJob, seconds: float) -> None:
        if self.progress:
            print(f"{job.run_dir}: done in {seconds / 60:.1f} min", flush=True)
        if self.on_done is not None:
            self.on_done(job, seconds)

    def _interrupt_all(self) -> None:
        for _, process in self.running.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)

    def _drain(self) -> None:
        """Wait for every running job to answer (saved, done or failed); their outcomes no longer matter."""
        while self.running:
            for pipe in wait(list(self.running)):
                self._collect(pipe)


def _job_process(job: TrainJob, threads: int, send: Connection, control: Connection) -> None:
    """Body of a job's process: train (taking the thread counts ``control`` sends), then send back the outcome."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent alone, which passes on exactly one
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored (a background job)
    torch.set_num_threads(threads)
    try:
        outcome: Any = run_job(job, progress=False, callbacks=[ThreadShare(control)])
    except BaseException as error:  # noqa: BLE001 (every outcome goes back to the parent)
        outcome = _picklable(error)
    send.send(outcome)
    send.close()


def _picklable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling, else a :class:`JobFailed` with its type and message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return JobFailed(f"{type(error).__name__}: {error}")
