"""The documentation site lists every module (``make docs`` builds it with warnings as errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "models", "data", "runs", "analysis", "export", "app", "zoo")


@pytest.mark.parametrize("package", PACKAGES)
def test_the_api_reference_documents_every_module(package):
    page = (ROOT / "docs" / "api" / f"{package}.rst").read_text()
    modules = sorted(p.stem for p in (ROOT / "src" / "vaekit" / package).glob("*.py") if p.stem != "__init__")
    missing = [m for m in modules if f".. automodule:: vaekit.{package}.{m}\n" not in page]
    assert not missing, f"docs/api/{package}.rst lacks {missing}"


def test_every_guide_is_a_page_of_the_site():
    index = (ROOT / "docs" / "index.rst").read_text()
    guides = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert [g for g in guides if f"   {g}\n" not in index] == []
