"""Model evaluation: likelihood bounds, latent-space quality, anomaly scores, denoising.

Four questions about a trained VAE, each answered with numbers:

*How good is the model?*
    :func:`evaluate_model` / :func:`evaluate_run` give the mean negative ELBO
    with its two parts (reconstruction and KL = rate), the importance-weighted
    bound (IWAE, Burda et al. 2016) with K samples, the number of active latent
    units and the KL of every latent unit.
*How useful is the latent space?*
    :func:`embed_dataset` exports ``z_mean`` / ``z_log_var`` per image;
    :func:`embedding_quality` measures k-NN and linear-probe accuracy on the
    labels and compares them with PCA at the same dimension.
*Which images are unusual?*
    :func:`anomaly_scores` scores every image four ways; :func:`auroc` and
    :func:`anomaly_protocol` measure how well each score separates a class
    held out of training from the others.
*Can the model clean images?*
    :func:`denoise_benchmark` corrupts images (Gaussian noise, a masked
    square) and measures how much closer to the clean image the
    reconstruction is than the corrupted input.

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

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from vaekit.data import ImageDataset, dataset_names, load_dataset
from vaekit.diagnostics import active_units
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.losses import RECONSTRUCTIONS, kl_per_dimension, reconstruction_nll
from vaekit.models import VAE

BINARIZE_MODES = ("stochastic", "threshold")
ANOMALY_SCORES = ("neg_elbo", "recon_error", "iwae", "complexity")
CORRUPTIONS = ("gaussian", "mask")
# Most latent vectors decoded at once. A decoder layer holds up to ~32 floats
# per output pixel, so chunks also shrink with the image size (see
# _decode_chunk): ~1,300 vectors (~130 MB) for 28x28, ~20 for 128x128x3.
DECODE_CHUNK = 2048
DECODE_FLOATS_PER_CHUNK = 2**20
# Latent samples (images x K) drawn per encoder batch: bounds the noise tensor.
MAX_LATENTS = 32768


class NonFiniteResultError(RunDirError):
    """An evaluation produced NaN or infinite numbers (usually diverged weights)."""


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
            raise ConfigError(f"--binarize must be one of {', '.join(BINARIZE_MODES)}, got '{self.binarize}'")
        if self.binarize is not None and self.kind != "bernoulli":
            raise ConfigError("--binarize needs a run trained with the bernoulli likelihood (--recon bernoulli)")
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


def check_images_fit(model: VAE, dataset: ImageDataset, where: str = "") -> None:
    """Raise :class:`DataError` unless the dataset's images have the model's shape."""
    if tuple(dataset.image_shape) != tuple(model.image_shape):
        c, h, w = model.image_shape
        raise DataError(
            f"{where or 'dataset'}: dataset '{dataset.name}' has images of shape {tuple(dataset.image_shape)} "
            f"(C, H, W) but the model expects ({c}, {h}, {w}) ({c} channel{'s' if c > 1 else ''}, {h}x{w})"
        )
    if len(dataset) == 0:
        raise DataError(f"{where or 'dataset'}: dataset '{dataset.name}' ({dataset.split}) holds no images")


def check_iw_samples(k: int) -> None:
    if int(k) != k or k < 1:
        raise ConfigError(f"--iw-samples must be an integer of at least 1, got {k}")


def check_finite(values: dict[str, Any], where: str) -> None:
    """Raise :class:`NonFiniteResultError` naming the first NaN or infinite number in ``values``.

    Strings, dicts and ``None`` are skipped; numbers, lists and arrays are checked.
    """
    for name, value in values.items():
        if value is None or isinstance(value, (str, dict)):
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            continue
        bad = ~np.isfinite(array.astype(np.float64))
        if bad.any():
            raise NonFiniteResultError(
                f"{where}: {name} is not finite ({int(bad.sum())} of {array.size} values are NaN or infinite); "
                "the model's weights may have diverged"
            )


# ----------------------------------------------------------------------------
# Encoding and importance sampling


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_images(model: VAE, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior parameters of uint8 (or [0, 1] float) images, float32 on the CPU.

    Returns
    -------
    z_mean, z_log_var : torch.Tensor
        Each of shape ``(N, latent_dim)``.
    """
    device = _device_of(model)
    means, log_vars = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device)
        x = batch.float().div(255.0) if batch.dtype == torch.uint8 else batch.float()
        z_mean, z_log_var = model.encode(x)
        means.append(z_mean.float().cpu())
        log_vars.append(z_log_var.float().cpu())
    return torch.cat(means), torch.cat(log_vars)


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


