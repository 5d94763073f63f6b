"""An exponential moving average (EMA) of the weights, which ``ema_decay`` turns on.

After every optimiser step the average moves towards the trained weights:
``average = d * average + (1 - d) * weights``. With ``d = 0.999`` it
remembers about the last 1,000 steps, which smooths out the step-to-step
noise of Adam at a constant learning rate. The average is what the run
evaluates, saves as ``model.safetensors`` and draws its figures with; the
trained ("online") weights keep training and live in the checkpoint beside
the average, so a resumed run continues both.

The decay warms up as in diffusers' ``EMAModel``: the first update copies the
weights and update ``n`` uses ``d = min(ema_decay, (1 + n) / (10 + n))``, so
the average does not drag the random initial weights through the first
epochs (with 0.999 and no warm-up, the average of a Fashion-MNIST model
trained at batch 64 scored 397 nats after one epoch, its weights 272).

Why not :class:`torch.optim.swa_utils.AveragedModel`: it keeps its update
count in a tensor and copies it to the device at every update, which on a GPU
is a host synchronisation per training step, and it has no warm-up. The
arithmetic is the same fused ``lerp`` over all tensors that PyTorch's EMA
uses.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    """The moving average of a model's weights.

    Parameters
    ----------
    model
        The model being trained (not a DDP or compiled wrapper: its tensors
        are the ones the optimiser updates).
    decay
        The most weight the average keeps at each step, in (0, 1).

    Attributes
    ----------
    module
        The averaged model: a copy of ``model`` (same device and memory
        layout) whose weights are the average.
    updates
        How many steps have been averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._pairs: tuple[torch.nn.Module, list[torch.Tensor], list[torch.Tensor]] | None = None

    def current_decay(self) -> float:
        """The decay the next update uses (0 for the first: it copies the weights)."""
        n = self.updates
        return 0.0 if n == 0 else min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s weights (after an optimiser step)."""
        if self._pairs is None or self._pairs[0] is not model:  # the tensors are updated in place: list them once
            self._pairs = (model, *_floating_pairs(self.module, model))
        _, averaged, current = self._pairs
        torch._foreach_lerp_(averaged, current, 1.0 - self.current_decay())
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the averaged weights (on the CPU) and the number of updates."""
        return {"weights": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def _floating_pairs(averaged: torch.nn.Module, model: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The floating-point tensors (weights and buffers) of both models, in the same order."""
    pairs = [(a, m) for a, m in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True)
             if a.is_floating_point()]
    return [a for a, _ in pairs], [m.detach() for _, m in pairs]


def make_average(model: torch.nn.Module, decay: float | None) -> WeightAverage | None:
    """A :class:`WeightAverage` of ``model``, or ``None`` when ``decay`` is ``None`` (averaging off)."""
    return None if decay is None else WeightAverage(model, decay)
