"""Several kine-py processes on one PostgreSQL or MariaDB database.

Runs only when KINE_TEST_BACKEND is postgres or mysql (marker ``shared``; CI runs
it for both). Each test starts its replicas on one fresh database.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.testing import databases
from kine_py.testing.processes import ServerProcess, kine_process

pytestmark = [pytest.mark.shared, pytest.mark.timeout(300)]


@pytest.fixture
def replicas(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    which = databases.backend()
    if which == "sqlite":
        pytest.skip("replicas need KINE_TEST_BACKEND=postgres or mysql")
    endpoint = databases.endpoint_for(tmp_path / "db", which)
    count = getattr(request, "param", 3)
    servers = [kine_process(tmp_path / f"r{i}", endpoint=endpoint) for i in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def kv(server: ServerProcess) -> rpc.KVStub:
    return rpc.KVStub(grpc.insecure_channel(server.endpoint))


def cas_increment(stub: rpc.KVStub, key: bytes) -> tuple[bool, int]:
    """One optimistic update, as kube-apiserver does it: read, then MOD(key) == rev ? put."""
    got = stub.Range(pb.RangeRequest(key=key))
    rev, value = (got.kvs[0].mod_revision, int(got.kvs[0].value)) if got.kvs else (0, 0)
    resp = stub.Txn(
        pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=rev)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"%d" % (value + 1)))],
        )
    )
    return resp.succeeded, resp.header.revision


def watch_all(server: ServerProcess, until: int) -> list[tuple[int, bytes, bytes]]:
    """Every event from revision 1 to ``until`` as (revision, key, value), read on ``server``."""
    create = pb.WatchCreateRequest(key=b"\0", range_end=b"\0", start_revision=1)
    stream = rpc.WatchStub(grpc.insecure_channel(server.endpoint)).Watch(
        iter([pb.WatchRequest(create_request=create)]), timeout=60
    )
    events: list[tuple[int, bytes, bytes]] = []
    for resp in stream:
        events.extend((e.kv.mod_revision, e.kv.key, e.kv.value) for e in resp.events)
        if events and events[-1][0] >= until:
            break
    stream.cancel()
    return events


@pytest.mark.parametrize("replicas", [2, 3], indirect=True)
def test_racing_updates_through_replicas_give_one_gapless_history(replicas: list[ServerProcess]) -> None:
    stubs = [kv(server) for server in replicas]
    acked: list[tuple[int, bytes]] = []
    wins = [0]
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(60):
            stub = rng.choice(stubs)
            if i % 3:
                ok, rev = cas_increment(stub, b"counter")
                with lock:
                    wins[0] += ok
            else:
                key = b"k/%d/%d" % (seed, i)
                rev = stub.Put(pb.PutRequest(key=key, value=key)).header.revision
                with lock:
                    acked.append((rev, key))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    final = stubs[0].Range(pb.RangeRequest(key=b"counter"))
    assert int(final.kvs[0].value) == wins[0], "every successful CAS increments exactly once"
    top = max(s.Range(pb.RangeRequest(key=b"counter")).header.revision for s in stubs)
    histories = [watch_all(server, top) for server in replicas]
    assert all(history == histories[0] for history in histories)
    revisions = sorted({rev for rev, _, _ in histories[0]})
    assert revisions == list(range(2, top + 1)), "gapless, one revision per committed write"
    written = {(rev, key) for rev, key, _ in histories[0]}
    assert all(item in written for item in acked), "every acknowledged write is in the history"


def test_cross_replica_watch_latency(replicas: list[ServerProcess]) -> None:
    writer, watcher = kv(replicas[0]), replicas[1]
    create = pb.WatchCreateRequest(key=b"lat/", range_end=b"lat0")
    requests = iter([pb.WatchRequest(create_request=create)])
    stream = rpc.WatchStub(grpc.insecure_channel(watcher.endpoint)).Watch(requests, timeout=60)
    assert next(stream).created
    latencies = []
    for i in range(100):
        started = time.perf_counter()
        writer.Put(pb.PutRequest(key=b"lat/%d" % i, value=b"x"))
        resp = next(stream)
        latencies.append(time.perf_counter() - started)
        assert resp.events[0].kv.key == b"lat/%d" % i
    stream.cancel()
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[98]
    backend = databases.backend()
    print(f"\ncross-replica watch latency ({backend}): p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p50 < 1.0


def test_killed_replica_others_carry_on_and_expire_its_leases(replicas: list[ServerProcess]) -> None:
    lease = rpc.LeaseStub(grpc.insecure_channel(replicas[0].endpoint))
    granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3))
    kv(replicas[0]).Put(pb.PutRequest(key=b"ephemeral", value=b"v", lease=granted.ID))
    acked: list[tuple[bytes, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        stub, i = kv(replicas[n % 3]), 0
        while not stop.is_set():
            key = b"load/%d/%d" % (n, i)
            try:
                rev = stub.Put(pb.PutRequest(key=key, value=key), timeout=5).header.revision
            except grpc.RpcError:
                continue  # writes through the killed replica fail; that is expected
            with lock:
                acked.append((key, rev))
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    replicas[0].kill()  # mid-load; it was the first started, so it held the leader lock
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()

    survivor = kv(replicas[1])
    for key, rev in acked:
        got = survivor.Range(pb.RangeRequest(key=key)).kvs
        assert got and got[0].mod_revision == rev, f"acknowledged {key!r}@{rev} is missing"
    assert kv(replicas[2]).Put(pb.PutRequest(key=b"after", value=b"v")).header.revision > 0
    deadline = time.monotonic() + 15
    while survivor.Range(pb.RangeRequest(key=b"ephemeral")).count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivor.Range(pb.RangeRequest(key=b"ephemeral")).count == 0, "lease expiry moved over"
