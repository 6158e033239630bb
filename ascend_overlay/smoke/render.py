"""``smoke.md``: the run for a person (smoke.json carries the same for tools).

The order is the reviewer's: the verdict, the two matrices, the commands to reproduce each stage,
the log lines that are the evidence, and, when something failed, why, with the log's tail.
"""

from __future__ import annotations

from typing import Any

from ascend_overlay.smoke.features import FeatureStatus
from ascend_overlay.smoke.probes import CheckStatus
from ascend_overlay.smoke.stage import StageStatus
from ascend_overlay.smoke.supported_models import supported_models_markdown

# What a reviewer must not miss is set in bold; every other status reads as its value.
EMPHASIS = {CheckStatus.FAIL: "**FAIL**", FeatureStatus.UNSUPPORTED: "**unsupported**",
            FeatureStatus.CHECKPOINT_MISSING: "**checkpoint-missing**"}
KEY_LINES = ("engine_config", "max_model_len_used", "kv_concurrency", "weights_load", "model_load", "init_engine",
             "eager_forced", "compile_warmup", "graph_capture", "parallel_ranks", "server_started")


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def mark(status: str) -> str:
    """A status as written in the report (a member in process, its value once read back from JSON)."""
    for enum in (CheckStatus, FeatureStatus):
        try:
            member = enum(status)
        except ValueError:
            continue
        return EMPHASIS.get(member, member.value)
    return str(status)


def validation_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| check | stage A: dummy weights | stage B: real weights |", "| --- | --- | --- |"]
    for row in rows:
        parts = []
        for stage in ("dummy", "real"):
            c = row[stage]
            parts.append(f"{mark(c['status'])}" + (f": {cell(c['detail'])}" if c["detail"] else ""))
        out.append(f"| {row['check']} | {parts[0]} | {parts[1]} |")
    return out


def feature_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| feature | setting | status | evidence |", "| --- | --- | --- | --- |"]
    for row in rows:
        out.append(f"| {cell(row['feature'])} | {cell(row['setting']) or '-'} | {mark(row['status'])} | "
                   f"`{cell(row['evidence'])}` |" if row["evidence"] else
                   f"| {cell(row['feature'])} | {cell(row['setting']) or '-'} | {mark(row['status'])} | - |")
    return out


def smoke_markdown(report: dict[str, Any]) -> str:
    model, env = report["model"], report["environment"]
    lines = [f"# Bring-up gate: `{model['spec']}`", "",
             f"**Verdict: {report['verdict']['text']}**", "",
             f"- when: {report['created']}; exit code {report['exit_code']}",
             f"- vLLM {env.get('vllm') or '?'} ({env.get('vllm_dist') or '?'}), ascend-overlay {env['overlay']}, "
             f"Python {env['python']}",
             f"- hardware: {env['hardware']}",
             f"- model: architectures {model['architectures'] or '?'} (model_type {model['model_type']}); "
             f"vision-language: {'yes (' + model['vision_evidence'] + ')' if model['vision_language'] else 'no'}; "
             f"MoE: {'yes (' + model['moe_evidence'] + ')' if model['moe'] else 'no'}; "
             f"chat template: {model['chat_template'] or 'none'}; weights: "
             f"{', '.join(model['weights'][:4]) + (' ...' if len(model['weights']) > 4 else '') if model['weights'] else 'none'}",
             "", "## Dummy-vs-real validation matrix", "",
             "Stage A (dummy weights) proves the architecture, operator and API paths; only stage B (the real "
             "checkpoint) proves key mapping, dequantisation, sharding and load-time stability, and signs off.", ""]
    lines += validation_table(report["validation_matrix"])
    source = report.get("feature_source")
    lines += ["", "## Feature matrix", "",
              f"Read from {'stage B (real weights)' if source == 'real' else 'stage A (dummy weights) only: not signed off'}: "
              "the model's row of vllm-ascend's supported-models page, then each status with its evidence.", ""]
    lines += supported_models_markdown(report, report.get("model_name") or report["model"]["spec"])
    lines += [""] + feature_table(report["feature_matrix"])
    lines += ["", "## Commands", ""]
    for stage in report["stages"].values():
        lines += [f"{stage['label']} ({stage['status']}):", "", "```bash", stage["command"], "```", ""]
    failures = [s for s in report["stages"].values() if StageStatus(s["status"]) is not StageStatus.PASSED]
    if failures:
        lines += ["## Failure reasons", ""]
        for stage in failures:
            lines += [f"### {stage['label']}: {stage['status']}", "", stage["reason"] or "-", ""]
            if stage.get("failure_kind"):
                lines += [f"kind: {stage['failure_kind']}", ""]
            if stage.get("log_tail"):
                lines += ["Log tail:", "", "```text", stage["log_tail"], "```", ""]
    lines += ["## Key log lines", ""]
    for stage in report["stages"].values():
        found = [stage["fact_lines"][k] for k in KEY_LINES if stage["fact_lines"].get(k)]
        found += [p["log_line"] for p in stage["overlay"] if p.get("log_line")]
        if not found:
            continue
        lines += [f"{stage['label']} (log: `{stage['log_path']}`):", "", "```text", *found, "```", ""]
    lines += ["## Responses", ""]
    for stage in report["stages"].values():
        for check in stage["checks"]:
            if "output" in check["data"]:
                lines.append(f"- {stage['label']}, {check['title']}: `{cell(repr(check['data']['output']))}`")
    accuracy = report["accuracy"]
    lines += ["", "## Accuracy", ""]
    if accuracy["pending"]:
        lines.append("Pending: no lm-eval results were given (`--accuracy FILE`). Nothing here is measured.")
    else:
        lines.append(f"From `{accuracy['source']}` (lm-eval).")
        lines += [f"- {n}" for n in accuracy["notes"]]
    lines += ["", "| task | n-shot | metric | value |", "| --- | --- | --- | --- |"]
    for task in accuracy["tasks"]:
        for metric in task["metrics"]:
            value = "PENDING" if metric["value"] is None else f"{metric['value']:.4f}"
            lines.append(f"| {task['name']} | {task['num_fewshot']} | {metric['name']} | {value} |")
    artifacts = report.get("artifacts") or {}
    if artifacts:
        lines += ["", "## Artifacts", ""] + [f"- {k}: `{v}`" for k, v in artifacts.items()]
    return "\n".join(lines) + "\n"
