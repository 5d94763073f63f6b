"""Data files from Debian's package archive, fetched without root.

Some datasets are packaged by Debian (``dataset-fashion-mnist`` holds exactly
the official Fashion-MNIST files). A machine that reaches only the package
archive can still get them: ``apt-get download`` fetches the ``.deb`` as any
user, ``dpkg-deb -x`` unpacks it into a private folder, and the wanted files
are verified before they are moved into the vaekit cache. When the system's
package lists do not know the package (lists missing or stale), a private
copy of the lists is refreshed under the user cache first (``apt-get update``
with ``Dir::State::Lists`` pointed there), so root is never needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from vaekit.data.cache import vaekit_cache_root
from vaekit.errors import DataError

#: Seconds an ``apt-get`` call may take before it is given up.
APT_TIMEOUT = 300


class DebianFetchError(DataError):
    """The package could not be fetched or unpacked (no apt, no archive, a bad package)."""


def apt_download(package: str, workdir: Path) -> Path:
    """``apt-get download package`` into ``workdir`` (private package lists if needed); the ``.deb``'s path."""
    if shutil.which("apt-get") is None:
        raise DebianFetchError("apt-get is not available on this machine")
    problem = _run(["apt-get", "download", package], workdir)
    if problem is not None:  # the system's lists may be missing or stale: refresh a private copy
        options = _private_apt_options()
        problem = _run(["apt-get", *options, "update"], workdir) or _run(["apt-get", *options, "download", package],
                                                                          workdir)
    if problem is not None:
        raise DebianFetchError(f"apt-get download {package}: {problem}")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise DebianFetchError(f"apt-get download {package}: no .deb file appeared in {workdir}")
    return debs[-1]


def fetch_package_files(package: str, member_dir: str, names: Sequence[str], dest: Path,
                        verify: Callable[[Path], str | None],
                        download: Callable[[str, Path], Path] | None = None) -> Path:
    """Fetch Debian ``package`` and move the verified files ``member_dir/names`` into ``dest``.

    Parameters
    ----------
    package
        The Debian package, e.g. ``"dataset-fashion-mnist"``.
    member_dir
        Where the package installs the files, e.g. ``"usr/share/datasets/fashion-mnist"``.
    names
        The files wanted from ``member_dir``.
    dest
        Folder to put them in (created).
    verify
        Returns why a file is bad (one line), or None; every file must pass
        before any is moved, so ``dest`` never holds a partial or bad set.
    download
        Fetches the ``.deb`` into a folder (default :func:`apt_download`; tests
        pass a local package).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DebianFetchError
        If apt, the archive or the package fails (the caller may try elsewhere).
    DataError
        If a file of the package fails ``verify``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".debian-") as scratch:
        workdir = Path(scratch)
        deb = (download or apt_download)(package, workdir)
        unpacked = workdir / "root"
        problem = _run(["dpkg-deb", "-x", str(deb), str(unpacked)], workdir) if shutil.which("dpkg-deb") \
            else "dpkg-deb is not available on this machine"
        if problem is not None:
            raise DebianFetchError(f"{deb.name}: cannot unpack: {problem}")
        files = [unpacked / member_dir / name for name in names]
        for path in files:
            if not path.is_file():
                raise DebianFetchError(f"{deb.name}: has no {member_dir}/{path.name}")
            bad = verify(path)
            if bad is not None:
                raise DataError(f"{deb.name}: {bad}; nothing was installed")
        for path in files:
            os.replace(path, dest / path.name)
    return dest


def _private_apt_options() -> list[str]:
    """apt options that keep package lists and downloads under the user cache (no root needed)."""
    root = vaekit_cache_root() / "apt"
    lists, archives = root / "lists", root / "archives"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    return ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache::Archives={archives}",
            "-o", f"Dir::Cache={root}", "-o", "Debug::NoLocking=1", "-q"]


def _run(command: list[str], cwd: Path) -> str | None:
    """Run ``command``; None on success, else its last error line."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")] or lines
    return errors[-1].strip() if errors else f"exit status {done.returncode}"
