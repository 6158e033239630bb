"""Small synthetic vLLM trees with exactly one known change per case, and patches that target them.

Each case of the acceptance list is here once: a removed function, a moved module, a renamed
parameter, a new required parameter, a new abstract ``Platform`` method and a changed default. The
trees are plain files (and, for git mode, commits), so the code under test reads them exactly as it
reads a real vLLM.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from ascend_overlay.core.patch import Patch
from ascend_overlay.main2main.targets import Target, from_patches

COMMON = {
    "vllm/__init__.py": "",
    "vllm/platforms/__init__.py": "",
    "vllm/worker/__init__.py": "",
    "vllm/model_executor/__init__.py": "",
    "vllm/model_executor/models/__init__.py": "",
}

OLD = {
    **COMMON,
    "vllm/_version.py": "__version__ = version = '1.0.0'\n__commit_id__ = commit_id = 'gabcdef1'\n",
    "vllm/platforms/interface.py": """
        class Platform:
            @classmethod
            def pre_register_and_update(cls, parser=None):
                return None

            @classmethod
            def get_device_name(cls, device_id: int = 0) -> str:
                raise NotImplementedError
        """,
    "vllm/worker/base.py": """
        import importlib

        DEFAULT_RANK = 0


        class Worker:
            def __init__(self, config, rank=DEFAULT_RANK):
                self.config = config

            def execute(self, batch):
                return batch

            def load(self, path):
                return path


        def helper(x):
            return x


        def configure(x, flag=False):
            return x, flag
        """,
    "vllm/old_place/__init__.py": "",
    "vllm/old_place/mover.py": """
        class Mover:
            def run(self, x):
                return x * 2

            def stop(self):
                return None
        """,
    "vllm/model_executor/models/llama.py": """
        class LlamaModel:
            def forward(self, x):
                return x
        """,
}

NEW = {
    **COMMON,
    "vllm/_version.py": "__version__ = version = '1.1.0'\n__commit_id__ = commit_id = 'g1234567'\n",
    "vllm/platforms/interface.py": """
        class Platform:
            @classmethod
            def pre_register_and_update(cls, parser=None):
                return None

            @classmethod
            def get_device_name(cls, device_id: int = 0) -> str:
                raise NotImplementedError

            @classmethod
            def get_kv_layout(cls, vllm_config) -> str:
                \"\"\"Every platform must say how it lays out its KV cache.\"\"\"
                raise NotImplementedError("platforms must implement get_kv_layout")

            @classmethod
            def nice_to_have(cls) -> bool:
                return False
        """,
    "vllm/worker/base.py": """
        import importlib

        DEFAULT_RANK = 0


        class Worker:
            def __init__(self, config, rank=DEFAULT_RANK):
                self.config = config

            def execute(self, batch, scale):
                return batch

            def load(self, filename):
                return filename


        def configure(x, flag=True):
            return x, flag
        """,
    "vllm/new_place/__init__.py": "",
    "vllm/new_place/mover.py": """
        class Mover:
            def run(self, x):
                return x * 2

            def stop(self):
                return None
        """,
    "vllm/model_executor/models/llama.py": """
        class LlamaModel:
            def forward(self, x, positions):
                return x
        """,
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def _patch(name: str, target: str, contract: str, file: str, kind: str = "wrap") -> Patch:
    patch = Patch(name=name, phase="worker", vllm=">=1.0", why=f"synthetic case {name}",
                  remove_when="never: test fixture")
    if kind == "wrap":
        patch.wrap(target, contract=contract)(lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
    else:
        patch.replace(target, contract=contract)(lambda *a, **k: None)
    patch.file = file
    return patch


# name -> (target, pin, what the new tree does to it)
CASES = {
    "removed_function": ("vllm.worker.base:helper", "(x)", "missing"),
    "moved_module": ("vllm.old_place.mover:Mover.run", "(self, x)", "moved"),
    "renamed_parameter": ("vllm.worker.base:Worker.load", "(self, path)", "drift"),
    "new_required_parameter": ("vllm.worker.base:Worker.execute", "(self, batch)", "drift"),
    "changed_default": ("vllm.worker.base:configure", "(x, flag=False)", "drift"),
}
PLATFORM_PATCH_FILE = "patches/platform/patch_platform_hook.py"


def synthetic_targets() -> list[Target]:
    patches = [_patch(f"case_{name}", target, pin, f"patches/worker/patch_{name}.py",
                      kind="replace" if name in ("removed_function", "changed_default") else "wrap")
               for name, (target, pin, _) in CASES.items()]
    patches.append(_patch("platform_hook", "vllm.platforms.interface:Platform.pre_register_and_update",
                          "(cls, parser=None)", PLATFORM_PATCH_FILE))
    patches.append(_patch("module_global", "vllm.worker.base:importlib", "module",
                          "patches/import/patch_module_global.py", kind="replace"))
    patches.append(_patch("class_shape", "vllm.worker.base:Worker", "class(self, config, rank=0)",
                          "patches/worker/patch_class_shape.py", kind="replace"))
    return from_patches(patches)


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "HOME": str(repo), "PATH": "/usr/bin:/bin:/usr/local/bin",
           "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def build_git_repo(repo: Path) -> dict[str, str]:
    """A vLLM-like history: OLD, a small fix, a dependency bump, a large refactor, then NEW.

    Returns the commit of each named point.
    """
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    write_tree(repo, OLD)
    write_tree(repo, {"requirements/common.txt": "torch==2.13.0\n", "tests/test_basic.py": "def test(): pass\n"})
    commits = {"old": commit_all(repo, "old state")}
    write_tree(repo, {"vllm/model_executor/models/llama.py": NEW["vllm/model_executor/models/llama.py"]})
    commits["small"] = commit_all(repo, "models: llama takes positions")
    write_tree(repo, {"requirements/common.txt": "torch==2.14.0\n"})
    commits["deps"] = commit_all(repo, "bump torch")
    big = "\n".join(f"def generated_{i}(x):\n    return x + {i}\n" for i in range(150))
    write_tree(repo, {"vllm/worker/generated.py": big, "tests/test_basic.py": "def test():\n    assert True\n"})
    commits["big"] = commit_all(repo, "add generated helpers")
    (repo / "vllm/old_place/mover.py").unlink()
    write_tree(repo, {k: v for k, v in NEW.items() if k != "vllm/model_executor/models/llama.py"})
    commits["new"] = commit_all(repo, "the breaking changes")
    return commits
