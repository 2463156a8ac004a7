# The two set-up commands of the README: `make quickstart` and `make test`.
# Both create .venv and install everything on first use (torch first, pinned:
# see README "PyTorch: CPU or CUDA").

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
PIP := $(VENV)/bin/python -m pip
STAMP := $(VENV)/.surveyproc-installed

.PHONY: install quickstart test lint results clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/surveyproc run jobs/quickstart.yaml

# docs/results.md from the benchmarks' raw results (docs/results/*.json)
results: $(STAMP)
	$(VENV)/bin/python benchmarks/report.py

lint: $(STAMP)
	$(VENV)/bin/ruff check surveyproc tests benchmarks docs
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest --doctest-modules surveyproc tests

clean:
	rm -rf $(VENV) work .pytest_cache .ruff_cache
