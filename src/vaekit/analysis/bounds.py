"""Likelihood bounds of a model: the ELBO, the IWAE bound and active units (``vaekit evaluate``).

:func:`evaluate_model` / :func:`evaluate_run` give the mean negative ELBO with
its two parts (reconstruction and KL = rate), the importance-weighted bound
(IWAE, Burda et al. 2016) with K samples, the number of active latent units
and the KL of every latent unit; :func:`image_bounds` gives them per image.
Embeddings, anomaly scores and denoising, which build on these, are in
:mod:`~vaekit.analysis.embedding`, :mod:`~vaekit.analysis.anomaly` and
:mod:`~vaekit.analysis.denoise`.

Which likelihood the numbers refer to
-------------------------------------
Every bound is computed under the reconstruction likelihood the run was
trained with (``config["train"]["recon"]``), see :class:`Likelihood`:

``bernoulli`` on grey values (the seed model's binary cross-entropy)
    *Not* a normalised likelihood: for a pixel value ``x`` strictly between 0
    and 1, ``x log p + (1 - x) log(1 - p)`` is not the log of a probability
    of anything, so the "NLL" is a loss, not ``-log p(x)``, and cannot be
    compared with published Fashion-MNIST likelihoods.
``bernoulli`` with ``binarize`` (``"stochastic"`` or ``"threshold"``)
    A normalised Bernoulli likelihood of the *binarised* images.
``gaussian``
    ``N(x; decoder mean, sigma^2)`` per pixel: a normalised density of
    continuous pixel values (no dequantisation, so it is a density, not the
    probability of the 8-bit image, and may be negative).

All bounds are reported as *losses* in nats per image, lower is better:
``elbo = recon + kl = -ELBO >= iwae >= -log p(x)``; ``*_bits_per_dim`` divide
by ``D ln 2`` with ``D = C * H * W``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.analysis.inference import ModelLike, inference_for
from vaekit.analysis.limits import (  # noqa: F401 (re-exported)
    LIMITS,
    NonFiniteResultError,
    check_count,
    check_finite,
)
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError, DataError
from vaekit.models.losses import RECONSTRUCTIONS, kl_per_dimension, reconstruction_nll
from vaekit.runs.run import Run

BINARIZE_MODES = ("stochastic", "threshold")

# Most latent vectors decoded at once. A decoder layer holds up to ~32 floats
# per output pixel, so chunks also shrink with the image size (see
# _decode_chunk): ~1,300 vectors (~130 MB) for 28x28, ~20 for 128x128x3.
DECODE_CHUNK = 2048
DECODE_FLOATS_PER_CHUNK = 2**20
# Latent samples (images x K) drawn per encoder batch: bounds the noise tensor.
MAX_LATENTS = 32768


# ----------------------------------------------------------------------------
# The likelihood


@dataclass(frozen=True)
class Likelihood:
    """The reconstruction likelihood p(x|z) the bounds are computed under.

    Parameters
    ----------
    kind
        ``"bernoulli"`` (binary cross-entropy from logits) or ``"gaussian"``.
    sigma
        Standard deviation of the Gaussian likelihood (ignored otherwise).
    binarize
        ``None`` (grey values as they are), ``"stochastic"`` (each pixel is 1
        with probability equal to its grey value, a fresh draw per seed) or
        ``"threshold"`` (pixel > 0.5). Only with ``kind="bernoulli"``.
    """

    kind: str = "bernoulli"
    sigma: float = 0.1
    binarize: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RECONSTRUCTIONS:
            raise ConfigError(f"unknown likelihood '{self.kind}'; choose one of: {', '.join(RECONSTRUCTIONS)}")
        if self.binarize is not None and self.binarize not in BINARIZE_MODES:
            raise ConfigError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, got '{self.binarize}'", param="binarize")
        if self.binarize is not None and self.kind != "bernoulli":
            raise ConfigError("binarize needs a run trained with the bernoulli likelihood (recon='bernoulli')", param="binarize")
        if not self.sigma > 0:
            raise ConfigError(f"gaussian_sigma must be positive, got {self.sigma}")

    @property
    def normalised(self) -> bool:
        """Whether the bounds bound a true (normalised) negative log-likelihood."""
        return self.kind == "gaussian" or self.binarize is not None

    def describe(self) -> str:
        """One sentence saying what the numbers are a bound of."""
        if self.kind == "gaussian":
            return (f"Gaussian N(x; decoder mean, {self.sigma:g}^2) per pixel on grey values in [0, 1]: "
                    "a normalised density of continuous pixels (no dequantisation; it can be negative)")
        if self.binarize is not None:
            return (f"Bernoulli on {self.binarize}-binarised pixels: a normalised likelihood of the binarised "
                    "images (not of the grey images)")
        return ("Bernoulli (binary cross-entropy) on grey values in [0, 1], as in training: NOT a normalised "
                "likelihood for non-binary pixels, so elbo and iwae bound an unnormalised score, not -log p(x); "
                "use --binarize for a normalised Bernoulli likelihood")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": self.sigma if self.kind == "gaussian" else None,
                "binarize": self.binarize, "normalised": self.normalised, "description": self.describe()}

    def nll(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image ``-log p(x|z)`` in nats, shape ``(N,)``."""
        return reconstruction_nll(logits, target, self.kind, self.sigma)

    def targets(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` images -> the float targets the likelihood scores."""
        x = images.float().div(255.0)
        if self.binarize == "threshold":
            return (x > 0.5).float()
        if self.binarize == "stochastic":
            return torch.bernoulli(x, generator=generator)
        return x


def run_likelihood(config: dict[str, Any], binarize: str | None = None) -> Likelihood:
    """The likelihood a run was trained with (``config["train"]``), optionally binarised."""
    train = config.get("train", {})
    return Likelihood(train.get("recon", "bernoulli"), float(train.get("gaussian_sigma", 0.1)), binarize)


# ----------------------------------------------------------------------------
# Checks


def check_images_fit(model: Any, dataset: ImageDataset, where: str = "") -> None:
    """Raise :class:`DataError` unless the dataset's images have the model's shape."""
    if tuple(dataset.image_shape) != tuple(model.image_shape):
        c, h, w = model.image_shape
        raise DataError(
            f"{where or 'dataset'}: dataset '{dataset.name}' has images of shape {tuple(dataset.image_shape)} "
            f"(C, H, W) but the model expects ({c}, {h}, {w}) ({c} channel{'s' if c > 1 else ''}, {h}x{w})"
        )
    if len(dataset) == 0:
        raise DataError(f"{where or 'dataset'}: dataset '{dataset.name}' ({dataset.split}) holds no images")


def check_iw_samples(k: int, n_images: int = 1) -> None:
    """Refuse a K that is not a positive integer, or K x images beyond :data:`LIMITS` ``["iw_decodes"]``."""
    k = check_count("iw_samples", k)
    if k * int(n_images) > LIMITS["iw_decodes"]:
        raise ConfigError(f"iw_samples x images = {k:,} x {int(n_images):,} decoder passes, more than "
                          f"{LIMITS['iw_decodes']:,}; lower iw_samples or iw_images", param="iw_samples")


ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E[z|x]) above this


@torch.no_grad()
def active_units(z_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent units with ``Var_x(E[z|x]) > threshold``."""
    if z_means.shape[0] < 2:
        return 0
    return int((z_means.float().var(dim=0) > threshold).sum())


# ----------------------------------------------------------------------------
# Encoding and importance sampling


@dataclass
class ImageBounds:
    """Per-image bounds, nats per image, float64 arrays of shape ``(N,)``.

    Attributes
    ----------
    recon
        ``-E_q[log p(x|z)]``, averaged over the K posterior samples.
    kl
        ``KL(q(z|x) || p(z))``, analytic.
    elbo
        ``recon + kl`` (the negative ELBO).
    iwae
        Negative IWAE bound, ``-log (1/K) sum_k w_k`` with
        ``w_k = p(x|z_k) p(z_k) / q(z_k|x)``.
    elbo_same_samples
        ``-(1/K) sum_k log w_k``: the negative ELBO from the very samples of
        ``iwae``, so ``iwae <= elbo_same_samples`` holds exactly (Jensen),
        with equality when K = 1.
    z_mean, z_log_var
        Posterior parameters, float32 arrays of shape ``(N, latent_dim)``.
    """

    recon: np.ndarray
    kl: np.ndarray
    elbo: np.ndarray
    iwae: np.ndarray
    elbo_same_samples: np.ndarray
    iw_samples: int
    z_mean: np.ndarray
    z_log_var: np.ndarray


def _decode_chunk(pixels: int) -> int:
    return max(1, min(DECODE_CHUNK, DECODE_FLOATS_PER_CHUNK // pixels))


def _log_weights(model: torch.nn.Module, x: torch.Tensor, z_mean: torch.Tensor, z_log_var: torch.Tensor, k: int,
                 likelihood: Likelihood, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``log w`` and ``-log p(x|z)`` for K samples of each image, float64, shapes ``(B, K)``.

    The noise is drawn image by image, so the numbers depend on the seed only,
    not on batch or chunk sizes; decoding runs at most :data:`DECODE_CHUNK`
    latent vectors at a time, so memory stays bounded for K = 1000 or more.
    """
    device = x.device
    b, d = z_mean.shape
    chunk = _decode_chunk(x[0].numel())
    mean, log_var = z_mean.double(), z_log_var.double()
    eps = torch.stack([torch.randn(k, d, generator=generator, dtype=torch.float64) for _ in range(b)]).to(device)
    z = mean[:, None] + torch.exp(0.5 * log_var)[:, None] * eps  # (B, K, d)
    flat = z.reshape(b * k, d).float()
    owner = torch.arange(b, device=device).repeat_interleave(k)  # image of each latent vector
    nll = torch.cat([likelihood.nll(model.decode_logits(flat[i : i + chunk]), x[owner[i : i + chunk]])
                     for i in range(0, b * k, chunk)]).double().reshape(b, k)
    # log q(z|x) - log p(z), summed over latent units; the log(2 pi) terms cancel.
    log_q = -0.5 * (log_var[:, None] + eps.square()).sum(-1)
    log_p = -0.5 * z.square().sum(-1)
    return (-nll + log_p - log_q).cpu(), nll.cpu()


def image_bounds(model: ModelLike, images: torch.Tensor, k: int = 1, likelihood: Likelihood | None = None,
                 seed: int = 0, batch_size: int = 500) -> ImageBounds:
    """ELBO and IWAE bound of every image, from K posterior samples each.

    Parameters
    ----------
    model
        A VAE, a :class:`~vaekit.runs.Run` or an :class:`~vaekit.analysis.Inference`.
    images
        uint8 ``(N, C, H, W)`` images (targets are made by ``likelihood``,
        binarised if it says so) or float targets in [0, 1].
    k
        Importance samples per image. K = 1 gives the ordinary one-sample
        ELBO estimate.
    likelihood
        Defaults to the seed's Bernoulli likelihood on grey values.
    seed
        Seeds the posterior samples (and stochastic binarisation): the same
        seed gives the same numbers, whatever ``batch_size``.
    batch_size
        Most images encoded at once; fewer when K is large, so that at most
        about :data:`MAX_LATENTS` latent samples are held at a time.

    Returns
    -------
    ImageBounds
    """
    check_iw_samples(k, images.shape[0])
    likelihood = likelihood or Likelihood()
    inference = inference_for(model)
    if images.dtype == torch.uint8 and likelihood.binarize == "stochastic":
        # All at once, so the draws do not depend on the batch size.
        images = likelihood.targets(images, torch.Generator().manual_seed(seed + 1_000_003))
    sample_gen = torch.Generator().manual_seed(seed)
    batch_size = max(1, min(batch_size, MAX_LATENTS // k))
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ("recon", "kl", "iwae", "elbo_mc", "mean", "log_var")}
    with inference.running():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            x = inference.to_input(likelihood.targets(batch) if batch.dtype == torch.uint8 else batch.float())
            z_mean, z_log_var = inference.model.encode(x)
            log_w, nll = _log_weights(inference.model, x, z_mean.float(), z_log_var.float(), k, likelihood,
                                      sample_gen)
            parts["recon"].append(nll.mean(1))
            parts["kl"].append(kl_per_dimension(z_mean, z_log_var).double().sum(1).cpu())
            parts["iwae"].append(-(torch.logsumexp(log_w, 1) - math.log(k)))
            parts["elbo_mc"].append(-log_w.mean(1))
            parts["mean"].append(z_mean.float().cpu())
            parts["log_var"].append(z_log_var.float().cpu())
    out = {name: torch.cat(values).numpy() for name, values in parts.items()}
    return ImageBounds(out["recon"], out["kl"], out["recon"] + out["kl"], out["iwae"], out["elbo_mc"], int(k),
                       out["mean"], out["log_var"])


# ----------------------------------------------------------------------------
# Evaluation


@dataclass
class Evaluation:
    """What :func:`evaluate_model` measures (written as ``evaluation.json``).

    ``elbo``, ``recon``, ``kl`` and the active units cover all ``n_images``;
    ``iwae`` covers the first ``iw_images`` of them, and ``elbo_iw_images``
    is the negative ELBO on exactly those images, so ``elbo_iw_images -
    iwae`` is the gap between the two bounds.
    """

    elbo: float
    recon: float
    kl: float
    iwae: float
    elbo_iw_images: float
    iw_samples: int
    iw_images: int
    elbo_bits_per_dim: float
    iwae_bits_per_dim: float
    active_units: int
    latent_dim: int
    kl_per_dim: list[float]
    z_mean_variance: list[float]
    n_images: int
    dimensions: int
    likelihood: dict[str, Any]
    dataset: str = ""
    split: str = ""
    excluded_classes: list[str] = field(default_factory=list)
    seed: int = 0
    seconds: float = 0.0
    units: str = ("nats per image; elbo and iwae are negated bounds (losses, lower is better): "
                  "elbo = recon + kl = -ELBO >= iwae >= -log p(x) under the likelihood below; "
                  "bits_per_dim = nats / (D ln 2)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bits_per_dim(nats: float, dimensions: int) -> float:
    """Convert nats per image to bits per dimension."""
    return nats / (dimensions * math.log(2))


def evaluate_model(model: ModelLike, dataset: ImageDataset, likelihood: Likelihood | None = None, iw_samples: int = 1000,
                   iw_images: int | None = None, seed: int = 0, batch_size: int = 500) -> Evaluation:
    """Mean -ELBO, its parts, the IWAE bound, active units and per-unit KL.

    Parameters
    ----------
    model, dataset
        The model and the images to evaluate it on (same shape).
    likelihood
        The reconstruction likelihood; see :func:`run_likelihood`.
    iw_samples
        K for the IWAE bound (K = 1000 is the usual protocol).
    iw_images
        Compute the IWAE bound on the first this many images only (it costs
        K decoder passes per image); ``None`` for all.
    seed
        Seeds every random draw.

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        If the images do not fit the model.
    ConfigError
        If ``iw_samples < 1`` or ``iw_images < 1``.
    NonFiniteResultError
        If any number comes out NaN or infinite.
    """
    started = time.perf_counter()
    likelihood = likelihood or Likelihood()
    model = inference_for(model)
    check_iw_samples(iw_samples)
    check_images_fit(model, dataset)
    if iw_images is not None:
        check_count("iw_images", iw_images, LIMITS["probe"])
    if iw_images is not None and iw_images < 1:
        raise ConfigError(f"iw_images must be at least 1, got {iw_images}", param="iw_images")
    n = len(dataset)
    m = n if iw_images is None else min(iw_images, n)
    # Binarise once, so every pass below scores the very same images.
    images = likelihood.targets(dataset.images, torch.Generator().manual_seed(seed + 1_000_003)) \
        if likelihood.binarize is not None else dataset.images
    iw = image_bounds(model, images[:m], iw_samples, likelihood, seed, batch_size)
    if m < n:
        rest = image_bounds(model, images[m:], 1, likelihood, seed + 1, batch_size)
        parts = (iw, rest)
    else:
        parts = (iw,)
    recon, kl = np.concatenate([p.recon for p in parts]), np.concatenate([p.kl for p in parts])
    z_mean = torch.from_numpy(np.concatenate([p.z_mean for p in parts]))
    z_log_var = torch.from_numpy(np.concatenate([p.z_log_var for p in parts]))
    dims = math.prod(model.image_shape)
    elbo = float(recon.mean() + kl.mean())
    result = Evaluation(
        elbo=elbo, recon=float(recon.mean()), kl=float(kl.mean()), iwae=float(iw.iwae.mean()),
        elbo_iw_images=float(iw.elbo.mean()), iw_samples=int(iw_samples), iw_images=m,
        elbo_bits_per_dim=bits_per_dim(elbo, dims), iwae_bits_per_dim=bits_per_dim(float(iw.iwae.mean()), dims),
        active_units=active_units(z_mean), latent_dim=model.latent_dim,
        kl_per_dim=[float(v) for v in kl_per_dimension(z_mean, z_log_var).double().mean(0)],
        z_mean_variance=[float(v) for v in z_mean.double().var(0)] if n > 1 else [0.0] * model.latent_dim,
        n_images=n, dimensions=dims, likelihood=likelihood.to_dict(), dataset=dataset.name, split=dataset.split,
        seed=seed,
    )
    check_finite(result.to_dict(), f"evaluation on {dataset.name} ({dataset.split})")
    result.seconds = round(time.perf_counter() - started, 2)
    return result


# ----------------------------------------------------------------------------
# A run directory


def evaluate_run(run: Run | str | Path, split: str = "test", iw_samples: int = 1000, iw_images: int | None = 100,
                 binarize: str | None = None, dataset: str | None = None, limit: int | None = None,
                 all_classes: bool = False, seed: int = 0) -> Evaluation:
    """:func:`evaluate_model` on a run's model and data.

    Parameters
    ----------
    run
        A :class:`~vaekit.runs.Run` (its device and precision are used) or a run directory.
    split, dataset, limit
        Which images: a split of the run's dataset (or of ``dataset``), the first ``limit``.
    all_classes
        Keep the classes the run was trained without; by default they are left
        out, so the numbers describe the training distribution.
    iw_samples, iw_images, binarize, seed
        As for :func:`evaluate_model` and :func:`run_likelihood`.
    """
    check_iw_samples(iw_samples)
    run = run if isinstance(run, Run) else Run.open(run)
    likelihood = run_likelihood(run.config, binarize)
    in_distribution = not all_classes and dataset is None
    data = run.dataset(split, limit=limit, in_distribution=in_distribution, name=dataset)
    check_images_fit(run.model, data, f"{run.path}")
    excluded = run.excluded_classes if in_distribution else []
    result = evaluate_model(inference_for(run), data, likelihood, iw_samples, iw_images, seed)
    result.excluded_classes = excluded
    return result