@torch.no_grad()
def _log_weights(model: VAE, x: torch.Tensor, z_mean: torch.Tensor, z_log_var: torch.Tensor, k: int,
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


@torch.no_grad()
def image_bounds(model: VAE, images: torch.Tensor, k: int = 1, likelihood: Likelihood | None = None,
                 seed: int = 0, batch_size: int = 500) -> ImageBounds:
    """ELBO and IWAE bound of every image, from K posterior samples each.

    Parameters
    ----------
    model
        A VAE (eval mode).
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
    check_iw_samples(k)
    likelihood = likelihood or Likelihood()
    device = _device_of(model)
    if images.dtype == torch.uint8 and likelihood.binarize == "stochastic":
        # All at once, so the draws do not depend on the batch size.
        images = likelihood.targets(images, torch.Generator().manual_seed(seed + 1_000_003))
    sample_gen = torch.Generator().manual_seed(seed)
    batch_size = max(1, min(batch_size, MAX_LATENTS // k))
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ("recon", "kl", "iwae", "elbo_mc", "mean", "log_var")}
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            x = (likelihood.targets(batch) if batch.dtype == torch.uint8 else batch.float()).to(device)
            z_mean, z_log_var = model.encode(x)
            log_w, nll = _log_weights(model, x, z_mean.float(), z_log_var.float(), k, likelihood, sample_gen)
            parts["recon"].append(nll.mean(1))
            parts["kl"].append(kl_per_dimension(z_mean, z_log_var).double().sum(1).cpu())
            parts["iwae"].append(-(torch.logsumexp(log_w, 1) - math.log(k)))
            parts["elbo_mc"].append(-log_w.mean(1))
            parts["mean"].append(z_mean.float().cpu())
            parts["log_var"].append(z_log_var.float().cpu())
    finally:
        model.train(was_training)
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


def evaluate_model(model: VAE, dataset: ImageDataset, likelihood: Likelihood | None = None, iw_samples: int = 1000,
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
    check_iw_samples(iw_samples)
    check_images_fit(model, dataset)
    if iw_images is not None and iw_images < 1:
        raise ConfigError(f"--iw-images must be at least 1, got {iw_images}")
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
# Runs and their data


def load_for_evaluation(run_dir: str | Path) -> VAE:
    """Load a run's model for inference, in the channels-last layout.

    Channels-last convolutions decode about twice as fast on CPUs (and are
    no slower on GPUs); evaluation is mostly decoding.
    """
    from vaekit.rundir import load

    return load(run_dir).to(memory_format=torch.channels_last)


def in_distribution(dataset: ImageDataset, config: dict[str, Any]) -> ImageDataset:
    """Drop the classes the run held out of training (``--exclude-classes``), if any."""
    excluded = held_out_classes(config)
    if not excluded or tuple(dataset.class_names) != tuple(config.get("dataset", {}).get("class_names", ())):
        return dataset
    return dataset.exclude_classes(excluded)


def held_out_classes(config: dict[str, Any]) -> list[str]:
    """The classes a run was trained without (``config["train"]["exclude_classes"]``)."""
    return [str(c) for c in config.get("train", {}).get("exclude_classes", []) or []]


def run_dataset(config: dict[str, Any], split: str = "test", dataset: str | None = None,
                data_dir: str | None = None) -> ImageDataset:
    """Load a split of the run's dataset (or of ``dataset``), from the run's data folder by default."""
    name = dataset or config.get("dataset", {}).get("name") or config.get("train", {}).get("dataset")
    if not name:
        raise RunDirError("config.json: no dataset name; pass --dataset")
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be train or test, got '{split}'")
    return load_dataset(name, split, data_dir=data_dir or config.get("train", {}).get("data_dir"))


def limit_dataset(dataset: ImageDataset, limit: int | None) -> ImageDataset:
    """The first ``limit`` images (all when ``None``)."""
    if limit is None:
        return dataset
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    return dataset.subset(torch.arange(min(limit, len(dataset))))


def evaluate_run(run_dir: str | Path, split: str = "test", iw_samples: int = 1000, iw_images: int | None = 100,
                 binarize: str | None = None, dataset: str | None = None, data_dir: str | None = None,
                 limit: int | None = None, all_classes: bool = False, seed: int = 0) -> Evaluation:
    """:func:`evaluate_model` on a run directory's model and data.

    The classes the run was trained without are left out unless
    ``all_classes`` (the numbers then describe the training distribution).
    """
    from vaekit.rundir import read_config

    check_iw_samples(iw_samples)
    config = read_config(run_dir)
    model = load_for_evaluation(run_dir)
    likelihood = run_likelihood(config, binarize)
    data = run_dataset(config, split, dataset, data_dir)
    check_images_fit(model, data, f"{run_dir}")
    before = len(data)
    if not all_classes:
        data = in_distribution(data, config)
    excluded = held_out_classes(config) if len(data) < before else []
    data = limit_dataset(data, limit)
    result = evaluate_model(model, data, likelihood, iw_samples, iw_images, seed)
    result.excluded_classes = excluded
    return result


# ----------------------------------------------------------------------------
# Images from files


def load_image_files(path: str | Path, image_shape: Sequence[int]) -> tuple[ImageDataset, list[str]]:
    """Read an image file, or every image in a folder (and its subfolders), shaped for a model.

    Each image is decoded as :mod:`vaekit.folder` does for training folders:
    converted to greyscale (1 channel) or RGB (3 channels), its largest
    centred crop of the model's aspect ratio resized to the model's height
    and width. In a folder, unreadable files are reported once and skipped.

    Returns
    -------
    dataset, names
        The images (label 0, class ``"image"``) and their names (relative
        to the folder).

    Raises
    ------
    DataError
        For a missing path, a folder without a usable image, or an
        unreadable single file.
    """
    from vaekit.folder import ImageProblem, ImageTransform, decode_image, list_folder, report_once

    path = Path(path)
    c, h, w = (int(v) for v in image_shape)
    if c not in (1, 3):
        raise DataError(f"{path}: image files can be scored by 1- or 3-channel models only, this one has {c}")
    transform = ImageTransform(size=(h, w), channels=c)
    if path.is_dir():
        names = list_folder(path)
        if not names:
            raise DataError(f"{path}: folder holds no image files")
        root = path
    elif path.is_file():
        names, root = [path.name], path.parent
    else:
        raise DataError(f"{path}: no such file or folder")
    arrays, kept = [], []
    for name in names:
        try:
            arrays.append(decode_image(root / name, transform))
            kept.append(name)
        except ImageProblem as problem:
            if not path.is_dir():
                raise DataError(f"{path}: {problem}") from None
            report_once(f"{root / name}: skipped: {problem}")
    if not arrays:
        raise DataError(f"{path}: none of its {len(names)} image files could be read")
    dataset = ImageDataset(torch.from_numpy(np.stack(arrays)), torch.zeros(len(kept), dtype=torch.int64),
                           ("image",), name=str(path), split="files")
    return dataset, kept


def resolve_images(spec: str, image_shape: Sequence[int], data_dir: str | None = None,
                   default_split: str = "test") -> tuple[ImageDataset, list[str] | None]:
    """Images named by a dataset spec (``fashion-mnist:test``, ``shapes``) or a path.

    Returns the dataset and, for files, their names (``None`` for datasets).
    """
    import vaekit.folder  # noqa: F401 - registers the folder:PATH dataset

    if Path(spec).exists():
        return load_image_files(spec, image_shape)
    name, sep, split = spec.rpartition(":")
    if not sep or split not in ("train", "test"):
        name, split = spec, default_split
    try:
        return load_dataset(name, split, data_dir=data_dir), None
    except ConfigError:
        if "/" in spec or "\\" in spec or spec.lower().endswith(vaekit.folder.IMAGE_EXTENSIONS):
            raise DataError(f"{spec}: no such file or folder") from None
        raise ConfigError(f"--images: '{spec}' is neither a file, a folder nor a dataset "
                          f"({', '.join(dataset_names())}, optionally with :train or :test)") from None


# ----------------------------------------------------------------------------
# Embeddings and probes


@dataclass
class Embedding:
    """Posterior parameters of every image of a dataset split."""

    z_mean: np.ndarray  # (N, latent_dim) float32
    z_log_var: np.ndarray
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    dataset: str
    split: str

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays ``z_mean``, ``z_log_var``, ``labels``, ``class_names``) or ``.csv``."""
        from vaekit.rundir import atomic_write_bytes

        path = Path(path)
        buffer = io.BytesIO()
        if path.suffix.lower() == ".csv":
            buffer.write(self.to_csv().encode("utf-8"))
        elif path.suffix.lower() == ".npz":
            np.savez_compressed(buffer, z_mean=self.z_mean, z_log_var=self.z_log_var, labels=self.labels,
                                class_names=np.array(self.class_names), dataset=np.array(self.dataset),
                                split=np.array(self.split))
        else:
            raise ConfigError(f"{path}: the output must end in .npz or .csv")
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def to_csv(self) -> str:
        d = self.z_mean.shape[1]
        header = ["index", "label", "class"] + [f"z_mean_{i}" for i in range(d)] + [f"z_log_var_{i}" for i in range(d)]
        lines = [",".join(header)]
        for i in range(len(self.labels)):
            label = int(self.labels[i])
            name = self.class_names[label] if 0 <= label < len(self.class_names) else ""
            values = [f"{v:.6g}" for v in (*self.z_mean[i], *self.z_log_var[i])]
            lines.append(",".join([str(i), str(label), _csv_field(name), *values]))
        return "\n".join(lines) + "\n"


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def embed_dataset(model: VAE, dataset: ImageDataset, batch_size: int = 1000) -> Embedding:
    """Encode every image: ``z_mean``, ``z_log_var`` and the labels."""
    check_images_fit(model, dataset)
    z_mean, z_log_var = encode_images(model, dataset.images, batch_size)
    check_finite({"z_mean": z_mean.numpy(), "z_log_var": z_log_var.numpy()}, f"embedding of {dataset.name}")
    return Embedding(z_mean.numpy(), z_log_var.numpy(), dataset.labels.numpy(), dataset.class_names,
                     dataset.name, dataset.split)


@dataclass
class ProbeScores:
    """Label accuracy of simple classifiers on the VAE's embedding and on PCA."""

    dim: int
    k: int
    n_train: int
    n_test: int
    knn_accuracy: float
    linear_accuracy: float
    pca_knn_accuracy: float
    pca_linear_accuracy: float
    pca_explained_variance: float
    chance_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   k: int = 10, seed: int = 0) -> tuple[float, float]:
    """Test accuracy of a k-NN classifier and of a linear probe (logistic regression).

    The linear probe standardises the features first; k-NN uses plain
    Euclidean distances (the geometry of the embedding is what is judged).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_y))).fit(train_x, train_y)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    linear.fit(train_x, train_y)
    return float(knn.score(test_x, test_y)), float(linear.score(test_x, test_y))


def embedding_quality(model: VAE, train_set: ImageDataset, test_set: ImageDataset, k: int = 10,
                      seed: int = 0) -> ProbeScores:
    """k-NN and linear-probe accuracy of ``z_mean``, compared with PCA of the pixels.

    Both probes are fitted on ``train_set`` and scored on ``test_set``; PCA
    (scikit-learn) keeps as many components as the model has latent units
    and is fitted on the same training images.
    """
    from sklearn.decomposition import PCA

    for data in (train_set, test_set):
        check_images_fit(model, data)
    if len(np.unique(train_set.labels.numpy())) < 2:
        raise DataError(f"dataset '{train_set.name}': the probes need at least two classes in the training split")
    train_z = embed_dataset(model, train_set).z_mean
    test_z = embed_dataset(model, test_set).z_mean
    train_y, test_y = train_set.labels.numpy(), test_set.labels.numpy()
    knn, linear = probe_accuracy(train_z, train_y, test_z, test_y, k, seed)
    dim = min(model.latent_dim, len(train_set), math.prod(model.image_shape))
    pca = PCA(n_components=dim, random_state=seed).fit(train_set.images.flatten(1).numpy() / 255.0)
    train_p = pca.transform(train_set.images.flatten(1).numpy() / 255.0)
    test_p = pca.transform(test_set.images.flatten(1).numpy() / 255.0)
    pca_knn, pca_linear = probe_accuracy(train_p, train_y, test_p, test_y, k, seed)
    chance = float(np.bincount(test_y).max() / len(test_y))
    return ProbeScores(model.latent_dim, k, len(train_y), len(test_y), knn, linear, pca_knn, pca_linear,
                       float(pca.explained_variance_ratio_.sum()), chance)


# ----------------------------------------------------------------------------
# Anomaly detection


def png_bits(images: torch.Tensor) -> np.ndarray:
    """Size in bits of each uint8 image compressed as PNG (level 9): Serrà et al.'s complexity L(x)."""
    from PIL import Image

    bits = np.empty(images.shape[0], dtype=np.float64)
    array = images.cpu().numpy()
    for i, image in enumerate(array):
        pil = Image.fromarray(image[0]) if image.shape[0] == 1 else Image.fromarray(image.transpose(1, 2, 0))
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG", compress_level=9)
        bits[i] = 8 * buffer.tell()
    return bits


