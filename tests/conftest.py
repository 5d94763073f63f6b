"""Shared pytest fixtures."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The suite never writes the user's caches (image caches, measured training speeds): it wrote speeds measured
# under its own load into the user's speed.json, where the next real training on that machine would have
# chosen its precision by them. Set here, before any test, so that subprocesses inherit it; tests of the
# cache's location set their own.
_TEST_CACHE = tempfile.mkdtemp(prefix="vaekit-tests-cache-")
atexit.register(shutil.rmtree, _TEST_CACHE, True)
os.environ["XDG_CACHE_HOME"] = _TEST_CACHE
os.environ.pop("VAEKIT_CACHE_DIR", None)

# The real dataset lives next to the repository: <repo>/../shared/data/fashion-mnist.
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FASHION_MNIST = REPO_ROOT.parent / "shared" / "data" / "fashion-mnist"
FASHION_MNIST_FILE_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def require_shared_data(folder: Path, needed: tuple[str, ...]) -> Path:
    """Return ``folder`` if it holds ``needed``; skip the test otherwise, but fail on CI."""
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        reason = f"real data not found in {folder} (missing {', '.join(missing)})"
        # CI must exercise the real-data tests, so there a missing copy is a failure.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """Folder with the real Fashion-MNIST files; skip if absent (fail on CI)."""
    return require_shared_data(SHARED_FASHION_MNIST, FASHION_MNIST_FILE_NAMES)


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory, fashion_mnist_dir):
    """A small fashion28 run (2-D latent) trained on the real Fashion-MNIST.

    6,000 training images for 2 epochs: a few seconds, yet the classes already
    separate in the latent space. Tests must not modify it (copy it first).
    """
    from vaekit import TrainConfig, train

    out = tmp_path_factory.mktemp("fashion") / "run"
    config = TrainConfig(dataset="fashion-mnist", arch="fashion28", latent_dim=2, epochs=2, train_limit=6000,
                         test_limit=2000, data_dir=str(fashion_mnist_dir), seed=0)
    return train(config, out=out, progress=False).run_dir


@pytest.fixture(autouse=True)
def no_package_archive(monkeypatch):
    """Tests never reach Debian's archive: fetching a package fails as on a machine without one.

    ``tests/test_debian.py`` serves a local ``.deb`` instead, and calls the real
    ``apt_download`` with a fake ``apt-get``.
    """
    from vaekit.data import debian

    def offline(package, workdir):
        raise debian.DebianFetchError("the package archive is not reached in tests")

    monkeypatch.setattr(debian, "apt_download", offline)


def load_script(relative_path: str):
    """Import a repository script (``benchmarks/...``, ``scripts/...``) as a module, registered under its name."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
