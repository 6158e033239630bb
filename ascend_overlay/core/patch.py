"""The declaration of a patch: what it targets, why, when it applies, and the edits it makes.

A patch is data first, so the overlay can decide, report and check it without running it: a patch
file builds one ``Patch`` named ``PATCH`` and attaches its edits with the ``replace`` and ``wrap``
decorators. Nothing in a patch file may import vLLM at module level; the overlay loads every patch
file at start-up, long before vLLM is imported, to know what to hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ascend_overlay.core.errors import PatchDeclarationError
from ascend_overlay.core.settings import PREFIX, Variable
from ascend_overlay.core.vllm_version import parse_specifier, parse_version
from ascend_overlay.core.vocabulary import EditKind, Phase

__all__ = ["Edit", "EditKind", "Patch", "Phase", "Targeted", "parse_target"]


KNOWN_REQUIREMENTS = ("npu", "torch_npu")
REQUIREMENT_PREFIXES = ("dist:", "patch:", "module:")


def parse_target(target: str) -> tuple[str, tuple[str, ...]]:
    """Split ``"pkg.module:Class.attr"`` into the module name and the attribute path."""
    module, sep, attrs = target.partition(":")
    path = tuple(attrs.split(".")) if attrs else ()
    if not sep or not module or not path or not all(p.isidentifier() for p in path) \
            or not all(p.isidentifier() for p in module.split(".")):
        raise PatchDeclarationError(
            f"target {target!r} must be 'package.module:Attribute.path' (module, a colon, then attributes)")
    return module, path


class Targeted:
    """For records naming a vLLM target (``target``, written ``package.module:Attr.path``): its
    module and attribute path, parsed one way everywhere."""

    target: str

    @property
    def module(self) -> str:
        return parse_target(self.target)[0]

    @property
    def path(self) -> tuple[str, ...]:
        return parse_target(self.target)[1]


@dataclass(frozen=True)
class Edit(Targeted):
    """One change to one attribute of vLLM."""

    target: str
    kind: EditKind
    value: Any = None
    factory: Callable[[Any], Any] | None = None
    contract: str | None = None
    compatible: tuple[str, ...] = ()
    rebind_aliases: bool = True


@dataclass(frozen=True)
class Reliance:
    """A vLLM name a patch uses but does not edit, declared because analysis cannot see it."""

    target: str
    contract: str | None = None
    compatible: tuple[str, ...] = ()


def _as_tuple(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:  # what authors write
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass
class Patch:
    """A declared change to vLLM, applied atomically in one phase of the processes that need it."""

    name: str
    phase: Phase  # a phase's value ("worker") is read as the member
    vllm: str
    why: str
    remove_when: str
    default: bool = True
    requires: tuple[str, ...] = ()  # a single string or a list is read as a tuple
    upstream: str | None = None
    fixed_in: str | None = None
    supersedes: tuple[str, ...] = ()
    edits: list[Edit] = field(default_factory=list)
    variables: list[Variable] = field(default_factory=list)
    source: str = "builtin"
    file: str | None = None
    # The overlay's own hook points (patches/hooks/): planned like any patch, but not switchable by
    # toggles, and reported apart from the patches they fire. Only the overlay's release declares them.
    internal: bool = False
    relied_on: list[Reliance] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or not self.name[0].isalpha() \
                or self.name != self.name.lower():
            raise PatchDeclarationError(
                f"patch name {self.name!r} must be lower_snake_case letters, digits and underscores")
        try:
            self.phase = Phase(self.phase)
        except ValueError:
            raise PatchDeclarationError(
                f"patch {self.name!r}: phase {self.phase!r} is not one of "
                f"{', '.join(p.value for p in Phase)}") from None
        try:
            parse_specifier(self.vllm)
        except ValueError as exc:
            raise PatchDeclarationError(f"patch {self.name!r}: vllm={exc}") from None
        if self.fixed_in is not None:
            try:
                parse_version(self.fixed_in, "fixed_in")
            except ValueError as exc:
                raise PatchDeclarationError(f"patch {self.name!r}: {exc}") from None
        for text, what in ((self.why, "why"), (self.remove_when, "remove_when")):
            if not isinstance(text, str) or not text.strip():
                raise PatchDeclarationError(f"patch {self.name!r}: '{what}' must say something")
        self.requires = _as_tuple(self.requires)
        self.supersedes = _as_tuple(self.supersedes)
        for req in self.requires:
            if req not in KNOWN_REQUIREMENTS and not req.startswith(REQUIREMENT_PREFIXES):
                raise PatchDeclarationError(
                    f"patch {self.name!r}: unknown requirement {req!r}; known: "
                    f"{', '.join(KNOWN_REQUIREMENTS)}, dist:<vllm distribution>, patch:<patch name>, "
                    f"module:<importable module>")

    # -- declaring edits -------------------------------------------------------------------------

    def replace(self, target: str, *, contract: str | None = None, compatible: tuple[str, ...] = (),
                factory: bool = False, rebind_aliases: bool = True) -> Callable[[Any], Any]:
        """Decorator: the decorated object replaces ``target``.

        With ``factory=True`` the decorated callable is called with the original at apply time and
        returns the replacement (for subclasses of a vLLM class, which cannot exist before vLLM does).
        """
        def decorate(obj: Any) -> Any:
            self._add(Edit(target, EditKind.REPLACE, value=None if factory else obj,
                           factory=obj if factory else None, contract=contract,
                           compatible=_as_tuple(compatible), rebind_aliases=rebind_aliases))
            return obj
        return decorate

    def replace_value(self, target: str, value: Any, *, contract: str | None = None,
                      compatible: tuple[str, ...] = (), rebind_aliases: bool = True) -> None:
        """Replace ``target`` with a plain value (a constant, a module shim)."""
        self._add(Edit(target, EditKind.REPLACE, value=value, contract=contract,
                       compatible=_as_tuple(compatible), rebind_aliases=rebind_aliases))

    def wrap(self, target: str, *, contract: str | None = None,
             compatible: tuple[str, ...] = ()) -> Callable[[Any], Any]:
        """Decorator: ``wrapper(wrapped, instance, args, kwargs)`` sees every call of ``target``."""
        def decorate(wrapper: Callable[..., Any]) -> Callable[..., Any]:
            self._add(Edit(target, EditKind.WRAP, value=wrapper, contract=contract,
                           compatible=_as_tuple(compatible)))
            return wrapper
        return decorate

    def variable(self, name: str, *, default: Any, parse: Callable[[str], Any], accepted: str,
                 doc: str) -> Variable:
        """Declare an environment variable this patch reads. It is listed by ``ascend-overlay list``,
        validated when the patch is planned (a bad value skips this patch alone, naming the
        variable), and read in the patch's code with ``VARIABLE.read()``."""
        if not name.startswith(PREFIX + "_"):
            raise PatchDeclarationError(
                f"patch {self.name!r}: variable {name!r} must start with {PREFIX}_ (the overlay's namespace, "
                f"which vLLM's own environment check is taught to accept)")
        if any(v.name == name for v in self.variables):
            raise PatchDeclarationError(f"patch {self.name!r} declares variable {name!r} twice")
        variable = Variable(name, default, parse, accepted, doc, owner=self.name)
        self.variables.append(variable)
        return variable

    def relies_on(self, target: str, *, contract: str | None = None, compatible: tuple[str, ...] = ()) -> None:
        """Declare a vLLM name the patch uses without editing it, for what source analysis cannot see
        (a name reached through a variable, a string, another object's attribute). Checked like the
        derived ones (``ascend_overlay.core.reliance``): at apply time, a missing name skips the patch as
        ``missing`` and a shape differing from ``contract`` as ``drift``; ``check`` reads it statically."""
        parse_target(target)
        if any(r.target == target for r in self.relied_on):
            raise PatchDeclarationError(f"patch {self.name!r} declares it relies on {target!r} twice")
        self.relied_on.append(Reliance(target, contract, _as_tuple(compatible)))

    def _add(self, edit: Edit) -> None:
        parse_target(edit.target)
        if any(e.target == edit.target for e in self.edits):
            raise PatchDeclarationError(f"patch {self.name!r} edits {edit.target!r} twice")
        if self.phase is Phase.IMPORT and self.edits and edit.module != self.edits[0].module:
            raise PatchDeclarationError(
                f"patch {self.name!r}: an import-phase patch binds to one module; "
                f"{edit.module!r} differs from {self.edits[0].module!r}")
        self.edits.append(edit)

    # -- what the catalog shows ----------------------------------------------------------------

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(e.target for e in self.edits)

    @property
    def kind(self) -> str:
        kinds = sorted({e.kind.value for e in self.edits})
        return "+".join(kinds) if kinds else "none"

    @property
    def import_module(self) -> str | None:
        """For an import-phase patch, the module whose import triggers it."""
        return self.edits[0].module if self.phase is Phase.IMPORT and self.edits else None

    def declaration(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase.value,
            "vllm": self.vllm,
            "requires": list(self.requires),
            "default": "on" if self.default else "off (experimental)",
            "kind": self.kind,
            "targets": [
                {"target": e.target, "kind": e.kind.value, "contract": e.contract,
                 "compatible": list(e.compatible)} for e in self.edits],
            "why": self.why,
            "upstream": self.upstream,
            "remove_when": self.remove_when,
            "fixed_in": self.fixed_in,
            "supersedes": list(self.supersedes),
            "variables": [v.describe() for v in self.variables],
            "source": self.source,
            "file": self.file,
            "internal": self.internal,
        }
