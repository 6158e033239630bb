"""Two users racing the overlay's trust check: a second local user swaps hotfix directories and parent
symlinks in a loop while the first (the service, here root) starts Python processes with the overlay
active and hotfix directories set, and runs ``ascend-overlay hotfix verify``.

The second user owns a directory above two of the configured hotfix paths (the mistake the parent walk
must catch): they swap a root-owned hotfix directory there with one of their own (atomically, with
``renameat2(RENAME_EXCHANGE)`` where the C library has it), and point a symlink that is a parent of
another configured path at two root-owned hotfix trees and at their own, in turn. Meanwhile the owner
replaces a signed file of a third, fully trusted directory with an unsigned one and back, as an update
in progress would. The second user's code, and the unsigned code, leave a file in ``marks/`` if they
ever run; the verdict counts those files and checks that every start-up that did not load a configured
directory said why.

``tests/test_trust_race.py`` runs a slice of a few seconds in CI; ``make race`` runs the full loops
(``python tests/race_harness.py --runs 200``) and prints the numbers that docs/security.md reports.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

SECOND_USER = "ao-race-other"
# The second user's interpreter: the test's own may lie below a directory they cannot enter (/root).
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
BASES = ("/srv", "/var/lib", "/opt")  # root-owned, 755 on every Linux layout: the operator's kind of place

JSON_DUMPS = ("(obj, *, skipkeys=False, ensure_ascii=True, check_circular=True, allow_nan=True, cls=None, indent=None, "
              "separators=None, default=None, sort_keys=False, **kw)")
PATCH = '''from ascend_overlay import Patch
{prologue}
PATCH = Patch(name="{name}", phase="worker", vllm=">=0", why="a race test's hotfix", remove_when="never shipped")


@PATCH.wrap("json:dumps", contract={contract!r})
def dumps(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs)
'''
# What the second user's files (and the unsigned one) do if they ever run: leave a mark, as root.
MARK = '''import os as _os
_os.close(_os.open(_os.path.join({marks!r}, {kind!r} + "-" + str(_os.getpid()) + "-" + _os.urandom(6).hex()),
                   _os.O_CREAT | _os.O_WRONLY, 0o644))
'''

# Both swappers loop until told to stop (SIGTERM), then print how many rounds they made.
STOP = '''
import signal
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
'''
SWAPPER = STOP + textwrap.dedent('''
    import ctypes, ctypes.util, os, sys, time
    shared, seconds, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    os.chdir(shared)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    exchange = getattr(libc, "renameat2", None)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2

    def swap():
        if exchange is not None and exchange(AT_FDCWD, b"hotfixes", AT_FDCWD, b"evil", RENAME_EXCHANGE) == 0:
            return
        try:
            os.rename("hotfixes", "parked"); os.rename("evil", "hotfixes")
            os.rename("hotfixes", "evil"); os.rename("parked", "hotfixes")
        except OSError:
            pass

    end, rounds = time.monotonic() + seconds, 0
    while time.monotonic() < end and not stopped:
        swap()
        target = targets[rounds % len(targets)]
        try:
            os.symlink(target, "link.tmp")
            os.replace("link.tmp", "link")
        except OSError:
            pass
        rounds += 1
    print(rounds)
''')

OWNER_SWAPPER = STOP + textwrap.dedent('''
    import os, sys, time
    folder, seconds = sys.argv[1], float(sys.argv[2])
    os.chdir(folder)
    end, rounds = time.monotonic() + seconds, 0
    while time.monotonic() < end and not stopped:
        for source in (".signed", ".unsigned"):
            os.link(source, ".next")
            os.replace(".next", "patch_race.py")
        rounds += 1
    print(rounds)
''')

STARTUP = textwrap.dedent('''
    import json
    from ascend_overlay.doors import activation
    overlay = activation.current()
    catalog = overlay.catalog if overlay is not None else None
    print(json.dumps({"names": catalog.names() if catalog else None,
                      "problems": [[p.path, p.message] for p in catalog.problems] if catalog else []}))
''')

LOADER_LOOP = textwrap.dedent('''
    import json, sys, time
    from ascend_overlay.core.catalog import load_catalog
    dirs, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        catalog = load_catalog(dirs, entry_points=False, builtin=False)
        print(json.dumps({"names": catalog.names(),
                          "problems": [[p.path, p.message] for p in catalog.problems]}), flush=True)
''')


class Unavailable(Exception):
    """The race cannot run here (not root, no second user, no interpreter the second user may run)."""


def second_user() -> tuple[int, int]:
    """The second local user's uid and gid, created with ``useradd`` when missing."""
    if os.geteuid() != 0:
        raise Unavailable("needs root: to create a second local user (useradd) and to run its processes")
    try:
        entry = pwd.getpwnam(SECOND_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        made = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SECOND_USER],
                              capture_output=True, text=True)
        try:
            entry = pwd.getpwnam(SECOND_USER)
        except KeyError:
            raise Unavailable(f"cannot create a second local user with useradd: "
                              f"{made.stderr.strip() or made.returncode}") from None
    return entry.pw_uid, entry.pw_gid


