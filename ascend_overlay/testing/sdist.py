"""vLLM's own test suite for the installed version: its sdist, fetched once into the cache.

Wheels carry no tests; the sdist does (``tests/``, ~32 MB of 44 MB). ``pip download`` of an sdist
builds its metadata, which needs torch and fails, so the file is found with pip's own
``PackageFinder`` (which honours the user's index, find-links, certificates and proxies) and
downloaded with pip's session, its hash checked against the index's. Only ``tests/`` and
``pyproject.toml`` (vLLM's pytest settings) are unpacked.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from ascend_overlay.core.files import replacing
from ascend_overlay.main2main.sources import FetchError, SourceError, cache_dir, staged_tree

_COMPLETE = ".complete"

# Runs in a child interpreter: pip's internals are pip's business, and a failure there must not
# take this process down. Prints {"url", "hash_name", "hash"} of the sdist, or {"error"}.
_FIND = r"""
import json, sys
name, version, dest = sys.argv[1:4]
try:
    from pip._internal.commands.download import DownloadCommand
    cmd = DownloadCommand("download", "find the sdist")
    options, _ = cmd.parse_args(["--no-deps", f"{name}=={version}"])
    with cmd.main_context():
        session = cmd.get_default_session(options)
        finder = cmd._build_package_finder(options=options, session=session)
        links = [c.link for c in finder.find_all_candidates(name)
                 if str(c.version) == version and not c.link.is_wheel]
        if not links:
            print(json.dumps({"error": f"the package index lists no sdist of {name}=={version}"}))
            sys.exit(0)
        link = links[0]
        with session.get(link.url.split("#")[0], stream=True) as response:
            response.raise_for_status()
            with open(dest, "wb") as out:
                for chunk in response.iter_content(1 << 20):
                    out.write(chunk)
        print(json.dumps({"url": link.url.split("#")[0], "hash_name": link.hash_name, "hash": link.hash}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


def sdist_path(version: str, name: str = "vllm") -> Path:
    return cache_dir() / "sdists" / f"{name}-{version}.tar.gz"


def fetch_sdist(version: str, name: str = "vllm") -> Path:
    """The sdist of ``name==version`` from the cache, or downloaded into it once."""
    target = sdist_path(version, name)
    if target.is_file():
        return target
    with replacing(target) as partial:   # the file appears whole, or not at all
        try:
            done = subprocess.run([sys.executable, "-c", _FIND, name, version, str(partial)], capture_output=True,
                                  text=True, timeout=1800, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise FetchError(f"could not run pip to find the {name}=={version} sdist: {exc}") from None
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"error": done.stderr[-500:]}
        if result.get("error") is not None:
            raise FetchError(f"could not download the {name}=={version} sdist: {result['error']} -- check the "
                             f"package index is reachable, or put the file at {target}")
        if result.get("hash_name") and result.get("hash"):
            digest = hashlib.new(result["hash_name"], partial.read_bytes()).hexdigest()
            if digest != result["hash"]:
                raise FetchError(f"{result['url']}: {result['hash_name']} {digest} differs from the index's "
                                 f"{result['hash']}")
    return target


def open_sdist(archive_path: Path) -> tarfile.TarFile:
    """The sdist as a tar archive, or one line saying what to do about a damaged download."""
    try:
        return tarfile.open(archive_path)
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"{archive_path}: not a readable sdist ({exc}); delete it and fetch it again") from None


def upstream_tree(version: str, name: str = "vllm", sdist: Path | None = None) -> Path:
    """A directory holding vLLM's ``tests/`` and ``pyproject.toml`` of ``version`` (unpacked once)."""
    target = cache_dir() / "upstream" / f"{name}-{version}"
    if (target / _COMPLETE).is_file():
        return target
    archive_path = sdist or fetch_sdist(version, name)
    with staged_tree(target, archive_path) as staging, open_sdist(archive_path) as archive:
        prefix = f"{name}-{version}/"
        members = [m for m in archive.getmembers()
                   if (m.name.startswith(prefix + "tests/") or m.name == prefix + "pyproject.toml")
                   and (m.isfile() or m.isdir())]
        if not any(m.name.startswith(prefix + "tests/") for m in members):
            raise SourceError(f"{archive_path}: no tests/ directory in this sdist")
        filtered = hasattr(tarfile, "data_filter")  # Python >= 3.10.12: refuse links out, devices, modes
        for member in members:
            member.name = member.name[len(prefix):]
            if member.name.startswith("/") or ".." in Path(member.name).parts:
                raise SourceError(f"{archive_path}: refusing the unsafe member {member.name!r}")
            if filtered:
                archive.extract(member, staging, filter="data")
            else:
                archive.extract(member, staging)
    return target
