"""vllm-ascend's own files that ``smoke``'s artifacts are held to, fetched once into the cache.

``smoke`` writes a test config and a supported-models row for vllm-ascend's tree; the tests compare
them with the real thing: the model test configs (``tests/e2e/models/configs/*.yaml``), the loader
that reads them (``tests/e2e/models/test_lm_eval_correctness.py``) and the supported-models page
(``docs/source/user_guide/support_matrix/supported_models.md``). The package registry serves
vllm-ascend's sdist (15 MB for 0.23.0), which carries all three; it is found and downloaded the way
vLLM's own test suite is (``testing.sdist``), and only those files are unpacked.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from ascend_overlay.core.files import cache_dir
from ascend_overlay.main2main.sources import SourceError, staged_tree
from ascend_overlay.testing.sdist import fetch_sdist, open_sdist

NAME = "vllm-ascend"
VERSION = "0.23.0"   # the newest release whose sdist was read for the formats (December 2026)
CONFIGS = "tests/e2e/models/configs"
LOADER = "tests/e2e/models/test_lm_eval_correctness.py"
TEMPLATE = "tests/e2e/models/report_template.md"   # the loader renders its report with it
SUPPORTED_MODELS = "docs/source/user_guide/support_matrix/supported_models.md"
_COMPLETE = ".complete"


def _wanted(name: str) -> bool:
    return (name.startswith(CONFIGS + "/") and name.endswith(".yaml")) or name in (LOADER, TEMPLATE, SUPPORTED_MODELS)


def reference_tree(version: str = VERSION) -> Path:
    """A directory holding vllm-ascend's configs, loader and supported-models page of ``version``
    (unpacked once; raises ``FetchError``/``SourceError`` when it cannot be had)."""
    target = cache_dir() / "upstream" / f"{NAME}-{version}-formats"
    if (target / _COMPLETE).is_file():
        return target
    archive_path = fetch_sdist(version, NAME)
    with staged_tree(target, archive_path) as staging, open_sdist(archive_path) as archive:
        for member in archive.getmembers():
            _, _, inner = member.name.partition("/")   # sdists hold one top directory: vllm_ascend-X/
            if not member.isfile() or not _wanted(inner) or ".." in Path(inner).parts:
                continue
            member.name = inner
            if hasattr(tarfile, "data_filter"):   # Python >= 3.10.12: refuse links and devices too
                archive.extract(member, staging, filter="data")
            else:
                archive.extract(member, staging)
        if not (staging / LOADER).is_file() or not (staging / SUPPORTED_MODELS).is_file():
            raise SourceError(f"{archive_path}: no {LOADER} or {SUPPORTED_MODELS} in this sdist")
    return target
