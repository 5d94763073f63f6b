"""The run directory: the unit of persistence.

A run directory holds everything about one trained model, all readable
without vaekit::

    RUN/
      config.json          architecture, training settings, dataset, status
      model.safetensors    weights (safetensors: loading runs no code)
      metrics.csv          one row per epoch
      checkpoint.pt        optimiser and RNG state to resume (tensors only)
      reconstructions.png  dataset images above their reconstructions
      samples.png          decoded random points of the prior

Every file is written atomically (a temporary file, then ``os.replace``), so
a crash or Ctrl-C never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from vaekit.errors import RunDirError
from vaekit.models import VAE, ArchSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); give it the usual permissions.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path}: not valid JSON ({error})") from None


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (empty if training has not finished an epoch)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


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
