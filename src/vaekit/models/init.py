"""Weight initialisation schemes (``vaekit``, ``keras``, ``pytorch``)."""

from __future__ import annotations

from torch import nn

from vaekit.errors import ConfigError

INITS = ("vaekit", "keras", "pytorch")


def initialize_weights(model: nn.Module, scheme: str) -> None:
    """Initialise weights.

    ``"keras"`` reproduces the original (Glorot-uniform weights, zero biases);
    it lets the narrow ``Dense(16)`` ReLU layer of ``fashion28`` die in some
    seeds. ``"vaekit"`` uses He-uniform weights (right for ReLU) and a small
    positive bias so every ReLU unit starts active; ``"pytorch"`` keeps
    PyTorch's defaults.
    """
    if scheme not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got '{scheme}'", param="init")
    if scheme == "pytorch":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if scheme == "keras":
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            else:
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.constant_(module.bias, 0.01)
    if scheme == "vaekit" and hasattr(model, "z_mean") and hasattr(model, "z_log_var"):
        # Start q(z|x) close to the prior: small means, unit variances.
        for head in (model.z_mean, model.z_log_var):
            nn.init.xavier_uniform_(head.weight, gain=0.1)
            nn.init.zeros_(head.bias)
