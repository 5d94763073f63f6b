"""Saving and loading a model: ``config.json`` beside ``model.safetensors``.

Weights are safetensors, which cannot execute code when loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from vaekit.errors import RunDirError
from vaekit.files import atomic_write_bytes, read_json, write_json
from vaekit.models.spec import ArchSpec
from vaekit.models.vae import VAE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

#: Version of the ``config.json`` layout written by :func:`save_pretrained`.
FORMAT_VERSION = 1


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """The model part of ``config.json``: format version, class name and architecture.

    A :class:`~vaekit.models.VAE` records its :class:`~vaekit.models.ArchSpec`,
    enough to rebuild it. Any other module following the VAE protocol records
    its class, latent size and image shape; loading it needs an instance
    (``load(path, model=MyVAE(...))``).
    """
    config = {"format_version": FORMAT_VERSION, "class_name": _class_name(type(model)),
              "arch": type(model).__name__, "latent_dim": int(model.latent_dim),
              "image_shape": [int(s) for s in model.image_shape]}
    if hasattr(model, "spec") and isinstance(model.spec, ArchSpec):
        config.update(arch=model.spec.name, spec=model.spec.to_dict())
    return config


def _class_name(cls: type) -> str:
    return cls.__name__ if cls is VAE else f"{cls.__module__}.{cls.__qualname__}"


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write a module's weights as safetensors (atomically)."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(path, save_safetensors_bytes(state, metadata={"format": "pt"}))


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write a fresh ``config.json`` (:func:`model_config`) and ``model.safetensors`` into ``directory``.

    The counterpart of :func:`load` / :meth:`VAE.from_pretrained`. An
    existing config in ``directory`` is replaced, not merged.
    """
    directory = Path(directory)
    save_weights(model, directory / WEIGHTS_FILE)
    write_json(directory / CONFIG_FILE, model_config(model))
    return directory


def save_model(model: torch.nn.Module, directory: str | os.PathLike, extra_config: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` and update the run's ``config.json`` with the model and ``extra_config``.

    Keys already in ``config.json`` (training settings, status) are kept:
    this is how a run directory grows during training.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = read_json(config_path) if config_path.exists() else {}
    config.update(model_config(model))
    config.update(extra_config or {})
    save_weights(model, directory / WEIGHTS_FILE)
    write_json(config_path, config)


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a vaekit ``config.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check ``RUN/config.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not is_run_dir(run_dir):
        raise RunDirError(f"{run_dir}: not a vaekit run directory (no {CONFIG_FILE})")
    config = read_json(run_dir / CONFIG_FILE)
    if not isinstance(config, dict) or ("spec" not in config and "class_name" not in config):
        raise RunDirError(f"{run_dir / CONFIG_FILE}: no model architecture ('spec') in the config")
    return config


def spec_from_config(config: dict[str, Any], where: Path) -> ArchSpec:
    """The :class:`ArchSpec` recorded in a config."""
    if not isinstance(config.get("spec"), dict):
        raise RunDirError(f"{where}: the model is a custom class ({config.get('class_name')}); "
                          "pass an instance to load its weights into (model=...)")
    try:
        return ArchSpec.from_dict(config["spec"])
    except (TypeError, KeyError, ValueError) as error:
        raise RunDirError(f"{where}: invalid architecture description ({error})") from None


def load(run_dir: str | os.PathLike, device: str | torch.device = "cpu", model: torch.nn.Module | None = None,
         cls: type[VAE] = VAE) -> torch.nn.Module:
    """Load the model of a run directory (or of :func:`save_pretrained`), in eval mode.

    Weights are read with safetensors, which cannot execute code.

    Parameters
    ----------
    run_dir
        The directory holding ``config.json`` and ``model.safetensors``.
    device
        Where to put the model.
    model
        An instance to load the weights into (needed for custom model classes).
    cls
        The class to build from the recorded spec (a :class:`VAE` subclass).

    Raises
    ------
    RunDirError
        If the directory is not a run, has no weights, or the weights do not
        match the architecture in its config.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if model is None:
        model = cls(spec_from_config(config, run_dir / CONFIG_FILE))
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise RunDirError(f"{weights_path}: no model weights (has training finished an epoch?)")
    try:
        state = load_safetensors_bytes(weights_path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:
        raise RunDirError(f"{weights_path}: unreadable weights ({error})") from None
    _check_state_matches(model, state, weights_path, config)
    model.load_state_dict(state)
    return model.to(device).eval()


def _check_state_matches(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path,
                         config: dict[str, Any]) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    where = (f"{path}: weights do not match config.json (arch {config.get('arch', config.get('class_name'))}, "
             f"latent_dim {config.get('latent_dim')})")
    missing = sorted(set(expected) - set(found))
    if missing:
        raise RunDirError(f"{where}: missing {', '.join(missing[:3])}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise RunDirError(f"{where}: unexpected {', '.join(unexpected[:3])}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise RunDirError(f"{where}: {name} has shape {found[name]}, expected {shape}")
