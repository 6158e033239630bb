"""The report file is the user's own: it is never written through a link or into a file someone else
made, it is created readable by its owner only, a FIFO never blocks, and no one holding its lock can
hold up a start-up for longer than the bounded wait. Refused, the run goes on without a report."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import race_harness
from harness import REPO, base_env, run_python

from ascend_overlay.core import report
from ascend_overlay.core.runtime import Overlay
from ascend_overlay.core.settings import Settings
from ascend_overlay.core.vocabulary import Phase

# A start-up that writes two report lines (two phases fire) and prints how long firing took.
TWO_LINES = textwrap.dedent('''
    import time
    from ascend_overlay.core.phases import fire
    from ascend_overlay.core.vocabulary import Phase
    started = time.monotonic()
    fire(Phase.ENGINE_CORE)
    fire(Phase.WORKER)
    print(round(time.monotonic() - started, 3))
''')


def _startup(path: Path | str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = base_env(overlay=True, VLLM_ASCEND_OVERLAY_REPORT=str(path), VLLM_ASCEND_OVERLAY_DISABLE="*", **extra)
    return subprocess.run([sys.executable, "-c", TWO_LINES], env=env, capture_output=True, text=True, timeout=120)


def test_the_report_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    out = _startup(path)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r["event"] for r in report.read_jsonl(str(path))] == ["phase:engine_core", "phase:worker"]


def test_a_relative_report_path_is_refused_with_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    settings = Settings.from_env({"VLLM_ASCEND_OVERLAY_REPORT": "report.jsonl"})
    assert settings.report_path is None
    assert "VLLM_ASCEND_OVERLAY_REPORT='report.jsonl' is not valid; accepted values: an absolute file path" \
        in str(settings.problems[0])
    with pytest.raises(report.ReportRefused, match="a relative report path is refused"):
        report.append_jsonl("report.jsonl", {"pid": 1})
    out = subprocess.run([sys.executable, "-c", TWO_LINES], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=base_env(overlay=True, VLLM_ASCEND_OVERLAY_REPORT="report.jsonl",
                                      VLLM_ASCEND_OVERLAY_DISABLE="*"))
    assert out.returncode == 0 and out.stdout.strip()
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "VLLM_ASCEND_OVERLAY_REPORT='report.jsonl' is not valid" in warnings[0], out.stderr
    assert not (tmp_path / "report.jsonl").exists()


@pytest.mark.parametrize("kind", ["symlink", "hard link", "foreign owner", "directory"])
def test_a_report_path_that_is_not_the_users_own_file_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "precious"
    victim.write_text("unchanged\n")
    path = tmp_path / "report.jsonl"
    if kind == "symlink":
        path.symlink_to(victim)
        why = "it is a symlink"
    elif kind == "hard link":
        os.link(victim, path)
        why = "it has 2 hard links"
    elif kind == "foreign owner":
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root; this machine's CI runs as root")
        path.write_text("")
        os.chown(path, 4242, 4242)
        victim = path
        victim.write_text("unchanged\n")
        why = "it is owned by uid 4242, not you"
    else:
        path.mkdir()
        why = "it is a directory"
    out = _startup(path)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    [line] = [line for line in out.stderr.splitlines() if "report refused" in line]
    assert why in line and line.endswith("the run goes on without a report"), out.stderr
    assert victim.read_text() == "unchanged\n"


def test_a_fifo_at_the_report_path_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(report.ReportRefused, match="it is a FIFO"):
        report.append_jsonl(str(path), {"pid": 1})
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # with a reader, opening for writing succeeds
    try:
        with pytest.raises(report.ReportRefused, match="it is a FIFO"):
            report.append_jsonl(str(path), {"pid": 1})
        assert os.read(reader, 100) == b""
    finally:
        os.close(reader)
    assert time.monotonic() - started < 5
    out = _startup(path)
    assert out.returncode == 0 and "it is a FIFO" in out.stderr


def test_a_held_lock_is_waited_for_a_bounded_time_then_the_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    report.append_jsonl(str(path), {"pid": 1})
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with pytest.raises(report.ReportBusy, match="held its lock for more than 0.3 s"):
            report.append_jsonl(str(path), {"pid": 2}, wait=0.3)
        assert 0.3 <= time.monotonic() - started < 2
    finally:
        os.close(holder)
    assert [r["pid"] for r in report.read_jsonl(str(path))] == [1]


# -- a second local user --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_user() -> tuple[int, int, str]:
    try:
        uid, gid = race_harness.second_user()
        return uid, gid, race_harness.second_user_python(uid, gid)
    except race_harness.Unavailable as exc:
        pytest.skip(f"needs a second local user: {exc}")


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A directory both users can write, like /tmp (sticky, world-writable), reachable by the second user."""
    try:
        base = race_harness.base_directory()
    except race_harness.Unavailable as exc:
        pytest.skip(str(exc))
    directory = base / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    yield directory
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def _as(user: tuple[int, int, str], code: str, *args: str, **kwargs) -> subprocess.Popen[str]:
    uid, gid, python = user
    return subprocess.Popen([python, "-I", "-S", "-c", code, *args], user=uid, group=gid, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_second_user_cannot_choose_where_the_report_lands(second_user, shared: Path) -> None:
    planted = shared / "report.jsonl"
    theirs = _as(second_user, "import sys; open(sys.argv[1], 'w').close()", str(planted))
    assert theirs.wait(30) == 0
    out = _startup(planted)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    assert out.stderr.count("report refused") == 1 and "not you" in out.stderr
    assert planted.read_text() == "", "the service's report landed in the second user's file"
    # Their symlink to a file of the service's: refused, the file untouched.
    precious = shared.parent / "precious"
    precious.write_text("unchanged\n")
    link = shared / "link.jsonl"
    theirs = _as(second_user, "import os, sys; os.symlink(sys.argv[1], sys.argv[2])", str(precious), str(link))
    assert theirs.wait(30) == 0
    out = _startup(link)
    assert out.returncode == 0 and "it is a symlink" in out.stderr
    assert precious.read_text() == "unchanged\n"


def test_a_second_user_cannot_read_the_report_the_overlay_created(second_user, shared: Path) -> None:
    path = shared / "report.jsonl"
    assert _startup(path).returncode == 0
    assert path.stat().st_size > 0
    reader = _as(second_user, textwrap.dedent('''
        import sys
        try:
            print(len(open(sys.argv[1]).read()))
        except PermissionError:
            print("denied")
    '''), str(path))
    out, err = reader.communicate(timeout=30)
    assert out.strip() == "denied", err


def test_a_second_user_holding_the_lock_delays_a_start_up_by_at_most_the_bounded_wait(second_user, shared: Path) -> None:
    path = shared / "report.jsonl"
    report.append_jsonl(str(path), {"pid": 1})
    path.chmod(0o644)  # a report the user made readable to others (an older overlay created them 0644)
    holder = _as(second_user, textwrap.dedent('''
        import fcntl, sys, time
        fd = open(sys.argv[1])
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
    '''), str(path))
    try:
        assert holder.stdout.readline().strip() == "held"
        out = _startup(path)
    finally:
        holder.kill()
        holder.wait(10)
    assert out.returncode == 0, out.stderr
    firing = float(out.stdout.strip())
    # Two lines were due; the process waited once, for the bounded wait, not once per line.
    assert report.LOCK_WAIT_S <= firing < report.LOCK_WAIT_S + 1.5, out.stderr
    assert out.stderr.count("report line skipped") == 1
    assert [r["pid"] for r in report.read_jsonl(str(path))] == [1]


def test_a_report_write_cut_short_leaves_no_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    code = textwrap.dedent(f'''
        import resource
        from ascend_overlay.core.report import append_jsonl
        append_jsonl({str(path)!r}, {{"pid": 1, "pad": "x" * 100}})
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))   # the file system fills up mid-record
        try:
            append_jsonl({str(path)!r}, {{"pid": 2, "pad": "y" * 1000}})
        except OSError as exc:
            print("refused:", exc.errno)
    ''')
    out = run_python(code, base_env(overlay=False, PYTHONPATH=str(REPO)))
    assert out.stdout.startswith("refused:"), out.stdout + out.stderr
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["pid"] == 1
    assert report.read_jsonl(str(path))[0]["pid"] == 1


@pytest.mark.parametrize("log_level", ["off", "info"])
def test_a_report_that_cannot_be_written_is_never_silent(tmp_path: Path, log_level: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    unwritable = str(tmp_path / "no-such-dir" / "report.jsonl")
    overlay = Overlay(Settings(enabled=True, report_path=unwritable, log_level=log_level))
    try:
        overlay.run_phase(Phase.ENGINE_CORE)
        assert "cannot write the report" in capsys.readouterr().err
        strict = Overlay(Settings(enabled=True, strict=True, report_path=unwritable, log_level=log_level))
        with pytest.raises(Exception, match="cannot write the report"):
            strict.run_phase(Phase.ENGINE_CORE)
    finally:
        overlay.deactivate()
