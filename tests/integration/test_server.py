"""kine-py as a process: group commit, restart, history after restart, unimplemented RPCs, health."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py._pb.grpc.health.v1 import health_pb2, health_pb2_grpc
from kine_py.testing.processes import ServerProcess, kine_process

pytestmark = pytest.mark.kine


def kv(server: ServerProcess) -> rpc.KVStub:
    return rpc.KVStub(grpc.insecure_channel(server.endpoint))


def test_concurrent_writes_get_distinct_gapless_revisions(kine: ServerProcess) -> None:
    stub = kv(kine)

    def put(i: int) -> int:
        return int(stub.Put(pb.PutRequest(key=b"k%04d" % i, value=b"v")).header.revision)

    with ThreadPoolExecutor(32) as pool:
        revisions = sorted(pool.map(put, range(500)))
    assert revisions == list(range(2, 502))
    assert stub.Range(pb.RangeRequest(key=b"k", range_end=b"l", count_only=True)).count == 500


def test_restart_keeps_data_history_and_compaction(tmp_path: Path) -> None:
    server = kine_process(tmp_path).start()
    stub = kv(server)
    for i in range(1, 6):
        stub.Put(pb.PutRequest(key=b"a", value=b"v%d" % i))  # revisions 2..6
    stub.Put(pb.PutRequest(key=b"b", value=b"x"))  # 7
    stub.DeleteRange(pb.DeleteRangeRequest(key=b"b"))  # 8
    stub.Compact(pb.CompactionRequest(revision=3, physical=True))
    assert server.stop() == 0

    server = kine_process(tmp_path).start()
    try:
        stub = kv(server)
        assert stub.Range(pb.RangeRequest(key=b"a")).header.revision == 8
        # Old values were released from memory at start: they come from SQLite.
        old = stub.Range(pb.RangeRequest(key=b"a", revision=4)).kvs[0]
        assert (old.value, old.mod_revision, old.version) == (b"v3", 4, 3)
        assert stub.Range(pb.RangeRequest(key=b"b", revision=7)).kvs[0].value == b"x"
        with pytest.raises(grpc.RpcError) as err:
            stub.Range(pb.RangeRequest(key=b"a", revision=2))
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert err.value.details() == "etcdserver: mvcc: required revision has been compacted"
        with pytest.raises(grpc.RpcError):
            stub.Compact(pb.CompactionRequest(revision=3))
    finally:
        server.stop()


def test_unimplemented_rpcs_say_what_is_missing(kine: ServerProcess) -> None:
    channel = grpc.insecure_channel(kine.endpoint)
    with pytest.raises(grpc.RpcError) as err:
        rpc.AuthStub(channel).AuthEnable(pb.AuthEnableRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Auth/AuthEnable" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        rpc.MaintenanceStub(channel).Defragment(pb.DefragmentRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Maintenance/Defragment" in (err.value.details() or "")


def test_health_service(kine: ServerProcess) -> None:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(kine.endpoint))
    resp = stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_client_keepalive_pings_every_5s_are_accepted(kine: ServerProcess) -> None:
    """kube-apiserver pings every 30 s; etcd allows down to 5 s. No GOAWAY may follow."""
    options = [
        ("grpc.keepalive_time_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    stub = rpc.KVStub(grpc.insecure_channel(kine.endpoint, options=options))
    deadline = time.monotonic() + 17
    while time.monotonic() < deadline:
        stub.Range(pb.RangeRequest(key=b"a"), timeout=5)
        time.sleep(4)
