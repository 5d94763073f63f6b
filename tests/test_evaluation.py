"""Tests of vaekit.evaluation: bounds, probes, anomaly scores, AUROC and denoising."""

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

import vaekit
import vaekit.analysis.anomaly as anomaly_mod
import vaekit.analysis.bounds as bounds_mod
import vaekit.analysis.denoise as denoise_mod
import vaekit.analysis.embedding as embedding_mod
import vaekit.data.folder as folder_mod
from vaekit.analysis import Inference
from vaekit.data import make_shapes
from vaekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def model(fashion_run):
    return vaekit.load(fashion_run)


@pytest.fixture(scope="module")
def test_set(fashion_mnist_dir):
    return vaekit.load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir)


@pytest.fixture(scope="module")
def small_test(test_set):
    return test_set.subset(torch.arange(200))


def _hand_auroc(is_anomaly, scores):
    """Probability that an anomaly outscores a normal image, ties counting one half."""
    anomalous = [s for s, a in zip(scores, is_anomaly) if a]
    normal = [s for s, a in zip(scores, is_anomaly) if not a]
    wins = sum((a > n) + 0.5 * (a == n) for a in anomalous for n in normal)
    return wins / (len(anomalous) * len(normal))


# ----------------------------------------------------------------------------
# Bounds


def test_iwae_is_never_looser_than_the_elbo_and_tightens_with_k(model, small_test):
    images = small_test.images[:40]
    one = bounds_mod.image_bounds(model, images, k=1, seed=0)
    many = bounds_mod.image_bounds(model, images, k=64, seed=0)
    # Exact per image: log-mean-exp >= mean-log over the same samples (Jensen).
    assert np.all(many.iwae <= many.elbo_same_samples + 1e-9)
    # With K=1 the IWAE bound *is* the one-sample ELBO.
    np.testing.assert_allclose(one.iwae, one.elbo_same_samples, rtol=0, atol=1e-9)
    # A tighter bound on average, and below the analytic-KL ELBO of the same images.
    assert many.iwae.mean() < one.iwae.mean()
    assert many.iwae.mean() < many.elbo.mean()
    assert np.all(np.isfinite(many.iwae)) and many.iwae.dtype == np.float64


def test_with_one_sample_the_iwae_bound_equals_the_elbo_in_expectation(model, small_test):
    images = small_test.images[:4]
    repeats = 300
    draws = bounds_mod.image_bounds(model, images.repeat(repeats, 1, 1, 1), k=1, seed=1).iwae.reshape(repeats, 4)
    reference = bounds_mod.image_bounds(model, images, k=1000, seed=2).elbo  # analytic KL, recon over 1000 samples
    # Both sides are Monte Carlo estimates; the reference's error is ~sqrt(300/1000) of the draws'.
    standard_error = draws.std(0, ddof=1) / math.sqrt(repeats) * math.sqrt(1 + repeats / 1000)
    assert np.all(np.abs(draws.mean(0) - reference) < 4 * standard_error)


def test_bounds_are_reproducible_from_the_seed_and_chunked_decoding_changes_nothing(model, small_test, monkeypatch):
    images = small_test.images[:6]
    first = bounds_mod.image_bounds(model, images, k=50, seed=7)
    again = bounds_mod.image_bounds(model, images, k=50, seed=7)
    np.testing.assert_array_equal(first.iwae, again.iwae)
    monkeypatch.setattr(bounds_mod, "DECODE_CHUNK", 7)  # splits the samples of one image over many decoder calls
    chunked = bounds_mod.image_bounds(model, images, k=50, seed=7, batch_size=4)
    np.testing.assert_allclose(chunked.iwae, first.iwae, rtol=1e-5)