def second_user_python(uid: int, gid: int) -> str:
    for candidate in SYSTEM_PYTHONS + (sys.executable,):
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run([candidate, "-I", "-S", "-c", "pass"], user=uid, group=gid, extra_groups=[],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return candidate
    raise Unavailable(f"no Python interpreter that user {SECOND_USER} may run")


def base_directory() -> Path:
    """A fresh directory whose every component is root's and not writable by others (so the operator's
    own hotfixes below it are trusted) and which the second user can enter."""
    for root in BASES:
        st = os.stat(root) if os.path.isdir(root) else None
        if st is None or st.st_uid != 0 or st.st_mode & 0o022 or not st.st_mode & 0o001:
            continue
        made = Path(tempfile.mkdtemp(prefix="ascend-overlay-race-", dir=root))
        made.chmod(0o755)
        return made
    raise Unavailable(f"none of {', '.join(BASES)} is a root-owned directory others may enter")


def _write(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    if owner is not None:
        os.chown(path, *owner)


def _tree(root: Path, name: str, prologue: str = "", owner: tuple[int, int] | None = None) -> Path:
    """A hotfix directory with one patch file, owned by ``owner`` (default: root)."""
    _write(root / "worker" / "patch_race.py", PATCH.format(name=name, prologue=prologue, contract=JSON_DUMPS), owner)
    for d in (root, root / "worker"):
        d.chmod(0o755)
        if owner is not None:
            os.chown(d, *owner)
    return root


@dataclass
class Layout:
    base: Path
    marks: Path
    control: Path     # the operator's own directory, trusted all the way up: loads every time
    signed: Path      # trusted all the way up, with SHA256SUMS; the owner swaps in an unsigned file
    shared: Path      # the second user's directory
    swapped: Path     # shared/hotfixes: root's directory under the second user's, swapped with theirs
    linked: Path      # shared/link/hotfixes: the second user's symlink is a parent of it
    link_targets: list[str] = field(default_factory=list)

    @property
    def attacked(self) -> list[Path]:
        return [self.swapped, self.linked]

    @property
    def hotfix_dirs(self) -> list[str]:
        return [str(self.control), str(self.signed), str(self.swapped), str(self.linked)]


def build(base: Path, other: tuple[int, int]) -> Layout:
    marks = base / "marks"
    marks.mkdir(mode=0o755)
    evil = MARK.format(marks=str(marks), kind="second-user")
    operator = base / "operator"
    operator.mkdir(mode=0o755)
    control = _tree(operator / "control", "race_control")
    signed = _tree(operator / "signed", "race_signed")
    folder = signed / "worker"
    _write(folder / ".signed", (folder / "patch_race.py").read_text())
    _write(folder / ".unsigned", PATCH.format(name="race_signed", prologue=MARK.format(marks=str(marks), kind="unsigned"),
                                         contract=JSON_DUMPS))
    import hashlib

    digest = hashlib.sha256((folder / ".signed").read_bytes()).hexdigest()
    _write(signed / "SHA256SUMS", f"{digest}  worker/patch_race.py\n")
    one = _tree(operator / "one" / "hotfixes", "race_link_one").parent
    two = _tree(operator / "two" / "hotfixes", "race_link_two").parent
    shared = base / "shared"
    shared.mkdir(mode=0o755)
    os.chown(shared, *other)
    swapped = _tree(shared / "hotfixes", "race_shared")
    _tree(shared / "evil", "race_shared", evil, other)
    evil_tree = shared / "evil-tree"
    evil_tree.mkdir(mode=0o755)
    os.chown(evil_tree, *other)
    _tree(evil_tree / "hotfixes", "race_link_one", evil, other)
    targets = [str(one), str(evil_tree), str(two), str(evil_tree)]
    os.symlink(str(one), shared / "link")
    os.lchown(shared / "link", *other)
    return Layout(base, marks, control, signed, shared, swapped, shared / "link" / "hotfixes", targets)


def _env(layout: Layout, overlay: bool, code: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ASCEND_OVERLAY") and k != "VLLM_VERSION"}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH", "")) if p)
    env["VLLM_ASCEND_OVERLAY_PATH"] = os.pathsep.join(layout.hotfix_dirs)
    if overlay:
        env["VLLM_ASCEND_OVERLAY"] = "1"
    # verify plans every patch: gated on a version no built-in patch or hook point covers, none of them
    # imports vLLM (the race is about loading; planning is the same either way)
    env["VLLM_VERSION"] = "0.1.0"
    env["VLLM_ASCEND_OVERLAY_DISABLE"] = "*"
    return env


