# care-episodes developer tasks (GNU make).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV = .venv
BIN = $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install test demo bench clean

help:
	@echo "make install  - create $(VENV) and install care-episodes with [dev,postgres] extras"
	@echo "make test     - run the test suite (PYTEST_ARGS='...' to pass options to pytest)"
	@echo "make demo     - seed demo data into care-episodes.db, print the demo logins, serve the panel"
	@echo "make bench    - run the benchmarks on SQLite and PostgreSQL (BENCH_ARGS='--quick --json' for a short run)"
	@echo "make clean    - remove $(VENV), caches, egg-info and local care-episodes.db* files"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev,postgres]'
	touch $@

install: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed-dev
	$(BIN)/care-episodes demo
	$(BIN)/care-episodes serve

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
	rm -f care-episodes.db*
