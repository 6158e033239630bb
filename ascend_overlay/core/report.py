"""Report: what the overlay did in this process, as one log line and as JSON lines for tools.

The report answers the question the domain's users could not: which patch is active in which
process, on which host. Each process writes snapshots as its phases fire; the last snapshot of a pid
is its state. A record is appended whole or not at all: one ``O_APPEND`` write under an exclusive
``flock`` (so processes appending at once never interleave), and a write cut short (a full disk, a
file-size limit) is truncated away again and raised, so a reader never meets half a line.

The report file is the user's own: it is never written through a symlink, never a file another user
created, created readable by its owner only, and its lock is waited for a bounded time (``open_report``).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ascend_overlay.core.vocabulary import Decision, Phase, Reason, Role, Status


@dataclass
class Outcome:
    name: str
    phase: Phase
    status: Status
    code: Reason                # what tools match on (written by value)
    reason: str = ""            # the sentence for a person
    hint: str = ""              # the next step, when there is one
    source: str = "builtin"
    internal: bool = False      # one of the overlay's own hook points
    aliases: list[str] = field(default_factory=list)   # vLLM's own ``from x import y`` copies, rebound
    stale: list[str] = field(default_factory=list)     # copies elsewhere still holding the original

    @classmethod
    def of(cls, patch: Any, status: Status, decision: Decision, aliases: list[str] | None = None,
           stale: list[str] | None = None) -> Outcome:
        return cls(patch.name, patch.phase, status, decision.reason, decision.text,
                   decision.hint, patch.source, patch.internal, list(aliases or []), list(stale or []))

    def as_record(self) -> dict[str, Any]:
        """The JSON form: enum members by value, the spelling tools read back."""
        record = asdict(self)
        record.update(phase=self.phase.value, status=self.status.value, code=self.code.value)
        return record


def detect_role(phases: list[Phase]) -> Role:
    """main / api_server / engine_core / worker, from vLLM's process names and the phases seen.

    A process that fired the platform phase is the main process even if the engine core and the
    worker run inside it too (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).
    """
    mp = sys.modules.get("multiprocessing")
    name = mp.current_process().name if mp is not None else "MainProcess"
    if name.startswith("EngineCore"):
        return Role.ENGINE_CORE
    if name.startswith(("VllmWorker", "Worker")):
        return Role.WORKER
    if name.startswith("ApiServer") or _is_api_server_main():
        return Role.API_SERVER
    if Phase.PLATFORM in phases or not phases:
        return Role.MAIN
    return Role.ENGINE_CORE if Phase.ENGINE_CORE in phases else Role.WORKER


def _is_api_server_main() -> bool:
    argv = sys.argv
    if argv and argv[0].endswith(("openai/api_server.py", "vllm.entrypoints.openai.api_server")):
        return True
    return len(argv) > 1 and os.path.basename(argv[0]) == "vllm" and argv[1] == "serve"


@dataclass
class ProcessReport:
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    doors: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    fired_from: dict[Phase, str] = field(default_factory=dict)   # phase -> the hook point that fired it
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    vllm: str | None = None
    vllm_dist: str | None = None
    forked_from: int | None = None
    strict: bool = False        # VLLM_ASCEND_OVERLAY_STRICT in this process (``ascend-overlay report`` shows it)

    @property
    def role(self) -> Role:
        return detect_role(self.phases)

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.name] = outcome

    def snapshot(self, event: str) -> dict[str, Any]:
        return {
            "event": event,
            "time": round(time.time(), 3),
            "pid": self.pid,
            "ppid": os.getppid(),
            "host": self.host,
            "forked_from": self.forked_from,
            "role": self.role.value,
            "vllm": self.vllm,
            "vllm_dist": self.vllm_dist,
            "strict": self.strict,
            "doors": list(self.doors),
            "phases": [phase.value for phase in self.phases],
            "fired_from": {phase.value: origin for phase, origin in self.fired_from.items()},
            "patches": [o.as_record() for o in self.outcomes.values()],
            "problems": list(self.problems),
            "npu": _npu_mode(),
        }

    def summary_line(self) -> str:
        own = [o for o in self.outcomes.values() if not o.internal]
        hooks = [o for o in self.outcomes.values() if o.internal and o.status.in_effect]
        applied = [o.name + (" (partial)" if o.status is Status.PARTIAL else "") for o in own if o.status.in_effect]
        skipped = [f"{o.name} ({o.reason})" for o in own if o.status.not_applied]
        parts = [f"role={self.role.value}", f"pid={self.pid}", f"host={self.host}", f"vllm={self.vllm}",
                 f"phases={','.join(p.value for p in self.phases) or '-'}", f"hooks={len(hooks)}",
                 f"applied={len(applied)}" + (f" [{', '.join(applied)}]" if applied else ""),
                 f"skipped={len(skipped)}" + (f" [{'; '.join(skipped)}]" if skipped else "")]
        npu = _npu_mode()
        if npu is not None:
            parts.append(f"npu={npu}")
        if self.problems:
            parts.append(f"problems={len(self.problems)} [" + "; ".join(
                f"{p['path']}: {p['message']}" for p in self.problems) + "]")
        return " ".join(parts)


def _npu_mode() -> str | None:
    """simulated / real / None: which NPU this process runs with (reads only what is loaded)."""
    from ascend_overlay.npu import npu_mode

    return npu_mode()


LOCK_WAIT_S = 2.0  # the most a process waits for the report's lock before it skips the line


class ReportRefused(OSError):
    """The report path is not a file this user may append to (another user's, a link, a FIFO, relative)."""

    def __str__(self) -> str:
        return str(self.strerror)


class ReportBusy(OSError):
    """Another process held the report's lock for longer than the bounded wait; the line was skipped."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_report(path: str) -> int:
    """Open the report file for appending, only if it is this user's own regular file; created 0600.

    The path is often in a directory others can write: ``O_NOFOLLOW`` keeps a planted symlink from
    steering the lines into a file of someone else's choosing, ``O_NONBLOCK`` keeps a planted FIFO from
    hanging start-up, and the ``fstat`` of the opened descriptor refuses a file another user created
    there first (they could read every line), anything but a regular file, and a hard link (a second
    name for one of this user's files, made by someone who wants it written to).
    """
    if not os.path.isabs(path):
        raise ReportRefused(errno.EINVAL, "a relative report path is refused (it would land in each process's own "
                                          "working directory); give an absolute path")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        # Refusals come in several errnos (a symlink: ELOOP, or EACCES in a sticky directory; a FIFO with
        # no reader: ENXIO; a directory: EISDIR): what lies there says which.
        try:
            st = os.lstat(path)
        except OSError:
            raise exc from None
        why = _not_own_file(st)
        if why is None:
            raise
        raise ReportRefused(exc.errno or errno.EPERM, why) from None
    try:
        st = os.fstat(fd)
        why = _not_own_file(st)
        if why is not None:
            raise ReportRefused(errno.EPERM, why)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_own_file(st: os.stat_result) -> str | None:
    """Why a report path's file is not one this user may append to, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symlink; the report must be a file of your own"
    if stat.S_ISFIFO(st.st_mode):
        return "it is a FIFO; the report must be a regular file of your own"
    if stat.S_ISDIR(st.st_mode):
        return "it is a directory; the report must be a regular file of your own"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file; the report must be a regular file of your own"
    if st.st_uid != os.geteuid():
        return (f"it is owned by uid {st.st_uid}, not you (uid {os.geteuid()}): someone else created it; use a path "
                "under a directory only you can write (e.g. the service's own state directory)")
    if st.st_nlink > 1:
        return f"it has {st.st_nlink} hard links: another name for it could be a file of yours it must not write to"
    return None


def _lock(fd: int, wait: float) -> None:
    """Take the report's lock, waiting at most ``wait`` seconds: a reader holding it (anyone who can open
    the file can) must never hold up a vLLM start-up for longer than that."""
    try:
        import fcntl
    except ImportError:
        return
    deadline = time.monotonic() + max(wait, 0.0)
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ReportBusy(errno.EWOULDBLOCK, f"another process held its lock for more than {wait:g} s; "
                                                    "this line was skipped") from None
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.1)
        except OSError:
            return  # a file system without flock: append without it, as before


def append_jsonl(path: str, record: dict[str, Any], wait: float = LOCK_WAIT_S) -> None:
    """Append one record as one line, whole or not at all; raises OSError when it cannot
    (``ReportRefused``: not a file of this user's; ``ReportBusy``: the lock was held past ``wait``)."""
    data = memoryview((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
    fd = open_report(path)
    try:
        _lock(fd, wait)
        start = os.fstat(fd).st_size
        try:
            while data:
                written = os.write(fd, data)
                if written <= 0:
                    raise OSError(f"write to {path} made no progress")
                data = data[written:]
        except OSError:
            try:
                os.ftruncate(fd, start)  # take the partial line back: readers must never meet one
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def read_jsonl(path: str, bad_lines: list[int] | None = None) -> list[dict[str, Any]]:
    """Every record of a report file. A line that is not a JSON object (a file written by an old
    version, or edited by hand) is skipped, and its number added to ``bad_lines`` if given."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "pid" in record:
                records.append(record)
            elif bad_lines is not None:
                bad_lines.append(number)
    return records


def latest_per_process(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last snapshot of each process (host and pid), in the order the processes first appeared."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in records:
        latest[(rec.get("host", ""), rec["pid"])] = rec
    return list(latest.values())

