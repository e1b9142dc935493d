# Two commands for a new user: `make run` and `make test`. Both set up .venv from the lock first.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready

.PHONY: setup run test test-faults test-fast lint format bench bench-quality clean help
.DEFAULT_GOAL := help

help: ## Show these targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: $(READY) ## Create .venv and install the pinned stack from requirements.lock (no resolution)

$(READY): requirements.lock setup.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Error: $(PYTHON) must be CPython 3.11 (TFX 1.16's compiled wheels); set PYTHON=python3.11"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned TFX stack into $(VENV) (a few minutes the first time)..."
	@# pip compiles the bytecode (not --no-compile): where PYTHONDONTWRITEBYTECODE is set, as in CI here, nothing else
	@# would, and every process would compile TensorFlow and TFX from source again (make test was far slower)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --use-pep517 -e .
	@touch $(READY)

run: $(READY) ## Run the whole pipeline on data/ and push a blessed model to outputs/serving/
	$(VENV)/bin/tfxp run

# Test files run side by side, one per CPU (measured on 2 cores: a third worker made the suite 5 minutes
# slower, its TensorFlow processes competing for the cores).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)))')
# In collection order (conftest puts pipeline files first): xdist would otherwise start the files with most tests
# first, and the one-test fault chains, the longest of all, last.
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test: $(READY) ## Run the unit, end-to-end and fault-injection tests, test files side by side
	$(VENV)/bin/python -m pytest $(PYTEST_PARALLEL) tests

test-faults: $(READY) ## Run only the fault-injection suite (tests/faults/): crashes, kills, corrupt state
	$(VENV)/bin/python -m pytest $(PYTEST_PARALLEL) tests -m faults

test-fast: $(READY) ## Run the tests that start no pipeline and train no whole model (under 2 minutes)
	$(VENV)/bin/python -m pytest tests -m "not pipeline and not slow"

lint: $(READY) ## Check lint and formatting with ruff (as CI does)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(READY) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(READY) ## Time the pipeline against a plain Keras script (about 15 min); writes bench/RESULTS.md
	$(VENV)/bin/python -m bench

bench-quality: $(READY) ## Model quality on 13 bundled public tables against gradient boosting (about 30 min); writes bench/QUALITY.md
	$(VENV)/bin/python -m bench.quality

clean: ## Delete pipeline outputs (outputs/); keeps .venv
	rm -rf outputs
