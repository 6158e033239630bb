"""torch_npu's lazy initialisation, and its refusal in a child forked after it, on the simulated NPU.

On a card, the first call that needs the device (device properties, free memory, synchronising,
the current device, selecting a device, creating a tensor on it) initialises the NPU runtime for the
process (``torch_npu/npu/__init__.py`` ``_lazy_init``). A child forked after that is marked, and its
first such call raises "Cannot re-initialize NPU in forked subprocess": the runtime cannot be shared
across fork. vLLM forks its engine core and workers unless it knows a device was initialised (its
``_maybe_force_spawn`` knows CUDA and XPU, not the NPU), so a front-end process that initialises the
NPU breaks start-up on a card. The simulator keeps the same state and refuses the same way, and
counts initialisations (``counters``) so a test can see which process initialised the NPU.
"""

from __future__ import annotations

import os
import threading
import traceback

FORKED_MESSAGE = ("Cannot re-initialize NPU in forked subprocess. To use NPU with multiprocessing, you must use "
                  "the 'spawn' start method")


class _State:
    def __init__(self) -> None:
        self.initialised = False
        self.in_bad_fork = False
        self.pid = 0
        self.lock = threading.Lock()
        self.first_caller: str | None = None


_state = _State()


def is_initialised() -> bool:
    return _state.initialised and not _state.in_bad_fork


def in_bad_fork() -> bool:
    return _state.in_bad_fork


def ensure(reason: str) -> None:
    """Initialise the NPU for this process if it is not yet (``reason``: the call that needs it)."""
    if _state.initialised:
        return
    with _state.lock:
        if _state.initialised:
            return
        if _state.in_bad_fork:
            raise RuntimeError(FORKED_MESSAGE)
        _state.initialised = True
        _state.pid = os.getpid()
        _state.first_caller = f"{reason} at {_caller()}"
    from ascend_overlay.npu.sim.counters import counters

    counters.note_init(_state.first_caller)


def _caller() -> str:
    """The first frame outside the simulator: where the process asked for the NPU."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/npu/sim/" not in frame.filename and "/torch/" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "unknown"


def _after_fork_in_child() -> None:
    if _state.initialised and _state.pid != os.getpid():
        _state.initialised = False
        _state.in_bad_fork = True
    _state.lock = threading.Lock()


_installed = False


def install() -> None:
    global _installed
    if not _installed:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _installed = True
