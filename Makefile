# Two commands for a newcomer: `make setup` (optional) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speedlab-installed

.PHONY: setup test test-slow lint format bench-data clean

setup: $(STAMP)

# The venv is rebuilt only when the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test: setup
	$(PY) -m pytest -m "not slow" -q

# pytest exits 5 when nothing is selected (no slow tests yet): that is not a failure here.
test-slow: setup
	$(PY) -m pytest -m slow -q; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench-data: setup
	$(PY) scripts/bench_data.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
