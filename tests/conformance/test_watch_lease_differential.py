"""Differential tests of Watch and Lease: kine-py must answer a seeded mix of KV, Watch and Lease
requests, and two fixed scripts (leases that really expire, fragmented watch responses), exactly
as etcd 3.5.1 does.

``KINE_WL_SEEDS`` overrides the seeds of the kine-vs-etcd test: a count (``5`` runs seeds 0..4),
a list (``3,7``) or a span (``10-14``). ``KINE_WL_OPS`` overrides the number of operations per
seed (default 2,000). A failure prints the report of :mod:`.watch_lease`;
``python -m tests.conformance.watch_lease --seed N`` replays one seed and
``python -m tests.conformance.watch_lease --script NAME`` one script.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kine_py._pb.etcdserverpb import rpc_pb2
from kine_py._pb.mvccpb import kv_pb2
from kine_py.testing.processes import ServerProcess, etcd_process

from .differential import KEYS, StoreView, ops_from_env, seeds_from_env
from .watch_lease import (
    SCRIPTS,
    LeaseIdMap,
    Report,
    WatchInfo,
    WatchLeaseGenerator,
    WatchRecord,
    bad_range,
    comparable_control,
    comparable_lease,
    is_progress,
    op_text,
    puts_then_deletes,
    run_script,
    run_watch_lease,
)

SELF_CHECK_SEEDS = (0, 1)
SELF_CHECK_OPS = 300


def fail_unless_ok(report: Report) -> None:
    """Fail the test with the report (first mismatches in full) if the servers disagreed or the harness
    could not run."""
    if not report.ok:
        pytest.fail(report.text(full=5), pytrace=False)


# ---------------------------------------------------------------------------
# The harness itself (no servers)
# ---------------------------------------------------------------------------


def fixed_view() -> StoreView:
    """A made-up store state with leases on some keys."""
    kvs = {
        key: kv_pb2.KeyValue(
            key=key, value=b"v", version=1, create_revision=3, mod_revision=9, lease=i % 3 * 50
        )
        for i, key in enumerate(KEYS)
    }
    return StoreView(revision=40, compact_revision=5, kvs=kvs)


def fixed_watches() -> list[WatchInfo]:
    """Made-up watches on the reference."""
    return [WatchInfo(1, 0, "open"), WatchInfo(1, 1, "compacted"), WatchInfo(2, 0, "canceled")]


def test_generator_is_deterministic():
    """The same seed, views, watches and answers give the same operations."""
    first, second = WatchLeaseGenerator(11), WatchLeaseGenerator(11)
    for generator in (first, second):
        generator.alive = {100: True, 101: False, 7: True}
    for _ in range(1500):
        ops = [first.next_ops(fixed_view(), fixed_watches()), second.next_ops(fixed_view(), fixed_watches())]
        assert [op_text(op) for op in ops[0]] == [op_text(op) for op in ops[1]]


def test_generator_never_attaches_server_assigned_leases():
    """Puts and compares only use explicit ids: server-assigned ones differ between the servers."""
    generator = WatchLeaseGenerator(3)
    generator.alive, generator.assigned = {123456789: True}, {123456789}
    for _ in range(3000):
        text = " ".join(op_text(op) for op in generator.next_ops(fixed_view(), fixed_watches()))
        if "PutRequest" in text or "TxnRequest" in text:
            assert "123456789" not in text


def test_generator_avoids_what_it_is_told():
    """With every shape avoided, none is generated."""
    generator = WatchLeaseGenerator(5, avoid=frozenset({"error-auto-id", "put-then-delete"}))
    for _ in range(3000):
        for op in generator.next_ops(fixed_view(), fixed_watches()):
            request = getattr(op, "request", None)
            assert not isinstance(request, rpc_pb2.TxnRequest) or not puts_then_deletes(request)
            if isinstance(request, rpc_pb2.WatchRequest) and request.HasField("create_request"):
                create = request.create_request
                assert create.watch_id or not bad_range(create)
    with pytest.raises(ValueError, match="unknown shapes"):
        WatchLeaseGenerator(5, avoid=frozenset({"no-such-shape"}))


def test_lease_ids_are_translated_both_ways():
    """Requests get the candidate's ids, answers the reference's, at any depth; others stay."""
    ids = LeaseIdMap()
    ids.learn(1000, 2000)
    compare = rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.LEASE, lease=1000)
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", lease=1000))
    txn = rpc_pb2.TxnRequest(compare=[compare], success=[put], failure=[put])
    sent = ids.for_candidate(txn)
    assert sent.compare[0].lease == 2000 and sent.failure[0].request_put.lease == 2000
    assert txn.compare[0].lease == 1000
    version = rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.VERSION, version=1000)
    assert ids.for_candidate(version).version == 1000
    kvs = [kv_pb2.KeyValue(key=b"k", lease=2000), kv_pb2.KeyValue(key=b"j", lease=7)]
    back = ids.for_comparison(rpc_pb2.RangeResponse(kvs=kvs))
    assert [kv.lease for kv in back.kvs] == [1000, 7]
    leases = ids.for_comparison(rpc_pb2.LeaseLeasesResponse(leases=[rpc_pb2.LeaseStatus(ID=2000)]))
    assert leases.leases[0].ID == 1000
    assert ids.for_comparison(rpc_pb2.LeaseTimeToLiveResponse(ID=2000)).ID == 1000


def test_comparable_lease_answers():
    """TimeToLive: keys sorted, TTL within 1 s taken as equal (not 2 s); LeaseLeases sorted."""
    ref = rpc_pb2.LeaseTimeToLiveResponse(ID=5, TTL=59, grantedTTL=60, keys=[b"b", b"a"])
    close = comparable_lease(
        rpc_pb2.LeaseTimeToLiveResponse(ID=5, TTL=60, grantedTTL=60, keys=[b"a", b"b"]), ref
    )
    assert close == comparable_lease(ref, None)
    far = comparable_lease(
        rpc_pb2.LeaseTimeToLiveResponse(ID=5, TTL=57, grantedTTL=60, keys=[b"a", b"b"]), ref
    )
    assert far != comparable_lease(ref, None)
    leases = rpc_pb2.LeaseLeasesResponse(leases=[rpc_pb2.LeaseStatus(ID=9), rpc_pb2.LeaseStatus(ID=2)])
    sorted_leases = comparable_lease(leases, None)
    assert isinstance(sorted_leases, rpc_pb2.LeaseLeasesResponse)
    assert [status.ID for status in sorted_leases.leases] == [2, 9]


def test_control_responses_keep_their_header_revision():
    """Control responses lose the cluster ids of their header, not its revision."""
    header = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=30, raft_term=3)
    compacted = rpc_pb2.WatchResponse(header=header, watch_id=4, canceled=True, compact_revision=9)
    canceled = rpc_pb2.WatchResponse(header=header, watch_id=4, canceled=True)
    assert comparable_control(compacted).header == rpc_pb2.ResponseHeader(revision=30)
    assert comparable_control(canceled).header == rpc_pb2.ResponseHeader(revision=30)
    assert is_progress(rpc_pb2.WatchResponse(header=header, watch_id=4))
    assert not is_progress(compacted) and not is_progress(canceled)


def event(kind: kv_pb2.Event.EventType.ValueType, key: bytes, revision: int) -> kv_pb2.Event:
    """A made-up event."""
    return kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue(key=key, mod_revision=revision))


def test_settling_expects_the_right_events():
    """A watch's last expected revision follows its range, start, filters and compaction."""
    history = [
        event(kv_pb2.Event.PUT, b"a/1", 5),
        event(kv_pb2.Event.DELETE, b"a/2", 6),
        event(kv_pb2.Event.PUT, b"b/1", 7),
        event(kv_pb2.Event.DELETE, b"a/1", 8),
        event(kv_pb2.Event.PUT, b"c", 9),
    ]
    created = rpc_pb2.WatchResponse(header=rpc_pb2.ResponseHeader(revision=9), created=True)

    def target(compacted: int, **fields: object) -> int:
        request = rpc_pb2.WatchCreateRequest(**fields)  # type: ignore[arg-type]
        record = WatchRecord(1, 0, 1, request, compacted, controls=[(0, created)])
        record.scan(history)
        return record.target

    assert target(0, key=b"a/", range_end=b"a0", start_revision=1) == 8
    assert (
        target(0, key=b"a/", range_end=b"a0", start_revision=1, filters=[rpc_pb2.WatchCreateRequest.NODELETE])
        == 5
    )
    assert (
        target(0, key=b"a/", range_end=b"a0", start_revision=7, filters=[rpc_pb2.WatchCreateRequest.NOPUT])
        == 8
    )
    assert target(0, key=b"b", range_end=b"\x00", start_revision=1) == 9
    assert target(6, key=b"a/2", start_revision=6) == 0  # a tombstone at the compacted revision is gone
    assert target(0, key=b"a/", range_end=b"a0") == 0  # started after everything
    record = WatchRecord(1, 0, 1, rpc_pb2.WatchCreateRequest(key=b"a", start_revision=3), 5)
    record.controls.append((0, created))
    assert record.expects_compaction and not record.settled() and record.state() == "compacted"


