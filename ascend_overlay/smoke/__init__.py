"""``ascend-overlay smoke``: the model bring-up gate, run mechanically.

Stage A serves the model with dummy weights (architecture, operators, API paths), stage B with its
real checkpoint (key mapping, dequantisation, sharding, load-time stability); each stage counts only
if vLLM answers real requests, and a server that comes up and then fails its first request is a
failure ("false ready"), not a pass. What was measured becomes the artifacts a model adaptation
ships: a feature matrix, a dummy-vs-real validation matrix, a test config YAML and a tutorial page.

Modules, one idea each: ``model_info`` (what the checkpoint is, read before anything starts),
``serve_flags`` (the ``vllm serve`` flags of each stage), ``image`` (a test image made locally),
``probes`` (the OpenAI-compatible requests), ``logscan`` (evidence lines from vLLM's log),
``stage`` (one served stage, start to no-orphan stop), ``features`` (the two matrices),
``accuracy`` (lm-eval results), ``render`` (smoke.json / smoke.md), ``artifacts`` (YAML, tutorial),
``progress`` (what a long run is waiting for), ``runner`` (the whole run and its exit code).
"""
