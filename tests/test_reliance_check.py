"""``check`` sees what a patch relies on without editing it.

For every built-in patch that relies on a vLLM name, a tree made from the installed vLLM with that
name renamed makes ``check --vllm DIR --json`` mark the patch ``breaks: true``, naming the name; the
unmodified tree stays clean. The same for a hotfix that reads an attribute of its target's class,
and for the overlay's own modules (the NPU platform's overrides, the NPU worker's calls).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from harness import run_cli_here
from vllm_tree import defining_files, edited_tree, rename

from ascend_overlay.core import reliance
from ascend_overlay.core.catalog import load_catalog

pytest.importorskip("vllm")


def _check(tree: Path, env: dict[str, str] | None = None) -> tuple[int, dict]:
    """``ascend-overlay check --json --vllm TREE`` (in this process: it reads the tree, imports nothing of it)."""
    done = run_cli_here("check", "--json", "--vllm", str(tree), **(env or {}))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _patch_row(data: dict, name: str) -> dict:
    return next(row for row in data["patches"] if row["patch"] == name)


def _relied_on_cases() -> list[tuple[str, reliance.Use]]:
    """For each built-in patch that relies on a vLLM name: the first name it reads on its target's
    class (or, failing that, any name it reads), which the test renames where vLLM defines it."""
    cases = []
    for patch in load_catalog((), entry_points=False).patches:
        uses = [u for u in reliance.uses_of_patch(patch) if u.how in ("attribute", "call")]
        on_class = [u for u in uses if u.receiver]
        if on_class or uses:
            cases.append((patch.name, (on_class or uses)[0]))
    return cases


CASES = _relied_on_cases()


def test_every_kernel_and_scheduler_patch_has_a_relied_on_case() -> None:
    names = {name for name, _ in CASES}
    assert {"npu_rms_norm", "npu_rotary_embedding", "balance_scheduling", "overlay_env_vars_known"} <= names


def test_the_unmodified_tree_is_clean(tmp_path: Path) -> None:
    code, data = _check(edited_tree(tmp_path / "tree", {}))
    assert code == 0 and data["summary"]["breaking"] == 0, [r for r in data["targets"] if r["breaks"]]
    relied = [r for r in data["targets"] if r.get("relied_on")]
    assert len(relied) > 40 and all(r["status"] in ("ok", "unverifiable") for r in relied)
    assert not any(row["breaks"] for row in data["patches"])


@pytest.mark.parametrize(("patch", "use"), CASES, ids=[name for name, _ in CASES])
def test_a_renamed_relied_on_name_breaks_the_patch(tmp_path: Path, patch: str, use: reliance.Use) -> None:
    name = use.path[-1]
    edits = {file: rename(name) for file in defining_files(use.module, use.path)}
    code, data = _check(edited_tree(tmp_path / "tree", edits))
    assert code == 1
    row = _patch_row(data, patch)
    assert row["breaks"] is True
    named = [b for b in row["because"] if b["relied_on"] == use.name]
    assert named and all(b["status"] == "missing" and repr(name) in b["detail"] for b in named), row["because"]
    assert any(use.where in b["detail"] for b in named)


def test_a_hotfix_that_reads_its_target_class_breaks_when_the_attribute_goes(tmp_path: Path) -> None:
    hotfix = tmp_path / "hotfixes"
    (hotfix / "engine_core").mkdir(parents=True)
    (hotfix / "engine_core" / "patch_unfinished.py").write_text(textwrap.dedent('''
        from ascend_overlay import Patch

        PATCH = Patch(name="count_held_requests", phase="engine_core", vllm=">=0.32", why="w", remove_when="r")


        @PATCH.replace("vllm.v1.core.sched.scheduler:Scheduler.get_num_unfinished_requests", contract="(self)")
        def get_num_unfinished_requests(self):
            return len(self.waiting) + len(self.running) + len(self.kv_holding_waiting)
    '''))
    env = {"VLLM_ASCEND_OVERLAY_PATH": str(hotfix)}
    code, data = _check(edited_tree(tmp_path / "clean", {}), env)
    assert code == 0 and not _patch_row(data, "count_held_requests")["breaks"]
    broken = edited_tree(tmp_path / "broken", {"vllm/v1/core/sched/scheduler.py": rename("kv_holding_waiting")})
    code, data = _check(broken, env)
    row = _patch_row(data, "count_held_requests")
    assert code == 1 and row["breaks"] and row["patch_file"].endswith("patch_unfinished.py")
    assert [b["relied_on"] for b in row["because"]] == ["Scheduler.kv_holding_waiting"]


def test_the_npu_platform_breaks_when_an_overridden_method_goes(tmp_path: Path) -> None:
    code, data = _check(edited_tree(tmp_path / "tree", {"vllm/platforms/interface.py": rename("import_kernels")}))
    row = _patch_row(data, "ascend_overlay.npu.platform")
    assert code == 1 and row["breaks"] and row["patch_file"] == "ascend_overlay/npu/platform.py"
    assert [b["relied_on"] for b in row["because"]] == ["Platform.import_kernels"]


def test_the_npu_platform_breaks_when_an_overridden_method_gains_a_parameter(tmp_path: Path) -> None:
    edit = {"vllm/platforms/interface.py":
            lambda t: t.replace("def set_device(cls, device: torch.device)", "def set_device(cls, device: torch.device, "
                                "*, stream=None)")}
    code, data = _check(edited_tree(tmp_path / "tree", edit))
    row = _patch_row(data, "ascend_overlay.npu.platform")
    assert code == 1 and row["breaks"]
    (because,) = row["because"]
    assert because["relied_on"] == "Platform.set_device" and because["status"] == "drift"
    assert "vLLM may pass `stream=`, which the override does not accept" in because["detail"]


def test_the_npu_worker_breaks_when_a_function_it_calls_needs_a_new_argument(tmp_path: Path) -> None:
    edit = {"vllm/utils/torch_utils.py": lambda t: t.replace("def set_random_seed(seed", "def set_random_seed(generator, seed")}
    code, data = _check(edited_tree(tmp_path / "tree", edit))
    row = _patch_row(data, "ascend_overlay.npu.worker")
    assert code == 1 and row["breaks"]
    (because,) = row["because"]
    assert because["relied_on"] == "set_random_seed" and because["status"] == "drift"
    assert "requires `seed`, which the call does not pass" in because["detail"]
