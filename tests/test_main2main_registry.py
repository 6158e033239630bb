"""Released vllm-ascend versions from the package registry, checked against the next vLLM release.

For each plugin release X (all inside the tuning range: vLLM <= 0.20): ``check --plugin`` against
the next vLLM minor release, with vLLM X as the baseline, must find the vLLM names that plugin's
next release stopped using because they are gone (verified on the two vLLM trees with the static
tree alone, not with the rules under test), each with its file; and most of what it reports must be
something that next release did adapt. Skipped with the reason when the registry cannot be reached.
"""

from __future__ import annotations

import pytest

from ascend_overlay.core.patch import parse_target
from ascend_overlay.main2main import evaluation
from ascend_overlay.main2main.check import mark_baseline, run_check
from ascend_overlay.main2main.sources import FetchError, resolve_source
from ascend_overlay.main2main.subjects import plugin_subject
from ascend_overlay.main2main.tree import StaticTree

pytestmark = pytest.mark.network

# plugin release, the vLLM it was made for, the next vLLM minor release, the plugin's next release
SLICE = [("0.11.0", "0.11.0", "0.12.0", "0.13.0"), ("0.13.0", "0.13.0", "0.14.0", "0.18.0")]


@pytest.fixture(scope="module", params=SLICE, ids=lambda p: f"vllm-ascend-{p[0]}")
def case(request: pytest.FixtureRequest) -> dict:
    plugin, old, new, following = request.param
    try:
        sources = resolve_source(old), resolve_source(new)
        directory, later = evaluation.released_plugin(plugin), evaluation.released_plugin(following)
    except FetchError as exc:
        pytest.skip(f"registry unreachable or a release missing: {exc}")
    subject = plugin_subject(directory)
    report = run_check(sources[1], subject.targets, ignore_ranges=True)
    mark_baseline(report, run_check(sources[0], subject.targets, ignore_ranges=True))
    trees = StaticTree(sources[0].root), StaticTree(sources[1].root)
    before, after = evaluation.uses_by_file(directory), evaluation.uses_by_file(later)
    gone = set()
    for file, names in before.items():
        for name in names - after.get(file, set()):
            module, path = parse_target(name)
            if trees[0].lookup(module, path) is not None and trees[1].lookup(module, path) is None:
                gone.add((name, file))
    return {"rows": report.rows(), "gone": gone, "after": after, "versions": request.param}


def test_check_finds_what_the_next_plugin_release_adapted_away_from(case: dict) -> None:
    assert case["gone"], "no verified change between the two vLLM releases: the slice tests nothing"
    reported = {(r["name"], r["file"]) for r in case["rows"] if r["breaks"]}
    found = case["gone"] & reported
    recall = len(found) / len(case["gone"])
    assert recall >= 0.9, sorted(case["gone"] - reported)


def test_most_reported_breaks_were_adapted_by_the_next_plugin_release(case: dict) -> None:
    broken = {(r["name"], r["file"]) for r in case["rows"] if r["breaks"]}
    assert broken
    adapted = {(n, f) for n, f in broken if n not in case["after"].get(f, set())}
    assert len(adapted) / len(broken) >= 0.8, sorted(broken - adapted)


def test_the_docs_quote_this_slice_as_computed(case: dict) -> None:
    """docs/main2main.md's registry table is this computation's output, line for line."""
    broken = {(r["name"], r["file"]) for r in case["rows"] if r["breaks"]}
    adapted = {(n, f) for n, f in broken if n not in case["after"].get(f, set())}
    row = evaluation.registry_row(*case["versions"], len(case["gone"]), len(case["gone"] & broken), len(broken),
                                  len(adapted))
    assert row in evaluation.DOCS.read_text(encoding="utf-8"), f"stale docs: the run gives\n{row}"
