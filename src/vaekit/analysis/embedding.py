"""Embeddings: z_mean per image, and how well simple probes read the labels from it."""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.analysis.bounds import check_finite, check_images_fit
from vaekit.analysis.inference import ModelLike, inference_for
from vaekit.data.dataset import ImageDataset
from vaekit.errors import ConfigError, DataError
from vaekit.files import atomic_write_bytes

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


def embed_dataset(model: ModelLike, dataset: ImageDataset) -> Embedding:
    """Encode every image: ``z_mean``, ``z_log_var`` and the labels."""
    model = inference_for(model)
    check_images_fit(model, dataset)
    z_mean, z_log_var = model.encode(dataset.images)
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


def embedding_quality(model: ModelLike, train_set: ImageDataset, test_set: ImageDataset, k: int = 10,
                      seed: int = 0) -> ProbeScores:
    """k-NN and linear-probe accuracy of ``z_mean``, compared with PCA of the pixels.

    Both probes are fitted on ``train_set`` and scored on ``test_set``; PCA
    (scikit-learn) keeps as many components as the model has latent units
    and is fitted on the same training images.
    """
    from sklearn.decomposition import PCA

    model = inference_for(model)
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
