# Entry points shared by people and CI (.ci/run calls `make test`).
PYTHON ?= python3

.PHONY: run install install-dev check test proto verify-proto

run: install          ## install, then serve on 127.0.0.1:2379 with SQLite at ./db/state.db
	kine-py

install:
	$(PYTHON) -m pip install -q .

install-dev:
	$(PYTHON) -m pip install -q -e '.[dev]'

check: install-dev    ## format, lint, strict types
	ruff format --check kine_py tests scripts
	ruff check kine_py tests scripts
	mypy

test: check           ## everything CI runs: checks, then the whole suite against real servers
	$(PYTHON) -m pytest

proto:                ## regenerate kine_py/_pb from proto/
	$(PYTHON) -m scripts.genproto

verify-proto:
	$(PYTHON) -m pytest tests/unit/test_proto_fresh.py
