"""The model's row of vllm-ascend's supported-models page, from what the gate showed.

vllm-ascend's page (``docs/source/user_guide/support_matrix/supported_models.md``) has one row per
model and one column per feature, each cell one of its legend's symbols; smoke writes the same
orientation, the same columns (those of the page's A2/A3 tables of generative models) and the same
symbols, so a maintainer can paste the row into that table. The per-feature evidence stays in
``smoke.md`` and the tutorial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ascend_overlay.core.vocabulary import Word
from ascend_overlay.smoke.features import FeatureStatus


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# vllm-ascend's supported-models page (docs/source/user_guide/support_matrix/supported_models.md, 0.23.0):
# its legend, and the columns of its tables of generative models, in order.
class Symbol(Word):
    """A cell of the page, as its legend spells it."""

    SUPPORTED = "✅"
    EXPERIMENTAL = "🔵"
    UNSUPPORTED = "❌"
    UNTESTED = "🟡"
    BLANK = ""          # nobody claims it (smoke never exercises it, or it does not apply)


LEGEND_TEXT = [(Symbol.SUPPORTED, "Supported model/feature"), (Symbol.EXPERIMENTAL, "Experimental supported model/feature"),
               (Symbol.UNSUPPORTED, "Not supported model/feature"), (Symbol.UNTESTED, "Not tested or verified")]
COLUMNS = ("Model", "Support", "Note", "BF16", "Supported Hardware", "W8A8", "Chunked Prefill",
           "Automatic Prefix Cache", "LoRA", "Speculative Decoding", "Async Scheduling", "Tensor Parallel",
           "Pipeline Parallel", "Expert Parallel", "Data Parallel", "Prefill-decode Disaggregation",
           "Piecewise AclGraph", "Fullgraph AclGraph", "max-model-len", "MLP Weight Prefetch", "Doc")


def _symbol(status: FeatureStatus | None) -> Symbol:
    """A feature status as the legend's symbol; not applicable (or never exercised by smoke) is blank."""
    return {FeatureStatus.SUPPORTED: Symbol.SUPPORTED, FeatureStatus.UNSUPPORTED: Symbol.UNSUPPORTED,
            FeatureStatus.UNTESTED: Symbol.UNTESTED, FeatureStatus.CHECKPOINT_MISSING: Symbol.UNTESTED
            }.get(status, Symbol.BLANK) if status is not None else Symbol.BLANK


def supported_models_row(report: dict[str, Any], model_name: str) -> dict[str, Any]:
    """The model's row of vllm-ascend's supported-models table, each cell from what this run showed.

    A feature this run exercised is ✅ or ❌; one smoke can exercise but this run did not is 🟡; one
    smoke never exercises (W8A8, LoRA, speculative decoding, async scheduling, pipeline and data
    parallel, PD disaggregation, MLP weight prefetch) is left blank, as the page leaves features nobody
    claimed."""
    features = {f["key"]: FeatureStatus(f["status"]) for f in report["feature_matrix"]}
    passed = report["verdict"]["passed"]
    signed = report["verdict"]["signed_off"]
    served = report.get("served", {})
    stage = report["stages"].get(report.get("feature_source") or "", {})
    facts = stage.get("facts", {})
    ran = passed and bool(stage.get("checks"))

    def fact(key: str) -> Symbol:
        if facts.get(key) is None:
            return Symbol.BLANK
        return Symbol.SUPPORTED if facts[key] == "True" and ran else Symbol.UNTESTED

    tp = served.get("tensor_parallel_size") or 1
    graph = features.get("graph_mode")
    cudagraph = (facts.get("cudagraph_mode") or "").upper()
    piecewise = full = _symbol(graph)
    if graph is FeatureStatus.SUPPORTED:
        piecewise = Symbol.SUPPORTED if "PIECEWISE" in cudagraph else Symbol.UNTESTED
        full = Symbol.SUPPORTED if "FULL" in cudagraph else Symbol.UNTESTED
    dtype = (served.get("dtype_served") or served.get("dtype") or "").lower()
    stem = Path(model_name.rstrip("/")).name or "model"
    note = "" if signed else ("dummy weights only (not signed off)" if passed else report["verdict"]["text"])
    row = {
        "Model": stem,
        "Support": Symbol.SUPPORTED if signed else (Symbol.EXPERIMENTAL if passed else Symbol.UNSUPPORTED),
        "Note": note,
        "BF16": (Symbol.SUPPORTED if ran else Symbol.UNSUPPORTED) if "bfloat16" in dtype else Symbol.UNTESTED,
        "Supported Hardware": report["environment"]["hardware"],
        "W8A8": Symbol.BLANK, "Chunked Prefill": fact("enable_chunked_prefill"),
        "Automatic Prefix Cache": fact("enable_prefix_caching"), "LoRA": Symbol.BLANK,
        "Speculative Decoding": Symbol.BLANK, "Async Scheduling": Symbol.BLANK,
        "Tensor Parallel": _symbol(features.get("tensor_parallel")) if tp > 1 else Symbol.UNTESTED,
        "Pipeline Parallel": Symbol.BLANK, "Expert Parallel": _symbol(features.get("expert_parallel")),
        "Data Parallel": Symbol.BLANK, "Prefill-decode Disaggregation": Symbol.BLANK, "Piecewise AclGraph": piecewise, "Fullgraph AclGraph": full,
        "max-model-len": str(served.get("max_model_len") or ""), "MLP Weight Prefetch": Symbol.BLANK,
        "Doc": f"[{stem}](../../tutorials/models/{stem}.md)",
    }
    return row


def supported_models_markdown(report: dict[str, Any], model_name: str) -> list[str]:
    """The legend, then the table header and the model's row, ready to paste into the page's table."""
    row = supported_models_row(report, model_name)
    out = ["**Legend Description**:", ""] + [f"- {sym.value} = {text}" for sym, text in LEGEND_TEXT] + [""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "|".join(" --- " for _ in COLUMNS) + "|")
    out.append("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    return out