@dataclass
class AnomalyScores:
    """Per-image anomaly scores; higher means more anomalous.

    ``scores`` maps each name of :data:`ANOMALY_SCORES` to an ``(N,)`` array:

    ``neg_elbo``
        Negative ELBO, nats per image.
    ``recon_error``
        Sum of squared pixel errors of the reconstruction from ``z_mean``
        (pixels in [0, 1]; likelihood-free, the classic autoencoder score).
    ``iwae``
        Negative IWAE bound with ``iw_samples`` samples, nats per image.
    ``complexity``
        Serrà et al.'s complexity-corrected score
        ``S(x) = -log2 p(x) - L(x)``, in bits per dimension, with the IWAE
        bound for ``-log p(x)`` and L(x) the PNG size in bits.
    """

    scores: dict[str, np.ndarray]
    png_bits: np.ndarray
    iw_samples: int
    likelihood: dict[str, Any]


def anomaly_scores(model: VAE, dataset: ImageDataset, likelihood: Likelihood | None = None, iw_samples: int = 16,
                   seed: int = 0, batch_size: int = 500) -> AnomalyScores:
    """Score every image: negative ELBO, reconstruction error, IWAE bound and a complexity-corrected bound.

    Plain likelihoods of deep generative models are known to rate simple
    out-of-distribution images (few edges, large flat areas) as *more* likely
    than the training data. The complexity-corrected score subtracts the
    image's PNG-compressed size from its negative log-likelihood, following

        J. Serrà, D. Álvarez, V. Gómez, O. Slizovskaia, J. F. Núñez and
        J. Luque, "Input complexity and out-of-distribution detection with
        likelihood-based generative models", ICLR 2020.

    Parameters
    ----------
    model, dataset
        The model and the images to score.
    likelihood
        Reconstruction likelihood (see :func:`run_likelihood`).
    iw_samples
        K for the IWAE score (the ELBO's reconstruction term averages the
        same K samples).
    seed
        Seeds the posterior samples.

    Returns
    -------
    AnomalyScores
    """
    likelihood = likelihood or Likelihood()
    check_images_fit(model, dataset)
    check_iw_samples(iw_samples)
    bounds = image_bounds(model, dataset.images, iw_samples, likelihood, seed, batch_size)
    recon_error = _reconstruction_error(model, dataset.images, batch_size)
    bits = png_bits(dataset.images)
    dims = math.prod(model.image_shape)
    complexity = (bounds.iwae / math.log(2) - bits) / dims
    scores = {"neg_elbo": bounds.elbo, "recon_error": recon_error, "iwae": bounds.iwae, "complexity": complexity}
    check_finite(scores, f"anomaly scores of {dataset.name}")
    return AnomalyScores(scores, bits, iw_samples, likelihood.to_dict())


