"""What the checkpoint is, read from its files before anything starts.

The gate must know before serving whether the model takes images (a text+image request, or
not-applicable), whether it is a mixture of experts (expert parallel applies, or not), whether it has
a chat template (the chat endpoint works only with one) and whether real weights are there (stage B
needs them). All of it is in the model directory; reading it costs milliseconds, so a wrong path
fails here, before a server is started for a minute.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SmokeInputError(ValueError):
    """Input the gate cannot run with; the message says what to pass instead."""


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Config keys that say "this model has a vision tower", in the places the common families put them.
VISION_KEYS = ("vision_config", "vision_tower", "mm_vision_tower", "visual", "vit_config", "image_token_id",
               "image_token_index")
# Config keys whose value (>1) is the number of routed experts.
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelInfo:
    spec: str                 # MODEL as the user gave it (what vLLM is given too)
    path: Path                # the local directory read
    config: dict[str, Any]
    vision: str | None        # evidence for "vision-language", or None
    moe: str | None           # evidence for "mixture of experts", or None
    chat_template: str | None  # where the chat template was found, or None
    weights: list[str] = field(default_factory=list)  # weight files found (empty: checkpoint missing)

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "unknown"))

    @property
    def is_vlm(self) -> bool:
        return self.vision is not None

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def name(self) -> str:
        """A short name for files and titles: the hub id's last part or the directory's name."""
        return Path(self.spec.rstrip("/")).name or self.path.name

    def summary(self) -> dict[str, Any]:
        return {"spec": self.spec, "path": str(self.path), "architectures": self.architectures,
                "model_type": self.model_type, "vision_language": self.is_vlm, "vision_evidence": self.vision,
                "moe": self.is_moe, "moe_evidence": self.moe, "chat_template": self.chat_template,
                "weights": self.weights, "dtype": self.config.get("torch_dtype") or self.config.get("dtype"),
                "max_position_embeddings": _find(self.config, ("max_position_embeddings",))}


def resolve_model(spec: str) -> ModelInfo:
    """Read MODEL (a local directory, or a Hugging Face repo id already in the local cache)."""
    path = _local_dir(spec)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise SmokeInputError(f"{path} is not a model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SmokeInputError(f"cannot read {config_file}: {exc}") from None
    if not isinstance(config, dict):
        raise SmokeInputError(f"{config_file} does not hold a JSON object")
    return ModelInfo(spec=spec, path=path, config=config, vision=detect_vision(config), moe=detect_moe(config),
                     chat_template=find_chat_template(path), weights=find_weights(path))


def _local_dir(spec: str) -> Path:
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise SmokeInputError(f"MODEL {spec} is a file; give the model's directory (config.json, weights)")
    if HUB_ID.match(spec) and not spec.startswith("."):
        cached = _hub_cache_dir(spec)
        if cached is not None:
            return cached
        raise SmokeInputError(
            f"MODEL {spec} is not a local directory and not in the Hugging Face cache. smoke reads the "
            f"checkpoint's files before it starts vLLM: download it first (huggingface-cli download {spec}), "
            "or pass the model's directory")
    raise SmokeInputError(f"MODEL {spec} does not exist: give the path of a model directory (config.json, weights)")


def _hub_cache_dir(repo_id: str) -> Path | None:
    """The cached snapshot of a repo id, without touching the network."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    # The cache directory is read from the environment now, not from huggingface_hub's import-time constant.
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME")
                                               else None)
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache))
    except Exception:  # not cached (huggingface_hub raises several types for it)
        return None


def _walk(config: Any, prefix: str = ""):
    """(dotted key, value) of every entry of a nested config (text_config, thinker_config, ...)."""
    if isinstance(config, dict):
        for key, value in config.items():
            dotted = f"{prefix}{key}"
            yield dotted, key, value
            yield from _walk(value, dotted + ".")


def _find(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for _, key, value in _walk(config):
        if key in keys:
            return value
    return None


def detect_vision(config: dict[str, Any]) -> str | None:
    """Evidence that the model takes images, e.g. ``config.json: vision_config``, or None."""
    for dotted, key, value in _walk(config):
        if key in VISION_KEYS and value not in (None, {}, ""):
            return f"config.json: {dotted}"
    for arch in config.get("architectures") or []:
        if re.search(r"(VL|Vision|Llava|Vlm|VLM)", str(arch)):
            return f"config.json: architectures {arch}"
    return None


def detect_moe(config: dict[str, Any]) -> str | None:
    """Evidence that the model routes tokens to experts, e.g. ``config.json: num_local_experts=8``."""
    for dotted, key, value in _walk(config):
        if key in EXPERT_KEYS and isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return f"config.json: {dotted}={value}"
    return None


def find_chat_template(path: Path) -> str | None:
    for name in ("chat_template.jinja", "chat_template.json"):
        if (path / name).is_file():
            return name
    try:
        tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(tokenizer_config, dict) and tokenizer_config.get("chat_template"):
        return "tokenizer_config.json: chat_template"
    return None


def find_weights(path: Path) -> list[str]:
    found = []
    for entry in sorted(path.rglob("*")):
        if entry.is_file() and entry.name.endswith(WEIGHT_SUFFIXES) and "training_args" not in entry.name:
            found.append(str(entry.relative_to(path)))
    return found
