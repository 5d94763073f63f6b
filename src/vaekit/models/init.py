"""Weight initialisation schemes (``auto``, ``vaekit``, ``keras``, ``pytorch``)."""

from __future__ import annotations

from torch import nn

from vaekit.errors import ConfigError

INITS = ("auto", "vaekit", "keras", "pytorch")
#: What ``"auto"`` means per architecture, chosen by measurement (docs/training.md, "Initialisation and defaults").
#: fashion28 trains to a better bound with PyTorch's defaults and does not collapse
#: with them; on nn3-128 they leave the decoder ignoring z, so every other
#: architecture gets ``"vaekit"``.
AUTO_INITS = {"fashion28": "pytorch"}


def resolve_init(scheme: str, arch: str | None) -> str:
    """The concrete scheme ``scheme`` stands for on architecture ``arch``.

    Parameters
    ----------
    scheme
        One of :data:`INITS`.
    arch
        The architecture's name (``ArchSpec.name``); ``None`` or an unknown
        name resolves ``"auto"`` to ``"vaekit"``.

    Returns
    -------
    str
        ``scheme`` itself, unless it is ``"auto"``.
    """
    if scheme not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got '{scheme}'", param="init")
    if scheme != "auto":
        return scheme
    return AUTO_INITS.get(arch or "", "vaekit")


def initialize_weights(model: nn.Module, scheme: str) -> None:
    """Initialise weights.

    ``"keras"`` reproduces the original (Glorot-uniform weights, zero biases);
    it lets the narrow ``Dense(16)`` ReLU layer of ``fashion28`` die in some
    seeds. ``"vaekit"`` uses He-uniform weights (right for ReLU) and a small
    positive bias so every ReLU unit starts active; ``"pytorch"`` keeps
    PyTorch's defaults. ``"auto"`` picks per architecture (:data:`AUTO_INITS`),
    from the model's ``spec.name``.
    """
    spec = getattr(model, "spec", None)
    scheme = resolve_init(scheme, getattr(spec, "name", None))
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