# ---------------------------------------------------------------------------
# Against real servers
# ---------------------------------------------------------------------------


@pytest.mark.etcd_reference
@pytest.mark.parametrize("seed", SELF_CHECK_SEEDS)
def test_self_check_etcd_vs_etcd(seed: int, etcd: ServerProcess, tmp_path: Path):
    """Two fresh etcds agree on everything: the harness and its waits are deterministic."""
    other = etcd_process(tmp_path / "etcd-2").start()
    try:
        report = run_watch_lease(seed, SELF_CHECK_OPS, etcd.endpoint, other.endpoint, ("etcd", "etcd-2"))
    finally:
        other.stop()
    fail_unless_ok(report)


@pytest.mark.etcd_reference
@pytest.mark.kine
@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds_from_env("KINE_WL_SEEDS"))
def test_watch_lease_differential(seed: int, etcd: ServerProcess, kine: ServerProcess):
    """kine-py answers every KV, Watch and Lease operation of the seed's sequence as etcd does."""
    fail_unless_ok(
        run_watch_lease(seed, ops_from_env("KINE_WL_OPS"), etcd.endpoint, kine.endpoint, ("etcd", "kine"))
    )


@pytest.mark.etcd_reference
@pytest.mark.kine
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_differential(script: str, etcd: ServerProcess, kine: ServerProcess):
    """Leases expiring in wall-clock time, and fragmented watch responses, as etcd has them."""
    make, compare_shapes = SCRIPTS[script]
    fail_unless_ok(run_script(script, make(), etcd.endpoint, kine.endpoint, ("etcd", "kine"), compare_shapes))


@pytest.mark.etcd_reference
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_self_check_etcd_vs_etcd(script: str, etcd: ServerProcess, tmp_path: Path):
    """The scripts are deterministic: two etcds agree on them."""
    make, compare_shapes = SCRIPTS[script]
    other = etcd_process(tmp_path / "etcd-2").start()
    try:
        report = run_script(script, make(), etcd.endpoint, other.endpoint, ("etcd", "etcd-2"), compare_shapes)
    finally:
        other.stop()
    fail_unless_ok(report)


def test_no_harness_thread_outlives_a_run():
    """Reader threads end with their run (checked after the server tests in this module)."""
    leftovers = [t.name for t in threading.enumerate() if "-watch-" in t.name]
    assert leftovers == []
