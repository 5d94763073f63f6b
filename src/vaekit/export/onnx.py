"""A VAE as two ONNX files, ``encoder.onnx`` and ``decoder.onnx``, checked against PyTorch.

* ``encoder.onnx``: input ``images`` float32 ``(N, C, H, W)`` in [0, 1];
  outputs ``z_mean`` and ``z_log_var``, float32 ``(N, latent)``.
* ``decoder.onnx``: input ``z`` float32 ``(N, latent)``; output ``images``,
  float32 ``(N, C, H, W)`` in [0, 1] (the sigmoid is part of the graph).

The batch axis ``N`` is dynamic in both. Every export is run in onnxruntime
on a few images (batches of all of them, of 1 and of 7) and compared with the
PyTorch model in float32; if the largest absolute difference exceeds
``tolerance`` (1e-4) nothing is kept and :class:`ExportMismatchError` is raised.
The files are written to temporary names and renamed only after that check.

``onnx`` and ``onnxruntime`` are optional: ``pip install 'vaekit[onnx]'``.
"""

from __future__ import annotations

import copy
import importlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError, DataError, RunDirError, VaekitError
from vaekit.guard import PROTECTED_FILES, TEMP_PREFIX, TEMP_SUFFIX
from vaekit.runs import Run

__all__ = ["DECODER_FILE", "ENCODER_FILE", "TOLERANCE", "ExportMismatchError", "ExportReport", "export_onnx"]

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
#: Largest absolute difference to PyTorch (fp32) an export may have.
TOLERANCE = 1e-4
#: Batch sizes every export is run with, besides the whole check batch.
CHECK_BATCH_SIZES = (1, 7)
#: Metadata key that marks an ONNX file as written by vaekit (so a new export may replace it).
METADATA_KEY = "vaekit.role"
#: The ONNX opsets both of torch's exporters write (torch 2.13: TorchScript 7 to 20, dynamo up to 23).
OPSETS = range(7, 21)
INSTALL_HINT = "pip install 'vaekit[onnx]'"


