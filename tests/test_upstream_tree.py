"""The unpacked vLLM test tree (``testing.sdist.upstream_tree``): only ``tests/`` and
``pyproject.toml`` of the sdist, published whole or not at all, and an unsafe archive refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ascend_overlay.main2main.sources import SourceError
from ascend_overlay.testing.sdist import upstream_tree


def make_sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_only_tests_and_pyproject_are_unpacked(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "vllm-9.9.9.tar.gz", {
        "vllm-9.9.9/tests/v1/test_a.py": b"def test_a(): pass\n",
        "vllm-9.9.9/pyproject.toml": b"[project]\nname='vllm'\n",
        "vllm-9.9.9/vllm/__init__.py": b"",
    })
    tree = upstream_tree("9.9.9", sdist=sdist)
    assert (tree / "tests/v1/test_a.py").read_text() == "def test_a(): pass\n"
    assert (tree / "pyproject.toml").is_file() and not (tree / "vllm").exists()
    assert upstream_tree("9.9.9", sdist=tmp_path / "gone.tar.gz") == tree  # complete: never unpacked again


@pytest.mark.parametrize("members,message", [
    ({"vllm-9.9.9/vllm/__init__.py": b""}, "no tests/ directory"),
    ({"vllm-9.9.9/tests/ok.py": b"", "vllm-9.9.9/tests/../../escape.py": b""}, "refusing the unsafe member"),
])
def test_a_bad_sdist_is_refused_and_leaves_nothing_behind(tmp_path: Path, cache: Path, members, message) -> None:
    sdist = make_sdist(tmp_path / "vllm-9.9.9.tar.gz", members)
    with pytest.raises(SourceError, match=message):
        upstream_tree("9.9.9", sdist=sdist)
    assert not list((cache / "upstream").iterdir())
    assert not (tmp_path / "escape.py").exists()


def test_an_unreadable_sdist_says_to_fetch_it_again(tmp_path: Path) -> None:
    broken = tmp_path / "vllm-9.9.9.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(SourceError, match="(?s)not a readable sdist .*delete it and fetch it again"):
        upstream_tree("9.9.9", sdist=broken)
