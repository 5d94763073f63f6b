"""Denoising: corrupt images, reconstruct them, measure the gain."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from vaekit.analysis.bounds import check_finite, check_images_fit
from vaekit.analysis.inference import ModelLike, inference_for
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError

CORRUPTIONS = ("gaussian", "mask")


# ----------------------------------------------------------------------------
# Denoising


def corrupt(images: torch.Tensor, kind: str, level: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt float images in [0, 1]; return them and the mask of corrupted pixels.

    ``"gaussian"``
        Add N(0, level^2) noise to every pixel, clipped to [0, 1] (the mask
        is all True).
    ``"mask"``
        Set one square covering the fraction ``level`` of the image area to
        0 (black), at a random position per image, in every channel.

    Returns
    -------
    corrupted, region : torch.Tensor
        The corrupted images and a boolean tensor of the same shape.
    """
    if kind == "gaussian":
        if not level > 0:
            raise ConfigError(f"noise_sigma must be positive, got {level}", param="noise_sigma")
        noise = torch.randn(images.shape, generator=generator)
        return (images + level * noise.to(images.device)).clamp(0.0, 1.0), torch.ones_like(images, dtype=torch.bool)
    if kind == "mask":
        if not 0 < level < 1:
            raise ConfigError(f"mask_area must be between 0 and 1, got {level}", param="mask_area")
        n, c, h, w = images.shape
        side_h, side_w = max(1, round(math.sqrt(level) * h)), max(1, round(math.sqrt(level) * w))
        top = torch.randint(0, h - side_h + 1, (n,), generator=generator)
        left = torch.randint(0, w - side_w + 1, (n,), generator=generator)
        rows, cols = torch.arange(h), torch.arange(w)
        inside_h = (rows[None] >= top[:, None]) & (rows[None] < (top + side_h)[:, None])
        inside_w = (cols[None] >= left[:, None]) & (cols[None] < (left + side_w)[:, None])
        region = (inside_h[:, :, None] & inside_w[:, None, :])[:, None].expand(n, c, h, w).to(images.device)
        return images.masked_fill(region, 0.0), region
    raise ConfigError(f"unknown corruption '{kind}'; choose one of: {', '.join(CORRUPTIONS)}")


@dataclass
class DenoiseResult:
    """How close corrupted inputs and their reconstructions are to the clean images.

    MSE is the mean squared pixel error (pixels in [0, 1]); PSNR is
    ``10 log10(1 / MSE)`` in dB. ``mse_clean_reconstruction`` is the error
    of reconstructing the *clean* images: the best the model can do. The
    ``*_region`` errors cover only the corrupted pixels (all of them for
    Gaussian noise, the square for masking): there a reconstruction can
    recover what the input lost even when, over the whole image, the model's
    blur costs more than the corruption.
    """

    corruption: str
    level: float
    n_images: int
    mse_input: float
    mse_output: float
    mse_clean_reconstruction: float
    psnr_input: float
    psnr_output: float
    improvement_db: float
    mse_reduction: float  # 1 - mse_output / mse_input: the fraction of the error removed
    mse_input_region: float
    mse_output_region: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def denoise_benchmark(model: ModelLike, dataset: ImageDataset, corruptions: Sequence[tuple[str, float]] = (
        ("gaussian", 0.3), ("mask", 0.25)), seed: int = 0) -> tuple[list[DenoiseResult], dict[str, torch.Tensor]]:
    """Corrupt the images, reconstruct them and compare both with the clean images.

    Returns
    -------
    results
        One :class:`DenoiseResult` per corruption.
    examples
        ``"clean"``, ``"clean_reconstruction"`` and, per corruption kind,
        ``"<kind>"`` (the corrupted inputs) and ``"<kind>_output"``: float
        tensors for figures.
    """
    model = inference_for(model)
    check_images_fit(model, dataset)
    clean = dataset.images.float().div(255.0)
    clean_recon = model.reconstruct(clean)
    mse_clean = float((clean_recon - clean).double().square().mean())
    generator = torch.Generator().manual_seed(seed)
    results, examples = [], {"clean": clean, "clean_reconstruction": clean_recon}
    for kind, level in corruptions:
        noisy, region = corrupt(clean, kind, level, generator)
        output = model.reconstruct(noisy)
        err_in, err_out = (noisy - clean).double().square(), (output - clean).double().square()
        mse_in, mse_out = float(err_in.mean()), float(err_out.mean())
        region_in, region_out = float(err_in[region].mean()), float(err_out[region].mean())
        check_finite({"mse_input": mse_in, "mse_output": mse_out}, f"denoising ({kind})")
        results.append(DenoiseResult(kind, float(level), len(dataset), mse_in, mse_out, mse_clean, _psnr(mse_in),
                                     _psnr(mse_out), _psnr(mse_out) - _psnr(mse_in),
                                     1 - mse_out / mse_in if mse_in > 0 else 0.0, region_in, region_out))
        examples[kind], examples[f"{kind}_output"] = noisy, output
    return results, examples
