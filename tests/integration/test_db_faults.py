"""The database goes away under kine-py (a network cut through a TCP proxy) and comes back."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py._pb.grpc.health.v1 import health_pb2, health_pb2_grpc
from kine_py.testing import databases
from kine_py.testing.processes import ServerProcess, free_port, kine_process
from kine_py.testing.proxy import TcpProxy

pytestmark = [pytest.mark.shared, pytest.mark.timeout(180)]
UPSTREAM = {"postgres": ("127.0.0.1", 5432), "mysql": ("127.0.0.1", 3306)}


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[ServerProcess, TcpProxy]]:
    which = databases.backend()
    if which == "sqlite":
        pytest.skip("needs KINE_TEST_BACKEND=postgres or mysql")
    proxy = TcpProxy(UPSTREAM[which])
    direct = databases.endpoint_for(tmp_path, which)
    host = "{}:{}".format(*UPSTREAM[which])
    endpoint = direct.replace(host, f"127.0.0.1:{proxy.port}", 1)
    metrics = free_port()
    server = kine_process(
        tmp_path, "--metrics-bind-address", f"127.0.0.1:{metrics}", endpoint=endpoint
    ).start()
    server.metrics_port = metrics  # type: ignore[attr-defined]
    try:
        yield server, proxy
    finally:
        server.stop()
        proxy.close()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def until_ok(call: object, timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()  # type: ignore[operator]
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_network_cut_fails_fast_then_recovers_with_nothing_lost(
    proxied: tuple[ServerProcess, TcpProxy],
) -> None:
    server, proxy = proxied
    kv = rpc.KVStub(grpc.insecure_channel(server.endpoint))
    create = pb.WatchCreateRequest(key=b"f/", range_end=b"f0")
    stream = rpc.WatchStub(grpc.insecure_channel(server.endpoint)).Watch(
        iter([pb.WatchRequest(create_request=create)]), timeout=120
    )
    assert next(stream).created
    before = kv.Put(pb.PutRequest(key=b"f/1", value=b"a")).header.revision

    proxy.cut()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b"f/2", value=b"b"), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "kine-py" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        kv.Range(pb.RangeRequest(key=b"f/1"), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 15, "fails fast"
    # Served from memory without the database:
    assert kv.Range(pb.RangeRequest(key=b"f/1", serializable=True)).kvs[0].value == b"a"
    assert server.proc is not None and server.proc.poll() is None, "the process keeps running"
    readyz = f"http://127.0.0.1:{server.metrics_port}/readyz"  # type: ignore[attr-defined]
    assert http_status(readyz) == 503
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.endpoint))
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == not_serving

    proxy.restore()
    after = until_ok(lambda: kv.Put(pb.PutRequest(key=b"f/3", value=b"c")))
    assert isinstance(after, pb.PutResponse)
    assert after.header.revision == before + 1, "the failed write took no revision"
    assert http_status(readyz) == 200
    time.sleep(1.1)  # the health service checks the backend at most once a second
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == serving
    got = kv.Range(pb.RangeRequest(key=b"f/", range_end=b"f0"))
    assert [(x.key, x.value) for x in got.kvs] == [(b"f/1", b"a"), (b"f/3", b"c")]
    events = []
    for resp in stream:
        events.extend(e.kv.key for e in resp.events)
        if b"f/3" in events:
            break
    stream.cancel()
    assert events == [b"f/1", b"f/3"], "the watch stayed open and saw exactly what committed"
