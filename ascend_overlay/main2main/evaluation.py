"""How well ``drift --plugin`` finds what a real plugin had to adapt: an evaluation on vllm-ascend's history.

For each of vllm-ascend's main2main / "upgrade vllm" commits C (up to its vLLM 0.20 bump; later
history is held out) with parent P:

- *build*: the vLLM names P's changed files used and C's versions no longer use (what C adapted
  away from) are verified against two released vLLM trees bracketing the commit: a name that
  resolves in OLD and not in NEW, or whose shape differs between them, is an expected break, with
  its plugin file and line. Names P uses in files C did not touch, resolving in both trees with the
  same shape, are controls. Only names, files, lines and versions are stored
  (``tests/data/main2main_eval.json``), never the plugin's code.
- *score*: ``drift OLD NEW --plugin`` on P's ``vllm_ascend/``: recall is the share of expected
  breaks reported P0 naming their file; false alarms the share of controls reported P0.

The verification reads vLLM with the static tree (existence and fingerprint only), not with the
rules under test (``reliance.judge``), so a wrong rule cannot confirm itself.

``python -m ascend_overlay.main2main.evaluation build|score [--repo MIRROR]``; ``make eval-main2main``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "main2main_eval.json"
PACKAGE_DIR = "vllm_ascend"
CONTROLS_PER_COMMIT = 25


def git(repo: Path, *args: str, binary: bool = False) -> Any:
    from ascend_overlay.main2main.gitmode import git as run

    return run(repo, *args, binary=binary)


def export_plugin(repo: Path, sha: str) -> Path:
    """``vllm_ascend/`` of one commit, unpacked once into the cache (``git archive``)."""
    from ascend_overlay.main2main.sources import cache_dir, publish

    target = cache_dir() / "plugins" / sha
    if not (target / ".complete").is_file():
        data = git(repo, "archive", "--format=tar", sha, "--", PACKAGE_DIR, binary=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=sha[:12] + ".", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]
                archive.extractall(staging, members=members, filter="data")
            (staging / ".complete").write_text(sha, encoding="utf-8")
            publish(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / PACKAGE_DIR


def released_plugin(version: str, dist: str = "vllm-ascend") -> Path:
    """A released plugin's package directory, from its wheel on the package registry (unpacked once)."""
    import zipfile

    from ascend_overlay.main2main.sources import cache_dir, fetch_wheel, staged_tree

    wheel = fetch_wheel(version, dist)
    target = cache_dir() / "plugins" / wheel.stem
    if not (target / ".complete").is_file():
        with staged_tree(target, wheel) as staging, zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(PACKAGE_DIR + "/") and name.endswith(".py"):
                    archive.extract(name, staging)
    return target / PACKAGE_DIR


def uses_by_file(directory: Path) -> dict[str, set[str]]:
    """File (relative to the package's parent) -> the vLLM names it uses."""
    out: dict[str, set[str]] = {}
    for file in sorted(directory.rglob("*.py")):
        display = file.relative_to(directory.parent).as_posix()
        out[display] = {u.target for u in _uses(file.read_text(encoding="utf-8", errors="replace"), display)
                        if u.target}
    return out


def _uses(text: str, display: str) -> list[Any]:
    from ascend_overlay.main2main.subjects import read_plugin_file

    try:
        return read_plugin_file(ast.parse(text), display)
    except SyntaxError:
        return []


@dataclass
class Verified:
    found_old: bool
    found_new: bool
    same_shape: bool
    shapes: tuple[str | None, str | None] = (None, None)


def _names(shape: str | None) -> list[str]:
    """Parameter names of a contract text, without the receiver: a label compares names only, so it
    cannot borrow the judgement (``reliance.shapes``) it is there to test."""
    if not shape:
        return []
    names = [p.strip().lstrip("*").split("=")[0] for p in shape.strip("()").split(",") if p.strip()]
    return [n for n in names if n and n not in ("self", "cls", "/")]


