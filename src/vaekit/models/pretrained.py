"""Saving and loading a model: ``config.json`` beside ``model.safetensors``.

Weights are safetensors, which cannot execute code when loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from vaekit.errors import ConfigError, RunDirError
from vaekit.files import atomic_write_bytes, read_json, write_json
from vaekit.models.spec import MAX_ACTIVATION, MAX_LATENT_DIM, ArchSpec
from vaekit.models.vae import VAE

CONFIG_FILE = "config.json"
#: Checks of the config.json sections that higher layers own, by key: the
#: training settings register theirs (``"train"``) in :mod:`vaekit.training.config`,
#: so models need not import training.
SECTION_CHECKS: dict[str, Callable[[Any], None]] = {}
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
    """Read ``RUN/config.json`` and check every field vaekit uses (:func:`check_config`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not is_run_dir(run_dir):
        raise RunDirError(f"{run_dir}: not a vaekit run directory (no {CONFIG_FILE})")
    path = run_dir / CONFIG_FILE
    config = read_json(path)
    check_config(config, path)
    return config


def check_config(config: Any, path: Path) -> None:
    """Raise :class:`RunDirError` (one line naming ``path`` and the field) unless ``config`` is sound.

    The single check of a run's ``config.json``: format version, class name,
    architecture spec (by arithmetic, before anything is built), latent size,
    image shape, dataset record, training settings and data record.
    """
    def bad(message: str) -> RunDirError:
        return RunDirError(f"{path}: {message}")

    if not isinstance(config, dict):
        raise bad(f"not a vaekit config (a JSON object expected, got {type(config).__name__})")
    if "spec" not in config and "class_name" not in config:
        raise bad("no model architecture ('spec') in the config")
    version = config.get("format_version", FORMAT_VERSION)
    if type(version) is not int or version < 1:
        raise bad(f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise bad(f"format_version {version} is newer than this vaekit reads ({FORMAT_VERSION}); upgrade vaekit")
    for key in ("class_name", "arch", "status"):
        if key in config and (not isinstance(config[key], str) or not config[key].strip()):
            raise bad(f"{key} must be a non-empty string, got {config[key]!r}")
    spec = None
    if "spec" in config:
        try:
            spec = ArchSpec.from_dict(config["spec"], where="spec")
        except ConfigError as error:
            raise bad(str(error)) from None
    latent = config.get("latent_dim", spec.latent_dim if spec else None)
    if latent is not None and (type(latent) is not int or not 1 <= latent <= MAX_LATENT_DIM):
        raise bad(f"latent_dim must be an integer from 1 to {MAX_LATENT_DIM}, got {latent!r}")
    if "image_shape" in config:
        shape = config["image_shape"]
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(type(v) is int and 1 <= v <= MAX_ACTIVATION for v in shape)):
            raise bad(f"image_shape must be a list of 3 positive integers, got {shape!r}")
        if spec is not None and tuple(shape) != spec.input_shape:
            raise bad(f"image_shape is {shape} but spec.input_shape is {list(spec.input_shape)}")
    if "epochs_done" in config and (type(config["epochs_done"]) is not int or config["epochs_done"] < 0):
        raise bad(f"epochs_done must be a non-negative integer, got {config['epochs_done']!r}")
    _check_dataset_record(config.get("dataset"), bad)
    _check_data_record(config.get("data"), bad)
    for key, check in SECTION_CHECKS.items():
        if key in config:
            try:
                check(config[key])
            except ConfigError as error:
                raise bad(f"{key}.{error}" if error.param else str(error)) from None


def _check_dataset_record(record: Any, bad: Any) -> None:
    if record is None:
        return
    if not isinstance(record, dict):
        raise bad(f"dataset must be an object, got {type(record).__name__}")
    name = record.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad(f"dataset.name must be a non-empty string, got {name!r}")
    names = record.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise bad(f"dataset.class_names must be a list of strings, got {names!r}"[:300])
    for key in ("train_size", "test_size"):
        if key in record and (type(record[key]) is not int or record[key] < 0):
            raise bad(f"dataset.{key} must be a non-negative integer, got {record[key]!r}")


def _check_data_record(record: Any, bad: Any) -> None:
    if record is None:
        return
    if not isinstance(record, dict):
        raise bad(f"data must be an object or null, got {type(record).__name__}")
    for key in ("name", "path", "checksum"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise bad(f"data.{key} must be a string or null, got {value!r}")


def spec_from_config(config: dict[str, Any], where: Path) -> ArchSpec:
    """The :class:`ArchSpec` recorded in a config (checked as :func:`check_config` does)."""
    if not isinstance(config.get("spec"), dict):
        raise RunDirError(f"{where}: the model is a custom class ({config.get('class_name')}); "
                          "pass an instance to load its weights into (model=...)")
    try:
        return ArchSpec.from_dict(config["spec"], where="spec")
    except ConfigError as error:
        raise RunDirError(f"{where}: {error}") from None


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
    where = (f"{path}: weights do not match config.json (arch {config.get('arch', config.get('class_name'))}, "
             f"latent_dim {config.get('latent_dim')})")
    check_state(model, state, where)


def check_state(model: torch.nn.Module, state: Any, where: str) -> None:
    """Raise :class:`RunDirError` (prefixed by ``where``) unless ``state`` fits ``model``.

    Same tensor names, shapes and kinds of dtype (floating point where the
    model has floating point), and only finite values.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise RunDirError(f"{where}: not a mapping of tensor names to tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise RunDirError(f"{where}: missing {', '.join(missing[:3])}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise RunDirError(f"{where}: unexpected {', '.join(unexpected[:3])}")
    for name, tensor in expected.items():
        found = state[name]
        if tuple(found.shape) != tuple(tensor.shape):
            raise RunDirError(f"{where}: {name} has shape {tuple(found.shape)}, expected {tuple(tensor.shape)}")
        if found.dtype != tensor.dtype and not (found.is_floating_point() and tensor.is_floating_point()):
            raise RunDirError(f"{where}: {name} has dtype {found.dtype}, expected {tensor.dtype}")
        if found.is_floating_point() and not bool(torch.isfinite(found).all()):
            raise RunDirError(f"{where}: {name} holds NaN or infinite values")
