"""The three facts of reliance: a use (what the overlay's code relies on), a hit (what a vLLM has
under that name) and a verdict (does the use still hold). Lookups produce hits; ``judge`` alone
turns a use and a hit into a verdict, for the live vLLM and for a source tree alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ascend_overlay.core.patch import Targeted
from ascend_overlay.core.vocabulary import Word


class UseKind(Word):
    """How a subject's code relies on a vLLM name."""

    IMPORT = "import"
    ATTRIBUTE = "attribute"
    CALL = "call"
    OVERRIDE = "override"          # a subclass's method or class attribute over vLLM's
    DECLARED = "declared"          # ``PATCH.relies_on``
    PATCH = "patch"                # an assignment into vLLM: ``Y.z = f``, ``setattr(Y, "z", f)``
    REGISTER_OOT = "register_oot"  # ``CustomOp.register_oot(name="X")``: replaces vLLM's class named X


class HitStatus(Word):
    """What a lookup found under a name."""

    FOUND = "found"
    MISSING = "missing"
    UNVERIFIABLE = "unverifiable"  # it cannot tell (a module not imported yet, a type not known from source)


class VerdictStatus(Word):
    """A verdict on one relied-on name. The first three break; ``guarded`` and ``own`` are listed,
    never a break: the code tests for the name first, or the name is the subject's own."""

    MISSING = "missing"
    DRIFT = "drift"
    MOVED = "moved"
    OK = "ok"
    UNVERIFIABLE = "unverifiable"
    GUARDED = "guarded"   # would break, but the use sits under hasattr/getattr/try-except ImportError
    OWN = "own"           # vLLM's base lacks the name a subclass defines or reads: the subject's own


BREAKING = frozenset({VerdictStatus.MISSING, VerdictStatus.DRIFT, VerdictStatus.MOVED})


@dataclass(frozen=True)
class Use(Targeted):
    """One vLLM name the overlay's code relies on without editing it, and how it uses it."""

    target: str                      # "vllm.module:Attr.path", like a patch target
    how: UseKind
    where: str                       # "file:line" of the use
    text: str                        # the source text, e.g. "self.variance_size_override"
    owner: str = ""                  # the edit target or overlay class the use sits in ("" for a file-wide import)
    receiver: str = ""               # "instance" (read through self), "class" (through the class) or "" (as found)
    positional: int | None = None    # call: positional arguments passed (None: unknown, e.g. *args)
    keywords: tuple[str, ...] = ()   # call: keyword arguments passed
    shape: str | None = None         # override: the overriding method's shape ("" for an attribute); declared: the pin
    compatible: tuple[str, ...] = ()  # declared: other shapes the patch accepts
    lane: str = ""                   # the version test the use sits under (``vllm_version_is("0.19.0")``)
    guard: str = ""                  # what guards it (``hasattr(...)``, ``try/except ImportError``)
    unpack: int | None = None        # call: its result is unpacked into this many names
    op_name: str = ""                # register_oot: the vLLM class name replaced
    own_at: int = 0                  # missing at this depth of the path = the subclass's own name (0: never)

    def __post_init__(self) -> None:
        object.__setattr__(self, "how", UseKind(self.how))  # read back from a cache as its spelling

    @property
    def name(self) -> str:
        """The relied-on name as a person says it: ``RMSNorm.variance_size_override``."""
        return ".".join(self.path)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["keywords"], data["compatible"] = list(self.keywords), list(self.compatible)
        return data


@dataclass
class Hit:
    """What a lookup found for a use's target, as far as it could follow the path."""

    status: HitStatus
    kind: str = ""              # module | class | function | attribute | instance-attribute | external
    fingerprint: str | None = None  # contract text of what was found (same rules live and static)
    method: str = ""            # for a function found on a class: plain | static | class
    depth: int = 0              # path elements resolved; less than the path when typing stops (an attribute's attribute)
    detail: str = ""
    returns: str | None = None  # a function's return annotation as written (static lookup only)


@dataclass
class Verdict:
    use: Use
    status: VerdictStatus
    found: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def breaks(self) -> bool:
        return self.status in BREAKING

    @property
    def message(self) -> str:
        """One line naming the relied-on name, where the code uses it, and what is wrong."""
        return f"relies on {self.use.target} ({self.use.text} at {self.use.where}): {self.detail}"