def test_evaluate_model_reports_consistent_numbers(model, small_test):
    result = bounds_mod.evaluate_model(model, small_test, iw_samples=50, iw_images=20, seed=0)
    assert result.n_images == 200 and result.iw_images == 20 and result.dimensions == 784
    assert result.elbo == pytest.approx(result.recon + result.kl)
    assert result.kl == pytest.approx(sum(result.kl_per_dim), rel=1e-6)
    assert result.iwae <= result.elbo_iw_images
    assert result.iwae_bits_per_dim == pytest.approx(result.iwae / (784 * math.log(2)))
    z_mean, _ = Inference(model).encode(small_test.images)
    assert result.active_units == int((z_mean.var(0) > 0.01).sum())
    assert result.active_units >= 1 and len(result.kl_per_dim) == 2
    assert result.likelihood["kind"] == "bernoulli" and result.likelihood["normalised"] is False
    assert "NOT a normalised" in result.likelihood["description"]


def test_binarised_evaluation_is_a_normalised_likelihood(model, small_test):
    threshold = bounds_mod.Likelihood("bernoulli", binarize="threshold")
    targets = threshold.targets(small_test.images[:5])
    assert set(targets.unique().tolist()) <= {0.0, 1.0}
    result = bounds_mod.evaluate_model(model, small_test.subset(torch.arange(30)), threshold, iw_samples=20)
    assert result.likelihood["normalised"] is True
    # A normalised discrete likelihood is a probability: -log p(x) >= 0, and the bound above it too.
    assert result.iwae > 0
    with pytest.raises(ConfigError, match="bernoulli"):
        bounds_mod.Likelihood("gaussian", binarize="stochastic")


def test_gaussian_likelihood_bounds_keep_their_order(model, small_test):
    gaussian = bounds_mod.Likelihood("gaussian", sigma=0.2)
    bounds = bounds_mod.image_bounds(model, small_test.images[:10], k=16, likelihood=gaussian)
    assert np.all(bounds.iwae <= bounds.elbo_same_samples + 1e-9)
    assert gaussian.normalised and "normalised density" in gaussian.describe()


def test_bad_inputs_are_one_line_errors(model, small_test):
    with pytest.raises(ConfigError, match="iw_samples must be") as error:
        bounds_mod.evaluate_model(model, small_test, iw_samples=0)
    assert error.value.param == "iw_samples"  # the CLI shows it as --iw-samples
    rgb = make_shapes(n=12, channels=3)
    with pytest.raises(DataError, match=r"\(3, 28, 28\).*expects \(1, 28, 28\)"):
        bounds_mod.evaluate_model(model, rgb, iw_samples=2)
    big = make_shapes(n=12, image_size=32)
    with pytest.raises(DataError, match="shape"):
        anomaly_mod.anomaly_scores(model, big)


def test_non_finite_results_are_an_error(model, small_test):
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.z_log_var.bias.fill_(float("nan"))
    with pytest.raises(bounds_mod.NonFiniteResultError, match="not finite"):
        bounds_mod.evaluate_model(broken, small_test.subset(torch.arange(5)), iw_samples=2)
    with pytest.raises(bounds_mod.NonFiniteResultError):
        anomaly_mod.anomaly_scores(broken, small_test.subset(torch.arange(5)), iw_samples=2)


# ----------------------------------------------------------------------------
# AUROC


def test_auroc_matches_a_hand_computation():
    is_anomaly = [False, False, False, True, True]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4]
    # 0.8 beats all three normals (3); 0.4 beats 0.1 and 0.35 and ties 0.4 (2.5): 5.5 of 6 pairs.
    assert anomaly_mod.auroc(is_anomaly, scores) == pytest.approx(5.5 / 6)
    assert _hand_auroc(is_anomaly, scores) == pytest.approx(5.5 / 6)
    assert anomaly_mod.auroc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert anomaly_mod.auroc([0, 0, 1, 1], [4, 3, 2, 1]) == 0.0
    assert anomaly_mod.auroc([0, 1, 0, 1], [5, 5, 5, 5]) == 0.5
    rng = np.random.default_rng(0)
    labels, values = rng.random(300) < 0.2, rng.normal(size=300).round(1)  # rounding makes ties
    assert anomaly_mod.auroc(labels, values) == pytest.approx(_hand_auroc(labels, values))


def test_auroc_needs_both_kinds_of_image_and_finite_scores():
    with pytest.raises(DataError, match="both"):
        anomaly_mod.auroc([True, True], [1.0, 2.0])
    with pytest.raises(bounds_mod.NonFiniteResultError):
        anomaly_mod.auroc([True, False], [1.0, float("nan")])