@dataclass
class Verdict:
    startups: int = 0
    verifies: int = 0
    loader_loads: int = 0
    second_user_code_ran: int = 0
    unsigned_code_ran: int = 0
    refused_with_reason: int = 0
    refused_without_reason: list[str] = field(default_factory=list)
    control_missing: int = 0
    attacked_loaded: int = 0         # a directory below the second user's loaded (refused by the parent walk)
    signed_loaded: int = 0
    swaps: int = 0
    errors: list[str] = field(default_factory=list)
    by_mode: dict[str, dict[str, int]] = field(default_factory=dict)  # the counts above, per kind of run

    def count(self, mode: str, what: str, n: int = 1) -> None:
        setattr(self, what, getattr(self, what) + n)
        counts = self.by_mode.setdefault(mode, {})
        counts[what] = counts.get(what, 0) + n

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _judge_catalog(result: dict[str, object], stderr: str, layout: Layout, verdict: Verdict, mode: str, *,
                   logged: bool) -> None:
    names = result.get("names")
    problems = [tuple(p) for p in result.get("problems", [])]  # type: ignore[union-attr]
    if names is None:
        verdict.errors.append("the overlay was not active")
        return
    assert isinstance(names, list)
    if "race_control" not in names:
        verdict.count(mode, "control_missing")
    if "race_signed" in names:
        verdict.count(mode, "signed_loaded")
    loaded_attacked = {"race_shared", "race_link_one", "race_link_two"} & set(names)
    if loaded_attacked:
        verdict.count(mode, "attacked_loaded", len(loaded_attacked))
    for directory, patch_names in ((layout.swapped, {"race_shared"}), (layout.linked, {"race_link_one", "race_link_two"}),
                                   (layout.signed, {"race_signed"})):
        if patch_names & set(names):
            continue
        why = [m for path, m in problems if str(path).startswith(str(directory)) and m]
        if why and (not logged or all(w in stderr for w in why)):
            verdict.count(mode, "refused_with_reason")
        else:
            verdict.refused_without_reason.append(f"{directory}: {problems} {stderr[-300:]}")


