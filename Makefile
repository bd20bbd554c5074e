# toolkit: every target installs what it needs first.  `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2
export DGLBACKEND := pytorch

.PHONY: help install demo test test-all lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install toolkit with pinned, CPU-only dependencies

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # the CPU wheel first, so nothing pulls CUDA builds
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install ## Run `toolkit cluster` on the bundled digits (meta-train 0-4, cluster 5-9) and print metrics
	$(VENV)/bin/toolkit cluster

test: install ## Fast test suite (no slow end-to-end runs)
	$(PY) -m pytest -m "not slow" -q

test-all: install ## Every test, including slow end-to-end runs on ../shared/data
	$(PY) -m pytest -q

lint: install ## Ruff
	$(VENV)/bin/ruff check toolkit tests benchmarks

bench: install ## All benchmarks (writes benchmarks/results/*.json; see docs/benchmarks.md)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache benchmarks/results
