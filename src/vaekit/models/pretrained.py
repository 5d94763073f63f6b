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

def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(path, save_safetensors_bytes(state, metadata={"format": "pt"}))


def save_model(model: VAE, directory: str | os.PathLike, extra_config: dict[str, Any] | None = None) -> None:
    """Write ``config.json`` (merged with ``extra_config``) and ``model.safetensors``."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = read_json(config_path) if config_path.exists() else {}
    config.update(model.config())
    config.update(extra_config or {})
    save_weights(model, directory / WEIGHTS_FILE)
    write_json(config_path, config)


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check ``RUN/config.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not is_run_dir(run_dir):
        raise RunDirError(f"{run_dir}: not a vaekit run directory (no {CONFIG_FILE})")
    config = read_json(run_dir / CONFIG_FILE)
    if not isinstance(config, dict) or "spec" not in config:
        raise RunDirError(f"{run_dir / CONFIG_FILE}: no model architecture ('spec') in the config")
    return config


def spec_from_config(config: dict[str, Any], where: Path) -> ArchSpec:
    try:
        return ArchSpec.from_dict(config["spec"])
    except (TypeError, KeyError, ValueError) as error:
        raise RunDirError(f"{where}: invalid architecture description ({error})") from None


def load(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> VAE:
    """Load the model of a run directory, in eval mode, ready for inference.

    Weights are read with safetensors, which cannot execute code.

    Raises
    ------
    RunDirError
        If the directory is not a run, has no weights, or the weights do not
        match the architecture in its config.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    spec = spec_from_config(config, run_dir / CONFIG_FILE)
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise RunDirError(f"{weights_path}: no model weights (has training finished an epoch?)")
    try:
        state = load_safetensors_bytes(weights_path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:
        raise RunDirError(f"{weights_path}: unreadable weights ({error})") from None
    model = VAE(spec)
    _check_state_matches(model, state, weights_path, spec)
    model.load_state_dict(state)
    return model.to(device).eval()


def _check_state_matches(model: VAE, state: dict[str, torch.Tensor], path: Path, spec: ArchSpec) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    where = f"{path}: weights do not match config.json (arch {spec.name}, latent_dim {spec.latent_dim})"
    missing = sorted(set(expected) - set(found))
    if missing:
        raise RunDirError(f"{where}: missing {', '.join(missing[:3])}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise RunDirError(f"{where}: unexpected {', '.join(unexpected[:3])}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise RunDirError(f"{where}: {name} has shape {found[name]}, expected {shape}")
