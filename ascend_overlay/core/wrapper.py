"""What a wrap edit installs: a plain Python function that calls the patch's wrapper, bound at apply
time, and taken out again by identity.

Why not wrapt's ``FunctionWrapper`` for every wrap: a call through it costs ~10x a plain call (the
proxy's ``__call__``, its descriptor binding, then the wrapper), and vLLM calls some wrapped methods
once per scheduler step. A function generated for the one target calls the wrapper with everything
decided at apply time (the original, how it binds), so a wrapped call costs the wrapper's own call and
one more frame: ``bench/bench_patch_call.py`` measures 2.85x a plain call for a module function and
3.8x for a method through an instance (its goal of 3x is not met there: docs/benchmarks.md).

A method's original is bound with its own ``__get__``, taken once at apply time, not with
``types.MethodType``: the two cost the same per call, but torch.compile's tracer (dynamo) cannot trace a
call of ``MethodType`` and can trace ``__get__``. vLLM compiles the model's forward with
``fullgraph=True``, so a wrap on any method the forward reaches (a layer's ``forward_native``, a
quantization method's ``apply``) would otherwise stop vLLM at its first compile.

Why it still behaves as wrapt's did, for patch authors and for the processes it is shipped to:

* the wrapper sees ``wrapper(wrapped, instance, args, kwargs)`` exactly as wrapt gives it, for module
  functions, methods (called through an instance or through the class), static and class methods;
* the function carries the original's ``__module__``, ``__qualname__`` and ``__wrapped__``, so
  ``inspect.signature`` reads the original's shape, and ``pickle`` and cloudpickle (which vLLM and Ray
  use to ship callables; Ray's legacy executor copies every method along its actor's MRO) pickle it by
  reference to the patched name: the receiving process looks the name up itself, patched where its
  overlay is on, stock where it is off, and needs nothing of the overlay to unpickle it;
* wraps compose (a second wrap wraps the first), and any one of them comes out from under the others
  (``splice``): the original is held in a closure cell that undo rebinds, so taking a wrapper out of
  the middle of a chain costs nothing per call. A third party's wrapt wrapper on top is spliced the
  way wrapt does it, through its ``__wrapped__``.

Targets that are not Python functions (builtins, classes, callable objects) keep wrapt's
``FunctionWrapper``, pickled by reference as well (``PatchedCallable``). Class methods no longer do:
torch.compile's tracer sees through a wrapt proxy to what it wraps and compiles the original, so a
class method wrapped that way ran unpatched inside vLLM's compiled forward, with the patch reported
applied.
"""

from __future__ import annotations

import functools
import pkgutil
import types
import weakref
from collections.abc import Callable
from typing import Any, cast

import wrapt

Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]

# Every function this module generated, known by identity. Not an attribute of the function: whoever
# wraps one with functools.wraps copies its __dict__ (Ray's tracing helper does, for every actor
# method), and cloudpickle then ships that copy by value, with whatever it holds.
_GENERATED: weakref.WeakSet[Any] = weakref.WeakSet()
_CELL = "original"  # the closure variable holding what a generated function calls
_BIND_CELL = "bind"  # a method's instead: what binds its original (whose ``__self__`` is the original)


def install_object(descriptor: Any, wrapper: Wrapper, target: str, *, in_class: bool) -> Any:
    """What to store in place of ``descriptor`` (the owner's own or inherited ``__dict__`` entry) so
    that every call of ``target`` goes through ``wrapper``."""
    if isinstance(descriptor, staticmethod):
        return staticmethod(_module_function(descriptor.__func__, wrapper, target))
    if isinstance(descriptor, classmethod):
        return classmethod(_class_method_function(descriptor.__func__, wrapper, target))
    if isinstance(descriptor, types.FunctionType):
        return (_method if in_class else _module_function)(descriptor, wrapper, target)
    return PatchedCallable(descriptor, wrapper, target)


def _module_function(original: Any, wrapper: Wrapper, target: str) -> Any:
    def wrapped_call(*args: Any, **kwargs: Any) -> Any:
        return wrapper(original, None, args, kwargs)
    return _dressed(wrapped_call, original, wrapper, target)