@torch.no_grad()
def _reconstruction_error(model: VAE, images: torch.Tensor, batch_size: int) -> np.ndarray:
    device = _device_of(model)
    errors = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float().div(255.0)
        z_mean, _ = model.encode(x)
        errors.append((model.decode(z_mean) - x).double().square().flatten(1).sum(1).cpu())
    return torch.cat(errors).numpy()


def auroc(is_anomaly: Iterable[bool] | np.ndarray, scores: Iterable[float] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for telling anomalies (True) from normal images.

    The probability that a random anomaly scores higher than a random normal
    image (ties count one half): 1 is perfect, 0.5 is chance, below 0.5 the
    score ranks the wrong way round. Computed with
    :func:`sklearn.metrics.roc_auc_score`.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(list(is_anomaly) if not isinstance(is_anomaly, np.ndarray) else is_anomaly).astype(bool)
    s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ConfigError(f"auroc: expected two 1-D arrays of the same length, got {y.shape} and {s.shape}")
    if y.all() or not y.any():
        raise DataError("AUROC needs both anomalous and normal images")
    check_finite({"scores": s}, "auroc")
    return float(roc_auc_score(y, s))


@dataclass
class AnomalyProtocol:
    """Anomaly detection with known answers: the scores and the AUROC of each.

    ``held_out`` names what is anomalous (the held-out classes, or the
    anomalous dataset); ``is_anomaly`` marks those images of ``dataset``.
    """

    held_out: list[str]
    is_anomaly: np.ndarray
    dataset: ImageDataset
    scores: AnomalyScores
    auroc: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"anomalous": self.held_out, "n_anomalous": int(self.is_anomaly.sum()),
                "n_normal": int((~self.is_anomaly).sum()), "iw_samples": self.scores.iw_samples,
                "auroc": self.auroc, "likelihood": self.scores.likelihood, "dataset": self.dataset.name,
                "split": self.dataset.split}


