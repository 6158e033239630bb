"""main2main: follow vLLM's main branch without importing it.

Moving the overlay to a new vLLM is mostly finding out, fast, which patches the new code breaks and
what changed around them. Everything here reads vLLM *source* (an installed package, a wheel, an
unpacked tree, a released version, a git commit) so versions that cannot run on this machine can still
be judged. What is judged is a *subject* (``subjects``): the overlay itself, or any plugin's package
directory (``--plugin``), read by the same code. Modules: ``sources`` (where a vLLM tree comes from),
``tree`` (lazy static loading),
``fingerprints`` (static contract texts), ``targets`` (what the overlay relies on), ``check``,
``drift`` and ``api_diff`` (what changed), ``priorities``, ``report_md``, ``gitmode``, ``verified``,
``progress`` (a status line on a terminal) and ``evaluation`` (the score on vllm-ascend's history).
"""
