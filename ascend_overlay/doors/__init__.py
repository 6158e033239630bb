"""The doors: every way the overlay gets into a vLLM process (the interpreter-start hooks,
vLLM's general-plugin entry point, the engine-core override, the import hooks, Ray's workers), and
the one activation they all call.
"""
