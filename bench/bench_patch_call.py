"""Issue 3 performance goal: the per-call cost of a *replace* patch equals calling the original
(ratio <= 1.02: the replacement is installed as is, no wrapper); a *wrap* patch's cost is reported.

Each variant calls a function of identical body through a module attribute, the way vLLM code calls
a patched function. A wrap patch on a method is reported too, called through an instance: a wrap
edit's wrapper binds in Python (``ascend_overlay/core/wrapper.py``, so that it pickles by reference),
which costs more per call than wrapt's own binding. Run: ``.venv/bin/python bench/bench_patch_call.py``.
"""

from __future__ import annotations

import sys
import timeit
import types

from _common import interleaved, report

from ascend_overlay.core import applier
from ascend_overlay.core.patch import Patch

BODY = ("def target(x, y=2):\n    return x * y + 1\n"
        "class Holder:\n    def method(self, x, y=2):\n        return x * y + 1\n")


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
    stock_holder, wrapped_holder = stock.Holder(), wrapped.Holder()
    number = 200_000

    def timer(mod: types.ModuleType) -> float:
        return min(timeit.repeat(lambda: mod.target(3), number=number, repeat=3)) / number * 1e9

    def method_timer(holder: object) -> float:
        return min(timeit.repeat(lambda: holder.method(3), number=number, repeat=3)) / number * 1e9

    results = interleaved({"original": lambda: timer(stock), "replace patch": lambda: timer(replaced),
                           "wrap patch": lambda: timer(wrapped), "method": lambda: method_timer(stock_holder),
                           "wrapped method": lambda: method_timer(wrapped_holder)}, rounds=10)
    ratios = report("per-call cost through a module attribute  [goal: replace ratio <= 1.02; wrap reported]",
                    {"original": results["original"], "replace patch": results["replace patch"]},
                    "original", 1.02, unit="ns")
    report("wrap patch (wrapt FunctionWrapper), for reference", {"original": results["original"],
                                                                  "wrap patch": results["wrap patch"]},
           "original", None, unit="ns")
    report("wrap patch on a method, called through an instance, for reference",
           {"method": results["method"], "wrapped method": results["wrapped method"]}, "method", None, unit="ns")
    return 0 if ratios["replace patch"] <= 1.02 else 1


if __name__ == "__main__":
    sys.exit(main())
