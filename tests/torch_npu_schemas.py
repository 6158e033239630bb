"""Readers of the kernel schemas the real torch_npu wheel publishes, for tests/test_npu_sim_schemas.py.

Three files of the wheel carry them: ``torch_npu/csrc/aten/npu_native_functions_by_codegen.yaml``
(native function schemas, ``- func: name(Type arg=default, *, ...) -> ...``),
``torch_npu/op_plugin/meta/_meta_registrations.py`` (Python meta kernels, ``@impl(m, "name")``; their
parameters, and the kernels themselves made runnable on meta tensors), and
``torch_npu/include/third_party/op-plugin/op_plugin/include/AtbOpsInterface.h`` (the C++ prototypes
of the ATB kernels such as ``_npu_rotary_embedding``, which neither of the other two lists).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

YAML = "torch_npu/csrc/aten/npu_native_functions_by_codegen.yaml"
META = "torch_npu/op_plugin/meta/_meta_registrations.py"
ATB_HEADER = "torch_npu/include/third_party/op-plugin/op_plugin/include/AtbOpsInterface.h"

NO_DEFAULT = object()
_ARITHMETIC = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Pow: lambda a, b: a ** b}


@dataclass(frozen=True)
class Opaque:
    """A default the reader cannot evaluate (a name, a call): compared as its source text."""

    source: str


@dataclass(frozen=True)
class Param:
    name: str
    keyword_only: bool
    default: Any = NO_DEFAULT

    def __repr__(self) -> str:
        default = "" if self.default is NO_DEFAULT else f"={self.default!r}"
        return f"{'*' if self.keyword_only else ''}{self.name}{default}"


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([<":
            depth += 1
        elif char in ")]>":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _schema_default(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return Opaque(text)  # lists, dtypes...: compared as text


def yaml_schemas(text: str) -> dict[str, list[list[Param]]]:
    """Every ``func:`` schema of the native functions file, by overload-free name."""
    found: dict[str, list[list[Param]]] = {}
    for match in re.finditer(r"^\s*-?\s*func:\s*([A-Za-z0-9_]+)\((.*)\)\s*->", text, flags=re.M):
        name, args = match.group(1), match.group(2)
        params, keyword_only = [], False
        for arg in _split_top_level(args):
            if arg == "*":
                keyword_only = True
                continue
            declaration, _, default = arg.partition("=")
            params.append(Param(declaration.split()[-1], keyword_only,
                                _schema_default(default.strip()) if default else NO_DEFAULT))
        found.setdefault(name, []).append(params)
    return found


def meta_registrations(text: str) -> dict[str, list[Param]]:
    """The parameters of each ``@impl(m, "name")`` meta kernel."""
    found: dict[str, list[Param]] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "impl"
                    and len(decorator.args) == 2 and isinstance(decorator.args[1], ast.Constant)):
                found[decorator.args[1].value] = _ast_params(node.args)
    return found


def _ast_params(args: ast.arguments) -> list[Param]:
    positional = args.posonlyargs + args.args
    defaults = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + [_value(d) for d in args.defaults]
    params = [Param(a.arg, False, d) for a, d in zip(positional, defaults, strict=True)]
    params += [Param(a.arg, True, NO_DEFAULT if d is None else _value(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return params


def _value(node: ast.expr) -> Any:
    """A default's value: literals and constant arithmetic (``2**31 - 1``); never executes code."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand)
        return Opaque(ast.unparse(node)) if isinstance(inner, Opaque) else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _value(node.left), _value(node.right)
        if not isinstance(left, Opaque) and not isinstance(right, Opaque):
            return _ARITHMETIC[type(node.op)](left, right)
    return Opaque(ast.unparse(node))


def atb_prototypes(text: str) -> dict[str, list[str]]:
    """Parameter names of each ``TORCH_NPU_API`` prototype in the ATB header."""
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"TORCH_NPU_API\s+[^;(]*?\b([A-Za-z0-9_]+)\((.*?)\);", text, flags=re.S):
        names = [re.findall(r"[A-Za-z_][A-Za-z0-9_]*", param)[-1] for param in _split_top_level(match.group(2))]
        found[match.group(1)] = names
    return found


def python_params(function: Callable[..., Any]) -> list[Param]:
    """The stand-in's parameters (through ``functools.wraps`` to the kernel body)."""
    params = []
    for p in inspect.signature(function).parameters.values():
        default = NO_DEFAULT if p.default is inspect.Parameter.empty else p.default
        params.append(Param(p.name, p.kind is inspect.Parameter.KEYWORD_ONLY, default))
    return params


class _ErrCode:
    """torch_npu's ``ErrCode`` as the meta kernels name it: only its members' names matter there."""

    def __getattr__(self, name: str) -> str:
        return name


def meta_functions(text: str, names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """The Python meta kernels registered as ``names`` in ``_meta_registrations.py``, made callable
    without importing torch_npu: each function is taken from the file's syntax tree with the module-
    level functions and constants it uses (transitively), undecorated, and defined in a namespace of
    torch, math, typing and stand-ins for torch_npu's error-text helpers (which only build messages)."""
    import math
    import typing

    import torch

    tree = ast.parse(text)
    defs: dict[str, ast.stmt] = {}
    registered: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs[node.name] = node
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "impl"
                        and len(decorator.args) == 2 and isinstance(decorator.args[1], ast.Constant)):
                    registered[decorator.args[1].value] = node.name
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            for target in node.targets:
                defs.setdefault(target.id, node)
    wanted: list[str] = []
    todo = [registered[name] for name in names]
    while todo:
        name = todo.pop()
        if name in wanted or name not in defs:
            continue
        wanted.append(name)
        node = defs[name]
        parts = [*node.body, node.args] if isinstance(node, ast.FunctionDef) else [node]  # not the decorators
        todo += [n.id for part in parts for n in ast.walk(part) if isinstance(n, ast.Name) and n.id in defs]
    namespace: dict[str, Any] = {"torch": torch, "math": math, "ops_error": lambda code: "",
                                 "pta_error": lambda code: "", "ErrCode": _ErrCode(),
                                 **{n: getattr(typing, n) for n in ("Dict", "List", "Optional", "Tuple", "Union")}}
    body = []
    for name in sorted(set(wanted), key=lambda n: defs[n].lineno):
        node = defs[name]
        if isinstance(node, ast.FunctionDef):
            node = ast.FunctionDef(node.name, node.args, node.body, [], node.returns, node.type_comment,
                                   **({"type_params": node.type_params} if hasattr(node, "type_params") else {}))
        body.append(node)
    module = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    exec(compile(module, "_meta_registrations.py", "exec"), namespace)  # noqa: S102 (the wheel's own file, parsed)
    return {name: namespace[registered[name]] for name in names}
