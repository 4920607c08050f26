# teuthology-maas: every target sets up what it needs (virtualenv, Debian packages).
SHELL := /bin/sh
PYTHON := $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo demo-suite lint typecheck docs unit bench soak clean system-packages venv

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python >= 3.12 found" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[simulator,dev]'
	@touch $(STAMP)

venv: $(STAMP)

system-packages:
	@scripts/ensure-system-packages

lint: $(STAMP)
	$(BIN)/ruff check teuthology_maas tests bench scripts
typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

unit: $(STAMP) system-packages
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck docs unit

demo: $(STAMP)
	$(BIN)/teuthology-maas demo $(DEMO_ARGS)

# teuthology-suite -> beanstalkd -> teuthology-dispatcher -> supervisors (needs root, ~1-2 min)
demo-suite: $(STAMP) system-packages
	$(BIN)/teuthology-maas demo --suite

bench: $(STAMP)
	$(BIN)/python bench/fleet_bench.py $(BENCH_ARGS)

soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .venv-libmaas .mypy_cache .pytest_cache .ruff_cache