def _verify(trees: tuple[Any, Any], target: str) -> Verified:
    """Existence and fingerprint of a name in both trees, read with the static tree alone."""
    from ascend_overlay.core.patch import parse_target
    from ascend_overlay.main2main.fingerprints import fingerprint

    module, path = parse_target(target)
    found = [tree.lookup(module, path) for tree in trees]
    shapes = [fingerprint(tree, f) if f is not None else None for tree, f in zip(trees, found, strict=True)]
    return Verified(found[0] is not None, found[1] is not None, shapes[0] == shapes[1], (shapes[0], shapes[1]))


def build_commit(repo: Path, spec: dict[str, Any], trees: tuple[Any, Any]) -> dict[str, Any]:
    sha = git(repo, "rev-parse", spec["commit"]).strip()
    parent = git(repo, "rev-parse", f"{sha}^").strip()
    changed = [p for p in git(repo, "diff", "--name-only", parent, sha, "--", PACKAGE_DIR).split()
               if p.endswith(".py")]
    breaks: list[dict[str, Any]] = []
    for path in changed:
        try:
            before = git(repo, "show", f"{parent}:{path}")
        except Exception:  # noqa: BLE001 - added in C: nothing of P's to adapt
            continue
        try:
            after = git(repo, "show", f"{sha}:{path}")
        except Exception:  # noqa: BLE001 - deleted in C: every use went
            after = ""
        kept = {u.target for u in _uses(after, path)}
        seen: set[str] = set()
        for use in _uses(before, path):
            if use.target in kept or use.target in seen:
                continue
            seen.add(use.target)
            v = _verify(trees, use.target)
            if v.found_old and not v.found_new:
                why = "resolves in OLD, not in NEW"
            elif v.found_old and v.found_new and not v.same_shape and use.shape \
                    and _names(use.shape) == _names(v.shapes[0]) != _names(v.shapes[1]):
                why = "P's override has OLD's parameters, and NEW's differ"
            else:
                continue
            breaks.append({"name": use.target, "file": path, "line": int(use.where.rpartition(":")[2] or 0),
                           "use": str(getattr(use.how, "value", use.how)), "verified": why})
    controls = _controls(repo, parent, set(changed), trees)
    return {"commit": sha[:12], "parent": parent[:12], "subject": spec.get("title", ""),
            "old_vllm": spec["old"], "new_vllm": spec["new"], "breaks": breaks, "controls": controls}


def _controls(repo: Path, parent: str, changed: set[str], trees: tuple[Any, Any]) -> list[dict[str, Any]]:
    """Names P relies on in files C left alone that hold unchanged in both trees: a stable, spread
    sample (by a hash of the name, not the first files alphabetically)."""
    root = export_plugin(repo, parent)
    candidates: dict[str, dict[str, Any]] = {}
    for file in sorted(root.rglob("*.py")):
        display = file.relative_to(root.parent).as_posix()
        if display in changed:
            continue
        for use in _uses(file.read_text(encoding="utf-8", errors="replace"), display):
            if use.target and use.target not in candidates and not use.guard and not use.own_at:
                candidates[use.target] = {"name": use.target, "file": display,
                                          "line": int(use.where.rpartition(":")[2] or 0),
                                          "use": str(getattr(use.how, "value", use.how))}
    ranked = sorted(candidates.values(), key=lambda c: hashlib.sha1(c["name"].encode()).hexdigest())
    out = []
    for c in ranked:
        v = _verify(trees, c["name"])
        if v.found_old and v.found_new and v.same_shape:
            out.append(c)
        if len(out) >= CONTROLS_PER_COMMIT:
            break
    return out


def _trees(old: str, new: str) -> tuple[Any, Any, Any, Any]:
    from ascend_overlay.main2main.sources import resolve_source
    from ascend_overlay.main2main.tree import StaticTree

    old_src, new_src = resolve_source(old), resolve_source(new)
    return old_src, new_src, StaticTree(old_src.root), StaticTree(new_src.root)


