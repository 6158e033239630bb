"""Reading a report file back: what each process did, and, per patch, where it ran and why not elsewhere.

A report file holds snapshots (``report.ProcessReport.snapshot``), several per process as its phases
fire; the last one of a process is its state. This module turns them into the two views an operator
asks for, as plain data (``ascend-overlay report`` prints them, ``--json`` dumps them, ``--html``
draws them, ``run`` prints the first when its command exits). Statuses are read back into
``Status`` members, so a record from an older overlay with an unknown word is shown as it is,
never miscounted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ascend_overlay.core.report import latest_per_process, read_jsonl
from ascend_overlay.core.vocabulary import Phase, Status


def status_of(record: dict[str, Any]) -> Status | None:
    try:
        return Status(record.get("status"))
    except ValueError:
        return None


def phase_of(record: dict[str, Any]) -> Phase | None:
    try:
        return Phase(record.get("phase"))
    except ValueError:
        return None


@dataclass
class ProcessRow:
    """One process's latest snapshot, counted."""

    role: str
    pid: int
    host: str
    phases: list[str]
    fired: set[Phase]
    applied: int
    skipped: int
    failed: int
    pending: int
    hooks: int
    strict: bool | None        # None: written by an overlay that did not record it
    npu: str | None
    problems: list[str]
    outcomes: dict[str, dict[str, Any]]   # patch name -> its outcome record (hook points included)
    in_effect: list[str] = field(default_factory=list)   # the patches (not hook points) whose code runs here

    @property
    def label(self) -> str:
        return f"{self.role} {self.pid}"

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "host": self.host, "phases": self.phases, "in_effect": self.in_effect,
                "applied": self.applied, "skipped": self.skipped, "failed": self.failed, "pending": self.pending,
                "hooks": self.hooks, "strict": self.strict, "npu": self.npu, "problems": self.problems}


@dataclass
class Elsewhere:
    """A process where the patch is not in effect, and why."""

    process: str
    status: Status | None   # None: no outcome there (its phase never fired in that process)
    text: str               # the status as written (an unknown word from another version stays as it is)
    reason: str

    @property
    def ran(self) -> bool:
        """The patch was considered in that process (it has an outcome there)."""
        return self.text != NOT_RUN

    def as_dict(self) -> dict[str, str]:
        return {"process": self.process, "status": self.text, "reason": self.reason}


@dataclass
class PatchRow:
    name: str
    phase: str
    source: str
    internal: bool
    applied_in: list[str] = field(default_factory=list)
    not_in: list[Elsewhere] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase, "source": self.source, "internal": self.internal,
                "applied_in": self.applied_in, "not_in": [e.as_dict() for e in self.not_in]}

    def elsewhere(self) -> list[str]:
        """Where it is not in effect, one line per distinct why: ``skipped (requires npu): worker 7, worker 8``."""
        groups: dict[tuple[str, str], list[str]] = {}
        for e in self.not_in:
            groups.setdefault((e.text, e.reason), []).append(e.process)
        return [f"{status}{f' ({reason})' if reason else ''}: {', '.join(where)}"
                for (status, reason), where in groups.items()]


NOT_RUN = "not run"   # shown where a patch has no outcome: not a Status, which no process wrote


@dataclass
class ReportView:
    processes: list[ProcessRow]
    patches: list[PatchRow]
    bad_lines: list[int] = field(default_factory=list)
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "bad_lines": self.bad_lines,
                "processes": [p.as_dict() for p in self.processes],
                "patches": [p.as_dict() for p in self.patches if not p.internal],
                "hooks": [p.as_dict() for p in self.patches if p.internal]}


def _process_row(rec: dict[str, Any]) -> ProcessRow:
    outcomes = {p["name"]: p for p in rec.get("patches", []) if isinstance(p, dict) and "name" in p}
    own = [p for p in outcomes.values() if not p.get("internal")]
    statuses = [status_of(p) for p in own]
    in_effect = [p["name"] for p, s in zip(own, statuses, strict=True) if s is not None and s.in_effect]
    hooks = [p for p in outcomes.values() if p.get("internal") and (s := status_of(p)) is not None and s.in_effect]
    strict = rec.get("strict")
    return ProcessRow(
        role=str(rec.get("role", "?")), pid=int(rec["pid"]), host=str(rec.get("host", "")),
        phases=[str(p) for p in rec.get("phases", [])],
        fired={phase for phase in (phase_of({"phase": p}) for p in rec.get("phases", [])) if phase is not None},
        applied=sum(1 for s in statuses if s is not None and s.in_effect),
        skipped=sum(1 for s in statuses if s is Status.SKIPPED),
        failed=sum(1 for s in statuses if s is Status.FAILED),
        pending=sum(1 for s in statuses if s is Status.PENDING),
        hooks=len(hooks), strict=strict if isinstance(strict, bool) else None, npu=rec.get("npu"),
        problems=[f"{p.get('path', '?')}: {p.get('message', '')}" for p in rec.get("problems", [])
                  if isinstance(p, dict)],
        outcomes=outcomes, in_effect=in_effect)


def _patch_rows(processes: list[ProcessRow]) -> list[PatchRow]:
    rows: dict[str, PatchRow] = {}
    phases: dict[str, Phase | None] = {}
    for proc in processes:
        for name, out in proc.outcomes.items():
            rows.setdefault(name, PatchRow(name, str(out.get("phase", "?")), str(out.get("source", "?")),
                                           bool(out.get("internal"))))
            phases.setdefault(name, phase_of(out))
    for row in rows.values():
        for proc in processes:
            found = proc.outcomes.get(row.name)
            if found is None:
                fired = phases[row.name] in proc.fired
                reason = (f"no outcome recorded although its {row.phase} phase fired" if fired else
                          f"its {row.phase} phase does not run there")
                row.not_in.append(Elsewhere(proc.label, None, NOT_RUN, reason))
                continue
            status = status_of(found)
            if status is not None and status.in_effect:
                row.applied_in.append(proc.label + (f" ({status.value})" if status is not Status.APPLIED else ""))
            else:
                row.not_in.append(Elsewhere(proc.label, status, str(found.get("status", "?")),
                                            str(found.get("reason") or found.get("code") or "")))
    # Patches first (by phase, then name), hook points last: what an operator looks for comes first.
    order = {phase.value: i for i, phase in enumerate(Phase)}
    return sorted(rows.values(), key=lambda r: (r.internal, order.get(r.phase, len(order)), r.name))


def view(records: list[dict[str, Any]], bad_lines: list[int] | None = None) -> ReportView:
    processes = [_process_row(rec) for rec in latest_per_process(records)]
    return ReportView(processes, _patch_rows(processes), list(bad_lines or []), len(records))


def load(path: str, since: float | None = None) -> ReportView:
    """The view of a report file; with ``since``, only snapshots written at or after that time."""
    bad: list[int] = []
    records = read_jsonl(path, bad)
    if since is not None:
        records = [r for r in records if isinstance(r.get("time"), (int, float)) and r["time"] >= since]
    return view(records, bad)
