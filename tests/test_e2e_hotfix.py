"""Against a real `vllm serve`: a worker-phase hotfix takes effect and is seen by a
client, while a tampered file, a world-writable directory, a foreign-owned file, a syntax error, an
invalid declaration and an obsolete hotfix are each refused or skipped precisely, a patch that raises
halfway is rolled back, and vLLM serves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from harness import REPO, VllmServer, base_env, outcome, report_by_role, wait_gone
from synthetic import write_patch

from ascend_overlay.cli.authoring import write_manifest

pytestmark = pytest.mark.e2e


def test_hotfixes_apply_or_are_refused_precisely_while_vllm_serves(tiny_model: Path, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("the foreign-owner case needs root to chown; CI on this machine kind runs as root")
    good = tmp_path / "hotfixes"
    good.mkdir(mode=0o755)
    (good / "worker").mkdir(mode=0o755)
    shutil.copy(REPO / "tests" / "e2e_patches" / "worker" / "patch_sampler.py", good / "worker" / "patch_sampler.py")
    (good / "worker" / "patch_sampler.py").chmod(0o644)
    tampered = write_patch(good, "platform", "patch_tampered.py", '''
        PATCH = Patch(name="tampered_fix", phase="platform", vllm=">=0.32", why="w", remove_when="r")
        PATCH.replace_value("vllm.envs:VLLM_HOST_IP", "")
    ''')
    write_patch(good, "platform", "patch_syntax.py", "PATCH = Patch(name='broken'\n")
    write_patch(good, "platform", "patch_invalid.py", '''
        PATCH = Patch(name="Invalid Name", phase="platform", vllm=">=0.32", why="w", remove_when="r")
    ''')
    write_patch(good, "platform", "patch_obsolete.py", '''
        PATCH = Patch(name="obsolete_fix", phase="platform", vllm=">=0.30", fixed_in="0.32.0",
                      why="w", remove_when="r")

        @PATCH.replace("vllm.envs:VLLM_HOST_IP")
        def ip():
            return ""
    ''')
    foreign = write_patch(good, "platform", "patch_foreign.py", '''
        PATCH = Patch(name="foreign_fix", phase="platform", vllm=">=0.32", why="w", remove_when="r")
        PATCH.replace_value("vllm.envs:VLLM_HOST_IP", "")
    ''')
    write_patch(good, "worker", "patch_half.py", '''
        PATCH = Patch(name="half_broken_fix", phase="worker", vllm=">=0.32", why="w", remove_when="r")

        @PATCH.replace("vllm.v1.sample.sampler:Sampler.compute_logprobs")
        def compute_logprobs(self, logits):
            return logits

        @PATCH.replace("vllm.v1.sample.sampler:Sampler.gather_logprobs", factory=True)
        def broken(original):
            raise RuntimeError("boom halfway")
    ''')
    write_manifest(good)
    tampered.write_text(tampered.read_text().replace('""', '"10.0.0.1"'))
    os.chown(foreign, 4242, 4242)
    loose = tmp_path / "loose"
    write_patch(loose, "worker", "patch_loose.py", '''
        PATCH = Patch(name="loose_fix", phase="worker", vllm=">=0.32", why="w", remove_when="r")
        PATCH.replace_value("vllm.envs:VLLM_HOST_IP", "")
    ''')
    loose.chmod(0o777)

    report = tmp_path / "report.jsonl"
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_PATH=f"{good}{os.pathsep}{loose}",
                   VLLM_ASCEND_OVERLAY_REPORT=str(report))
    with VllmServer(tiny_model, env) as server:
        result = server.complete("Hello world", max_tokens=4, return_token_ids=True)
        children = server.children
    assert wait_gone(children) == []

    assert result["choices"][0]["token_ids"] == [42, 42, 42, 42], "the worker-phase hotfix did not take effect"
    worker = report_by_role(report)["worker"][0]
    assert outcome(worker, "e2e_worker_forced_token")["status"] == "applied"
    assert outcome(worker, "e2e_worker_forced_token")["source"] == f"path:{good}"
    half = outcome(worker, "half_broken_fix")
    assert half["status"] == "failed" and "rolled back" in half["reason"] and "boom halfway" in half["reason"]
    refused = {Path(p["path"]).name: p["message"] for p in worker["problems"]}
    assert refused["patch_tampered.py"].startswith("SHA-256 mismatch")
    assert refused["patch_syntax.py"].startswith("syntax error at line")
    assert "patch name 'Invalid Name' must be lower_snake_case" in refused["patch_invalid.py"]
    assert "owned by uid 4242" in refused["patch_foreign.py"]
    assert "untrusted directory refused" in refused["loose"] and "mode 777" in refused["loose"]
    main = report_by_role(report)["api_server"][0]
    assert outcome(main, "obsolete_fix")["reason"].startswith("obsolete: vLLM 0.32.0 includes the fix")
    assert "obsolete_fix" in server.log() and "remove this hotfix" in server.log()
