"""The latent-space API (vaekit.latent) and its figures (vaekit.latent_plots).

Fast: untrained models and synthetic arrays, no training. The commands on a
model trained on the real Fashion-MNIST are tested in test_explore_cli.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
import vaekit.analysis.explorer as explorer_mod
import vaekit.analysis.latent as latent_mod
import vaekit.analysis.manifold as manifold_ops_mod
import vaekit.analysis.separation as separation_mod
import vaekit.data.classes as classes_mod
import vaekit.data.images as images_mod
import vaekit.viz.latent_figures as lp_mod
from vaekit.data import FASHION_MNIST_CLASSES, SHAPES_CLASSES
from vaekit.errors import ConfigError, DataError
from vaekit.models import build_model
from vaekit.models.pretrained import save_model


@pytest.fixture(scope="module")
def model2():
    torch.manual_seed(0)
    return build_model("fashion28", latent_dim=2).eval()


@pytest.fixture(scope="module")
def model5():
    torch.manual_seed(1)
    return build_model("fashion28", latent_dim=5).eval()


def _blobs(n_per_class=30, k=3, dim=2, spread=0.1, seed=0):
    """Well-separated Gaussian clusters: codes with known class means."""
    rng = np.random.default_rng(seed)
    centres = np.eye(k, dim) * 5
    z = np.concatenate([c + spread * rng.standard_normal((n_per_class, dim)) for c in centres]).astype(np.float32)
    labels = np.repeat(np.arange(k), n_per_class)
    return latent_mod.LatentCodes(z, np.zeros_like(z), labels, tuple(f"class {i}" for i in range(k))), centres


# ----------------------------------------------------------------------------
# Class names


@pytest.mark.parametrize("name, expected", [
    ("bag", "Bag"), ("BAG", "Bag"), ("bags", "Bag"), ("Sneaker", "Sneaker"), ("shoes", "Sneaker"),
    ("t-shirt", "T-shirt/top"), ("T shirt", "T-shirt/top"), ("top", "T-shirt/top"), ("tshirt/top", "T-shirt/top"),
    ("ankle boot", "Ankle boot"), ("ankle-boot", "Ankle boot"), ("boot", "Ankle boot"), ("Boots", "Ankle boot"),
    ("sandals", "Sandal"), ("dresses", "Dress"), ("shirt", "Shirt"), ("pullover", "Pullover"), ("8", "Bag"),
])
def test_class_names_match_case_insensitively_with_aliases(name, expected):
    assert FASHION_MNIST_CLASSES[classes_mod.resolve_class(name, FASHION_MNIST_CLASSES)] == expected


def test_unknown_class_is_one_line_listing_the_valid_names():
    with pytest.raises(ConfigError) as error:
        classes_mod.resolve_class("hat", FASHION_MNIST_CLASSES)
    message = str(error.value)
    assert "'hat'" in message and "\n" not in message
    assert all(name in message for name in FASHION_MNIST_CLASSES)


def test_aliases_only_apply_when_the_dataset_has_the_class():
    with pytest.raises(ConfigError):
        classes_mod.resolve_class("shoes", SHAPES_CLASSES)
    assert classes_mod.resolve_class("Horizontal-Bar", SHAPES_CLASSES) == SHAPES_CLASSES.index("horizontal bar")


def test_default_transitions_are_the_reports_or_consecutive_classes():
    pairs = [(FASHION_MNIST_CLASSES[a], FASHION_MNIST_CLASSES[b])
             for a, b in latent_mod.default_transition_pairs(FASHION_MNIST_CLASSES)]
    assert pairs == [("Bag", "Sneaker"), ("Bag", "Sandal"), ("Sandal", "Sneaker"), ("Pullover", "T-shirt/top"),
                     ("Pullover", "Dress")]
    assert latent_mod.default_transition_pairs(SHAPES_CLASSES) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


# ----------------------------------------------------------------------------
# Interpolation paths


def test_lerp_is_the_reports_formula_with_x_the_weight_of_the_target():
    a, b = np.array([1.0, 2.0]), np.array([3.0, -2.0])
    xs = np.linspace(0, 1, 6)
    path = latent_mod.lerp(a, b, xs)
    np.testing.assert_allclose(path, [x * b + (1 - x) * a for x in xs], atol=1e-6)
    assert np.array_equal(path[0], a.astype(np.float32)) and np.array_equal(path[-1], b.astype(np.float32))


def test_slerp_keeps_the_norm_of_equal_norm_vectors():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    path = latent_mod.slerp(a, b, np.linspace(0, 1, 11))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(a), rtol=1e-5)
    # A straight line between them cuts through the low-norm middle instead.
    assert np.linalg.norm(latent_mod.lerp(a, b, [0.5])) < 0.8 * np.linalg.norm(a)
    np.testing.assert_array_equal(path[0], a.astype(np.float32))
    np.testing.assert_array_equal(path[-1], b.astype(np.float32))


def test_slerp_changes_the_norm_linearly_and_follows_the_great_circle():
    a, b = np.array([2.0, 0.0, 0.0]), np.array([0.0, 4.0, 0.0])
    xs = np.linspace(0, 1, 5)
    path = latent_mod.slerp(a, b, xs)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 2 + 2 * xs, rtol=1e-6)
    angles = np.degrees(np.arctan2(path[:, 1], path[:, 0]))
    np.testing.assert_allclose(angles, 90 * xs, atol=1e-4)


def test_slerp_between_opposite_vectors_stays_finite_and_keeps_the_norm():
    a = np.array([1.0, 0.0, 0.0])
    path = latent_mod.slerp(a, -a, np.linspace(0, 1, 7))
    assert np.isfinite(path).all()
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(path[-1], -a)


def test_slerp_refuses_a_one_dimensional_latent():
    with pytest.raises(ConfigError, match="linear"):
        latent_mod.slerp(np.array([1.0]), np.array([2.0]), [0, 1])


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_decode_exactly_the_two_vectors(model2, method):
    a, b = np.array([-1.5, 0.5], np.float32), np.array([1.0, 1.2], np.float32)
    result = latent_mod.interpolate(model2, a, b, steps=6, method=method, start="A", end="B")
    np.testing.assert_allclose(result.xs, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert result.images.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(result.z[0], a)  # exactly, not up to rounding
    np.testing.assert_array_equal(result.z[-1], b)
    # Decoding in a batch of 6 or alone may pick different kernels: equal to float32 rounding.
    np.testing.assert_allclose(result.images[0], latent_mod.decode(model2, a)[0], atol=1e-5)
    np.testing.assert_allclose(result.images[-1], latent_mod.decode(model2, b)[0], atol=1e-5)
    assert 1 / 64 <= result.smoothness.max_step_fraction <= 1 and result.smoothness.frames == 65


def test_interpolation_rejects_bad_options(model2):
    z = np.zeros(2, np.float32)
    with pytest.raises(ConfigError, match="^method must be"):
        latent_mod.interpolate(model2, z, z, method="cubic")
    with pytest.raises(ConfigError, match="^steps must be"):
        latent_mod.interpolate(model2, z, z, steps=1)


def test_smoothness_is_one_over_steps_for_an_even_change_and_one_for_a_jump():
    ramp = np.linspace(0, 1, 11)[:, None, None, None] * np.ones((1, 1, 4, 4))
    even = latent_mod.smoothness(ramp)
    assert even.max_step_fraction == pytest.approx(0.1) and even.unevenness == pytest.approx(1.0)
    jump = np.concatenate([np.zeros((5, 1, 4, 4)), np.ones((6, 1, 4, 4))])
    result = latent_mod.smoothness(jump)
    assert result.max_step_fraction == pytest.approx(1.0)
    assert result.max_step_at == pytest.approx(0.45)  # between the 5th and 6th of 11 frames


# ----------------------------------------------------------------------------
# Class means, separation, maps


def test_class_means_are_the_average_z_mean_of_each_class():
    codes, centres = _blobs()
    means = latent_mod.compute_class_means(codes, dataset="blobs")
    for c in range(3):
        np.testing.assert_allclose(means.vectors[c], codes.z_mean[codes.labels == c].mean(0), rtol=1e-5)
    np.testing.assert_allclose(means.vectors, centres[:, :2], atol=0.1)
    assert means.counts.tolist() == [30, 30, 30]
    assert np.array_equal(means.vector("CLASS 1"), means.vectors[1])


def test_class_means_round_trip_through_json_and_empty_classes_say_so():
    codes, _ = _blobs()
    codes.class_names = codes.class_names + ("empty",)
    means = latent_mod.compute_class_means(codes)
    data = json.loads(json.dumps(means.to_json()))  # strictly valid JSON: no NaN
    assert data["means"]["empty"] is None and data["count"] == 90 and data["split"] == "test"
    again = latent_mod.ClassMeans.from_json(data)
    np.testing.assert_allclose(again.vectors[:3], means.vectors[:3])
    with pytest.raises(DataError, match="no images"):
        again.vector("empty")


def test_knn_separation_is_perfect_for_separated_clusters_and_leaves_each_point_out():
    codes, _ = _blobs()
    sep = separation_mod.class_separation(codes.z_mean, codes.labels, codes.class_names, k=5)
    assert sep.accuracy == 1.0 and sep.chance == pytest.approx(1 / 3) and sep.confusion.trace() == 90
    # Alternating labels on a line: every point's nearest *other* point has the other label.
    z = np.arange(20, dtype=np.float32)[:, None].repeat(2, 1)
    labels = np.arange(20) % 2
    sep = separation_mod.class_separation(z, labels, ("even", "odd"), k=1)
    assert sep.accuracy == 0.0
    assert sep.overlaps[0][:2] == ("even", "odd") and sep.overlaps[0][2] == 1.0


def test_latent_map_of_a_2d_latent_is_the_latent_itself_and_pca_above():
    codes, _ = _blobs(dim=2)
    result = separation_mod.latent_map(codes)
    assert result.projection.method == "identity" and np.array_equal(result.projection.coords, codes.z_mean)
    codes5, _ = _blobs(dim=5)
    result = separation_mod.latent_map(codes5)
    assert result.projection.method == "pca" and "PCA" in result.projection.description
    coords = result.projection.coords
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-4)
    assert coords[:, 0].var() >= coords[:, 1].var()
    one_d = latent_mod.LatentCodes(codes.z_mean[:, :1], codes.z_mean[:, :1], codes.labels, codes.class_names)
    with pytest.raises(ConfigError, match="at least 2 dimensions"):
        separation_mod.latent_map(one_d)


def test_tsne_projection_runs_on_a_subset_and_names_itself():
    codes, _ = _blobs(n_per_class=20, dim=4)
    result = separation_mod.latent_map(codes, method="tsne", tsne_max_points=45)
    assert result.projection.method == "tsne" and result.projection.coords.shape == (45, 2)
    assert len(result.labels) == 45 and "t-SNE" in result.projection.description
    assert result.separation.n == 60  # measured on every image, in the full latent space


# ----------------------------------------------------------------------------
# Manifold and holes


def test_prior_quantiles_cover_the_prior_symmetrically():
    q = manifold_ops_mod.prior_quantiles(20)
    assert q[0] == pytest.approx(-1.96, abs=0.01) and q[-1] == pytest.approx(1.96, abs=0.01)
    np.testing.assert_allclose(q, -q[::-1], atol=1e-6)
    assert np.all(np.diff(q) > 0)


def test_manifold_of_a_2d_latent_decodes_the_grid_rows_top_down(model2):
    result = manifold_ops_mod.manifold(model2, n=5)
    assert result.images.shape == (5, 5, 1, 28, 28)
    assert np.all(np.diff(result.u) > 0) and np.all(np.diff(result.v) < 0)
    np.testing.assert_allclose(result.z[1, 3], [result.u[3], result.v[1]])
    np.testing.assert_allclose(result.images[1, 3], latent_mod.decode(model2, result.z[1, 3])[0], atol=1e-6)


def test_manifold_above_2d_uses_the_principal_plane_through_the_data_mean(model5):
    rng = np.random.default_rng(0)
    z_data = (rng.standard_normal((200, 5)) * [4, 1, 0.1, 0.1, 0.1] + [1, 2, 3, 4, 5]).astype(np.float32)
    result = manifold_ops_mod.manifold(model5, n=3, z_data=z_data)
    np.testing.assert_allclose(result.origin, z_data.mean(0), atol=1e-4)
    np.testing.assert_allclose(result.basis @ result.basis.T, np.eye(2), atol=1e-5)
    np.testing.assert_allclose(np.abs(result.basis[0]), [1, 0, 0, 0, 0], atol=0.05)
    np.testing.assert_allclose(result.z[1, 1], result.origin, atol=1e-5)  # the grid centre
    with pytest.raises(ConfigError, match="dataset"):
        manifold_ops_mod.manifold(model5, n=3)


def test_manifold_refuses_a_1d_latent():
    with pytest.raises(ConfigError, match="at least 2 dimensions; this run has 1"):
        manifold_ops_mod.manifold(build_model("fashion28", latent_dim=1), n=3)


def test_holes_are_grid_images_far_from_every_reconstruction():
    rng = np.random.default_rng(0)
    refs = np.clip(0.5 + 0.01 * rng.standard_normal((50, 1, 4, 4)), 0, 1)  # a tight cluster of images
    grid = np.stack([refs[3], refs[10] + 0.002, np.zeros((1, 4, 4)), np.ones((1, 4, 4))]).reshape(2, 2, 1, 4, 4)
    holes = manifold_ops_mod.find_holes(grid, refs)
    assert holes.mask.tolist() == [[False, False], [True, True]]
    assert holes.fraction == 0.5 and holes.n_reference == 50
    assert holes.distances[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert "2 of 4 grid points (50.0%)" in holes.summary()


# ----------------------------------------------------------------------------
# Traversals and arithmetic


def test_traversal_changes_only_one_coordinate_per_row(model5):
    reference = np.array([0.5, -1, 2, 0, 1], np.float32)
    kl = np.array([0.1, 3.0, 0.0, 1.0, 2.0])
    result = latent_mod.traverse(model5, reference, steps=7, kl=kl, max_dims=3)
    assert result.dims.tolist() == [1, 4, 3]  # highest KL first
    np.testing.assert_allclose(result.values, np.linspace(-3, 3, 7))
    for row, d in enumerate(result.dims):
        np.testing.assert_allclose(result.z[row, :, d], result.values)
        others = np.delete(result.z[row], d, axis=1)
        np.testing.assert_array_equal(others, np.broadcast_to(np.delete(reference, d), others.shape))
    assert result.images.shape == (3, 7, 1, 28, 28) and result.change.shape == (3,)
    with pytest.raises(ConfigError, match="0..4"):
        latent_mod.traverse(model5, dims=[5])


def test_latent_arithmetic_moves_by_the_difference_of_class_means(model2):
    z = np.array([[1.0, 1.0], [0.0, 2.0]], np.float32)
    np.testing.assert_allclose(latent_mod.latent_arithmetic(z, [1, 0], [0, 3]), [[0, 4], [-1, 5]])
    np.testing.assert_allclose(latent_mod.latent_arithmetic(z[0], [1, 0], [0, 3], strength=0.5), [0.5, 2.5])
    codes, _ = _blobs(dim=2)
    means = latent_mod.compute_class_means(codes)
    images = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    result = latent_mod.class_arithmetic(model2, images, means, "class 0", "class 2", codes=codes)
    z_in, _ = latent_mod.encode(model2, images)
    np.testing.assert_allclose(result.z_result, z_in - means.vectors[0] + means.vectors[2], rtol=1e-5, atol=1e-5)
    assert result.results.shape == (3, 1, 28, 28) and result.read_as.shape == (3,)


# ----------------------------------------------------------------------------
# Images from files, morph


def _write_image(path, mode, size, colour):
    Image.new(mode, size, colour).save(path)
    return path


def test_image_files_are_converted_to_the_models_size_and_channels(tmp_path):
    rgb = _write_image(tmp_path / "photo.png", "RGB", (60, 40), (255, 0, 0))
    grey = images_mod.load_image(rgb, (1, 28, 28))
    assert grey.shape == (1, 28, 28) and grey.dtype == np.float32
    np.testing.assert_allclose(grey, 76 / 255, atol=0.01)  # ITU-R 601 luma of pure red
    colour = images_mod.load_image(rgb, (3, 32, 32))
    assert colour.shape == (3, 32, 32) and colour[0].min() > 0.99 and colour[1].max() < 0.01
    np.testing.assert_allclose(images_mod.load_image(rgb, (1, 28, 28), invert=True), 1 - grey, atol=1e-6)
    transparent = _write_image(tmp_path / "clear.png", "RGBA", (30, 30), (255, 255, 255, 0))
    assert images_mod.load_image(transparent, (1, 28, 28)).max() == 0.0  # transparent is black background


def test_unreadable_images_are_one_line_errors_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="notes.png: not a readable image"):
        images_mod.load_image(text, (1, 28, 28))
    with pytest.raises(DataError, match="missing.png: file not found"):
        images_mod.load_image(tmp_path / "missing.png", (1, 28, 28))
    png = _write_image(tmp_path / "ok.png", "L", (28, 28), 0)
    with pytest.raises(DataError, match="4 channels"):
        images_mod.load_image(png, (4, 28, 28))


def test_morph_decodes_the_two_images_latent_means_at_its_ends(model2):
    rng = np.random.default_rng(0)
    a, b = rng.random((1, 28, 28)).astype(np.float32), rng.random((1, 28, 28)).astype(np.float32)
    result = latent_mod.morph(model2, a, b, steps=5)
    z, _ = latent_mod.encode(model2, np.stack([a, b]))
    np.testing.assert_array_equal(result.interpolation.z[[0, -1]], z)
    np.testing.assert_allclose(result.interpolation.images[0], latent_mod.decode(model2, z[0])[0], atol=1e-6)
    np.testing.assert_allclose(result.interpolation.images[-1], latent_mod.decode(model2, z[1])[0], atol=1e-6)
    np.testing.assert_allclose(result.merged, latent_mod.decode(model2, (z[0] + z[1]) / 2)[0], atol=1e-6)
    with pytest.raises(DataError, match="expects"):
        latent_mod.morph(model2, a, np.zeros((3, 28, 28), np.float32))


# ----------------------------------------------------------------------------
# A run directory without training: cache of class means


def _shapes_run(tmp_path, model):
    run = tmp_path / "run"
    save_model(model, run, {"dataset": {"name": "shapes", "class_names": list(SHAPES_CLASSES)},
                            "train": {"data_dir": None}})
    return run


def test_class_means_are_cached_in_the_run_and_recomputed_when_the_weights_change(tmp_path, model2, monkeypatch):
    run_dir = _shapes_run(tmp_path, model2)
    explorer = explorer_mod.Explorer.open(run_dir, limit=300)
    first = explorer.class_means()
    assert not (run_dir / latent_mod.CLASS_MEANS_FILE).exists(), "exploring writes nothing unless asked"
    explorer.save_class_means(first)
    cache = json.loads((run_dir / latent_mod.CLASS_MEANS_FILE).read_text())
    assert cache["split"] == "test" and cache["count"] == 300 and set(cache["means"]) == set(SHAPES_CLASSES)

    # A second run object reads the file and never touches the dataset.
    monkeypatch.setattr(vaekit.Run, "dataset", lambda *a, **k: pytest.fail("dataset loaded despite the cache"))
    again = explorer_mod.Explorer.open(run_dir, limit=300).class_means()
    np.testing.assert_allclose(again.vectors, first.vectors, rtol=1e-6)
    monkeypatch.undo()

    torch.manual_seed(5)
    save_model(build_model("fashion28", latent_dim=2), run_dir)  # new weights: the cache is stale
    fresh = explorer_mod.Explorer.open(run_dir, limit=300).class_means()
    assert not np.allclose(fresh.vectors, first.vectors)


def test_dataset_images_are_referenced_as_split_colon_index(tmp_path, model2):
    run = explorer_mod.Explorer.open(_shapes_run(tmp_path, model2))
    image, label = run.image("test:3")
    dataset = run.load_split("test")
    np.testing.assert_allclose(image, dataset.images[3].numpy() / 255.0)
    assert label.startswith("test:3 (")
    with pytest.raises(ConfigError, match="out of range"):
        run.image(f"test:{len(dataset)}")


# ----------------------------------------------------------------------------
# Figures


def _overlapping(texts, renderer) -> bool:
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_manifold_figure_has_non_overlapping_tick_labels_and_outlines_holes(model2):
    result = manifold_ops_mod.manifold(model2, n=20)
    holes = manifold_ops_mod.Holes(np.eye(20, dtype=bool), np.zeros((20, 20)), 0.1, 95.0, 100)
    fig = lp_mod.manifold_figure(result, holes)
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not _overlapping(ax.get_xticklabels(), renderer)
    assert not _overlapping(ax.get_yticklabels(), renderer)
    assert len(ax.patches) == 20 and "holes (red): 20 of 400" in ax.get_title()



def test_latent_map_figure_names_every_class_and_the_method():
    codes, _ = _blobs(dim=5)
    fig = lp_mod.latent_map_figure(separation_mod.latent_map(codes))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == list(codes.class_names) and "PCA" in ax.get_title()
    assert "5-NN accuracy 1.000" in ax.get_title()



def test_interpolation_figure_titles_frames_with_x(model2):
    result = latent_mod.interpolate(model2, np.zeros(2), np.ones(2), steps=6, start="Bag", end="Sneaker")
    fig = lp_mod.interpolation_figure(result)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("x = 0\nBag") and titles[1].startswith("x = 0.2") and "Sneaker" in titles[-1]

