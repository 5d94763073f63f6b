"""An exponential moving average (EMA) of the weights, which ``ema_decay`` turns on.

After every optimiser step the average moves towards the trained weights:
``average = decay * average + (1 - decay) * weights``. With a decay of 0.999
it remembers about the last 1,000 steps, which smooths out the step-to-step
noise of Adam at a constant learning rate. The average is what the run
evaluates, saves as ``model.safetensors`` and draws its figures with; the
trained ("online") weights keep training and live in the checkpoint beside the
average, so a resumed run continues both.

PyTorch owns the arithmetic (:class:`torch.optim.swa_utils.AveragedModel`
with :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`: one fused
``lerp`` over all tensors per step); this module only decides when there is
an average and how it is checkpointed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_average(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An EMA copy of ``model`` (on its device, in its memory layout), or ``None`` when ``decay`` is ``None``.

    Parameters
    ----------
    model
        The model being trained (not a DDP or compiled wrapper: its
        parameters are the ones the optimiser updates).
    decay
        The weight the average keeps at each step, in (0, 1).

    Returns
    -------
    AveragedModel or None
        Call ``update_parameters(model)`` after each step; ``.module`` is the
        averaged model. Its first update copies the weights.
    """
    if decay is None:
        return None
    # Buffers are averaged too, so a model with running statistics stays consistent with its weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def average_state(average: AveragedModel | None) -> dict[str, Any] | None:
    """What a checkpoint keeps of the average: its weights (on the CPU) and the number of updates."""
    if average is None:
        return None
    return {"weights": {k: v.detach().cpu() for k, v in average.module.state_dict().items()},
            "updates": int(average.n_averaged)}


def restore_average(average: AveragedModel | None, state: dict[str, Any] | None) -> None:
    """Load a checkpoint's average (from :func:`average_state`) into ``average``."""
    if average is not None and state is not None:
        average.module.load_state_dict(state["weights"])
        average.n_averaged.fill_(int(state["updates"]))
