"""The main job on the embedded default: stock vLLM on CPU serving a tiny locally made model."""