def build(repo: Path, commits: list[dict[str, Any]]) -> dict[str, Any]:
    out = []
    trees: dict[tuple[str, str], Any] = {}
    for spec in commits:
        key = (spec["old"], spec["new"])
        if key not in trees:
            trees[key] = _trees(*key)
        print(f"build {spec['commit']} ({spec['old']} -> {spec['new']})", file=sys.stderr)
        out.append(build_commit(repo, spec, trees[key][2:]))
    return {"plugin": "vllm-ascend", "held_out": "commits after the vLLM 0.20 bump (vLLM 0.21 onwards)",
            "commits": out}


def _found(entries: list[Any], name: str, file: str) -> bool:
    """Reported P0 for this name (or for what holds it: a removed class, module) naming the file."""
    from ascend_overlay.core.patch import parse_target

    module, path = parse_target(name)
    keys = {".".join((module, *path[:cut])) for cut in range(0, len(path) + 1)}
    return any(e.object in keys and any(p == file or p.startswith(file + ":") for p in e.patches) for e in entries)


def score(repo: Path, data: dict[str, Any]) -> dict[str, Any]:
    from ascend_overlay.main2main import drift
    from ascend_overlay.main2main.subjects import plugin_subject

    pairs: dict[tuple[str, str], Any] = {}
    rows = []
    for commit in data["commits"]:
        if not commit["breaks"] and not commit["controls"]:
            continue
        key = (commit["old_vllm"], commit["new_vllm"])
        subject = plugin_subject(export_plugin(repo, commit["parent"]))
        if key not in pairs:
            old, new, _, _ = _trees(*key)
            relevant = drift.relevant_private(subject.targets)
            pairs[key] = (old, new, drift.api_items(old, new, relevant))
        old, new, items = pairs[key]
        report = drift.compare(old, new, subject.targets, subject="plugin", api_items=copy.deepcopy(items))
        p0 = report.by_priority(0)
        changed = set(git(repo, "diff", "--name-only", commit["parent"], commit["commit"], "--", PACKAGE_DIR).split())
        touched = [e for e in p0 if any(p.rpartition(":")[0] in changed or p in changed for p in e.patches)]
        found = [b for b in commit["breaks"] if _found(p0, b["name"], b["file"])]
        alarms = [c for c in commit["controls"] if _found(p0, c["name"], c["file"])]
        rows.append({"commit": commit["commit"], "pair": f"{key[0]} -> {key[1]}", "breaks": len(commit["breaks"]),
                     "found": len(found), "controls": len(commit["controls"]), "false_alarms": len(alarms),
                     "missed": [b for b in commit["breaks"] if b not in found], "alarms": alarms,
                     "p0": len(p0), "p0_in_files_the_commit_changed": len(touched)})
        print(f"score {commit['commit']}: {len(found)}/{len(commit['breaks'])} breaks, "
              f"{len(alarms)}/{len(commit['controls'])} false alarms, P0 {len(p0)}", file=sys.stderr)
    breaks = sum(r["breaks"] for r in rows)
    controls = sum(r["controls"] for r in rows)
    p0 = sum(r["p0"] for r in rows)
    return {"recall": round(sum(r["found"] for r in rows) / breaks, 3) if breaks else None,
            "p0_entries": p0, "p0_share_in_changed_files": round(sum(r["p0_in_files_the_commit_changed"]
                                                                     for r in rows) / p0, 3) if p0 else None,
            "false_alarm_rate": round(sum(r["false_alarms"] for r in rows) / controls, 3) if controls else None,
            "breaks": breaks, "controls": controls, "commits": rows}


RESULT = DATA.with_name("main2main_eval_result.json")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "main2main.md"
_TABLE_START, _TABLE_END = "<!-- eval-table: make eval-main2main -->", "<!-- /eval-table -->"


