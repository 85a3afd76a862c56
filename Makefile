# `make demo`, `make test` and `make docs` work on a fresh machine: each creates .venv and installs
# what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# 4 host devices for the multi-device tests; collective rendezvous timeouts (XLA aborts the
# process after 40 s by default) that a busy machine cannot reach (see tests/conftest.py).
export XLA_FLAGS := --xla_force_host_platform_device_count=4 \
	--xla_cpu_collective_call_warn_stuck_timeout_seconds=600 \
	--xla_cpu_collective_call_terminate_timeout_seconds=3600 \
	--xla_cpu_collective_timeout_seconds=3600
# pytest arguments: two xdist workers keep the suite inside 10 minutes on 2 cores; `make test
# PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-torch-latest lint bench docs docs-check chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps keyed on pyproject.toml so repeated runs skip the install.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed-demo

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# `make test-torch-latest`: the torch-parity tests against the newest torch installable here
# (TORCH_LATEST), in its own environment .venv-torch-latest (the test extras, with torch
# replaced): the parity tests, those driven by torch's own optim_db (which brings that torch's
# new inputs) and the TestOptimRenewed ports. The torch wheel is a CUDA build (~5.5 GB with its
# nvidia-* dependencies); the tests run on the CPU.
TORCH_LATEST ?= 2.14.1
LATEST_VENV := .venv-torch-latest
LATEST_BIN := $(LATEST_VENV)/bin
LATEST_TESTS ?= tests/test_parity.py tests/test_torch_2_14.py tests/test_torch_renewed_errors.py \
	tests/test_torch_renewed_hooks.py tests/test_torch_renewed_state.py \
	tests/test_torch_renewed_steps.py tests/test_torch_state_dict_export.py \
	tests/test_torch_signatures.py tests/test_lbfgs.py tests/test_one_cycle_functional.py

$(LATEST_BIN)/python:
	$(PYTHON) -m venv $(LATEST_VENV)

$(LATEST_VENV)/.installed-$(TORCH_LATEST): pyproject.toml | $(LATEST_BIN)/python
	$(LATEST_BIN)/python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
		print('\n'.join(r for r in d['project']['optional-dependencies']['test'] \
		if not r.startswith('torch')))" > $(LATEST_VENV)/requirements-test.txt
	$(LATEST_BIN)/pip install -q -e . -r $(LATEST_VENV)/requirements-test.txt \
		"torch==$(TORCH_LATEST)"
	touch $@

test-torch-latest: $(LATEST_VENV)/.installed-$(TORCH_LATEST)
	$(LATEST_BIN)/python -c "import torch; print('torch', torch.__version__)"
	$(LATEST_BIN)/python -m pytest -q $(PYTEST_ARGS) $(LATEST_TESTS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check optx tests benchmarks examples
	$(BIN)/mypy optx

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_adapter.py

# The site: warnings are errors, references nitpicky (an undescribed argument is one); then
# every internal link, anchor and public name's page is checked, and every API entry's
# description and the absence of raw LaTeX. Open docs/_build/html/index.html.
docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	$(BIN)/python docs/check_links.py docs/_build/html
	$(BIN)/python docs/check_content.py docs/_build/html

# The built site (make docs first) in headless Chromium: formulas render and fit, images load,
# nothing is wider than the content column, one search box. Chromium is the docs' one system
# dependency: Debian's chromium package, installed here when missing (as root, with apt-get);
# without it the check fails. CHROMIUM=/path/to/chrome uses another build.
docs-check: $(VENV)/.installed-docs
	@if [ -z "$$CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory chromium; fi
	$(BIN)/python docs/check_browser.py docs/_build/html

chromium:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium package (docs-check's browser)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "docs-check needs Chromium: apt-get install chromium (as root), or set CHROMIUM" >&2; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/generated docs/notebooks
