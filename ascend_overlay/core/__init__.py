"""The core: the patch model and the pipeline every patch takes (load, plan, apply, report),
the words it answers in, and the trust rules for patches from outside the release.
Nothing here knows how it is reached from a vLLM process: that is ``doors/``.
"""
