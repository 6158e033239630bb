"""What a wrap edit installs: wrapt's ``FunctionWrapper``, pickled as what it stands for, a reference
to the patched name.

wrapt's proxies refuse ``pickle`` outright (``NotImplementedError``), and cloudpickle, which vLLM and
Ray use to ship callables, takes a wrapper reached through its class for a function (its
``__class__`` is the wrapped function's) and pickles the *original* function by value. Ray's legacy
executor does exactly that with its worker actor: it copies every method along the actor class's MRO,
``WorkerWrapperBase.init_worker`` included, from the driver into the pickled actor class, so its
workers ran the unpatched method even where their own overlay had wrapped it (the worker phase then
came only through the general-plugin door). Pickled by reference, the receiving process looks the
name up itself: patched where its overlay is on, stock where it is off, and nothing of the overlay
needed to unpickle it (``pkgutil.resolve_name`` and ``getattr`` are the standard library's).
"""

from __future__ import annotations

import pkgutil
from typing import Any

import wrapt


class BoundPatchedCallable(wrapt.BoundFunctionWrapper):
    """A wrapped method reached through a class or an instance."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        parent: PatchedCallable = self._self_parent
        if self._self_instance is not None:
            return getattr, (self._self_instance, parent._self_attr)  # as Python pickles a bound method
        if self._self_binding == "function":
            return pkgutil.resolve_name, (parent._self_target,)
        return getattr, (self._self_owner, parent._self_attr)  # a class method stays bound to its class

    def __copy__(self) -> BoundPatchedCallable:
        return self  # as a function is copied: itself

    def __deepcopy__(self, memo: dict[int, Any]) -> BoundPatchedCallable:
        return self


_bind = wrapt.FunctionWrapper.__get__


class PatchedCallable(wrapt.FunctionWrapper):
    """The wrapper of one wrap edit at ``target`` (``module:Qual.name``)."""

    __bound_function_wrapper__ = BoundPatchedCallable

    def __init__(self, wrapped: Any, wrapper: Any, target: str) -> None:
        super().__init__(wrapped, wrapper)
        self._self_target = target
        self._self_attr = target.rpartition(":")[2].rpartition(".")[2]
        self._self_unbound: BoundPatchedCallable | None = None

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # A plain method reached through a class (any class along the MRO) is always the same object,
        # as a function is: cloudpickle pickles by reference only what it finds again at its name.
        if instance is not None:
            return _bind(self, instance, owner)
        if self._self_binding != "function":
            return _bind(self, None, owner)
        if self._self_unbound is None:
            self._self_unbound = _bind(self, None, owner)
        return self._self_unbound

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        return pkgutil.resolve_name, (self._self_target,)

    def __copy__(self) -> PatchedCallable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> PatchedCallable:
        return self
