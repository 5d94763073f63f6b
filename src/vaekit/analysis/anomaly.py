"""Anomaly scores per image and AUROC protocols (held-out classes, other datasets)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from vaekit.analysis.bounds import (
    Likelihood,
    check_finite,
    check_images_fit,
    check_iw_samples,
    image_bounds,
)
from vaekit.analysis.inference import ModelLike, inference_for
from vaekit.data.classes import class_mask
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError, DataError

ANOMALY_SCORES = ("neg_elbo", "recon_error", "iwae", "complexity")


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


def anomaly_scores(model: ModelLike, dataset: ImageDataset, likelihood: Likelihood | None = None, iw_samples: int = 16,
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
    model = inference_for(model)
    check_images_fit(model, dataset)
    check_iw_samples(iw_samples, len(dataset))
    bounds = image_bounds(model, dataset.images, iw_samples, likelihood, seed, batch_size)
    # Likelihood-free: squared pixel error of the reconstruction from z_mean.
    recon_error = (model.reconstruct(dataset.images) - dataset.images.float() / 255.0).double().square().flatten(1).sum(1).numpy()
    bits = png_bits(dataset.images)
    dims = math.prod(model.image_shape)
    complexity = (bounds.iwae / math.log(2) - bits) / dims
    scores = {"neg_elbo": bounds.elbo, "recon_error": recon_error, "iwae": bounds.iwae, "complexity": complexity}
    check_finite(scores, f"anomaly scores of {dataset.name}")
    return AnomalyScores(scores, bits, iw_samples, likelihood.to_dict())


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
    """Boolean mask of the images whose class is one of ``held_out`` (names as users type them)."""
    return class_mask(dataset.labels.numpy(), held_out, dataset.class_names)


def anomaly_protocol(model: ModelLike, test_set: ImageDataset, held_out: Sequence[str],
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


def anomaly_versus(model: ModelLike, normal: ImageDataset, anomalous: ImageDataset, likelihood: Likelihood | None = None,
                   iw_samples: int = 16, seed: int = 0) -> AnomalyProtocol:
    """Score two sets of images and report AUROC of ``anomalous`` against ``normal``, per score.

    For out-of-distribution detection between datasets, e.g. a Fashion-MNIST
    run's test split (normal) against ``shapes`` (anomalous). The returned
    dataset holds the normal images first; its two classes are the datasets'
    names.
    """
    model = inference_for(model)
    for data in (normal, anomalous):
        check_images_fit(model, data)
    data = ImageDataset(torch.cat([normal.images, anomalous.images]),
                        torch.cat([torch.zeros(len(normal)), torch.ones(len(anomalous))]).long(),
                        (f"normal: {normal.name}", f"anomalous: {anomalous.name}"),
                        name=f"{anomalous.name} vs {normal.name}", split="mixed")
    is_anomaly = np.arange(len(data)) >= len(normal)
    return _score_protocol(model, data, is_anomaly, [anomalous.name], likelihood, iw_samples, seed)


def _score_protocol(model: ModelLike, data: ImageDataset, is_anomaly: np.ndarray, held_out: list[str],
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


@dataclass
class AnomalyReport:
    """Everything :func:`score_run` measured: the images, their scores and, with known answers, the AUROCs.

    ``names`` are file names when files were scored (else None); ``captions``
    label each image in figures; ``protocol`` is set when it is known which
    images are anomalous (held-out classes, or ``normal`` images given).
    """

    dataset: ImageDataset
    scores: AnomalyScores
    names: list[str] | None
    captions: list[str]
    title: str
    protocol: AnomalyProtocol | None = None

    @property
    def is_anomaly(self) -> np.ndarray | None:
        return None if self.protocol is None else self.protocol.is_anomaly

    def rows(self) -> list[dict[str, Any]]:
        """One CSV row per image (see :func:`anomaly_rows`)."""
        return anomaly_rows(self.scores, self.dataset, self.names, self.is_anomaly)


def score_run(run: Any, images: str | None = None, normal: str | None = None, binarize: str | None = None,
              iw_samples: int = 16, seed: int = 0, limit: int | None = None) -> AnomalyReport:
    """Score images with a run's model, with the protocol the arguments imply.

    Parameters
    ----------
    run
        A :class:`~vaekit.runs.Run`.
    images
        What to score: a file, a folder, or a dataset spec (``fashion-mnist:test``,
        ``shapes``). ``None`` runs the held-out-class protocol on the run's test
        split: the classes the run was trained without are the anomalies.
    normal
        In-distribution images to compare ``images`` with (AUROC of ``images``
        as anomalous against these).
    binarize, iw_samples, seed
        Likelihood and IWAE settings (see :func:`anomaly_scores`).
    limit
        Score only the first ``limit`` images of each set.
    """
    from vaekit.analysis.bounds import run_likelihood
    from vaekit.data.folder import resolve_images

    if normal is not None and images is None:
        raise ConfigError("normal: give the anomalous images as well", param="normal")
    likelihood = run_likelihood(run.config, binarize)
    model, data_dir = inference_for(run), run.data_location()
    if images is None:
        test = run.dataset("test", limit=limit)
        protocol = anomaly_protocol(model, test, run.excluded_classes, likelihood, iw_samples, seed)
        return AnomalyReport(protocol.dataset, protocol.scores, None, _captions(protocol.dataset, None),
                             f"Most anomalous test images (held out of training: {', '.join(protocol.held_out)})",
                             protocol)
    data, names = resolve_images(images, model.image_shape, data_dir)
    data = data.subset(slice(0, limit)) if limit is not None else data
    if normal is None:
        scores = anomaly_scores(model, data, likelihood, iw_samples, seed)
        return AnomalyReport(data, scores, names, _captions(data, names), f"Most anomalous images of {images}")
    normal_set, normal_names = resolve_images(normal, model.image_shape, data_dir)
    normal_set = normal_set.subset(slice(0, limit)) if limit is not None else normal_set
    protocol = anomaly_versus(model, normal_set, data, likelihood, iw_samples, seed)
    captions = [f"N: {c}" for c in _captions(normal_set, normal_names)] + \
        [f"A: {c}" for c in _captions(data, names)]
    if names is not None or normal_names is not None:
        names = (normal_names or [f"{normal_set.name}:{i}" for i in range(len(normal_set))]) + \
            (names or [f"{data.name}:{i}" for i in range(len(data))])
    return AnomalyReport(protocol.dataset, protocol.scores, names, captions,
                         f"Most anomalous of {images} (A, anomalous) and {normal} (N, normal)", protocol)


def _captions(data: ImageDataset, names: list[str] | None) -> list[str]:
    return names or [data.class_names[int(label)] for label in data.labels]
