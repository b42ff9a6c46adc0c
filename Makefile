# spgd: `make demo` sets up a virtual environment and restores a bundled photo; `make test` runs the tests;
# `make test-quick` runs them without the slow ones (torchrun, training, the bundled prior end to end, the app in
# a browser). `make test` also installs Chromium from the system's packages (apt-get) when it is missing: the
# browser tests drive it through Playwright, which downloads no browser of its own.
# Bring your own torch (e.g. a CUDA build): install it into the venv first, or set TORCH= to skip; the
# default installs the CPU build torch==2.13.0.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install install-test browser demo test test-quick clean

# the package alone (what `make demo` and the commands need); the tests' extras (diffusers, Gradio, Playwright,
# Jupyter) only for `make test`
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# keep a torch that is already there (a user's CUDA build); otherwise install $(TORCH)
	$(PY) -c "import torch" 2>/dev/null || { test -z "$(TORCH)" || $(PY) -m pip install -q "$(TORCH)"; }
	$(PY) -m pip install -q -e .
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/spgd demo

# the system's Chromium for tests/app (as root, or through sudo); CHROMIUM= skips the install
CHROMIUM ?= chromium
browser:
	@test -z "$(CHROMIUM)" || command -v $(CHROMIUM) >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing $(CHROMIUM) for the browser tests (apt-get)"; \
	  if [ "$$(id -u)" -eq 0 ]; then S=; else S=sudo; fi; \
	  $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM); }

test: install-test browser
	$(PY) -m pytest

test-quick: install-test
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache build src/*.egg-info