def held_out_mask(dataset: ImageDataset, held_out: Sequence[str]) -> np.ndarray:
    """Boolean mask of the images whose class is one of ``held_out``."""
    unknown = [name for name in held_out if name not in dataset.class_names]
    if unknown:
        raise ConfigError(f"unknown class '{unknown[0]}' for dataset '{dataset.name}'; choose from: "
                          + ", ".join(dataset.class_names))
    ids = [dataset.class_names.index(name) for name in held_out]
    return np.isin(dataset.labels.numpy(), ids)


def anomaly_protocol(model: VAE, test_set: ImageDataset, held_out: Sequence[str],
                     likelihood: Likelihood | None = None, iw_samples: int = 16, seed: int = 0,
                     max_normal: int | None = None, max_anomalous: int | None = None) -> AnomalyProtocol:
    """Score a test split and report AUROC of the held-out classes against the rest, per score.

    Parameters
    ----------
    model
        Trained without ``held_out`` (``vaekit train --exclude-classes``).
    test_set
        Labelled test images of all classes.
    held_out
        The anomalous class names.
    max_normal, max_anomalous
        Keep only the first this many normal / anomalous images (for speed).
    """
    if not held_out:
        raise ConfigError("the run was trained on every class: train with --exclude-classes CLASS "
                          "for the held-out protocol, or pass --images")
    mask = held_out_mask(test_set, held_out)
    keep = np.concatenate([np.flatnonzero(~mask)[:max_normal], np.flatnonzero(mask)[:max_anomalous]])
    keep.sort()
    data = test_set.subset(torch.from_numpy(keep))
    is_anomaly = mask[keep]
    if is_anomaly.all() or not is_anomaly.any():
        raise DataError(f"dataset '{test_set.name}' ({test_set.split}): the protocol needs images of the held-out "
                        f"classes ({', '.join(held_out)}) and of the others")
    return _score_protocol(model, data, is_anomaly, list(held_out), likelihood, iw_samples, seed)