def run(runs: int, seconds_per_loader: float = 0.0, verify_runs: int | None = None,
        python: str = sys.executable, code: str | None = None) -> Verdict:
    """Race ``runs`` start-ups and ``verify_runs`` verify runs (default: as many) against the swappers;
    with ``seconds_per_loader``, also that many seconds of in-process loads (the same loader, faster).
    ``code``: a directory holding another version of the overlay to race instead (first on PYTHONPATH)."""
    verify_runs = runs if verify_runs is None else verify_runs
    other = second_user()
    attacker_python = second_user_python(*other)
    base = base_directory()
    verdict = Verdict()
    swappers: list[subprocess.Popen[str]] = []
    try:
        layout = build(base, other)
        budget = 3600.0
        swappers.append(subprocess.Popen([attacker_python, "-I", "-S", "-c", SWAPPER, str(layout.shared), str(budget),
                                          *layout.link_targets], user=other[0], group=other[1], extra_groups=[],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        swappers.append(subprocess.Popen([sys.executable, "-I", "-S", "-c", OWNER_SWAPPER,
                                          str(layout.signed / "worker"), str(budget)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(0.2)
        if seconds_per_loader:
            proc = subprocess.run([python, "-c", LOADER_LOOP, json.dumps(layout.hotfix_dirs), str(seconds_per_loader)],
                                  env=_env(layout, overlay=False, code=code), capture_output=True, text=True, timeout=600)
            for line in proc.stdout.splitlines():
                verdict.count("in-process load", "loader_loads")
                _judge_catalog(json.loads(line), "", layout, verdict, "in-process load", logged=False)
            if proc.returncode != 0:
                verdict.errors.append(f"loader loop: {proc.stderr[-500:]}")
        for _ in range(runs):
            proc = subprocess.run([python, "-c", STARTUP], env=_env(layout, overlay=True, code=code), capture_output=True,
                                  text=True, timeout=300)
            verdict.count("start-up", "startups")
            try:
                _judge_catalog(json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr, layout, verdict,
                               "start-up", logged=True)
            except (ValueError, IndexError):
                verdict.errors.append(f"start-up: rc={proc.returncode} {proc.stderr[-500:]}")
        for index in range(verify_runs):
            directory = layout.hotfix_dirs[1 + index % 3]
            proc = subprocess.run([python, "-m", "ascend_overlay", "hotfix", "verify", directory, "--json"],
                                  env=_env(layout, overlay=False, code=code), capture_output=True, text=True, timeout=300)
            verdict.count("verify", "verifies")
            if proc.returncode == 0:
                verdict.count("verify", "signed_loaded" if directory == str(layout.signed) else "attacked_loaded")
                continue
            try:
                findings = json.loads(proc.stdout)["findings"]
            except (ValueError, KeyError):
                findings = []
            failed = [f for f in findings if not f["ok"] and f["path"].startswith(directory) and f["message"]]
            if failed and "Traceback" not in proc.stderr:
                verdict.count("verify", "refused_with_reason")
            else:
                verdict.refused_without_reason.append(f"verify {directory}: {proc.stdout[-300:]} {proc.stderr[-300:]}")
    finally:
        for swapper in swappers:
            swapper.terminate()
        for swapper in swappers:
            try:
                out, _ = swapper.communicate(timeout=10)
                verdict.swaps += int(out.strip() or 0)
            except (subprocess.TimeoutExpired, ValueError):
                swapper.kill()
        marks = [p.name for p in (base / "marks").iterdir()] if (base / "marks").is_dir() else []
        verdict.second_user_code_ran = sum(m.startswith("second-user") for m in marks)
        verdict.unsigned_code_ran = sum(m.startswith("unsigned") for m in marks)
        shutil.rmtree(base, ignore_errors=True)
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="start-ups, and as many verify runs (default: 200)")
    parser.add_argument("--loader-seconds", type=float, default=0.0,
                        help="also this many seconds of in-process loads of the same directories")
    parser.add_argument("--code", metavar="DIR",
                        help="race the overlay found in DIR instead (e.g. an export of an older version)")
    args = parser.parse_args()
    try:
        verdict = run(args.runs, args.loader_seconds, code=args.code)
    except Unavailable as exc:
        print(f"race not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(verdict.as_dict(), indent=2))
    ok = (not verdict.second_user_code_ran and not verdict.unsigned_code_ran and not verdict.refused_without_reason
          and not verdict.attacked_loaded and not verdict.control_missing and not verdict.errors)
    print("race: PASS" if ok else "race: FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
