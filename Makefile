# spgd: `make demo` sets up a virtual environment and restores a bundled photo; `make test` runs the tests;
# `make test-quick` runs them without the slow ones (torchrun, training, the bundled prior end to end).
# Bring your own torch (e.g. a CUDA build): install it into the venv first, or set TORCH= to skip; the
# default installs the CPU build torch==2.13.0.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install demo test test-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# keep a torch that is already there (a user's CUDA build); otherwise install $(TORCH)
	$(PY) -c "import torch" 2>/dev/null || { test -z "$(TORCH)" || $(PY) -m pip install -q "$(TORCH)"; }
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/spgd demo

test: install
	$(PY) -m pytest

test-quick: install
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache build src/*.egg-info
