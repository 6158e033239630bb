"""Evidence from vLLM's server log: the lines that show what the server really ran with, and the line
that says why it failed.

Every feature the gate records cites a line of the log (or of a response), so the reader can check
it; a startup failure is reduced to the one line an engineer would look for (the argparse error, the
unsupported architecture, the last exception), with the log's tail next to it in the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Noise that ends vLLM logs on this platform and says nothing about the model.
_NOISE = re.compile(r"^(\s*- (leaked |\.\.\. skipped)|nanobind: |See https://nanobind|\s*$)")
_PREFIX = re.compile(r"^(\((?P<proc>[\w-]+) pid=\d+\) )?(?P<level>INFO|WARNING|ERROR|DEBUG|CRITICAL) "
                     r"\d\d-\d\d \d\d:\d\d:\d\d \[[^\]]+\] ")
ENGINE_CONFIG = "Initializing a V1 LLM engine"


@dataclass
class LogFacts:
    """What the log says, each value with the line it came from."""

    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: str, line: str) -> None:
        self.values[key] = value
        self.lines[key] = short(line)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def line(self, key: str) -> str:
        return self.lines.get(key, "")


def short(line: str, width: int = 240) -> str:
    line = line.strip()
    return line if len(line) <= width else line[: width - 3] + "..."


def excerpt(line: str, key: str, width: int = 160) -> str:
    """The part of a long line (vLLM's one-line engine config) around ``key``."""
    at = line.find(key)
    if at < 0 or len(line) <= width:
        return short(line, width)
    start = max(0, at - 20)
    return "..." + line[start:start + width].strip() + "..."


_ENGINE_KEYS = {
    "enforce_eager": r"enforce_eager=(True|False)",
    "tensor_parallel_size": r"tensor_parallel_size=(\d+)",
    "pipeline_parallel_size": r"pipeline_parallel_size=(\d+)",
    "data_parallel_size": r"data_parallel_size=(\d+)",
    "max_seq_len": r"max_seq_len=(\d+)",
    "load_format": r"load_format=([\w.]+)",
    "dtype": r"dtype=([\w.]+)",
    "quantization": r"quantization=(\w+)",
    "trust_remote_code": r"trust_remote_code=(True|False)",
    "enable_prefix_caching": r"enable_prefix_caching=(True|False)",
    "enable_chunked_prefill": r"enable_chunked_prefill=(True|False)",
    "device": r"device_config=(\w+)",
    "compilation_mode": r"'mode': <CompilationMode\.(\w+)",
    "cudagraph_mode": r"'cudagraph_mode': <CUDAGraphMode\.(\w+)",
    "vllm_version": r"Initializing a V1 LLM engine \(v([^)]+)\)",
}
_LINE_FACTS = {
    "max_model_len_used": r"Using max model len (\d+)",
    "kv_concurrency": r"Maximum concurrency for ([\d,]+ tokens per request: [\d.,]+x)",
    "kv_cache_tokens": r"KV cache size: ([\d,]+) tokens",
    "weights_load": r"Loading weights took ([\d.]+) s(?:econds)?",
    "model_load": r"(Model loading took .*)$",
    "init_engine": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s",
    "compile_warmup": r"(Warming up model for the compilation.*|torch\.compile took .*|Compiling a graph.*)$",
    "graph_capture": r"(Graph capturing finished.*|Capturing CUDA graphs.*|ACL ?[Gg]raph.*captur.*)$",
    "eager_forced": r"(Enforce eager set.*)$",
    "parallel_ranks": r"(rank \d+ in world size \d+ is assigned as .*)$",
    "non_default_args": r"non-default args: (\{.*\})",
    "platform": r"Automatically detected platform (\w+)",
    "server_started": r"(Starting vLLM server on \S+)",
}


def scan(log: str) -> LogFacts:
    facts = LogFacts()
    for line in log.splitlines():
        if ENGINE_CONFIG in line and "engine_config" not in facts.values:
            facts.add("engine_config", "seen", line)
            for key, pattern in _ENGINE_KEYS.items():
                match = re.search(pattern, line)
                if match:
                    facts.values[key] = match.group(1)
                    facts.lines[key] = excerpt(line, match.group(0))
            continue
        for key, pattern in _LINE_FACTS.items():
            match = re.search(pattern, line)
            if match and key not in facts.values:
                facts.add(key, match.group(1), line)
    return facts


def overlay_lines(log: str) -> list[str]:
    """The overlay's one summary line per process (``ascend-overlay: role=... pid=...``)."""
    return [short(line[line.index("ascend-overlay: role="):], 400) for line in log.splitlines()
            if "ascend-overlay: role=" in line]


def meaningful_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if not _NOISE.match(line)]


def tail(log: str, lines: int = 40) -> str:
    return "\n".join(meaningful_lines(log)[-lines:])


def last_activity(log: str) -> str:
    """The newest meaningful log line without its prefix: what startup is doing now, for progress."""
    for line in reversed(meaningful_lines(log[-8000:])):
        stripped = _PREFIX.sub("", line).strip()
        if stripped and not stripped.startswith(("Route:", "INFO:", "warnings.warn")) and \
                not re.match(r"^\S+\.py:\d+: \w*Warning", stripped):
            return short(stripped, 110)
    return ""


def startup_failure(log: str) -> str:
    """Why vLLM exited before it served, in one line."""
    lines = meaningful_lines(log)
    for line in lines:
        match = re.search(r"(?:^|: )error: (.*)$", line)
        if match and (line.startswith("vllm") or "usage:" in log):
            return f"vLLM rejected the serve flags: {match.group(1).strip()}"
    for line in lines:
        match = re.search(r"Model architectures (\[[^\]]*\]) are not supported for now", line)
        if match:
            return (f"vLLM does not know the model's architecture {match.group(1)} (config.json \"architectures\"): "
                    "register an implementation for it (a model patch or plugin) or use a vLLM that has one")
    cause = root_cause(lines)
    return cause or "vLLM exited before it served (see the log tail)"


# Exception lines that only point elsewhere ("see above"): the root cause is another line.
_GENERIC = re.compile(r"(See (the )?(root cause|stack trace)|EngineDeadError|EngineGenerateError|CancelledError|"
                      r"Engine core initialization failed|KeyboardInterrupt)")


def root_cause(lines: list[str]) -> str:
    """The first exception line (``SomeError: message``) that is not a pointer to another one."""
    found = []
    for line in lines:
        stripped = _PREFIX.sub("", line).strip()
        if re.match(r"^[\w.]*(Error|Exception)(\[\w+\])?: ", stripped) or "Value error, " in stripped:
            found.append(stripped)
    specific = [line for line in found if not _GENERIC.search(line)]
    chosen = specific[0] if specific else (found[-1] if found else "")
    return short(chosen, 400)
