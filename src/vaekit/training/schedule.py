"""Learning-rate schedules: the rate of every optimiser step as a function of the step alone.

A schedule depends only on the global step and the run's total steps, never on
state of its own, so a resumed run (or any rank under torchrun) sets exactly the
rate an uninterrupted run would have had.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, schedule: str, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``.

    Parameters
    ----------
    lr : float
        The configured (peak) learning rate.
    schedule : str
        ``"constant"`` keeps ``lr``; ``"cosine"`` follows half a cosine from
        ``lr`` at the first step to 0 after the last (Loshchilov & Hutter, 2017,
        without restarts).
    step, total_steps : int
        The step about to be taken, and the run's total (``epochs`` x steps per epoch).

    Returns
    -------
    float
        The rate for that step.
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        progress = min(max(step, 0), total_steps) / max(total_steps, 1)
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule '{schedule}' (expected one of {', '.join(LR_SCHEDULES)})")
