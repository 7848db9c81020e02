# make demo / make test / make bench work on a fresh clone: each builds .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/graphtune demo

test: $(STAMP)
	$(PY) -m pytest -q

# Browser tests of the web view in Debian's chromium (apt-get install -y chromium); screenshots to docs/screenshots
e2e: $(STAMP)
	GRAPHTUNE_E2E=required GRAPHTUNE_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/e2e

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .graphtune .pytest_cache .hypothesis
