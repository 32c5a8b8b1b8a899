# Entry points shared by people and CI (.ci/run calls `make test`).
PYTHON ?= python3

# The etcd contract suite that also runs with every kine-py a member of a 3-replica Raft cluster.
# Deselected there: tests that assert a single member (endpoint status, member list).
RAFT_CONTRACT = tests/conformance/test_differential.py tests/conformance/test_watch_lease_differential.py \
	tests/integration/test_server.py \
	tests/integration/test_watch.py tests/integration/test_lease.py tests/integration/test_etcdctl.py \
	tests/integration/test_etcdctl_watch_lease.py \
	-k "not test_endpoint_status and not test_member_list"

# The SQLite pass runs 20 seeds of each differential test; the other backends share that
# logic above the dialect, so they run fewer (a PostgreSQL pass was 587 s with 20, of which
# the two differential tests took 330 s).
BACKEND_SEEDS = KINE_DIFF_SEEDS=6 KINE_WL_SEEDS=6
# The slowest tests of each pass, printed in CI's log.
DURATIONS = --durations=15

.PHONY: run install install-dev check test databases proto verify-proto

run: install          ## install, then serve on 127.0.0.1:2379 with SQLite at ./db/state.db
	kine-py

install:
	$(PYTHON) -m pip install -q .

install-dev:
	$(PYTHON) -m pip install -q -e '.[dev]'
	# Helm's Go library for the chart tests; it declares Python >= 3.12 but runs on 3.11.
	$(PYTHON) -m pip install -q --ignore-requires-python helm-sdkpy==0.1.32

check: install-dev    ## format, lint, strict types
	ruff format --check kine_py tests scripts
	ruff check kine_py tests scripts
	mypy

test: check databases ## everything CI runs: checks, then the suite on SQLite, PostgreSQL, MariaDB and Raft
	$(PYTHON) -m pytest -m "not shared" $(DURATIONS)
	KINE_TEST_BACKEND=postgres $(BACKEND_SEEDS) $(PYTHON) -m pytest -m "kine or shared" $(DURATIONS)
	KINE_TEST_BACKEND=mysql $(BACKEND_SEEDS) $(PYTHON) -m pytest -m "kine or shared" $(DURATIONS)
	KINE_TEST_BACKEND=raft KINE_DIFF_SEEDS=4 KINE_WL_SEEDS=3 $(PYTHON) -m pytest -m kine $(RAFT_CONTRACT) $(DURATIONS)

databases:            ## make sure PostgreSQL and MariaDB answer on loopback (starts or installs them)
	bash backends/postgres/start.sh
	bash backends/mysql/start.sh

proto:                ## regenerate kine_py/_pb from proto/
	$(PYTHON) -m scripts.genproto

verify-proto:
	$(PYTHON) -m pytest tests/unit/test_proto_fresh.py