# ----------------------------------------------------------------------------
# Anomaly scores


def test_anomaly_scores_and_the_complexity_correction(model, small_test):
    scores = anomaly_mod.anomaly_scores(model, small_test.subset(torch.arange(30)), iw_samples=8)
    assert list(scores.scores) == list(anomaly_mod.ANOMALY_SCORES)
    for values in scores.scores.values():
        assert values.shape == (30,) and np.all(np.isfinite(values))
    expected = (scores.scores["iwae"] / math.log(2) - scores.png_bits) / 784
    np.testing.assert_allclose(scores.scores["complexity"], expected)
    assert np.all(scores.scores["iwae"] <= scores.scores["neg_elbo"] + 5.0)


def test_png_bits_measure_complexity():
    flat = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    noise = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    bits = anomaly_mod.png_bits(torch.cat([flat, noise]))
    assert bits[0] < bits[1] and bits[1] > 8 * 28 * 28 * 0.9  # noise does not compress


def test_held_out_protocol_aurocs_agree_with_the_scores(model, test_set):
    data = test_set.subset(torch.arange(150))
    protocol = anomaly_mod.anomaly_protocol(model, data, ["Trouser"], iw_samples=4)
    labels = data.labels.numpy() == data.class_names.index("Trouser")
    np.testing.assert_array_equal(protocol.is_anomaly, labels)
    for name, values in protocol.scores.scores.items():
        assert protocol.auroc[name] == pytest.approx(roc_auc_score(labels, values))
        assert protocol.auroc[name] == pytest.approx(_hand_auroc(labels, values))
    with pytest.raises(ConfigError, match="--exclude-classes"):
        anomaly_mod.anomaly_protocol(model, data, [])
    with pytest.raises(ConfigError, match="unknown class"):
        anomaly_mod.anomaly_protocol(model, data, ["Hat"])


def test_simple_shapes_fool_the_likelihood_but_not_the_complexity_score(model, test_set):
    normal = test_set.subset(torch.arange(100))
    shapes = make_shapes(n=100, split="test")
    protocol = anomaly_mod.anomaly_versus(model, normal, shapes, iw_samples=4)
    assert protocol.is_anomaly.sum() == 100 and len(protocol.dataset) == 200
    # The well-known failure of plain likelihood (simple images look likely),
    # corrected by subtracting the PNG complexity (Serrà et al., 2020).
    assert protocol.auroc["complexity"] > 0.9
    assert protocol.auroc["complexity"] > protocol.auroc["iwae"]


# ----------------------------------------------------------------------------
# Embeddings


