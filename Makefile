# Two commands matter on a fresh machine: `make demo` and `make test`.
# Both create the virtualenv and install everything first; only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench reliability siro-server clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python dev/demo.py

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python dev/bench.py

reliability: $(STAMP)
	$(BIN)/python dev/reliability.py

siro-server: $(STAMP)
	$(BIN)/python -m airflow_provider_siro.testing.server

clean:
	rm -rf $(VENV) .build
