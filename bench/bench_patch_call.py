"""Per-call cost of a patched function, against calling the original, measured in the same run.

Goals: a *replace* patch costs what the original costs (ratio <= 1.02: the replacement is installed
as is, no wrapper); a *wrap* patch costs at most 3x the original (ratio <= 3.0), through a module
attribute and for a method called through an instance, since vLLM calls some wrapped methods once per
scheduler step. A wrap edit installs a plain function bound at apply time (``core/wrapper.py``); the
wrapper's own call and its call of the original are the two frames it adds. Each variant's body is
identical; each call goes through a module attribute or an instance, the way vLLM calls a patched name.
Run: ``.venv/bin/python bench/bench_patch_call.py``.
"""

from __future__ import annotations

import sys
import timeit
import types

from _common import Goals, interleaved

from ascend_overlay.core import applier
from ascend_overlay.core.patch import Patch

BODY = ("def target(x, y=2):\n    return x * y + 1\n"
        "class Holder:\n    def method(self, x, y=2):\n        return x * y + 1\n")
REPLACE_GOAL, WRAP_GOAL = 1.02, 3.0


def _module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(BODY, mod.__dict__)
    sys.modules[name] = mod
    return mod


def main() -> int:
    stock = _module("bench_stock_target")
    replaced = _module("bench_replaced_target")
    wrapped = _module("bench_wrapped_target")

    def replacement(x, y=2):
        return x * y + 1

    rp = Patch(name="bench_replace", phase="import", vllm=">=0", why="bench", remove_when="bench")
    rp.replace("bench_replaced_target:target")(replacement)
    applier.apply(rp)
    wp = Patch(name="bench_wrap", phase="import", vllm=">=0", why="bench", remove_when="bench")

    @wp.wrap("bench_wrapped_target:target")
    def passthrough(fn, instance, args, kwargs):
        return fn(*args, **kwargs)

    @wp.wrap("bench_wrapped_target:Holder.method")
    def passthrough_method(fn, instance, args, kwargs):
        return fn(*args, **kwargs)

    applier.apply(wp)
    assert replaced.target is replacement
    assert wrapped.target(3) == stock.target(3) and wrapped.Holder().method(3) == stock.Holder().method(3)
    stock_holder, wrapped_holder = stock.Holder(), wrapped.Holder()
    number = 200_000

    def timer(mod: types.ModuleType) -> float:
        return min(timeit.repeat(lambda: mod.target(3), number=number, repeat=3)) / number * 1e9

    def method_timer(holder: object) -> float:
        return min(timeit.repeat(lambda: holder.method(3), number=number, repeat=3)) / number * 1e9

    results = interleaved({"original": lambda: timer(stock), "replace patch": lambda: timer(replaced),
                           "wrap patch": lambda: timer(wrapped), "method": lambda: method_timer(stock_holder),
                           "wrapped method": lambda: method_timer(wrapped_holder)}, rounds=10)
    goals = Goals()
    goals.check(f"replace patch, through a module attribute  [goal: ratio <= {REPLACE_GOAL}]",
                {"original": results["original"], "replace patch": results["replace patch"]},
                "original", REPLACE_GOAL, unit="ns")
    goals.check(f"wrap patch, through a module attribute  [goal: ratio <= {WRAP_GOAL}]",
                {"original": results["original"], "wrap patch": results["wrap patch"]}, "original", WRAP_GOAL,
                unit="ns")
    goals.check(f"wrap patch on a method, called through an instance  [goal: ratio <= {WRAP_GOAL}]",
                {"method": results["method"], "wrapped method": results["wrapped method"]}, "method", WRAP_GOAL,
                unit="ns")
    return goals.exit_code()


if __name__ == "__main__":
    sys.exit(main())
