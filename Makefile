# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create the virtualenv and install everything first; only Python 3.11+ and make are needed.
# Installs compile the bytecode (--compile-bytecode): the suite starts many Airflow processes, and where
# PYTHONDONTWRITEBYTECODE is set each would otherwise compile Airflow from source again.
# `make test` runs the suite twice: on the newest Airflow 3 (.venv, which everything else uses too) and on
# Airflow 2.11 (.venv-airflow2), the two ends of what the package supports; then tests/test_smoke.py on
# Airflow 3.0, 3.1 and 3.2 (.venv-airflow30/31/32), each with the provider installed from its built wheel.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
AIRFLOW2_VERSION ?= 2.11.2
VENV2  := .venv-airflow2
STAMP2 := $(VENV2)/.installed-stamp
# The lines in between: each newest patch, installed with the dependencies of its release (uv's
# --exclude-newer, a day after it; Airflow's constraints files do the same but cannot be fetched here),
# except common-compat, which the provider needs newer than those Airflows shipped with.
SMOKE_LINES := 30 31 32
AIRFLOW30_VERSION ?= 3.0.6
AIRFLOW30_RELEASED ?= 2025-08-30
AIRFLOW31_VERSION ?= 3.1.8
AIRFLOW31_RELEASED ?= 2026-03-12
AIRFLOW32_VERSION ?= 3.2.2
AIRFLOW32_RELEASED ?= 2026-05-30
COMMON_COMPAT_RELEASED ?= 2026-12-04
SMOKE_STAMPS := $(foreach line,$(SMOKE_LINES),.venv-airflow$(line)/.installed-stamp)
# make dist: the wheel and sdist in dist/, rebuilt when the package's files change.
DIST_STAMP := dist/.built-stamp
PACKAGE_FILES := $(shell find airflow_provider_siro -name '*.py' -o -name py.typed) pyproject.toml README.md LICENSE NOTICE MANIFEST.in \
	CHANGELOG.md $(wildcard docs/*) $(wildcard example_dags/*.py)

.PHONY: demo test lint docs dist bench reliability siro-server clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'uv>=0.8'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e . --group dev
	@touch $(STAMP)

$(STAMP2): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip 'uv>=0.8'
	$(VENV2)/bin/uv pip install --quiet --compile-bytecode --python $(VENV2)/bin/python -e . --group test 'apache-airflow==$(AIRFLOW2_VERSION)'
	@touch $(STAMP2)

.venv-airflow%/.installed-stamp: $(DIST_STAMP)
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv .venv-airflow$*
	.venv-airflow$*/bin/python -m pip install --quiet --upgrade pip uv
	.venv-airflow$*/bin/uv pip install --quiet --compile-bytecode --python .venv-airflow$*/bin/python \
		--exclude-newer $(AIRFLOW$*_RELEASED) \
		--exclude-newer-package apache-airflow-providers-common-compat=$(COMMON_COMPAT_RELEASED) \
		--reinstall-package airflow-provider-siro \
		dist/*.whl 'apache-airflow==$(AIRFLOW$*_VERSION)' 'pytest>=8'
	@touch $@

demo: $(STAMP)
	$(BIN)/python dev/demo.py

test: $(STAMP) $(STAMP2) $(SMOKE_STAMPS) lint docs dist
	@mkdir -p .build
	@echo "== make test, leg 1 of 5: the whole suite on Airflow $$($(BIN)/python -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
	set -o pipefail; SIRO_DIST_DIR=$(CURDIR)/dist $(BIN)/python -m pytest 2>&1 | tee .build/test-airflow3.log
	@echo "== make test, leg 2 of 5: the whole suite on Airflow $$($(VENV2)/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
	set -o pipefail; SIRO_DIST_DIR=$(CURDIR)/dist $(VENV2)/bin/python -m pytest 2>&1 | tee .build/test-airflow2.log
	@leg=3; for line in $(SMOKE_LINES); do \
		echo "== make test, leg $$leg of 5: the built wheel on Airflow $$(.venv-airflow$$line/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow"))') (tests/test_smoke.py)"; \
		set -o pipefail; SIRO_TESTS_FROM_WHEEL=1 .venv-airflow$$line/bin/python -P -m pytest tests/test_smoke.py 2>&1 \
			| tee .build/test-airflow$$line.log || exit 1; \
		leg=$$((leg + 1)); \
	done
	@$(BIN)/python dev/test_summary.py "Airflow 3 leg=.build/test-airflow3.log" "Airflow 2.11 leg=.build/test-airflow2.log" \
		$(foreach line,$(SMOKE_LINES),"Airflow $(AIRFLOW$(line)_VERSION) wheel leg=.build/test-airflow$(line).log")

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (docs/), warnings as errors; -E re-reads every page, so a warning is never hidden
# by an earlier build's cache.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -E -q -b html docs .build/docs
	@echo "Documentation: .build/docs/index.html"

# The wheel and sdist in dist/, built by `python -m build` (the sdist, then the wheel from it), then
# `twine check`; tests/test_packaging.py checks them and the Airflow-version smoke legs install this wheel.
dist: $(DIST_STAMP)

$(DIST_STAMP): $(PACKAGE_FILES) $(STAMP)
	rm -rf dist
	@mkdir -p .build
	$(BIN)/python -m build --installer uv --outdir dist . > .build/dist.log 2>&1 || (cat .build/dist.log; exit 1)
	$(BIN)/python -m twine check --strict dist/*.whl dist/*.tar.gz
	@touch $@

bench: $(STAMP)
	$(BIN)/python dev/bench.py
	$(BIN)/python dev/bench_bulk.py
	$(BIN)/python dev/bench_rate_backend.py

reliability: $(STAMP)
	$(BIN)/python dev/reliability.py

siro-server: $(STAMP)
	$(BIN)/python -m airflow_provider_siro.testing serve

clean:
	rm -rf $(VENV) $(VENV2) $(foreach line,$(SMOKE_LINES),.venv-airflow$(line)) .build build dist