def anomaly_versus(model: VAE, normal: ImageDataset, anomalous: ImageDataset, likelihood: Likelihood | None = None,
                   iw_samples: int = 16, seed: int = 0) -> AnomalyProtocol:
    """Score two sets of images and report AUROC of ``anomalous`` against ``normal``, per score.

    For out-of-distribution detection between datasets, e.g. a Fashion-MNIST
    run's test split (normal) against ``shapes`` (anomalous). The returned
    dataset holds the normal images first; its two classes are the datasets'
    names.
    """
    for data in (normal, anomalous):
        check_images_fit(model, data)
    data = ImageDataset(torch.cat([normal.images, anomalous.images]),
                        torch.cat([torch.zeros(len(normal)), torch.ones(len(anomalous))]).long(),
                        (f"normal: {normal.name}", f"anomalous: {anomalous.name}"),
                        name=f"{anomalous.name} vs {normal.name}", split="mixed")
    is_anomaly = np.arange(len(data)) >= len(normal)
    return _score_protocol(model, data, is_anomaly, [anomalous.name], likelihood, iw_samples, seed)


def _score_protocol(model: VAE, data: ImageDataset, is_anomaly: np.ndarray, held_out: list[str],
                    likelihood: Likelihood | None, iw_samples: int, seed: int) -> AnomalyProtocol:
    scores = anomaly_scores(model, data, likelihood, iw_samples, seed)
    aurocs = {name: auroc(is_anomaly, values) for name, values in scores.scores.items()}
    return AnomalyProtocol(held_out, is_anomaly, data, scores, aurocs)


