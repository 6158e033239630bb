"""``status``, ``list`` and ``hotfix verify`` remember precheck's answers: the same answers, asked again
whenever what they depend on changes, never remembered where vLLM is already imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic import write_patch

from ascend_overlay.core import applier, precheck_cache
from ascend_overlay.core.catalog import load_catalog
from ascend_overlay.core.vocabulary import Decision, Reason

BODY = '''
PATCH = Patch(name="{name}", phase="worker", vllm=">=0.32", why="w", remove_when="r")

@PATCH.wrap("vllm.v1.sample.sampler:Sampler.forward", contract="(self, logits, sampling_metadata)")
def forward(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs)
'''


@pytest.fixture
def patches(tmp_path: Path):
    directory = tmp_path / "hotfixes"
    write_patch(directory, "worker", "patch_a.py", BODY.format(name="fix_a"))
    write_patch(directory, "worker", "patch_b.py", BODY.format(name="fix_b"))
    catalog = load_catalog([str(directory)], builtin=False, entry_points=False)
    assert [p.name for p in catalog.patches] == ["fix_a", "fix_b"], catalog.problems
    return directory, catalog.patches


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The patches precheck itself was asked about (a stand-in answer: fix_b drifted)."""
    calls: list[str] = []

    def precheck(patch):
        calls.append(patch.name)
        refusal = Decision(False, Reason.DRIFT, "drift: x", "adapt it") if patch.name == "fix_b" else None
        return applier.Precheck(refusal)

    monkeypatch.setattr(applier, "precheck", precheck)
    monkeypatch.setattr(precheck_cache, "fresh_process", lambda: True)
    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path / "cache"))
    return calls


def _answers(patches) -> list[Decision | None]:
    cache = precheck_cache.PrecheckCache()
    answers = [cache.refusal(p) for p in patches]
    cache.save()
    return answers


def test_the_second_run_gives_the_same_answers_without_asking(patches, asked) -> None:
    _, found = patches
    first = _answers(found)
    assert asked == ["fix_a", "fix_b"]
    assert first == [None, Decision(False, Reason.DRIFT, "drift: x", "adapt it")]
    assert _answers(found) == first and asked == ["fix_a", "fix_b"], "answered from the cache"


def test_a_changed_patch_file_is_asked_again(patches, asked) -> None:
    directory, found = patches
    _answers(found)
    path = directory / "worker" / "patch_a.py"
    path.write_text(path.read_text() + "\n# edited\n")
    _answers(found)
    assert asked == ["fix_a", "fix_b", "fix_a"]


def test_another_environment_is_asked_again(patches, asked, monkeypatch: pytest.MonkeyPatch) -> None:
    _, found = patches
    _answers(found)
    monkeypatch.setenv("VLLM_USE_SOMETHING", "1")   # vLLM's own variables can change what its modules do
    _answers(found)
    assert asked == ["fix_a", "fix_b"] * 2
    monkeypatch.setenv("VLLM_ASCEND_OVERLAY_ENABLE", "fix_a")   # the overlay's own switches do not
    _answers(found)
    assert len(asked) == 4


def test_nothing_is_remembered_where_vllm_is_already_imported(patches, asked,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, found = patches
    monkeypatch.setattr(precheck_cache, "fresh_process", lambda: False)
    _answers(found)
    _answers(found)
    assert asked == ["fix_a", "fix_b"] * 2


def test_an_unreadable_cache_file_is_asked_again(patches, asked) -> None:
    _, found = patches
    _answers(found)
    cache = precheck_cache.PrecheckCache()
    cache.path.write_text(json.dumps({"format": 1, "entries": {k: {"reason": "no such reason"}
                                                                for k in cache.entries}}))
    assert _answers(found)[1] == Decision(False, Reason.DRIFT, "drift: x", "adapt it")
    assert asked == ["fix_a", "fix_b"] * 2


def test_status_says_the_same_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real precheck, live and then remembered, on the built-in patches and this vLLM."""
    from ascend_overlay.core.status import collect

    monkeypatch.setenv("ASCEND_OVERLAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precheck_cache, "fresh_process", lambda: True)
    live = collect(use_cache=False)
    first, second = collect(), collect()
    assert first["patches"] == second["patches"] == live["patches"]
    assert first["hooks"] == second["hooks"] == live["hooks"]
    assert list((tmp_path / "cache" / "prechecks").glob("*.json")), "the answers were kept"
