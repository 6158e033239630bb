"""One vocabulary: outcomes, decisions, phases and roles are enum members everywhere, spelled as text
only in ``core/vocabulary.py`` (their values, written to reports) and read back into members."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from harness import REPO

from ascend_overlay.core.report import Outcome, ProcessReport
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vocabulary import Decision, LogLevel, Phase, Reason, Role, Status, Word

CLOSED_SETS = (Status, Reason, Phase, Role)
SPELLINGS = {member.value for enum in CLOSED_SETS for member in enum}
VOCABULARY = REPO / "ascend_overlay" / "core" / "vocabulary.py"


def _spelled_comparisons(path: Path) -> list[str]:
    """``x == "applied"``, ``x in ("applied", "inherited")``, ``"worker" != y``: a closed set's member
    compared by its spelling."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            texts = [side] if isinstance(side, ast.Constant) else (
                list(side.elts) if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [])
            spelled = [t.value for t in texts if isinstance(t, ast.Constant) and t.value in SPELLINGS]
            if spelled:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_finder_sees_a_spelled_comparison(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text('if outcome.status == "applied" or role in ("worker", "x"):\n    pass\n')
    assert len(_spelled_comparisons(tmp_path / "m.py")) == 2


def test_no_module_compares_a_closed_set_by_its_spelling() -> None:
    found = [hit for path in sorted((REPO / "ascend_overlay").rglob("*.py")) if path != VOCABULARY
             for hit in _spelled_comparisons(path)]
    assert found == []


@pytest.mark.parametrize("enum", [*CLOSED_SETS, LogLevel])
def test_members_read_as_their_values_in_text_and_back_into_members(enum: type[Word]) -> None:
    for member in enum:
        assert str(member) == f"{member}" == member.value
        assert json.loads(json.dumps(member)) == member.value
        assert enum(member.value) is member
        assert hash(member) == hash(member.value) and member.value in {member} and member in {member.value: 1}


def test_a_report_record_holds_values_and_reads_back_into_members() -> None:
    report = ProcessReport(phases=[Phase.WORKER])
    report.record(Outcome("p", Phase.WORKER, Status.APPLIED, Reason.ON_BY_DEFAULT, "on by default"))
    record = json.loads(json.dumps(report.snapshot("phase:worker")))
    (patch,) = record["patches"]
    assert (patch["phase"], patch["status"], patch["code"]) == ("worker", "applied", "on_by_default")
    assert record["phases"] == ["worker"] and Role(record["role"]) in Role
    assert Status(patch["status"]).in_effect


def test_an_unknown_spelling_is_an_error_not_a_branch_silently_not_taken() -> None:
    with pytest.raises(ValueError):
        Status("aplied")
    with pytest.raises(ValueError):
        Settings(log_level="verbose")


def test_a_decision_is_a_problem_only_when_an_operator_has_something_to_fix() -> None:
    assert Decision(False, Reason.UNRESOLVABLE, "x").is_problem
    assert not Decision(False, Reason.VERSION, "x").is_problem
    assert not Decision(True, Reason.MISSING, "x").is_problem