def render_table(result: dict[str, Any]) -> str:
    """The figures docs/main2main.md quotes, as one markdown table (a test compares the two)."""
    lines = ["| vLLM pair | commits | expected breaks | found | controls | false alarms | P0 entries | P0 in files the commit changed |",
             "|---|---|---|---|---|---|---|---|"]
    pairs: dict[str, list[dict[str, Any]]] = {}
    for row in result["commits"]:
        pairs.setdefault(row["pair"], []).append(row)
    for pair, rows in pairs.items():
        lines.append(f"| {pair} | {len(rows)} | {sum(r['breaks'] for r in rows)} | {sum(r['found'] for r in rows)} | "
                     f"{sum(r['controls'] for r in rows)} | {sum(r['false_alarms'] for r in rows)} | "
                     f"{sum(r['p0'] for r in rows)} | {sum(r['p0_in_files_the_commit_changed'] for r in rows)} |")
    lines.append(f"| **all** | {len(result['commits'])} | {result['breaks']} | recall **{result['recall']}** | "
                 f"{result['controls']} | rate **{result['false_alarm_rate']}** | {result['p0_entries']} | "
                 f"{result['p0_share_in_changed_files']} |")
    missed = [f"`{m['name']}` ({m['file']}:{m['line']}, {row['commit']})" for row in result["commits"]
              for m in row["missed"]]
    lines.append("")
    lines.append("Missed: " + (", ".join(missed) if missed else "none") + ".")
    return "\n".join(lines)


def registry_row(plugin: str, old: str, new: str, following: str, expected: int, found: int, reported: int,
                 adapted: int) -> str:
    """One line of the registry slice's table in docs/main2main.md (the test that computes it checks it)."""
    return (f"| vllm-ascend {plugin} | vLLM {old} -> {new} | {expected} | {found} ({found / expected:.3f}) | "
            f"{reported} | {adapted} ({adapted / reported:.3f}) | vllm-ascend {following} |")


def docs_table(text: str) -> str | None:
    if _TABLE_START not in text or _TABLE_END not in text:
        return None
    return text.split(_TABLE_START, 1)[1].split(_TABLE_END, 1)[0].strip()


def write_docs(result: dict[str, Any], path: Path = DOCS) -> None:
    text = path.read_text(encoding="utf-8")
    if docs_table(text) is None:
        return
    head, rest = text.split(_TABLE_START, 1)
    tail = rest.split(_TABLE_END, 1)[1]
    path.write_text(f"{head}{_TABLE_START}\n{render_table(result)}\n{_TABLE_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ascend_overlay.main2main.evaluation")
    parser.add_argument("action", choices=("build", "score"))
    parser.add_argument("--repo", default="/work/.mirror/vllm-project+vllm-ascend/repo",
                        help="a vllm-ascend git repository (a clone or a bare mirror)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", help="score: write the result JSON here")
    parser.add_argument("--record", action="store_true", help="score: keep the result as the figures docs/main2main.md "
                        f"quotes ({RESULT.name}) and regenerate its table")
    args = parser.parse_args(argv)
    repo = Path(args.repo)
    if not (repo / "HEAD").exists() and not (repo / ".git").exists():
        print(f"skipped: no vllm-ascend git repository at {repo} (pass --repo with a clone)", file=sys.stderr)
        return 0
    data_path = Path(args.data)
    data = json.loads(data_path.read_text(encoding="utf-8"))
    if args.action == "build":
        built = build(repo, data["specs"])
        data.update(built)
        data_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {data_path}: {sum(len(c['breaks']) for c in built['commits'])} breaks, "
              f"{sum(len(c['controls']) for c in built['commits'])} controls")
        return 0
    result = score(repo, data)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.record:  # the figures the docs quote: kept as data, the table regenerated from them
        RESULT.write_text(text + "\n", encoding="utf-8")
        write_docs(result)
    print(f"recall {result['recall']} ({result['breaks']} breaks), false alarms {result['false_alarm_rate']} "
          f"({result['controls']} controls); P0 entries {result['p0_entries']}, "
          f"{result['p0_share_in_changed_files']} of them in files the commit changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
