"""Watch behaviour that a differential test cannot pin down: ordering under races,
slow consumers, progress notifications, compaction, kube-apiserver's compactor."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.testing.processes import ServerProcess, kine_process

pytestmark = pytest.mark.kine


class Stream:
    """A Watch stream whose requests are fed from a queue (send) and read by the caller."""

    def __init__(self, endpoint: str) -> None:
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self.channel = grpc.insecure_channel(endpoint)
        self.responses = rpc.WatchStub(self.channel).Watch(self._feed())

    def _feed(self) -> Iterator[pb.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def send(self, request: pb.WatchRequest) -> None:
        self._requests.put(request)

    def create(self, **fields: object) -> pb.WatchResponse:
        self.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(**fields)))  # type: ignore[arg-type]
        created = next(self.responses)
        assert created.created
        return created

    def close(self) -> None:
        self._requests.put(None)
        self.responses.cancel()
        self.channel.close()


def kv(server: ServerProcess) -> rpc.KVStub:
    return rpc.KVStub(grpc.insecure_channel(server.endpoint))


def is_progress(resp: pb.WatchResponse) -> bool:
    return not resp.events and not resp.created and not resp.canceled and resp.compact_revision == 0


def test_progress_requests_never_run_ahead_of_events(kine: ServerProcess) -> None:
    """Writes race WatchProgressRequests: a progress revision R is only sent once every event
    up to R has been sent on the stream, and no event at or below R follows it."""
    stream = Stream(kine.endpoint)
    stream.create(key=b"p/", range_end=b"p0")
    stream.create(key=b"q")  # a second, quiet watch on the same stream
    stop = threading.Event()

    def write() -> None:
        stub = kv(kine)
        i = 0
        while not stop.is_set():
            stub.Put(pb.PutRequest(key=b"p/%d" % (i % 50), value=b"x"))
            i += 1

    def ask() -> None:
        while not stop.is_set():
            stream.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
            time.sleep(0.002)

    threads = [threading.Thread(target=write) for _ in range(4)] + [threading.Thread(target=ask)]
    for t in threads:
        t.start()
    highest_event, highest_progress, progress_count = 0, 0, 0
    deadline = time.monotonic() + 6
    try:
        for resp in stream.responses:
            if resp.events:
                first = resp.events[0].kv.mod_revision
                assert first > highest_progress, f"event {first} after progress {highest_progress}"
                assert first > highest_event
                highest_event = resp.events[-1].kv.mod_revision
            elif resp.watch_id == -1 and is_progress(resp):
                assert resp.header.revision >= highest_event
                highest_progress = resp.header.revision
                progress_count += 1
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
        stream.close()
    assert progress_count > 10 and highest_event > 100


def test_slow_consumer_gets_every_event_and_memory_stays_bounded(kine: ServerProcess) -> None:
    stream = Stream(kine.endpoint)
    stream.create(key=b"s/", range_end=b"s0", prev_kv=True)
    rss_before = rss_kib(kine)
    stub = kv(kine)
    value = b"v" * 512
    for i in range(10_000):
        stub.Put(pb.PutRequest(key=b"s/%d" % (i % 100), value=value))
    rss_after_writes = rss_kib(kine)
    seen: list[int] = []
    for resp in stream.responses:
        seen.extend(e.kv.mod_revision for e in resp.events)
        if len(seen) >= 10_000:
            break
    stream.close()
    assert seen == list(range(2, 10_002))
    # 10,000 events of 512 B are ~5 MB of values (and as much again of prev_kv): the server
    # must not have buffered them per watcher.
    assert rss_after_writes - rss_before < 60_000, (rss_before, rss_after_writes)


def rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_watch_from_a_compacted_revision_is_cancelled(kine: ServerProcess) -> None:
    stub = kv(kine)
    for i in range(5):
        stub.Put(pb.PutRequest(key=b"c", value=b"%d" % i))  # revisions 2..6
    stub.Compact(pb.CompactionRequest(revision=5))
    stream = Stream(kine.endpoint)
    stream.create(key=b"c", start_revision=3)
    resp = next(stream.responses)
    assert (resp.canceled, resp.compact_revision) == (True, 5)
    # At the compact revision itself the history is still there.
    stream.create(key=b"c", start_revision=5, watch_id=9)
    resp = next(stream.responses)
    assert [e.kv.mod_revision for e in resp.events] == [5, 6]
    stream.close()


def test_periodic_progress_notifications(tmp_path: Path) -> None:
    server = kine_process(tmp_path, "--watch-progress-notify-interval", "300ms").start()
    try:
        kv(server).Put(pb.PutRequest(key=b"x", value=b"1"))
        stream = Stream(server.endpoint)
        created = stream.create(key=b"w/", range_end=b"w0", progress_notify=True)
        started = time.monotonic()
        resp = next(stream.responses)
        assert is_progress(resp) and resp.watch_id == created.watch_id
        assert resp.header.revision == 2
        assert time.monotonic() - started < 2
        stream.close()
    finally:
        server.stop()


def test_kube_apiserver_compaction_protocol(kine: ServerProcess) -> None:
    """compact.go: Txn on VERSION(compact_rev_key), Compact, and 1.34's watch on the key."""
    stub = kv(kine)
    key = b"compact_rev_key"

    def round(version: int, rev: int) -> pb.TxnResponse:
        return stub.Txn(
            pb.TxnRequest(
                compare=[
                    pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=version)
                ],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=str(rev).encode()))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
            )
        )

    stream = Stream(kine.endpoint)
    got = stub.Range(pb.RangeRequest(key=key))
    stream.create(key=key, start_revision=got.header.revision)
    first = round(0, 0)
    assert first.succeeded
    for i in range(3):
        stub.Put(pb.PutRequest(key=b"/registry/pods/p%d" % i, value=b"x"))
    second = round(1, first.header.revision)
    assert second.succeeded
    stub.Compact(pb.CompactionRequest(revision=first.header.revision))
    lost = round(1, 99)  # another apiserver with a stale version loses, and learns the state
    assert not lost.succeeded
    kv_ = lost.responses[0].response_range.kvs[0]
    assert (kv_.version, int(kv_.value)) == (2, first.header.revision)
    values = []
    for resp in stream.responses:
        values.extend(int(e.kv.value) for e in resp.events)
        if len(values) == 2:
            break
    assert values == [0, first.header.revision]
    stream.close()
