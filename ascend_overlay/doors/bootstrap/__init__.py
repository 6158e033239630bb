"""The directory ``ascend-overlay run`` puts first on PYTHONPATH; it holds the sitecustomize hook."""
