"""Against a real vLLM server: the README's main job, ``ascend-overlay demo`` (``make demo``), on
the simulated NPU (``make demo-npu``): it serves in bfloat16, says which torch_npu kernels served
the completion and that the front end never initialised the NPU, prints what the overlay did in each
process, shuts down with no orphan, and leaves nothing behind (its server log included).

The CPU demo is the same code without the kernel lines; it runs in the fresh-clone check (README)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import BIN, base_env

pytestmark = pytest.mark.e2e


def test_the_npu_demo_serves_in_bf16_names_its_kernels_and_leaves_nothing(tiny_model: Path) -> None:
    # The demo's temporary files go here; short, for vLLM's IPC socket paths (at most 107 characters).
    scratch = Path(tempfile.mkdtemp(prefix="demo-"))
    env = base_env(overlay=False, ASCEND_OVERLAY_CACHE=str(tiny_model.parent), TMPDIR=str(scratch))
    done = subprocess.run([str(BIN / "ascend-overlay"), "demo", "--simulate-npu"], env=env, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert f"tiny model ready at {tiny_model}" in out
    served = out.split("kernels that served this completion (bfloat16, on the simulated NPU):")[1].splitlines()[1]
    for kernel in ("_npu_reshape_and_cache", "npu_fused_infer_attention_score", "_npu_paged_attention", "npu_mrope"):
        assert f"{kernel}=" in served, served
    assert "shut down with exit code 0; no orphan processes" in out
    assert "NPU: simulated" in out
    for role in ("api_server", "engine_core"):
        assert f"\n{role} " in out, f"no {role} row in the per-process table"
    assert "no kernel (NPU never initialised)" in out, "the front end initialised the NPU"
    left = [p.name for p in scratch.iterdir() if p.name.startswith(("vllm-serve-", "ascend-overlay-demo-"))]
    assert left == [], f"the demo left its files behind: {left}"
    shutil.rmtree(scratch)
