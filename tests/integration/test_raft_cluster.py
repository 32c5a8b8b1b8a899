"""Raft mode with real processes: three (or four) kine-py replicas on loopback, each with its
own ports and data directory, talking over real gRPC peer connections.

Covers: writes through every replica, linearizable reads everywhere, Status and the Cluster
API, kill -9 of the leader and of a follower under load (no acknowledged write lost, a new
leader), an isolated leader (its inbound peer traffic cut by a TCP proxy), a follower that
fell behind a log compaction catching up by snapshot, a torn WAL tail, and membership
changes (add a learner, promote it, remove a member).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py.testing.processes import (
    RaftMemberProcess,
    etcdctl,
    free_port,
    raft_cluster,
    wait_leader,
)
from kine_py.testing.proxy import TcpProxy
from tests.integration.conftest import connect

pytestmark = [pytest.mark.raft, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RaftMemberProcess]]:
    members = raft_cluster(tmp_path, 3)
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            m.start()  # already running: waits for readiness and a leader
        yield members
    finally:
        for m in members:
            m.stop()


def status(endpoint: str) -> rpc_pb2.StatusResponse:
    with connect(endpoint) as c:
        return c.maintenance.Status(rpc_pb2.StatusRequest(), timeout=5)


def member_of(members: list[RaftMemberProcess], member_id: int) -> RaftMemberProcess:
    for m in members:
        if m.proc is not None and m.proc.poll() is None and status(m.endpoint).header.member_id == member_id:
            return m
    raise AssertionError(f"no running member has id {member_id:x}")


def leader_of(members: list[RaftMemberProcess]) -> RaftMemberProcess:
    running = [m for m in members if m.proc is not None and m.proc.poll() is None]
    return member_of(running, wait_leader(running[0].endpoint))


def put(endpoint: str, key: bytes, value: bytes, timeout: float = 10) -> int:
    with connect(endpoint) as c:
        return int(c.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=timeout).header.revision)


def get_all(endpoint: str, prefix: bytes, serializable: bool = False) -> dict[bytes, bytes]:
    with connect(endpoint) as c:
        resp = c.kv.Range(
            rpc_pb2.RangeRequest(
                key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]), serializable=serializable
            ),
            timeout=10,
        )
    return {kv.key: kv.value for kv in resp.kvs}


def test_writes_through_every_replica_are_read_linearizably_everywhere(
    cluster: list[RaftMemberProcess],
) -> None:
    revisions = []
    for i in range(30):
        member = cluster[i % 3]
        revisions.append(put(member.endpoint, b"k/%02d" % i, b"v%d" % i))
    assert revisions == sorted(revisions) and len(set(revisions)) == 30
    expected = {b"k/%02d" % i: b"v%d" % i for i in range(30)}
    for m in cluster:
        assert get_all(m.endpoint, b"k/") == expected
    # Every replica assigned the same revisions: the histories are identical.
    histories = []
    for m in cluster:
        with connect(m.endpoint) as c:
            resp = c.kv.Range(rpc_pb2.RangeRequest(key=b"k/", range_end=b"k0", serializable=True), timeout=10)
            histories.append([(kv.key, kv.mod_revision, kv.create_revision, kv.version) for kv in resp.kvs])
    assert histories[0] == histories[1] == histories[2]


def test_status_and_member_list_report_the_cluster(cluster: list[RaftMemberProcess]) -> None:
    statuses = [status(m.endpoint) for m in cluster]
    leaders = {s.leader for s in statuses}
    assert len(leaders) == 1 and 0 not in leaders
    ids = {s.header.member_id for s in statuses}
    assert len(ids) == 3 and leaders <= ids
    assert len({s.header.cluster_id for s in statuses}) == 1
    assert all(s.raftTerm >= 2 and s.raftIndex >= 1 and s.raftAppliedIndex >= 1 for s in statuses)
    put(cluster[0].endpoint, b"status", b"v")  # the leader's no-op and this entry reach everyone
    deadline = time.monotonic() + 10
    while min(status(m.endpoint).raftAppliedIndex for m in cluster) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with connect(cluster[1].endpoint) as c:
        deadline = time.monotonic() + 10
        while True:
            members = c.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members
            if all(m.name and m.clientURLs for m in members) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert sorted(m.name for m in members) == ["m1", "m2", "m3"]
    assert {m.ID for m in members} == ids
    assert {m.clientURLs[0] for m in members} == {f"http://{m.endpoint}" for m in cluster}
    assert all(len(m.peerURLs) == 1 and not m.isLearner for m in members)


def test_etcdctl_sees_the_cluster_and_moves_the_leader(cluster: list[RaftMemberProcess]) -> None:
    endpoints = ",".join(m.endpoint for m in cluster)
    out = etcdctl(endpoints, "endpoint", "status", "-w", "table")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("true") == 1  # IS LEADER column: exactly one
    leader = leader_of(cluster)
    target = next(m for m in cluster if m is not leader)
    target_id = status(target.endpoint).header.member_id
    moved = etcdctl(leader.endpoint, "move-leader", f"{target_id:x}")
    assert moved.returncode == 0, moved.stderr
    assert wait_leader(cluster[0].endpoint) == target_id
    refused = etcdctl(target.endpoint, "move-leader", f"{status(leader.endpoint).header.member_id:x}")
    assert refused.returncode == 0, refused.stderr  # target is now the leader: allowed
    not_leader = next(m for m in cluster if status(m.endpoint).leader != status(m.endpoint).header.member_id)
    wrong = etcdctl(not_leader.endpoint, "move-leader", f"{target_id:x}")
    assert wrong.returncode != 0


class Writers:
    """Clients writing unique keys through every replica; records what was acknowledged."""

    def __init__(self, members: list[RaftMemberProcess], threads: int = 6) -> None:
        self.members = members
        self.acked: dict[bytes, int] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            member = self.members[(n + i) % len(self.members)]
            key = b"load/%d/%06d" % (n, i)
            i += 1
            try:
                rev = put(member.endpoint, key, key, timeout=5)
            except grpc.RpcError:
                with self._lock:
                    self.errors += 1
                time.sleep(0.05)
                continue
            with self._lock:
                self.acked[key] = rev


def assert_all_acked_present(writers: Writers, endpoint: str) -> None:
    found = get_all(endpoint, b"load/")
    missing = [k for k in writers.acked if k not in found]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    with connect(endpoint) as c:
        resp = c.kv.Range(rpc_pb2.RangeRequest(key=b"load/", range_end=b"load0"), timeout=10)
    by_key = {kv.key: kv.mod_revision for kv in resp.kvs}
    assert all(by_key[k] == rev for k, rev in writers.acked.items())
    assert len(set(by_key.values())) == len(by_key)  # one revision per write


def test_kill_leader_under_load(cluster: list[RaftMemberProcess]) -> None:
    with Writers(cluster) as writers:
        time.sleep(2)
        leader = leader_of(cluster)
        before = len(writers.acked)
        killed_at = time.monotonic()
        leader.kill()
        survivors = [m for m in cluster if m is not leader]
        wait_leader(survivors[0].endpoint, timeout=15)
        elected_after = time.monotonic() - killed_at
        time.sleep(2)
        leader.start(wait=False)
        time.sleep(2)
    assert before > 0 and len(writers.acked) > before
    print(f"new leader after {elected_after:.2f}s; {len(writers.acked)} acked, {writers.errors} errors")
    assert elected_after < 10
    leader.start()  # running again: wait until it is ready and knows the leader
    for m in cluster:
        assert_all_acked_present(writers, m.endpoint)


def test_kill_follower_under_load_and_restart(cluster: list[RaftMemberProcess]) -> None:
    with Writers(cluster) as writers:
        time.sleep(1)
        follower = next(m for m in cluster if m is not leader_of(cluster))
        follower.kill()
        time.sleep(2)
        follower.start(wait=False)
        time.sleep(2)
    follower.start()
    for m in cluster:
        assert_all_acked_present(writers, m.endpoint)


def test_follower_far_behind_catches_up_by_snapshot(tmp_path: Path) -> None:
    members = raft_cluster(tmp_path, 3, "--snapshot-count", "50", "--snapshot-catchup-entries", "10")
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            m.start()
        leader = leader_of(members)
        follower = next(m for m in members if m is not leader)
        follower.kill()
        for i in range(300):
            put(leader.endpoint, b"snap/%04d" % i, b"x" * 100)
        with connect(leader.endpoint) as c:
            c.kv.Compact(rpc_pb2.CompactionRequest(revision=250, physical=True), timeout=10)
        follower.start()
        deadline = time.monotonic() + 20
        while get_all(follower.endpoint, b"snap/", serializable=True) != get_all(leader.endpoint, b"snap/"):
            assert time.monotonic() < deadline, "the follower did not catch up"
            time.sleep(0.2)
        assert "from a snapshot" in follower.log_text()
        assert len(get_all(follower.endpoint, b"snap/")) == 300
        with connect(follower.endpoint) as c, pytest.raises(grpc.RpcError) as compacted:
            c.kv.Range(rpc_pb2.RangeRequest(key=b"snap/0000", revision=10), timeout=10)
        assert compacted.value.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        for m in members:
            m.stop()


def test_torn_wal_tail_is_truncated_on_restart(cluster: list[RaftMemberProcess]) -> None:
    for i in range(20):
        put(cluster[0].endpoint, b"torn/%02d" % i, b"v")
    victim = next(m for m in cluster if m is not leader_of(cluster))
    victim.kill()
    wal_dir = Path(victim.cmd[victim.cmd.index("--endpoint") + 1].removeprefix("raft://")) / "wal"
    segment = sorted(wal_dir.glob("*.wal"))[-1]
    with segment.open("ab") as out:
        out.write(b"\x40\x00\x00\x00\x00\x00\x00\x00partial-record")  # a length promising more
    victim.start()
    assert "torn" in victim.log_text().lower()
    put(cluster[0].endpoint, b"torn/after", b"v")
    deadline = time.monotonic() + 10
    while b"torn/after" not in get_all(victim.endpoint, b"torn/", serializable=True):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(get_all(victim.endpoint, b"torn/")) == 21


def test_isolated_leader_steps_down_and_the_rest_elect_a_new_one(tmp_path: Path) -> None:
    """Every member's peer port sits behind a TCP proxy; cutting the leader's proxy stops all
    traffic *to* it (its heartbeats still go out): check-quorum must depose it and the
    others elect a new leader; acknowledged writes survive the heal."""
    members = raft_cluster(tmp_path, 3)
    proxies = _proxy_peers(members)
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            m.start()
        with Writers(members) as writers:
            time.sleep(1)
            old = leader_of(members)
            old_id = status(old.endpoint).header.member_id
            proxies[members.index(old)].cut()
            others = [m for m in members if m is not old]
            deadline = time.monotonic() + 15
            while wait_leader(others[0].endpoint) == old_id:
                assert time.monotonic() < deadline, "no new leader while the old one was cut off"
                time.sleep(0.1)
            time.sleep(1)
            proxies[members.index(old)].restore()
            time.sleep(2)
        for m in members:
            assert_all_acked_present(writers, m.endpoint)
    finally:
        for m in members:
            m.stop()
        for p in proxies:
            p.close()


class WatchStream:
    """One Watch stream on its own channel, read by a thread: its events and how it ended."""

    def __init__(self, endpoint: str, key: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key))
        self.calls = rpc_pb2_grpc.WatchStub(self.channel).Watch(iter([create]), metadata=metadata)
        self.created = threading.Event()
        self.ended: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.created.wait(10), "the watch was not created"

    def _read(self) -> None:
        try:
            for resp in self.calls:
                if resp.created:
                    self.created.set()
        except grpc.RpcError as exc:
            self.ended = exc

    def close(self) -> None:
        self.calls.cancel()
        self.channel.close()


def test_require_leader_calls_fail_and_streams_end_without_a_leader(
    cluster: list[RaftMemberProcess],
) -> None:
    """etcd's ``hasleader`` metadata (clientv3's WithRequireLeader, on every kube-apiserver
    watch): with its peers gone, a member refuses such calls with "etcdserver: no leader" and
    ends such watches after three election timeouts; calls without it are served."""
    lone = cluster[0]
    require = (("hasleader", "true"),)
    strict = WatchStream(lone.endpoint, b"w", require)
    relaxed = WatchStream(lone.endpoint, b"w", ())
    try:
        with connect(lone.endpoint) as c:
            c.kv.Range(rpc_pb2.RangeRequest(key=b"w"), metadata=require, timeout=5)  # a leader: served
        for m in cluster[1:]:
            m.kill()
        lost = time.monotonic()
        strict.thread.join(15)
        assert strict.ended is not None, "the require-leader watch was not ended"
        ended_after = time.monotonic() - lost
        no_leader = (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        assert (strict.ended.code(), strict.ended.details()) == no_leader
        assert ended_after >= 2, f"ended {ended_after:.1f} s after the leader was lost: too soon"
        assert relaxed.thread.is_alive() and relaxed.ended is None
        with connect(lone.endpoint) as c:
            with pytest.raises(grpc.RpcError) as caught:
                c.kv.Range(rpc_pb2.RangeRequest(key=b"w", serializable=True), metadata=require, timeout=5)
            err: Any = caught.value
            assert (err.code(), err.details()) == no_leader
            c.kv.Range(rpc_pb2.RangeRequest(key=b"w", serializable=True), timeout=5)
            create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w"))
            with pytest.raises(grpc.RpcError) as caught:
                next(rpc_pb2_grpc.WatchStub(c.channel).Watch(iter([create]), metadata=require, timeout=5))
            err = caught.value
            assert (err.code(), err.details()) == no_leader
    finally:
        strict.close()
        relaxed.close()


def _proxy_peers(members: list[RaftMemberProcess]) -> list[TcpProxy]:
    """Rewrite the members' flags so each listens on a fresh port behind a proxy that the
    others use as its peer URL."""
    proxies = []
    real = {}
    for m in members:
        listen = m.cmd[m.cmd.index("--listen-peer-urls") + 1]
        port = free_port()
        proxy = TcpProxy(("127.0.0.1", port))
        proxies.append(proxy)
        real[listen] = (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy.port}")
    for m in members:
        listen = m.cmd[m.cmd.index("--listen-peer-urls") + 1]
        m.cmd[m.cmd.index("--listen-peer-urls") + 1] = real[listen][0]
        m.cmd += ["--initial-advertise-peer-urls", real[listen][1]]
        i = m.cmd.index("--initial-cluster") + 1
        for old, (_, advertised) in real.items():
            m.cmd[i] = m.cmd[i].replace(old, advertised)
    return proxies


def test_membership_add_learner_promote_and_remove(tmp_path: Path) -> None:
    members = raft_cluster(tmp_path, 3)
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            m.start()
        for i in range(20):
            put(members[i % 3].endpoint, b"mem/%02d" % i, b"v")
        peer = f"http://127.0.0.1:{free_port()}"
        added = etcdctl(members[1].endpoint, "member", "add", "m4", f"--peer-urls={peer}", "--learner")
        assert added.returncode == 0, added.stderr
        fourth = _joining_member(tmp_path, members, peer)
        members.append(fourth)
        fourth.start()
        deadline = time.monotonic() + 20
        while len(get_all(fourth.endpoint, b"mem/", serializable=True)) < 20:
            assert time.monotonic() < deadline, "the learner did not catch up"
            time.sleep(0.2)
        learner_id = status(fourth.endpoint).header.member_id
        assert status(fourth.endpoint).isLearner
        assert_learner_refuses(fourth.endpoint)
        promoted = etcdctl(members[0].endpoint, "member", "promote", f"{learner_id:x}")
        assert promoted.returncode == 0, promoted.stderr + promoted.stdout
        deadline = time.monotonic() + 10
        while status(fourth.endpoint).isLearner:  # the promotion is applied there too
            assert time.monotonic() < deadline, "the promoted member still says it is a learner"
            time.sleep(0.1)
        assert len(get_all(fourth.endpoint, b"mem/")) == 20  # linearizable now
        listed = etcdctl(members[2].endpoint, "member", "list")
        assert listed.stdout.count("started") >= 3 and "true" not in listed.stdout.split("m4")[-1][:40]
        for i in range(20, 30):
            put(fourth.endpoint, b"mem/%02d" % i, b"v")
        # Remove an original follower; the cluster of three keeps serving.
        leader = leader_of(members)
        gone = next(m for m in members[:3] if m is not leader)
        gone_id = status(gone.endpoint).header.member_id
        removed = etcdctl(leader.endpoint, "member", "remove", f"{gone_id:x}")
        assert removed.returncode == 0, removed.stderr
        assert gone.proc is not None
        assert gone.proc.wait(timeout=15) == 0, "a removed member stops by itself, as etcd's does"
        assert "permanently removed from the cluster" in gone.log_text()
        rest = [m for m in members if m is not gone]
        put(rest[0].endpoint, b"mem/after", b"v")
        assert len(get_all(rest[-1].endpoint, b"mem/")) == 31
        with connect(rest[0].endpoint) as c:
            ids = {m.ID for m in c.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members}
        assert gone_id not in ids and learner_id in ids and len(ids) == 3
        # Restarted on its old data directory, it refuses to start.
        gone.start(wait=False)
        assert gone.proc is not None and gone.proc.wait(timeout=30) == 1
        assert "has been removed from the cluster" in gone.log_text()
        # A member removed while it was down learns it from its peers when it comes back.
        leader = leader_of(rest)
        down = next(m for m in rest if m is not leader)
        down_id = status(down.endpoint).header.member_id
        down.kill()
        removed = etcdctl(leader.endpoint, "member", "remove", f"{down_id:x}")
        assert removed.returncode == 0, removed.stderr
        down.start(wait=False)
        assert down.proc is not None and down.proc.wait(timeout=30) == 0
        assert "permanently removed from the cluster (member" in down.log_text()
        put(leader.endpoint, b"mem/two-left", b"v")
    finally:
        for m in members:
            m.stop()


def assert_learner_refuses(endpoint: str) -> None:
    """etcd's learner serves Status and serializable Range only; everything else, streams
    included, is UNAVAILABLE "etcdserver: rpc not supported for learner"."""
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k"))
    with connect(endpoint) as c:
        calls = {
            "linearizable Range": lambda: c.kv.Range(rpc_pb2.RangeRequest(key=b"mem/00"), timeout=5),
            "Put": lambda: c.kv.Put(rpc_pb2.PutRequest(key=b"mem/x", value=b"v"), timeout=5),
            "MemberList": lambda: c.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5),
            "Watch": lambda: next(rpc_pb2_grpc.WatchStub(c.channel).Watch(iter([create]), timeout=5)),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            err: Any = caught.value
            assert (err.code(), err.details()) == (
                grpc.StatusCode.UNAVAILABLE,
                "etcdserver: rpc not supported for learner",
            ), name
        assert c.kv.Range(rpc_pb2.RangeRequest(key=b"mem/00", serializable=True), timeout=5).count == 1


def _joining_member(tmp_path: Path, members: list[RaftMemberProcess], peer: str) -> RaftMemberProcess:
    first = members[0].cmd
    initial = first[first.index("--initial-cluster") + 1] + f",m4={peer}"
    port = free_port()
    member_dir = tmp_path / "m4"
    member_dir.mkdir()
    cmd = [
        *first[:3],
        "--listen-address",
        f"127.0.0.1:{port}",
        "--endpoint",
        f"raft://{member_dir / 'raft'}",
        "--name",
        "m4",
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        "existing",
        "--initial-cluster-token",
        first[first.index("--initial-cluster-token") + 1],
        "--listen-peer-urls",
        peer,
        "--metrics-bind-address",
        "0",
    ]
    return RaftMemberProcess(cmd, port, member_dir / "kine.log")