class ExportMismatchError(VaekitError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime matches PyTorch."""

    encoder_path: Path
    decoder_path: Path
    encoder_max_abs_diff: float  # over z_mean and z_log_var
    decoder_max_abs_diff: float  # over the decoded images
    n_images: int  # images in the check batch
    images_source: str  # "dataset NAME (test)" or "random"
    batch_sizes: tuple[int, ...]  # every batch size run in onnxruntime
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    details: dict[str, float] = field(default_factory=dict)  # per output

    @property
    def max_abs_diff(self) -> float:
        return max(self.encoder_max_abs_diff, self.decoder_max_abs_diff)


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(images)


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"ONNX export needs the '{module}' package: {INSTALL_HINT}") from None


def _cpu_fp32_model(model_or_run: Any) -> tuple[nn.Module, Run | None]:
    run = None
    if isinstance(model_or_run, (str, os.PathLike)):
        model_or_run = Run.open(model_or_run, device="cpu", precision="fp32")
    if isinstance(model_or_run, Run):
        run, model = model_or_run, model_or_run.model
    elif isinstance(model_or_run, nn.Module):
        model = model_or_run
    else:
        raise ConfigError(f"export_onnx takes a VAE, a Run or a run directory, not {type(model_or_run).__name__}",
                          param="model_or_run")
    # A private copy: float32, contiguous (NCHW) weights, eval mode; the caller's model is untouched.
    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model.eval(), run


def _check_images(check_images: Any, run: Run | None, image_shape: tuple[int, ...], n_check: int,
                  seed: int) -> tuple[torch.Tensor, str]:
    """The images to compare on, float32 in [0, 1], and where they came from."""
    if check_images is None and run is not None:
        try:
            check_images = run.dataset("test", limit=n_check)
        except (DataError, RunDirError):  # data not found, or no dataset recorded: random images
            check_images = None
    source = "given images"
    if isinstance(check_images, ImageDataset):
        source = f"dataset {check_images.name} ({check_images.split})"
        check_images = check_images.images[:n_check]
    if check_images is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(n_check, *image_shape, generator=generator), "random"
    images = torch.as_tensor(check_images)
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if images.dim() == len(image_shape):
        images = images.unsqueeze(0)
    if tuple(images.shape[1:]) != tuple(image_shape) or len(images) == 0:
        raise ConfigError(f"check_images: expected (N, {', '.join(map(str, image_shape))}) images, "
                          f"got shape {tuple(images.shape)}", param="check_images")
    return images.contiguous(), source


def _is_vaekit_onnx(path: Path) -> bool:
    onnx = _require("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a protobuf, truncated...
        return False
    return any(prop.key == METADATA_KEY for prop in proto.metadata_props)


def check_export_dir(out_dir: str | os.PathLike, option: str = "out_dir") -> Path:
    """Refuse ``out_dir`` if it is a file, holds a run's files, or holds ONNX files vaekit did not write."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{option} {out_dir}: is a file, not a folder", param=option)
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{option} {out_dir}: {parent} is a file, not a folder", param=option)
    held = [name for name in PROTECTED_FILES if (out_dir / name).exists()]
    if held:
        raise ConfigError(f"{option} {out_dir}: holds a run's files ({', '.join(held)}); "
                          "export into another folder", param=option)
    for name in (ENCODER_FILE, DECODER_FILE):
        path = out_dir / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ConfigError(f"{option} {path}: exists and is not a regular file", param=option)
        if path.exists() and not _is_vaekit_onnx(path):
            raise ConfigError(f"{option} {path}: exists and is not an ONNX file vaekit wrote; "
                              "refusing to overwrite it (choose another folder)", param=option)
    return out_dir


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_names: list[str],
            opset: int, exporter: str) -> None:
    axes = {name: {0: "batch"} for name in [input_name, *output_names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                          dynamic_axes=axes, opset_version=opset, dynamo=exporter == "dynamo",
                          **({"verbose": False} if exporter == "dynamo" else {}))


def _mark(path: Path, role: str) -> None:
    onnx = _require("onnx")
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, role
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _batches(n: int) -> list[torch.Tensor]:
    """Index sets: the whole batch, then batches of 1 and 7 (repeating images if there are fewer)."""
    sets = [torch.arange(n)]
    for size in CHECK_BATCH_SIZES:
        if size != n:
            sets.append(torch.arange(size) % n)
    return sets


def _compare(path: Path, module: nn.Module, inputs: torch.Tensor, names: list[str]) -> dict[str, float]:
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    worst = dict.fromkeys(names, 0.0)
    for index in _batches(len(inputs)):
        batch = inputs[index].contiguous()
        got = session.run(names, {input_name: batch.numpy()})
        with torch.no_grad():
            want = module(batch)
        want = want if isinstance(want, tuple) else (want,)
        for name, ours, theirs in zip(names, got, want):
            if tuple(ours.shape) != tuple(theirs.shape):
                raise ExportMismatchError(f"{path.name}: output {name} has shape {tuple(ours.shape)} for a batch "
                                          f"of {len(batch)}, PyTorch gives {tuple(theirs.shape)}")
            diff = (torch.from_numpy(ours) - theirs).abs().max().item()
            worst[name] = max(worst[name], diff if diff == diff else float("inf"))  # NaN counts as a failure
    return worst


def export_onnx(model_or_run: Any, out_dir: str | os.PathLike, check_images: Any = None, opset: int = 18,
                exporter: str = "auto", n_check: int = 16, tolerance: float = TOLERANCE,
                seed: int = 0) -> ExportReport:
    """Write ``encoder.onnx`` and ``decoder.onnx`` into ``out_dir`` and check them against PyTorch.

    Parameters
    ----------
    model_or_run
        A :class:`~vaekit.VAE`, a :class:`~vaekit.Run` or a run directory
        (opened on the CPU in fp32). The export always uses a float32 CPU copy.
    out_dir
        The folder to write into (created if needed). It must not hold a
        run's files; ONNX files vaekit wrote there before are replaced.
    check_images
        Images to compare on: an :class:`~vaekit.ImageDataset`, or a tensor
        ``(N, C, H, W)`` (uint8, or float in [0, 1]). Default: the first
        ``n_check`` test images of the run's dataset, or random images if
        there is no run or its data is not found.
    opset
        ONNX opset version, one of :data:`OPSETS` (7 to 20).
    exporter
        ``"torchscript"`` (``torch.onnx.export(dynamo=False)``, fast),
        ``"dynamo"`` (torch's default, torch.export-based) or ``"auto"``
        (TorchScript, falling back to dynamo if it fails).
    n_check
        How many images to compare on when they are not given.
    tolerance
        Largest allowed absolute difference in any output.

    Raises
    ------
    ExportMismatchError
        If onnxruntime differs from PyTorch by more than ``tolerance`` (no file is kept).
    ConfigError
        If ``onnx``/``onnxruntime`` are missing, ``opset`` is not in :data:`OPSETS`, or ``out_dir`` is refused.
    """
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ConfigError(f"exporter must be auto, torchscript or dynamo, got {exporter!r}", param="exporter")
    if n_check < 1:
        raise ConfigError(f"n_check must be at least 1, got {n_check}", param="n_check")
    if opset not in OPSETS:
        raise ConfigError(f"opset must be {OPSETS.start} to {OPSETS.stop - 1} (what torch's exporters write), "
                          f"got {opset}", param="opset")
    _require("onnx")
    _require("onnxruntime")
    out_dir = check_export_dir(out_dir)
    model, run = _cpu_fp32_model(model_or_run)
    images, source = _check_images(check_images, run, tuple(model.image_shape), n_check, seed)
    encoder, decoder = _Encoder(model).eval(), _Decoder(model).eval()
    with torch.no_grad():
        z_mean, _ = encoder(images)
    # Decode the images' own codes, and as many prior draws.
    z = torch.cat([z_mean, torch.randn(len(images), model.latent_dim, generator=torch.Generator().manual_seed(seed))])

    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (ENCODER_FILE, encoder, images, "images", ["z_mean", "z_log_var"]),
        (DECODER_FILE, decoder, z, "z", ["images"]),
    ]
    temporaries = {name: out_dir / f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}" for name, *_ in jobs}
    details: dict[str, float] = {}
    used = exporter
    try:
        for name, module, inputs, input_name, output_names in jobs:
            path = temporaries[name]
            example = inputs[:2].contiguous()
            if exporter == "auto":
                try:
                    _export(module, example, path, input_name, output_names, opset, "torchscript")
                    used = "torchscript" if used in ("auto", "torchscript") else used
                except Exception:
                    _export(module, example, path, input_name, output_names, opset, "dynamo")
                    used = "dynamo"
            else:
                _export(module, example, path, input_name, output_names, opset, exporter)
            _mark(path, name.removesuffix(".onnx"))
            prefix = name.removesuffix(".onnx")
            for output, diff in _compare(path, module, inputs, output_names).items():
                details[f"{prefix}.{output}"] = diff
        encoder_diff = max(details["encoder.z_mean"], details["encoder.z_log_var"])
        decoder_diff = details["decoder.images"]
        if not max(encoder_diff, decoder_diff) <= tolerance:
            raise ExportMismatchError(f"ONNX export differs from PyTorch by more than {tolerance:g}: encoder "
                                      f"{encoder_diff:.3g}, decoder {decoder_diff:.3g}; nothing written to {out_dir}")
        for name, path in temporaries.items():
            os.replace(path, out_dir / name)
    finally:
        for path in temporaries.values():
            path.unlink(missing_ok=True)
    batch_sizes = tuple(sorted({len(images), *CHECK_BATCH_SIZES}))
    return ExportReport(out_dir / ENCODER_FILE, out_dir / DECODER_FILE, encoder_diff, decoder_diff, len(images),
                        source, batch_sizes, used, opset, details)
