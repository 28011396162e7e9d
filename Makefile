# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create the virtualenv and install everything first; only Python 3.11+ and make are needed.
# `make test` runs the suite twice: on the newest Airflow 3 (.venv, which everything else uses too) and on
# Airflow 2.11 (.venv-airflow2), the two ends of what the package supports.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
AIRFLOW2_VERSION ?= 2.11.2
VENV2  := .venv-airflow2
STAMP2 := $(VENV2)/.installed-stamp

.PHONY: demo test lint docs dist bench reliability siro-server clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'uv>=0.8'
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e . --group dev
	@touch $(STAMP)

$(STAMP2): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip 'uv>=0.8'
	$(VENV2)/bin/uv pip install --quiet --python $(VENV2)/bin/python -e . --group test 'apache-airflow==$(AIRFLOW2_VERSION)'
	@touch $(STAMP2)

demo: $(STAMP)
	$(BIN)/python dev/demo.py

test: $(STAMP) $(STAMP2) lint docs dist
	@mkdir -p .build
	@echo "== make test, leg 1 of 2: Airflow $$($(BIN)/python -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
	set -o pipefail; SIRO_DIST_DIR=$(CURDIR)/dist $(BIN)/python -m pytest 2>&1 | tee .build/test-airflow3.log
	@echo "== make test, leg 2 of 2: Airflow $$($(VENV2)/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
	set -o pipefail; SIRO_DIST_DIR=$(CURDIR)/dist $(VENV2)/bin/python -m pytest 2>&1 | tee .build/test-airflow2.log
	@$(BIN)/python dev/test_summary.py "Airflow 3 leg=.build/test-airflow3.log" "Airflow 2.11 leg=.build/test-airflow2.log"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site (docs/), warnings as errors; -E re-reads every page, so a warning is never hidden
# by an earlier build's cache.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -E -q -b html docs .build/docs
	@echo "Documentation: .build/docs/index.html"

# The wheel and sdist in dist/, built from a clean copy by `python -m build`, then `twine check`; tests
# (tests/test_packaging.py) and the Airflow-version smoke legs install this wheel.
dist: $(STAMP)
	rm -rf dist
	@mkdir -p .build
	$(BIN)/python -m build --installer uv --outdir dist . > .build/dist.log 2>&1 || (cat .build/dist.log; exit 1)
	$(BIN)/python -m twine check --strict dist/*
	@ls dist

bench: $(STAMP)
	$(BIN)/python dev/bench.py
	$(BIN)/python dev/bench_bulk.py
	$(BIN)/python dev/bench_rate_backend.py

reliability: $(STAMP)
	$(BIN)/python dev/reliability.py

siro-server: $(STAMP)
	$(BIN)/python -m airflow_provider_siro.testing.server

clean:
	rm -rf $(VENV) $(VENV2) .build dist
