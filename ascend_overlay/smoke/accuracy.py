"""Accuracy numbers, only from lm-eval's own results file: the gate never invents one.

lm-evaluation-harness writes ``results_<time>.json`` with ``results`` (per task: ``"metric,filter":
value`` and ``"metric_stderr,filter": stderr``), ``n-shot`` (per task) and ``config`` (how it was
run). Without such a file the test config and the tutorial carry the task list with each value
visibly pending, plus the command that measures it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ascend_overlay.smoke.model_info import SmokeInputError

# What a bring-up measures when nothing else is said (the reference project's usual choice):
# GSM8K 5-shot for a text model, MMMU (validation) for a vision-language model.
DEFAULT_TEXT_TASKS: list[dict[str, Any]] = [{"name": "gsm8k", "metrics": ["exact_match,strict-match", "exact_match,flexible-extract"]}]
DEFAULT_TEXT_FEWSHOT = 5
DEFAULT_VLM_TASKS: list[dict[str, Any]] = [{"name": "mmmu_val", "metrics": ["acc,none"]}]
DEFAULT_VLM_FEWSHOT = 0


@dataclass
class Metric:
    name: str
    value: float | None          # None: pending
    stderr: float | None = None


@dataclass
class Task:
    name: str
    metrics: list[Metric]
    num_fewshot: int | None = None


@dataclass
class Accuracy:
    tasks: list[Task]
    source: str | None = None                 # the results file, or None when pending
    model_args: str | None = None             # as lm-eval recorded them
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.source is None

    @property
    def num_fewshot(self) -> int | None:
        shots = {t.num_fewshot for t in self.tasks}
        return shots.pop() if len(shots) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"pending": self.pending, "source": self.source, "model_args": self.model_args, "notes": self.notes,
                "num_fewshot": self.num_fewshot,
                "tasks": [{"name": t.name, "num_fewshot": t.num_fewshot,
                           "metrics": [{"name": m.name, "value": m.value, "stderr": m.stderr} for m in t.metrics]}
                          for t in self.tasks]}


def pending(vision_language: bool) -> Accuracy:
    tasks = DEFAULT_VLM_TASKS if vision_language else DEFAULT_TEXT_TASKS
    shots = DEFAULT_VLM_FEWSHOT if vision_language else DEFAULT_TEXT_FEWSHOT
    return Accuracy([Task(t["name"], [Metric(m, None) for m in t["metrics"]], shots) for t in tasks])


def results_file(path: Path) -> Path:
    """The file itself, or the newest ``results*.json`` under a directory lm-eval wrote."""
    if path.is_dir():
        found = sorted(path.rglob("results*.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise SmokeInputError(f"--accuracy {path}: no lm-eval results*.json in that directory")
        return found[-1]
    if not path.is_file():
        raise SmokeInputError(f"--accuracy {path}: no such file (give lm-eval's results JSON, --output_path)")
    return path


def load(path: Path, model: str | None = None) -> Accuracy:
    file = results_file(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SmokeInputError(f"--accuracy {file}: not JSON ({exc})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results:
        raise SmokeInputError(f"--accuracy {file}: no \"results\" object; is it lm-eval's results JSON?")
    shots = data.get("n-shot") or {}
    tasks = []
    for name, values in results.items():
        if not isinstance(values, dict):
            continue
        metrics = []
        for key, value in values.items():
            if key == "alias" or "_stderr" in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            stderr = values.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
            metrics.append(Metric(key, float(value), float(stderr) if isinstance(stderr, (int, float)) else None))
        if metrics:
            shot = shots.get(name)
            tasks.append(Task(name, metrics, int(shot) if isinstance(shot, (int, float)) else None))
    if not tasks:
        raise SmokeInputError(f"--accuracy {file}: no numeric metric in \"results\"")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model_args = config.get("model_args")
    model_args = json.dumps(model_args) if isinstance(model_args, dict) else model_args
    accuracy = Accuracy(tasks, source=str(file), model_args=model_args)
    if model and model_args and Path(model.rstrip("/")).name not in str(model_args):
        accuracy.notes.append(f"lm-eval's model_args ({model_args}) do not name {Path(model).name}: "
                              "check the results belong to this model")
    return accuracy