def test_embedding_export_round_trips(model, small_test, tmp_path):
    embedding = embedding_mod.embed_dataset(model, small_test)
    assert embedding.z_mean.shape == (200, 2) and embedding.z_log_var.shape == (200, 2)
    embedding.save(tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz") as saved:
        np.testing.assert_array_equal(saved["z_mean"], embedding.z_mean)
        np.testing.assert_array_equal(saved["labels"], small_test.labels.numpy())
        assert list(saved["class_names"]) == list(small_test.class_names)
    embedding.save(tmp_path / "e.csv")
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "index,label,class,z_mean_0,z_mean_1,z_log_var_0,z_log_var_1" and len(lines) == 201
    first = lines[1].split(",")
    assert first[2] == small_test.class_names[int(small_test.labels[0])]
    assert float(first[3]) == pytest.approx(float(embedding.z_mean[0, 0]), rel=1e-5)
    with pytest.raises(ConfigError, match=".npz or .csv"):
        embedding.save(tmp_path / "e.txt")


def test_probe_accuracy_on_a_hand_made_case():
    train_x = np.array([[0.0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5], [5, 5.1]])
    train_y = np.array([0, 0, 0, 1, 1, 1])
    test_x, test_y = np.array([[0.05, 0.05], [4.9, 5.2]]), np.array([0, 1])
    assert embedding_mod.probe_accuracy(train_x, train_y, test_x, test_y, k=3) == (1.0, 1.0)


def test_embedding_quality_beats_chance_and_compares_with_pca(model, fashion_mnist_dir, small_test):
    train = vaekit.load_dataset("fashion-mnist", "train", data_dir=fashion_mnist_dir).subset(torch.arange(2000))
    quality = embedding_mod.embedding_quality(model, train, small_test, k=10)
    assert quality.dim == 2 and quality.n_train == 2000 and quality.n_test == 200
    assert quality.knn_accuracy > quality.chance_accuracy + 0.2
    assert quality.linear_accuracy > quality.chance_accuracy + 0.2
    assert 0 < quality.pca_knn_accuracy <= 1 and 0 < quality.pca_explained_variance < 1


# ----------------------------------------------------------------------------
# Images from files


def test_image_files_are_converted_to_the_model_shape(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (40, 40), (255, 0, 0)).save(folder / "red.png")
    Image.new("L", (28, 28), 200).save(folder / "grey.jpg")
    (folder / "notes.txt").write_text("not an image")
    data, names = folder_mod.load_image_files(folder, (1, 28, 28))
    assert names == ["grey.jpg", "red.png"] and tuple(data.images.shape) == (2, 1, 28, 28)
    assert data.images.dtype == torch.uint8 and abs(int(data.images[0].float().mean()) - 200) <= 2
    single, names = folder_mod.load_image_files(folder / "red.png", (3, 28, 28))
    assert tuple(single.images.shape) == (1, 3, 28, 28) and int(single.images[0, 0].float().mean()) == 255


def test_missing_empty_or_unreadable_images_are_data_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image files"):
        folder_mod.load_image_files(empty, (1, 28, 28))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        folder_mod.load_image_files(bad, (1, 28, 28))
    with pytest.raises(DataError, match="no such file"):
        folder_mod.resolve_images(str(tmp_path / "missing" / "x.png"), (1, 28, 28))
    with pytest.raises(ConfigError, match="neither a file"):
        folder_mod.resolve_images("no-such-dataset", (1, 28, 28))


def test_dataset_specs_name_a_split(fashion_mnist_dir):
    train, names = folder_mod.resolve_images("shapes:train", (1, 28, 28))
    assert names is None and train.split == "train" and train.name == "shapes"
    test, _ = folder_mod.resolve_images("fashion-mnist:test", (1, 28, 28), data_dir=str(fashion_mnist_dir))
    assert test.split == "test" and len(test) == 10000


# ----------------------------------------------------------------------------
# Denoising


def test_corruptions_touch_exactly_their_region():
    clean = torch.full((4, 1, 28, 28), 0.5)
    generator = torch.Generator().manual_seed(0)
    masked, region = denoise_mod.corrupt(clean, "mask", 0.25, generator)
    assert torch.all(region.flatten(1).sum(1) == 14 * 14)
    assert torch.all(masked[region] == 0) and torch.all(masked[~region] == 0.5)
    noisy, region = denoise_mod.corrupt(clean, "gaussian", 0.3, generator)
    assert region.all() and noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, clean)
    with pytest.raises(ConfigError, match="mask_area"):
        denoise_mod.corrupt(clean, "mask", 1.5, generator)
    with pytest.raises(ConfigError, match="unknown corruption"):
        denoise_mod.corrupt(clean, "blur", 1.0, generator)


def test_denoising_brings_noisy_images_closer_to_the_clean_ones(model, small_test):
    results, examples = denoise_mod.denoise_benchmark(model, small_test, [("gaussian", 0.5), ("mask", 0.25)])
    gaussian, mask = results
    assert gaussian.mse_output < gaussian.mse_input and gaussian.improvement_db > 0
    assert gaussian.mse_reduction == pytest.approx(1 - gaussian.mse_output / gaussian.mse_input)
    assert gaussian.psnr_input == pytest.approx(10 * math.log10(1 / gaussian.mse_input))
    # Inside the black square the reconstruction restores part of what was lost.
    assert mask.mse_output_region < mask.mse_input_region
    assert examples["mask"].shape == small_test.images.shape
