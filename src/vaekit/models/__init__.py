"""Models: the declarative architecture spec, the VAE module, its initialisation, loss and files."""

from vaekit.models.init import INITS, initialize_weights
from vaekit.models.losses import (
    RECONSTRUCTIONS,
    LossTerms,
    kl_divergence,
    reconstruction_nll,
    vae_loss,
)
from vaekit.models.pretrained import load, save_model, save_pretrained
from vaekit.models.spec import (
    ARCHITECTURES,
    FASHION28,
    NN3_128,
    ArchSpec,
    ConvLayer,
    get_arch,
)
from vaekit.models.vae import (
    VAE,
    VAEOutput,
    build_model,
    count_parameters,
    to_channels_last,
)

__all__ = [
    "ARCHITECTURES", "FASHION28", "INITS", "NN3_128", "RECONSTRUCTIONS", "VAE", "ArchSpec", "ConvLayer",
    "LossTerms", "VAEOutput", "build_model", "count_parameters", "to_channels_last", "get_arch", "initialize_weights",
    "kl_divergence", "load", "reconstruction_nll", "save_model", "save_pretrained", "vae_loss",
]
