"""Running ``ascend-overlay smoke`` as a user would, for the smoke e2e tests (its happy path and its
failures are two files, so that the suite's workers can run them side by side)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import BIN, alive, base_env


def smoke(args: list[str], tiny_model: Path, out: Path, timeout: float = 600, **env: str) -> tuple[int, str, dict]:
    """Run the command as a user would; ASCEND_OVERLAY_CACHE makes the session's tiny model the embedded one."""
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ascend-overlay"), "smoke", *args, "--out", str(out)],
                          env=base_env(overlay=False, ASCEND_OVERLAY_CACHE=str(tiny_model.parent), **env),
                          capture_output=True, text=True, timeout=timeout)
    print(f"ascend-overlay smoke {' '.join(args)}: exit {proc.returncode} in {time.monotonic() - started:.0f} s")
    report = json.loads((out / "smoke.json").read_text()) if (out / "smoke.json").exists() else {}
    return proc.returncode, proc.stderr, report


def check(stage: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in stage["checks"] if c["name"] == name)


def assert_nothing_left(report: dict[str, Any]) -> None:
    for stage in report["stages"].values():
        if stage["processes"]:
            assert alive(stage["processes"]) == [], f"{stage['label']} left processes running"
