"""Posterior-collapse detection.

A VAE can stop using its latent space: the encoder's ReLU units die, the KL
term drops to zero and the decoder outputs the mean image whatever the input.
:func:`diagnose_collapse` measures the three symptoms on a probe of images so
the trainer can say so in its progress output and in ``metrics.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vaekit.analysis.bounds import active_units
from vaekit.analysis.inference import Inference
from vaekit.analysis.limits import LIMITS, check_count
from vaekit.models.losses import kl_per_dimension

KL_COLLAPSE_NATS = 0.05


@dataclass
class CollapseReport:
    """Collapse symptoms measured on a probe of images."""

    active_units: int  # latent units whose mean varies with the input
    dead_units: int  # encoder ReLU units that output 0 for every probe image
    dead_layers: list[str]  # encoder layers whose units are all dead
    kl: float  # mean KL per image, nats
    kl_per_dim: list[float]

    @property
    def collapsed(self) -> bool:
        return bool(self.dead_layers) or self.active_units == 0 or self.kl < KL_COLLAPSE_NATS

    @property
    def reason(self) -> str:
        parts = [f"all units of encoder layer {name} are dead" for name in self.dead_layers]
        if self.active_units == 0:
            parts.append("no active latent units")
        if self.kl < KL_COLLAPSE_NATS:
            parts.append(f"KL {self.kl:.3f} nats")
        return "; ".join(parts) or "none"


@torch.no_grad()
def diagnose_collapse(model, dataset, probe_size: int = 2048) -> CollapseReport:
    """Measure dead encoder units, active latent units and KL on a data probe."""
    probe_size = check_count("probe_size", probe_size, LIMITS["probe"])
    encoder = getattr(model, "encoder", None)  # custom protocol modules may have no encoder Sequential
    relus = [(name, m) for name, m in encoder.named_modules() if isinstance(m, nn.ReLU)] if encoder is not None else []
    alive: dict[str, torch.Tensor] = {}

    def recorder(name):
        def hook(_module, _inputs, output):
            # A unit is a channel for conv layers, a feature for dense layers.
            fired = (output > 0).flatten(2).any(-1) if output.dim() == 4 else output > 0
            fired = fired.any(0)
            alive[name] = alive[name] | fired if name in alive else fired

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in relus]
    try:
        # fp32 and the default layout: the diagnosis must not depend on the training precision.
        inference = Inference(model, "fp32", batch_size=512, channels_last=False)
        z_mean, z_log_var = inference.encode(dataset.images[:probe_size])
    finally:
        for handle in handles:
            handle.remove()
    kl_dims = kl_per_dimension(z_mean, z_log_var).mean(0)
    dead_layers = [_layer_name(model, name) for name, mask in alive.items() if not mask.any()]
    return CollapseReport(
        active_units=active_units(z_mean),
        dead_units=int(sum((~mask).sum() for mask in alive.values())),
        dead_layers=dead_layers,
        kl=float(kl_dims.sum()),
        kl_per_dim=[round(float(v), 4) for v in kl_dims],
    )


def _layer_name(model, relu_name: str) -> str:
    """Name the layer feeding a ReLU, e.g. ``encoder.7 (Linear 168->16)``."""
    index = int(relu_name) - 1
    layer = model.encoder[index]
    if isinstance(layer, nn.Linear):
        return f"encoder.{index} (Dense {layer.out_features})"
    return f"encoder.{index} ({type(layer).__name__} {getattr(layer, 'out_channels', '')})"
