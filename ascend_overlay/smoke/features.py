"""The two matrices a bring-up ships: the feature status matrix and the dummy-vs-real validation matrix.

A feature's status is one of ``supported``, ``unsupported``, ``checkpoint-missing``,
``not-applicable`` or ``untested`` (this run did not exercise it; the row says how to), and every
status cites its evidence: a line of vLLM's log, a response, or the checkpoint's config. The
feature matrix is read from stage B when it ran, because only real weights sign a feature off; from
stage A otherwise, marked so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ascend_overlay.core.vocabulary import Word
from ascend_overlay.smoke.model_info import ModelInfo
from ascend_overlay.smoke.probes import TITLES, CheckStatus
from ascend_overlay.smoke.serve_flags import Asked
from ascend_overlay.smoke.stage import StageResult, StageStatus


class FeatureStatus(Word):
    """What the run says of one feature."""

    SUPPORTED = "supported"
    UNSUPPORTED = "unsupported"
    CHECKPOINT_MISSING = "checkpoint-missing"   # the real-weights stage had no weights to load
    NOT_APPLICABLE = "not-applicable"           # e.g. expert parallel for a dense model
    UNTESTED = "untested"                       # this run did not exercise it; the row says how to


@dataclass
class Feature:
    key: str
    feature: str
    setting: str
    status: FeatureStatus
    evidence: str
    stage: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ran(stage: StageResult | None) -> bool:
    return stage is not None and stage.status.ran


def _by_outcome(stage: StageResult) -> FeatureStatus:
    return FeatureStatus.SUPPORTED if stage.passed else FeatureStatus.UNSUPPORTED


def _check_feature(key: str, name: str, stage: StageResult) -> Feature:
    check = stage.check(key)
    if check is None:
        return Feature(key, name, "", FeatureStatus.UNTESTED, f"not reached: {stage.reason or stage.status}", stage.name)
    status = {CheckStatus.PASS: FeatureStatus.SUPPORTED, CheckStatus.FAIL: FeatureStatus.UNSUPPORTED,
              CheckStatus.NOT_APPLICABLE: FeatureStatus.NOT_APPLICABLE}.get(check.status, FeatureStatus.UNTESTED)
    return Feature(key, name, TITLES[key], status, check.evidence or check.detail, stage.name)


def _modes(stage: StageResult) -> list[Feature]:
    eager = stage.facts.get("enforce_eager")
    if eager is None:
        why = f"the stage ended before the engine reported its mode ({stage.reason})"
        return [Feature("graph_mode", "graph mode", "", FeatureStatus.UNTESTED, why, stage.name),
                Feature("eager_mode", "eager mode", "", FeatureStatus.UNTESTED, why, stage.name)]
    compiled = (f"compilation {stage.facts.get('compilation_mode', '?')}, "
                f"graph capture {stage.facts.get('cudagraph_mode', '?')}")
    ran_eager = eager == "True"
    outcome = _by_outcome(stage)
    line = stage.fact_lines.get("enforce_eager", "")
    if outcome is FeatureStatus.UNSUPPORTED:
        line += f" | the stage failed in this mode: {stage.reason}"
    if ran_eager:
        return [Feature("graph_mode", "graph mode", "", FeatureStatus.UNTESTED,
                        "this run was eager (--enforce-eager); run without it (--no-enforce-eager) to test graph mode",
                        stage.name),
                Feature("eager_mode", "eager mode", "--enforce-eager", outcome,
                        stage.fact_lines.get("eager_forced") or line, stage.name)]
    evidence = " | ".join(x for x in (stage.fact_lines.get("compilation_mode"), stage.fact_lines.get("compile_warmup"),
                                      stage.fact_lines.get("graph_capture")) if x)
    return [Feature("graph_mode", "graph mode", compiled, outcome, evidence or line, stage.name),
            Feature("eager_mode", "eager mode", "", FeatureStatus.UNTESTED,
                    "this run used graph mode; add --enforce-eager to test eager mode (and to isolate a graph-mode failure)",
                    stage.name)]


def _parallel(stage: StageResult, model: ModelInfo, asked: Asked) -> list[Feature]:
    tp = stage.facts.get("tensor_parallel_size")
    rows = [Feature("tensor_parallel", "tensor parallel", f"tp={tp or asked.tensor_parallel_size}",
                    _by_outcome(stage) if tp else FeatureStatus.UNTESTED,
                    stage.fact_lines.get("tensor_parallel_size") or f"not reached: {stage.reason}", stage.name)]
    if not model.is_moe:
        rows.append(Feature("expert_parallel", "expert parallel", "", FeatureStatus.NOT_APPLICABLE,
                            "not a mixture-of-experts model (no expert count in config.json)", stage.name))
    elif not asked.expert_parallel:
        rows.append(Feature("expert_parallel", "expert parallel", "", FeatureStatus.UNTESTED,
                            f"MoE ({model.moe}); pass --enable-expert-parallel to test it", stage.name))
    else:
        ranks = stage.fact_lines.get("parallel_ranks", "")
        status = _by_outcome(stage) if re.search(r"EP rank \d", ranks) else FeatureStatus.UNSUPPORTED
        rows.append(Feature("expert_parallel", "expert parallel", "--enable-expert-parallel", status,
                            ranks or f"no EP rank in the log ({stage.reason or 'expert parallel not active'})",
                            stage.name))
    return rows


def _capacity(stage: StageResult, asked: Asked) -> list[Feature]:
    models = stage.check("models")
    served = models.data.get("max_model_len") if models else None
    context = stage.check("context")
    asked_len = asked.max_model_len
    setting = f"asked {asked_len}" if asked_len else "not asked (model default)"
    if served is None:
        len_row = Feature("max_model_len", "max-model-len", setting, FeatureStatus.UNTESTED, f"not reached: {stage.reason}",
                          stage.name)
    else:
        evidence = f"GET /v1/models: max_model_len={served}"
        if stage.fact_lines.get("max_model_len_used"):
            evidence += f" | {stage.fact_lines['max_model_len_used']}"
        if context is not None:
            evidence += f" | {context.evidence or context.detail}"
        if asked_len is not None and served != asked_len:
            status = FeatureStatus.UNSUPPORTED
            evidence = f"asked {asked_len}, served {served} | " + evidence
        elif context is not None and context.status is CheckStatus.FAIL:
            status = FeatureStatus.UNSUPPORTED
        else:  # served as asked; the whole-window probe passed or was not run (--no-capacity)
            status = FeatureStatus.SUPPORTED
        len_row = Feature("max_model_len", "max-model-len", f"{setting}, served {served}", status, evidence, stage.name)
    seqs = asked.max_num_seqs
    concurrency = stage.check("concurrency")
    if not seqs:
        seq_row = Feature("max_num_seqs", "max-num-seqs", "not asked (vLLM default)", FeatureStatus.UNTESTED,
                          "pass --max-num-seqs N to check that N requests at once are served", stage.name)
    elif concurrency is None or concurrency.status not in (CheckStatus.PASS, CheckStatus.FAIL):
        seq_row = Feature("max_num_seqs", "max-num-seqs", f"asked {seqs}", FeatureStatus.UNTESTED,
                          concurrency.detail if concurrency else f"not reached: {stage.reason}", stage.name)
    else:
        kv = stage.facts.get("kv_concurrency", "")
        match = re.search(r"([\d,]+) tokens per request: ([\d.,]+)x", kv)
        fits = float(match.group(2).replace(",", "")) if match else None
        evidence = concurrency.evidence or concurrency.detail
        if stage.fact_lines.get("kv_concurrency"):
            evidence += f" | {stage.fact_lines['kv_concurrency']}"
        status = FeatureStatus.SUPPORTED if concurrency.status is CheckStatus.PASS else FeatureStatus.UNSUPPORTED
        if status is FeatureStatus.SUPPORTED and fits is not None and fits < seqs:
            status = FeatureStatus.UNSUPPORTED
            evidence = (f"the KV cache holds {fits:g} full-length sequences, fewer than {seqs} | " + evidence)
        seq_row = Feature("max_num_seqs", "max-num-seqs", f"asked {seqs}", status, evidence, stage.name)
    return [len_row, seq_row]


def _overlay(stage: StageResult) -> list[Feature]:
    if not stage.overlay:
        return [Feature("overlay", "overlay patches", "", FeatureStatus.UNTESTED if not stage.ready_s else FeatureStatus.UNSUPPORTED,
                        "no overlay report was written (was the overlay active?)", stage.name)]
    rows = []
    for proc in stage.overlay:
        bad = proc["failed"] + proc["problems"]
        setting = f"applied {len(proc['applied'])}, skipped {len(proc['skipped'])}" + \
            (f", failed {len(proc['failed'])}" if proc["failed"] else "") + \
            (f", problems {len(proc['problems'])}" if proc["problems"] else "")
        evidence = proc["log_line"] or f"{proc['role']} pid={proc['pid']} applied={proc['applied']}"
        if bad:
            evidence = "; ".join(bad) + " | " + evidence
        rows.append(Feature(f"overlay_{proc['role']}", f"overlay patches ({proc['role']})", setting,
                            FeatureStatus.UNSUPPORTED if bad else FeatureStatus.SUPPORTED, evidence, stage.name))
    return rows


def _checkpoint(real: StageResult | None) -> Feature:
    if real is None:
        return Feature("real_weights", "real checkpoint load", "", FeatureStatus.UNTESTED, "stage B not requested (--stage dummy)")
    if real.status is StageStatus.CHECKPOINT_MISSING:
        return Feature("real_weights", "real checkpoint load", "", FeatureStatus.CHECKPOINT_MISSING, real.reason, "real")
    if not _ran(real):
        return Feature("real_weights", "real checkpoint load", "", FeatureStatus.UNTESTED, real.reason or "stage B not run", "real")
    line = real.fact_lines.get("weights_load") or real.fact_lines.get("model_load") or real.fact_lines.get("load_format")
    loaded = real.ready_s is not None
    return Feature("real_weights", "real checkpoint load", f"load_format={real.facts.get('load_format', '?')}",
                   FeatureStatus.SUPPORTED if loaded else FeatureStatus.UNSUPPORTED, line or real.reason, "real")


def feature_matrix(model: ModelInfo, dummy: StageResult | None, real: StageResult | None) -> list[Feature]:
    source = real if _ran(real) else dummy
    rows: list[Feature] = []
    if source is None or not _ran(source):
        why = (source.reason if source else "") or "no stage ran"
        return [Feature("all", "all features", "", FeatureStatus.UNTESTED, why), _checkpoint(real)]
    asked = Asked.from_flags(source.flags)
    for key, name in (("text", "text generation"), ("chat", "chat completions"), ("image", "image input (VLM)"),
                      ("stream", "streaming")):
        if key == "image" and not model.is_vlm:
            rows.append(Feature(key, name, "", FeatureStatus.NOT_APPLICABLE, "text-only model (no vision config in config.json)",
                                source.name))
        elif key == "chat" and not model.chat_template:
            rows.append(Feature(key, name, "", FeatureStatus.NOT_APPLICABLE, "the checkpoint has no chat template", source.name))
        else:
            rows.append(_check_feature(key, name, source))
    rows += _modes(source) + _parallel(source, model, asked) + _capacity(source, asked) + _overlay(source)
    rows.append(_checkpoint(real))
    return rows


def validation_matrix(dummy: StageResult | None, real: StageResult | None) -> list[dict[str, Any]]:
    """Rows: what each stage proved (ready, each request, clean stop); columns: stage A, stage B."""
    def cell(stage: StageResult | None, row: str) -> dict[str, Any]:
        if stage is None:
            return {"status": CheckStatus.NOT_REQUESTED, "detail": ""}
        if not _ran(stage):
            return {"status": stage.status, "detail": stage.reason}
        if row == "ready":
            if stage.ready_s is not None:
                return {"status": CheckStatus.PASS, "detail": f"ready after {stage.ready_s:.1f} s"}
            return {"status": CheckStatus.FAIL, "detail": stage.reason}
        if row == "weights":
            line = stage.fact_lines.get("weights_load") or stage.fact_lines.get("load_format", "")
            return {"status": CheckStatus.PASS if stage.ready_s is not None else CheckStatus.FAIL,
                    "detail": f"load_format={stage.facts.get('load_format', '?')}" + (f" | {line}" if line else "")}
        if row == "shutdown":
            if stage.orphans:
                return {"status": CheckStatus.FAIL, "detail": f"orphans killed: {stage.orphans}"}
            return {"status": CheckStatus.PASS, "detail": f"exit code {stage.exit_code}, no orphan processes"}
        check = stage.check(row)
        if check is None:
            return {"status": CheckStatus.SKIPPED, "detail": "not reached"}
        seconds = f" ({check.seconds:.2f} s)" if check.seconds is not None else ""
        return {"status": check.status, "detail": (check.evidence or check.detail) + seconds}

    rows = [("ready", "server ready (startup)"), ("weights", "weights loaded")]
    rows += [(name, title) for name, title in TITLES.items()]
    rows.append(("shutdown", "clean shutdown (no orphan process)"))
    return [{"row": key, "check": title, "dummy": cell(dummy, key), "real": cell(real, key)} for key, title in rows]


def verdict(requested: list[str], stages: dict[str, StageResult]) -> tuple[bool, str]:
    """(every requested stage passed, the sentence for the report)."""
    failed = [s for s in stages.values() if s.name in requested and not s.passed]
    if failed:
        first = failed[0]
        return False, f"FAILED: {first.label} {first.status}: {first.reason}"
    if "real" not in requested:
        return True, "NOT SIGNED OFF: stage A (dummy weights) passed; real weights were not tried (--stage dummy)"
    if "dummy" not in requested:
        return True, "SIGNED OFF (real weights; stage A was not run in this invocation)"
    return True, "SIGNED OFF: stage A (dummy weights) and stage B (real weights) passed"
