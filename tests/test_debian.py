"""Fashion-MNIST from Debian's package archive when the upstream host is unreachable (no network in tests)."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from vaekit.data import debian
from vaekit.data import fashion_mnist as fm
from vaekit.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian) to build a .deb")

REAL_APT_DOWNLOAD = debian.apt_download  # before the conftest fixture replaces it for every test
FILES = [name for split in ("train", "test") for name in fm.FASHION_MNIST_FILES[split]]


def build_deb(source: Path, out: Path, corrupt: str | None = None) -> Path:
    """A local dataset-fashion-mnist .deb holding the official files (one replaced when ``corrupt``)."""
    stage = out / "stage"
    target = stage / "usr/share/datasets/fashion-mnist"
    target.mkdir(parents=True)
    for name in FILES:
        if name == corrupt:
            (target / name).write_bytes(gzip.compress(b"not the official bytes"))
        else:
            shutil.copy(source / name, target / name)
    (stage / "DEBIAN").mkdir()
    (stage / "DEBIAN/control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 0.0~test-1\nArchitecture: all\n"
        "Maintainer: vaekit tests <tests@example.org>\nDescription: test copy\n")
    deb = out / "dataset-fashion-mnist_0.0~test-1_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(stage), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A fresh user: empty cache, no data dir, no system copy, and an upstream host that cannot be reached."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_DATA_DIRS", ())
    monkeypatch.setattr(fm, "FASHION_MNIST_URL", (tmp_path / "unreachable").as_uri() + "/")
    return tmp_path


@pytest.fixture(scope="module")
def local_deb(tmp_path_factory, fashion_mnist_dir):
    return build_deb(fashion_mnist_dir, tmp_path_factory.mktemp("deb"))


def serve(deb: Path):
    def download(package: str, workdir: Path) -> Path:
        assert package == "dataset-fashion-mnist"
        return Path(shutil.copy(deb, workdir))
    return download


def test_an_unreachable_upstream_falls_back_to_the_debian_package(offline, local_deb, monkeypatch, capsys):
    monkeypatch.setattr(debian, "apt_download", serve(local_deb))
    test = fm.load_fashion_mnist("test")
    assert len(test) == 10_000 and test.images.shape == (10_000, 1, 28, 28)
    installed = fm.user_cache_dir()
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "Debian's dataset-fashion-mnist" in said[0] and str(installed) in said[0]
    assert sorted(p.name for p in installed.iterdir()) == sorted(FILES)  # no scratch folder left behind
    # Next time the cache answers: no fetch at all.
    monkeypatch.setattr(debian, "apt_download", lambda *a: pytest.fail("fetched again"))
    assert len(fm.load_fashion_mnist("train")) == 60_000


def test_a_package_with_a_bad_file_installs_nothing(offline, fashion_mnist_dir, monkeypatch, tmp_path):
    bad = build_deb(fashion_mnist_dir, tmp_path / "bad", corrupt="t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr(debian, "apt_download", serve(bad))
    with pytest.raises(DataError) as error:
        fm.load_fashion_mnist("test")
    message = str(error.value)
    assert "\n" not in message and "t10k-labels-idx1-ubyte" in message and "nothing was installed" in message
    leftovers = list(fm.user_cache_dir().iterdir()) if fm.user_cache_dir().exists() else []
    assert leftovers == []


def test_when_apt_fails_too_the_error_is_one_line_naming_both(offline, monkeypatch):
    def no_archive(package, workdir):
        raise debian.DebianFetchError("apt-get download dataset-fashion-mnist: E: Unable to locate package")

    monkeypatch.setattr(debian, "apt_download", no_archive)
    with pytest.raises(DataError) as error:
        fm.load_fashion_mnist("test")
    message = str(error.value)
    assert "\n" not in message and "download failed" in message
    assert "Debian's dataset-fashion-mnist: apt-get download dataset-fashion-mnist: E: Unable to locate" in message


def test_apt_download_refreshes_private_lists_when_the_system_ones_do_not_know_the_package(
        offline, tmp_path, monkeypatch):
    """A fake apt-get: the system lists miss the package; with private lists (under the user cache) it is found."""
    log = tmp_path / "apt.log"
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *Dir::State::Lists=*download*) touch dataset-fashion-mnist_1_all.deb ;;
  *Dir::State::Lists=*update*) exit 0 ;;
  *) echo "E: Unable to locate package dataset-fashion-mnist" >&2; exit 100 ;;
esac
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    deb = REAL_APT_DOWNLOAD("dataset-fashion-mnist", work)
    assert deb.name == "dataset-fashion-mnist_1_all.deb"
    calls = log.read_text().splitlines()
    assert calls[0] == "download dataset-fashion-mnist" and calls[1].endswith("update")
    private = tmp_path / "cache" / "vaekit" / "apt" / "lists"
    assert f"Dir::State::Lists={private}" in calls[1] and f"Dir::State::Lists={private}" in calls[2]


def test_no_apt_at_all_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(debian.DebianFetchError, match="apt-get is not available"):
        REAL_APT_DOWNLOAD("dataset-fashion-mnist", tmp_path)
