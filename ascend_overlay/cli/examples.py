"""An example for every subcommand's ``--help``, shown as its epilog.

Kept in one table rather than beside each parser so that a new subcommand without one is caught by
one test (``tests/test_cli.py``), and so the examples read as a set: the same model path, the same
versions, the flags an operator reaches for first.
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "run": [("ascend-overlay run -- vllm serve /models/Qwen3-8B", "serve with the overlay in every vLLM process"),
            ("ascend-overlay run --simulate-npu --report r.jsonl -- vllm serve MODEL -tp 2",
             "the NPU path on a simulated NPU, keeping the report")],
    "status": [("ascend-overlay status", "what would apply here, and why not"),
               ("VLLM_ASCEND_OVERLAY_ENABLE=balance_scheduling ascend-overlay status --json", "as a tool reads it")],
    "list": [("ascend-overlay list", "every patch, hook point and variable"),
             ("ascend-overlay list --json | jq '.patches[].name'", "the patch names")],
    "report": [("ascend-overlay report r.jsonl", "what each process applied, and where each patch ran"),
               ("ascend-overlay report r.jsonl --html report.html", "the same as a page with two pictures"),
               ("ascend-overlay report r.jsonl --json", "for tools")],
    "hotfix": [("ascend-overlay hotfix new fix_sampler --target vllm.v1.sample.sampler.Sampler.forward --dir hotfixes",
                "a skeleton with the live target's contract pinned"),
               ("ascend-overlay hotfix verify hotfixes", "check it as the overlay would")],
    "hotfix new": [("ascend-overlay hotfix new fix_sampler --target vllm.v1.sample.sampler.Sampler.forward "
                    "--dir hotfixes", "writes hotfixes/worker/patch_v1_sample_sampler.py")],
    "hotfix verify": [("ascend-overlay hotfix verify hotfixes", "every check the overlay makes, nothing activated"),
                      ("ascend-overlay hotfix verify hotfixes --json", "for CI")],
    "hotfix manifest": [("ascend-overlay hotfix manifest hotfixes", "pin every patch file's SHA-256 in SHA256SUMS")],
    "check": [("ascend-overlay check --vllm 0.33.0", "would the patches survive vLLM 0.33.0?"),
              ("ascend-overlay check --vllm ./vllm-checkout --json", "a source tree, for tools")],
    "drift": [("ascend-overlay drift 0.32.0 0.33.0", "what changed upstream, ranked for the overlay"),
              ("ascend-overlay drift --git ~/src/vllm v0.32.0 main", "between two commits of a checkout")],
    "plan": [("ascend-overlay plan --git ~/src/vllm v0.32.0 main", "steps of at most 1500 changed lines")],
    "verified": [("ascend-overlay verified", "the vLLM the overlay is verified against"),
                 ("ascend-overlay verified --set 0.33.0 --commit abc1234", "move it after a verification")],
    "demo": [("ascend-overlay demo", "serve the tiny model on CPU and print what the overlay did"),
             ("ascend-overlay demo --simulate-npu", "the same on the simulated NPU")],
    "smoke": [("ascend-overlay smoke /models/Qwen3-8B --max-model-len 32768 --artifacts docs/models",
               "dummy then real weights; YAML, supported-models row and tutorial"),
              ("ascend-overlay smoke", "the embedded tiny model")],
}


def epilog(command: str) -> str:
    lines = ["examples:"]
    for line, what in EXAMPLES[command]:
        lines += [f"  {line}", f"      {what}"]
    return "\n".join(lines)


def _keeping_examples(base: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``base``, except that the examples keep their lines (argparse would run them together)."""

    class Formatter(base):  # type: ignore[valid-type, misc]
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            if text.startswith("examples:"):
                return "".join(indent + line for line in text.splitlines(keepends=True))
            return str(super()._fill_text(text, width, indent))

    return Formatter


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every subcommand at any depth, by its full name (``"hotfix verify"``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(subcommands(sub, prefix=f"{prefix}{name} "))
    return found


def attach(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand that has examples its epilog."""
    for command, sub in subcommands(parser).items():
        if command in EXAMPLES:
            sub.epilog = epilog(command)
            base = sub.formatter_class
            formatter = base if isinstance(base, type) and issubclass(base, argparse.HelpFormatter) else \
                argparse.HelpFormatter
            sub.formatter_class = _keeping_examples(formatter)