def anomaly_rows(scores: AnomalyScores, dataset: ImageDataset, names: Sequence[str] | None = None,
                 is_anomaly: np.ndarray | None = None) -> list[dict[str, Any]]:
    """CSV rows: one per image, with its label or file name and every score."""
    rows = []
    for i in range(len(dataset)):
        row: dict[str, Any] = {"index": i}
        if names is not None:
            row["file"] = names[i]
        else:
            label = int(dataset.labels[i])
            row["label"] = label
            row["class"] = dataset.class_names[label] if label < len(dataset.class_names) else ""
        if is_anomaly is not None:
            row["anomalous"] = int(is_anomaly[i])
        for name, values in scores.scores.items():
            row[name] = f"{values[i]:.6g}"
        row["png_bits"] = int(scores.png_bits[i])
        rows.append(row)
    return rows


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
            raise ConfigError(f"--noise-sigma must be positive, got {level}")
        noise = torch.randn(images.shape, generator=generator)
        return (images + level * noise.to(images.device)).clamp(0.0, 1.0), torch.ones_like(images, dtype=torch.bool)
    if kind == "mask":
        if not 0 < level < 1:
            raise ConfigError(f"--mask-area must be between 0 and 1, got {level}")
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


@torch.no_grad()
def denoise_images(model: VAE, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Reconstruct float images in [0, 1] from their posterior means (no sampling noise)."""
    device = _device_of(model)
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float()
        z_mean, _ = model.encode(x)
        out.append(model.decode(z_mean).float().cpu())
    return torch.cat(out)


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


def denoise_benchmark(model: VAE, dataset: ImageDataset, corruptions: Sequence[tuple[str, float]] = (
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
    check_images_fit(model, dataset)
    clean = dataset.images.float().div(255.0)
    clean_recon = denoise_images(model, clean)
    mse_clean = float((clean_recon - clean).double().square().mean())
    generator = torch.Generator().manual_seed(seed)
    results, examples = [], {"clean": clean, "clean_reconstruction": clean_recon}
    for kind, level in corruptions:
        noisy, region = corrupt(clean, kind, level, generator)
        output = denoise_images(model, noisy)
        err_in, err_out = (noisy - clean).double().square(), (output - clean).double().square()
        mse_in, mse_out = float(err_in.mean()), float(err_out.mean())
        region_in, region_out = float(err_in[region].mean()), float(err_out[region].mean())
        check_finite({"mse_input": mse_in, "mse_output": mse_out}, f"denoising ({kind})")
        results.append(DenoiseResult(kind, float(level), len(dataset), mse_in, mse_out, mse_clean, _psnr(mse_in),
                                     _psnr(mse_out), _psnr(mse_out) - _psnr(mse_in),
                                     1 - mse_out / mse_in if mse_in > 0 else 0.0, region_in, region_out))
        examples[kind], examples[f"{kind}_output"] = noisy, output
    return results, examples


# ----------------------------------------------------------------------------
# Figures


def anomaly_figure(images: torch.Tensor, scores: dict[str, np.ndarray], captions: Sequence[str], n: int = 10,
                   title: str = "Most anomalous images"):
    """One row per score: the ``n`` images it rates most anomalous, highest first.

    Each image is captioned with ``captions[i]`` (class or file name) and its
    score; returns a Matplotlib figure (see :func:`vaekit.plots.save_figure`).
    """
    import matplotlib.pyplot as plt

    from vaekit.plots import show_image, to_display

    n = min(n, images.shape[0])
    names = list(scores)
    fig, axes = plt.subplots(len(names), n, figsize=(1.25 * n + 1.4, 1.55 * len(names) + 0.5), squeeze=False)
    for r, name in enumerate(names):
        order = np.argsort(-scores[name], kind="stable")[:n]
        # Floats in [0, 1]: to_display would clip a uint8 *tensor* to black and white.
        shown = to_display(images[torch.from_numpy(order.copy())].float().div(255.0))
        for c in range(n):
            ax = axes[r, c]
            show_image(ax, shown[c])
            ax.set_title(f"{_short(captions[order[c]])}\n{scores[name][order[c]]:.3g}", fontsize=7)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _short(text: str, width: int = 13) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def denoise_figure(examples: dict[str, torch.Tensor], corruptions: Sequence[str], n: int = 8):
    """Rows: clean images, then for each corruption the corrupted input and its reconstruction."""
    from vaekit.plots import image_grid_figure, to_display

    rows, labels = [to_display(examples["clean"][:n])], ["clean"]
    for kind in corruptions:
        rows += [to_display(examples[kind][:n]), to_display(examples[f"{kind}_output"][:n])]
        labels += [f"{kind}\ninput", f"{kind}\noutput"]
    return image_grid_figure(rows, row_labels=labels, suptitle="Denoising: corrupted input and reconstruction")