def _method(original: Any, wrapper: Wrapper, target: str) -> Any:
    """A method: the wrapper gets the method bound to the instance and that instance, as wrapt gives
    it, whether called through an instance or through the class (``Class.name(instance, ...)``)."""
    bind = _binder(original)

    def wrapped_call(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return wrapper(bind(self), self, args, kwargs)
    return _dressed(wrapped_call, original, wrapper, target)


def _class_method_function(original: Any, wrapper: Wrapper, target: str) -> Any:
    """A class method's function: the wrapper gets it bound to the class, and the class, as wrapt
    gives them. Named ``Class.name.__func__`` in the target's module: cloudpickle ships a bound class
    method as (its function, its class) and looks the function up by its qualified name, where
    ``Class.name`` gives a bound method, never the function; ``Class.name.__func__`` gives it back,
    so the function goes by reference (the receiver looks it up: ours where its overlay is on, vLLM's
    where it is off), not by value with the patch's wrapper inside."""
    function = _method(original, wrapper, target)
    module, _, path = target.partition(":")
    function.__module__, function.__qualname__ = module, f"{path}.__func__"
    return function


def _binder(original: Any) -> Any:
    """``original.__get__``, bound once: it binds as ``instance.name`` would, and names the original as
    its ``__self__``. What a method's generated function calls is always a descriptor: the method's
    function, or after a splice another generated function or a wrapt proxy."""
    return original.__get__


def _dressed(function: Any, original: Any, wrapper: Wrapper, target: str) -> Any:
    functools.update_wrapper(function, original)  # __module__, __qualname__, __doc__, __wrapped__, __dict__
    _GENERATED.add(function)
    return function


def generated(obj: Any) -> Any:
    """The generated function inside ``obj`` (itself, or a static/class method holding one), or None."""
    function = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    # type(), not isinstance(): a wrapt proxy around one of ours claims to be a function too
    return function if type(function) is types.FunctionType and function in _GENERATED else None


def is_overlay_wrapper(obj: Any) -> bool:
    """Did a wrap edit of the overlay install ``obj``?"""
    return generated(obj) is not None or isinstance(obj, PatchedCallable)


def original_of(obj: Any) -> Any:
    """What the wrapper ``obj`` (a generated function or a ``PatchedCallable``) calls."""
    function = generated(obj)
    if function is None:
        return obj.__wrapped__
    if _BIND_CELL in function.__code__.co_freevars:
        return _cell(function, _BIND_CELL).cell_contents.__self__
    return _cell(function).cell_contents


def _cell(function: Any, name: str = _CELL) -> Any:
    return function.__closure__[function.__code__.co_freevars.index(name)]


def _rebind(function: Any, calls: Any) -> None:
    """Make the generated ``function`` call ``calls`` from its next call on (a splice)."""
    if _BIND_CELL in function.__code__.co_freevars:
        _cell(function, _BIND_CELL).cell_contents = _binder(calls)
    else:
        _cell(function).cell_contents = calls
    function.__wrapped__ = calls


class NotSpliceable(Exception):
    """The wrapper cannot be taken out: it is gone, or under something that cannot be rewired."""


_ABSENT: Any = object()  # the owner had no attribute of its own before the wrap (it was inherited)


def remove(current: Any, ours: Any, wrapped: Any, before: Any = _ABSENT) -> Any:
    """Take the wrapper ``ours`` (installed over the descriptor ``wrapped``, where the owner's own
    attribute was ``before``) out of the chain whose top is ``current``, what the attribute holds now.

    Returns what the attribute must hold afterwards (``_ABSENT``: delete it, the original was
    inherited): what ``ours`` calls when it is on top, or ``current`` itself when ``ours`` was spliced
    out from under other wrappers. Raises ``NotSpliceable``."""
    beneath = _beneath(ours, wrapped, before)
    if current is ours:
        return beneath
    ours_function, calls = generated(ours), original_of(ours)
    node = current
    for _ in range(64):
        function = generated(node)
        if function is not None:
            below = original_of(node)
            if below is ours or (ours_function is not None and below is ours_function):
                _rebind(function, calls if below is ours_function else beneath)
                return current
        elif isinstance(node, wrapt.BaseObjectProxy):
            below = node.__wrapped__
            if below is ours or (ours_function is not None and below is ours_function):
                node.__wrapped__ = calls if below is ours_function else beneath
                return current
        else:
            raise NotSpliceable(f"a {type(node).__name__} on top of it is not a wrapper that can be rewired")
        node = below
    raise NotSpliceable("it is no longer in the chain of wrappers on the attribute")


def _beneath(ours: Any, wrapped: Any, before: Any) -> Any:
    """The descriptor-level object ``ours`` stands for now: ``before`` by identity while ``ours``
    still calls what it wrapped (``_ABSENT`` when that was inherited), else what it calls now (an
    inner wrapper was spliced out from under it), in the descriptor form ``ours`` was installed in."""
    calls = original_of(ours)
    if calls is wrapped or calls is getattr(wrapped, "__func__", _ABSENT):
        return before
    if isinstance(ours, staticmethod):
        return staticmethod(calls)
    if isinstance(ours, classmethod):
        return classmethod(calls)
    return calls


class BoundPatchedCallable(wrapt.BoundFunctionWrapper[Any, Any]):
    """A wrapped callable object reached through a class or an instance."""

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


class PatchedCallable(wrapt.FunctionWrapper[Any, Any]):
    """The wrapper of a wrap edit whose target is not a Python function; pickles by reference."""

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
            self._self_unbound = cast(BoundPatchedCallable, _bind(self, None, owner))
        return self._self_unbound

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        return pkgutil.resolve_name, (self._self_target,)

    def __copy__(self) -> PatchedCallable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> PatchedCallable:
        return self
