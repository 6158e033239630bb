"""Does a call, or an override, still fit a shape? Both questions are asked of contract texts
(``(self, x, residual=None)``), which live objects and static source produce identically, so the
answer cannot depend on where the shape came from."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ascend_overlay.core.contract import format_parameters, split_params

POSITIONAL = ("positional_only", "positional_or_keyword")
NAMED = ("positional_or_keyword", "keyword_only")


@dataclass
class Param:
    name: str
    kind: str          # an inspect.Parameter kind name in lower case
    has_default: bool

    @property
    def required(self) -> bool:
        return not self.has_default and self.kind not in ("var_positional", "var_keyword")


def parse(shape: str | None) -> list[Param] | None:
    """The parameters of a contract text, or None when it has none (``class``, ``module``, ``property``)."""
    if not shape or "(" not in shape or not shape.endswith(")"):
        return None
    params: list[Param] = []
    keyword_only = False
    for part in split_params(shape):
        if part == "/":
            for p in params:
                if p.kind == "positional_or_keyword":
                    p.kind = "positional_only"
        elif part == "*":
            keyword_only = True
        elif part.startswith("**"):
            params.append(Param(part[2:], "var_keyword", False))
        elif part.startswith("*"):
            params.append(Param(part[1:], "var_positional", False))
            keyword_only = True
        else:
            name, eq, _ = part.partition("=")
            params.append(Param(name, "keyword_only" if keyword_only else "positional_or_keyword", bool(eq)))
    return params


def call_problem(shape: str, positional: int, keywords: tuple[str, ...], bound: bool) -> str | None:
    """Why a call with ``positional`` arguments and these keywords no longer binds to ``shape``, or None.

    ``bound``: the first parameter is supplied by the call itself (``self.m(...)``, ``Class(...)``).
    """
    params = parse(shape)
    if params is None:
        return None
    if bound and params and params[0].kind in POSITIONAL:
        params = params[1:]
    slots = [p for p in params if p.kind in POSITIONAL]
    var_positional = any(p.kind == "var_positional" for p in params)
    var_keyword = any(p.kind == "var_keyword" for p in params)
    if positional > len(slots) and not var_positional:
        return f"takes {len(slots)} positional argument(s), the call passes {positional}"
    filled = {p.name for p in slots[:positional]}
    for keyword in keywords:
        if keyword in filled:
            return f"`{keyword}` is now filled by a positional argument of the call"
        if not any(p.name == keyword and p.kind in NAMED for p in params) and not var_keyword:
            return f"has no parameter `{keyword}`"
        filled.add(keyword)
    missing = [p.name for p in params if p.required and p.name not in filled]
    if missing:
        return "requires " + ", ".join(f"`{m}`" for m in missing) + ", which the call does not pass"
    return None


def override_problem(base: str, override: str) -> str | None:
    """Why an override no longer accepts every call vLLM may make through the base's shape, or None."""
    base_params, own = parse(base), parse(override)
    if base_params is None or own is None:
        return None
    if len(base_params) > 1 and base_params[0].kind in POSITIONAL \
            and all(p.kind in ("var_positional", "var_keyword") for p in base_params[1:]):
        # A pass-through slot (``CustomOp.forward_oot(self, *args, **kwargs)``): vLLM calls it with the
        # arguments of the subclass's own ``forward``, so any shape the subclass gives it fits.
        return None
    own_slots = [p for p in own if p.kind in POSITIONAL]
    own_var_positional = any(p.kind == "var_positional" for p in own)
    own_var_keyword = any(p.kind == "var_keyword" for p in own)
    covered: set[str] = set()
    for index, b in enumerate(p for p in base_params if p.kind in POSITIONAL):
        if index < len(own_slots):
            mine = own_slots[index]
            covered.add(mine.name)
            receiver = index == 0 and {b.name, mine.name} <= {"self", "cls"}  # never passed by name
            if b.kind == "positional_or_keyword" and mine.name != b.name and not own_var_keyword and not receiver:
                return f"vLLM's parameter {index + 1} is `{b.name}`, the override's is `{mine.name}`"
        elif not own_var_positional:
            return f"vLLM may pass `{b.name}`, which the override does not accept"
    for b in base_params:
        if b.kind == "keyword_only":
            if not any(p.name == b.name and p.kind in NAMED for p in own) and not own_var_keyword:
                return f"vLLM may pass `{b.name}=`, which the override does not accept"
            covered.add(b.name)
        elif b.kind == "var_positional" and not own_var_positional:
            return f"vLLM's shape takes *{b.name}, the override does not"
        elif b.kind == "var_keyword" and not own_var_keyword:
            return f"vLLM's shape takes **{b.name}, the override does not"
    extra = [p.name for p in own if p.required and p.name not in covered]
    if extra:
        return "the override requires " + ", ".join(f"`{n}`" for n in extra) + ", which vLLM does not pass"
    return None


def _default_text(node: ast.expr) -> str:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "..."
    return repr(value) if isinstance(value, (type(None), bool, int, float, str, bytes)) else "..."


def function_shape(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The contract text of a function written in source (the overlay's own overrides)."""
    args = node.args
    params: list[tuple[str, str, str | None]] = []
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "positional_only" if index < len(args.posonlyargs) else "positional_or_keyword"
        params.append((arg.arg, kind, None if default is None else _default_text(default)))
    if args.vararg is not None:
        params.append((args.vararg.arg, "var_positional", None))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append((arg.arg, "keyword_only", None if default is None else _default_text(default)))
    if args.kwarg is not None:
        params.append((args.kwarg.arg, "var_keyword", None))
    return format_parameters(params)
