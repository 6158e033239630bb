"""Contract fingerprints computed from source, in exactly the text ``contract.fingerprint`` gives live.

A pin written from a live object (``ascend_overlay.core.contract``) must compare equal to the fingerprint
read statically from the same code, or every check would report false drift. So the rules are the
same ones: parameters with their kinds and markers, literal defaults as ``repr`` (a default written
``-1`` or ``"s"`` is evaluated, so spelling does not matter), anything else as ``...``, annotations
left out; ``class(...)`` from the ``__init__`` found first along the bases; ``module`` for modules.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from ascend_overlay.core.contract import format_parameters
from ascend_overlay.main2main.tree import Found, StaticTree, is_opaque

# The same literal types as ascend_overlay.core.contract._LITERALS: only these keep their value in a pin.
LITERALS = (type(None), bool, int, float, str, bytes)
OBJECT_INIT = "(self, /, *args, **kwargs)"  # what inspect.signature(object.__init__) gives

Resolver = Callable[[str], "str | None"]


_ARITH = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
          ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b, ast.Mod: lambda a, b: a % b,
          ast.LShift: lambda a, b: a << b if 0 <= b <= 64 else None}


def _arith(node: ast.AST) -> Any:
    """Constant arithmetic (``16 * 1024 * 1024``, ``1 << 20``): evaluated at def time, so live pins show the result."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _arith(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _arith(node.left), _arith(node.right)
        if left is None or right is None:
            return None
        try:
            return _ARITH[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
    return None


def literal_text(text: str) -> str | None:
    """``repr`` of a literal written as source, None when it is not one of the pinned literal types."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = _arith(ast.parse(text, mode="eval").body)
        except (SyntaxError, ValueError, RecursionError):
            return None
        return None if value is None else repr(value)
    return repr(value) if isinstance(value, LITERALS) else None


def _field_default(text: str) -> str | None:
    """``field(default=3)`` / ``Field(default=3)``: the default is the literal inside."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("field", "Field"):
            for keyword in node.keywords:
                if keyword.arg == "default":
                    return literal_text(ast.unparse(keyword.value))
    return None


def format_default(default: Any, names: dict[str, Any] | None = None, resolve: Resolver | None = None) -> str:
    """The pin text of a default given as source: ``repr`` of a literal, else ``...``.

    A name bound to a literal (``def f(size=DEFAULT_SIZE)``, ``model: str = ModelConfig.model``) is
    evaluated too, because at run time the default is that value, and the live fingerprint shows it.
    """
    text = str(default)
    literal = literal_text(text)
    if literal is not None:
        return literal
    if names is not None and text.isidentifier() and text in names:
        literal = literal_text(names[text]) or _field_default(names[text])
        if literal is not None:
            return literal
    path = getattr(default, "canonical_path", None)
    if resolve is not None and isinstance(path, str) and path.replace(".", "").replace("_", "").isalnum():
        value = resolve(path)
        if value is not None:
            literal = literal_text(value) or _field_default(value)
            if literal is not None:
                return literal
    return "..."


def parameters_text(parameters: Any, *, names: dict[str, Any] | None = None, resolve: Resolver | None = None) -> str:
    """``(a, b=1, *, c)`` from griffe parameters, through the same formatter as live contracts."""
    return format_parameters([
        (p.name, p.kind.name.lower(), None if p.default is None else format_default(p.default, names, resolve))
        for p in parameters])


def module_literals(module: Any) -> dict[str, Any]:
    """Module-level names bound to a literal, as source text (for defaults that name a constant)."""
    names: dict[str, Any] = {}
    if module is None:
        return names
    for name, member in module.members.items():
        if not member.is_alias and member.is_attribute and member.value is not None:
            names[name] = str(member.value)
    return names


def function_fingerprint(func: Any, *, names: dict[str, Any] | None = None, resolve: Resolver | None = None) -> str:
    """The function as defined (the applier pins the descriptor found along the MRO, own or inherited,
    so an inherited classmethod keeps its ``cls``)."""
    return parameters_text(func.parameters, names=names, resolve=resolve)


def value_resolver(tree: StaticTree) -> Resolver:
    """Source text of the value a dotted name is bound to (``ModelConfig.model``), found in the tree."""
    def resolve(path: str) -> str | None:
        found = tree.get(path)
        if found is None or found.kind != "attribute" or found.obj.value is None:
            return None
        return str(found.obj.value)
    return resolve


def class_fingerprint(tree: StaticTree, cls: Any, module_name: str) -> str | None:
    """``class(...)`` from the first ``__init__`` along the bases; None when a base outside vLLM
    (or a dataclass-like decorator griffe cannot expand) hides it."""
    tree.refresh_dataclass_init(cls, module_name)
    for base, where in tree.mro(cls, module_name):
        if is_opaque(base):
            return None
        init = base.members.get("__init__")
        if init is None:
            if base.decorators:
                return None  # a class decorator may write __init__ (pydantic, attrs, vLLM's @config)
            continue
        if init.is_alias or not init.is_function:
            return None
        return "class" + parameters_text(init.parameters, names=module_literals(tree.module(where)),
                                         resolve=value_resolver(tree))
    return "class" + OBJECT_INIT


def attribute_fingerprint(attr: Any) -> str | None:
    """``type(value).__name__`` as the live rule gives, when the value is a literal; properties by kind."""
    labels = attr.labels
    if "property" in labels:
        return "cached_property" if "cached" in labels else "property"
    if attr.value is None:
        return None
    try:
        value = ast.literal_eval(str(attr.value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return type(value).__name__


def fingerprint(tree: StaticTree, found: Found) -> str | None:
    """The static fingerprint of what a target leads to; None when source alone cannot tell."""
    if found.kind in ("module", "external-module"):
        return "module"
    if found.kind == "function":
        return function_fingerprint(found.obj, names=module_literals(tree.module(found.module)),
                                    resolve=value_resolver(tree))
    if found.kind == "class":
        return class_fingerprint(tree, found.obj, found.module)
    if found.kind == "attribute":
        return attribute_fingerprint(found.obj)
    return None
