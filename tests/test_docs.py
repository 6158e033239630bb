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


def test_the_version_is_written_once_and_the_changelog_heads_with_it(repo: Path) -> None:
    import re

    import tomllib

    import ascend_overlay

    project = tomllib.loads((repo / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ascend_overlay.__version__"}
    headings = re.findall(r"^## (\d+\.\d+\.\d+\S*)$", (repo / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == ascend_overlay.__version__
    written = [p for p in (repo / "ascend_overlay").rglob("*.py")
               if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert [p.relative_to(repo).as_posix() for p in written] == ["ascend_overlay/__init__.py"]


def test_every_test_file_is_on_the_tests_map(repo: Path) -> None:
    """tests/README.md is how a newcomer finds the tests of a behaviour: every test file is on it."""
    page = (repo / "tests" / "README.md").read_text()
    missing = [p.name for p in sorted((repo / "tests").glob("test_*.py")) if f"`{p.name}`" not in page]
    assert missing == []
