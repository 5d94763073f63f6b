"""The models shipped inside the package, by name, each with its model card.

Each model is a folder ``weights/<name>/`` holding what a run directory holds
(``config.json``, ``model.safetensors``, ``metrics.csv``) plus ``card.json``:
how it was trained (the command, the machine, the wall time) and what it
scores on the Fashion-MNIST test set. ``scripts/build_pretrained.py`` (``make
pretrained``) retrains and repackages the whole set.

Everything that takes a run directory also takes one of these names::

    vaekit report fashion28-beta1
    model = vaekit.load_pretrained("fashion28-beta1")
    run = vaekit.Run.open("fashion28-beta1")
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import ConfigError, RunDirError
from vaekit.files import read_json
from vaekit.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, load

#: Where the shipped models live: one folder per name.
WEIGHTS_DIR = Path(__file__).with_name("weights")
CARD_FILE = "card.json"


@dataclass(frozen=True)
class ModelCard:
    """What a shipped model is, how it was made and how good it is.

    Scores are on the 10,000 Fashion-MNIST test images with the shipped
    (stored) weights, in nats per image; lower is better.
    """

    name: str
    summary: str
    arch: str
    latent_dim: int
    beta: float
    epochs: int
    command: str
    test_elbo: float
    test_recon: float
    test_kl: float
    iwae: float
    iw_samples: int
    iw_images: int
    elbo_iw_images: float
    active_units: int
    trained_on: str
    train_seconds: float
    weights_dtype: str
    weights_bytes: int
    test_elbo_fp32: float
    vaekit_version: str
    torch_version: str

    @classmethod
    def from_json(cls, data: Any, where: str | os.PathLike) -> ModelCard:
        """Build a card from parsed ``card.json``; one line naming the file if it is incomplete."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or any(name not in data for name in names):
            missing = names if not isinstance(data, dict) else [n for n in names if n not in data]
            raise RunDirError(f"{where}: not a model card (missing {', '.join(missing[:4])})")
        return cls(**{name: data[name] for name in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """The card as a few aligned lines (what ``vaekit pretrained NAME`` prints)."""
        rows = [
            ("model", f"{self.name}: {self.summary}"),
            ("architecture", f"{self.arch}, latent {self.latent_dim}, beta {self.beta:g}"),
            ("trained", f"{self.epochs} epochs on {self.trained_on}, {self.train_seconds / 60:.0f} min wall time"),
            ("command", self.command),
            ("test -ELBO", f"{self.test_elbo:.2f} nats (recon {self.test_recon:.2f} + KL {self.test_kl:.2f})"),
            ("test IWAE", f"{self.iwae:.2f} nats (K = {self.iw_samples} on the first {self.iw_images} test images, "
                          f"whose -ELBO is {self.elbo_iw_images:.2f})"),
            ("active units", f"{self.active_units} of {self.latent_dim}"),
            ("weights", f"{self.weights_dtype}, {self.weights_bytes / 1e6:.2f} MB "
                        f"(fp32 weights: test -ELBO {self.test_elbo_fp32:.2f})"),
            ("software", f"vaekit {self.vaekit_version}, torch {self.torch_version}"),
        ]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def pretrained_names() -> list[str]:
    """Names of the shipped models, sorted (empty if none is installed)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / CARD_FILE).is_file() and (p / WEIGHTS_FILE).is_file())


def is_pretrained_name(text: str | os.PathLike) -> bool:
    """Whether ``text`` names a shipped model (and not a path with folders in it)."""
    text = str(text)
    return "/" not in text and os.sep not in text and text in pretrained_names()


def pretrained_dir(name: str) -> Path:
    """The folder of the shipped model ``name`` (a run directory, read-only).

    Raises
    ------
    ConfigError
        One line listing the shipped names if ``name`` is not one.
    """
    if not is_pretrained_name(name):
        known = ", ".join(pretrained_names()) or "none are installed"
        raise ConfigError(f"{name!r} is not a pretrained model; choose one of: {known}", param="name")
    return WEIGHTS_DIR / name


def model_card(name: str) -> ModelCard:
    """The model card of the shipped model ``name``."""
    path = pretrained_dir(name) / CARD_FILE
    return ModelCard.from_json(read_json(path), path)


def model_cards() -> list[ModelCard]:
    """The cards of every shipped model, in name order."""
    return [model_card(name) for name in pretrained_names()]


def load_pretrained(name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The shipped model ``name`` as a :class:`~vaekit.models.VAE` in eval mode, in float32.

    Parameters
    ----------
    name
        One of :func:`pretrained_names`, e.g. ``"fashion28-beta1"``.
    device
        Where to put the model.

    Examples
    --------
    >>> model = vaekit.load_pretrained("fashion28-beta1")   # doctest: +SKIP
    >>> images = model.decode(torch.zeros(1, 2))            # doctest: +SKIP
    """
    return load(pretrained_dir(name), device=device)


def resolve_run_dir(path: str | os.PathLike) -> tuple[Path, str | None]:
    """A run directory, or a shipped model's folder when ``path`` is a pretrained name.

    A folder that is a run (it has ``config.json``) wins over a name, so a
    run a user called ``fashion28-beta1`` is still theirs. Returns the folder
    and the pretrained name (``None`` for a run directory).
    """
    given = Path(path)
    if (given / CONFIG_FILE).is_file() or not is_pretrained_name(path):
        return given, None
    return pretrained_dir(str(path)), str(path)
