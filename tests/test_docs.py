"""docs/patches.md is generated from the declarations and must be current."""

from __future__ import annotations

from pathlib import Path

from ascend_overlay.cli.docs_gen import render


def test_patch_catalog_page_is_current(repo: Path) -> None:
    page = repo / "docs" / "patches.md"
    assert page.exists(), "run: python -m ascend_overlay.cli.docs_gen"
    assert page.read_text() == render(), "docs/patches.md is stale: run python -m ascend_overlay.cli.docs_gen"


def test_every_builtin_patch_is_documented(repo: Path) -> None:
    from ascend_overlay.core.catalog import load_catalog

    page = (repo / "docs" / "patches.md").read_text()
    catalog = load_catalog((), entry_points=False)
    assert catalog.problems == [], catalog.problems
    for patch in catalog.patches:
        assert f"### `{patch.name}`" in page
