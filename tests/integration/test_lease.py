"""Leases across time and restarts: expiry deletes keys (with watch events), restarts keep TTLs."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.testing.processes import kine_process

pytestmark = pytest.mark.kine


def stubs(endpoint: str) -> tuple[rpc.KVStub, rpc.LeaseStub, rpc.WatchStub]:
    channel = grpc.insecure_channel(endpoint)
    return rpc.KVStub(channel), rpc.LeaseStub(channel), rpc.WatchStub(channel)


def test_expiry_deletes_every_key_in_one_revision_with_events(tmp_path: Path) -> None:
    server = kine_process(tmp_path).start()
    try:
        kv, lease, watch = stubs(server.endpoint)
        granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2))
        for key in (b"e/1", b"e/2", b"e/3"):
            kv.Put(pb.PutRequest(key=key, value=b"v", lease=granted.ID))
        create = pb.WatchCreateRequest(key=b"e/", range_end=b"e0", prev_kv=True)
        responses = watch.Watch(iter([pb.WatchRequest(create_request=create)]), timeout=10)
        assert next(responses).created
        deleted = []
        for resp in responses:
            deleted.extend(resp.events)
            if len(deleted) == 3:
                break
        assert [e.type for e in deleted] == [1, 1, 1]
        assert [e.kv.key for e in deleted] == [b"e/1", b"e/2", b"e/3"]
        assert len({e.kv.mod_revision for e in deleted}) == 1
        assert all(e.prev_kv.lease == granted.ID for e in deleted)
        assert kv.Range(pb.RangeRequest(key=b"e/", range_end=b"e0")).count == 0
        ttl = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=granted.ID))
        assert ttl.TTL == -1
        responses.cancel()
    finally:
        server.stop()


def test_restart_keeps_remaining_ttls_and_revokes_what_expired(tmp_path: Path) -> None:
    server = kine_process(tmp_path).start()
    kv, lease, _ = stubs(server.endpoint)
    long = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30, ID=1))
    short = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3, ID=2))
    kv.Put(pb.PutRequest(key=b"long", value=b"v", lease=long.ID))
    kv.Put(pb.PutRequest(key=b"short", value=b"v", lease=short.ID))
    granted_at = time.monotonic()
    assert server.stop() == 0
    time.sleep(4)  # the short lease expires while the server is down

    server = kine_process(tmp_path).start()
    try:
        kv, lease, _ = stubs(server.endpoint)
        remaining = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=1, keys=True))
        expected = 30 - (time.monotonic() - granted_at)
        assert abs(remaining.TTL - expected) <= 1.5, (remaining.TTL, expected)
        assert list(remaining.keys) == [b"long"]
        deadline = time.monotonic() + 5
        while kv.Range(pb.RangeRequest(key=b"short")).count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kv.Range(pb.RangeRequest(key=b"short")).count == 0
        assert [item.ID for item in lease.LeaseLeases(pb.LeaseLeasesRequest()).leases] == [1]
        assert kv.Range(pb.RangeRequest(key=b"long")).count == 1
    finally:
        server.stop()


def test_keepalive_extends_and_put_to_revoked_lease_fails(tmp_path: Path) -> None:
    server = kine_process(tmp_path).start()
    try:
        kv, lease, _ = stubs(server.endpoint)
        granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2, ID=5))
        kv.Put(pb.PutRequest(key=b"k", value=b"v", lease=5))
        for _ in range(3):  # 3 s > TTL: alive only because of the keep-alives
            time.sleep(1)
            resp = next(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=granted.ID)])))
            assert resp.TTL == 2
        assert kv.Range(pb.RangeRequest(key=b"k")).count == 1
        lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=5))
        assert kv.Range(pb.RangeRequest(key=b"k")).count == 0
        with pytest.raises(grpc.RpcError) as err:
            kv.Put(pb.PutRequest(key=b"k", value=b"v", lease=5))
        assert err.value.details() == "etcdserver: requested lease not found"
    finally:
        server.stop()
