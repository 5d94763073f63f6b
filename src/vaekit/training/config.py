"""What defines a training run: :class:`TrainConfig`, saved in ``config.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vaekit.errors import ConfigError
from vaekit.models.init import INITS
from vaekit.models.losses import RECONSTRUCTIONS
from vaekit.runtime import PRECISIONS


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``config.json``).

    The defaults train the seed Fashion-MNIST model reliably; see
    ``docs/training.md`` for why they differ from the Keras original.
    """

    dataset: str = "fashion-mnist"
    arch: str = "fashion28"
    latent_dim: int | None = None  # None: the architecture's default
    beta: float = 1.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    kl_warmup_epochs: float = 0.0  # linear ramp of beta from 0 over this many epochs
    recon: str = "bernoulli"  # or "gaussian"
    gaussian_sigma: float = 0.1
    init: str = "vaekit"  # "vaekit" (reliable), "keras" (glorot, zero bias: the original), "pytorch"
    grad_clip: float | None = None
    exclude_classes: list[str] = field(default_factory=list)
    train_limit: int | None = None  # use only the first N training images (quick runs, tests)
    test_limit: int | None = None
    data_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 256  # bounds evaluation memory (activations of 256 images)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.beta >= 0 and math.isfinite(self.beta), f"--beta must be zero or positive, got {self.beta}"),
            (self.kl_warmup_epochs >= 0, f"--kl-warmup must be zero or positive, got {self.kl_warmup_epochs}"),
            (self.latent_dim is None or self.latent_dim >= 1, f"--latent-dim must be at least 1, got {self.latent_dim}"),
            (self.recon in RECONSTRUCTIONS, f"--recon must be one of {', '.join(RECONSTRUCTIONS)}, got '{self.recon}'"),
            (self.gaussian_sigma > 0, f"--gaussian-sigma must be positive, got {self.gaussian_sigma}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"),
            (self.init in INITS, f"--init must be one of {', '.join(INITS)}, got '{self.init}'"),
            (self.grad_clip is None or self.grad_clip > 0, f"--grad-clip must be positive, got {self.grad_clip}"),
            (self.train_limit is None or self.train_limit >= 1, f"--train-limit must be at least 1, got {self.train_limit}"),
            (self.test_limit is None or self.test_limit >= 1, f"--test-limit must be at least 1, got {self.test_limit}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
