# make demo / make test / make bench work on a fresh clone with only Python and make: each builds .venv
# first, from the lock (requirements/dev.txt: every package pinned at the versions tested together).
# pip bootstraps uv (the lock's pinned version) into the venv; uv installs the lock. After changing
# the dependencies in pyproject.toml, `make lock` rewrites requirements/*.txt (docs/install.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt
LOCK_FLAGS := --universal --python-version 3.11 --custom-compile-command "make lock" --quiet

.PHONY: install lock demo test e2e bench docs clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$$(grep -m1 '^uv==' $(LOCK))"

$(STAMP): $(LOCK) pyproject.toml | $(UV)
	$(UV) pip sync --quiet --python $(PY) $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# pins every package anew where pyproject.toml allows (existing pins are kept where they still fit;
# `make lock UPGRADE=--upgrade` moves everything to the newest allowed versions)
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) -o requirements/dev.txt
	$(UV) pip compile pyproject.toml -c requirements/dev.txt $(LOCK_FLAGS) -o requirements/core.txt

demo: $(STAMP)
	$(VENV)/bin/graphtune demo

test: $(STAMP)
	$(PY) -m pytest -q

# Browser tests of the web view in Debian's chromium (apt-get install -y chromium); screenshots to docs/screenshots
e2e: $(STAMP)
	GRAPHTUNE_E2E=required GRAPHTUNE_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/e2e

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# the documentation site (mkdocs.yml; home page README.md) into site/; a warning fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site .graphtune .pytest_cache .hypothesis
