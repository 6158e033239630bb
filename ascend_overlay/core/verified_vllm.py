"""The vLLM version (and commit) the overlay is verified against: the single source of truth.

Written by ``ascend-overlay verified --set VERSION [--commit SHA]``; edit with that command so the
format stays machine-readable. ``ascend-overlay check`` compares the vLLM it checks with this, and
``ascend-overlay drift verified NEW`` is the usual way to see what moving it would take.
"""

VERSION = '0.32.0'
COMMIT = '5df63a720'
VERIFIED_ON = '2026-11-23'
