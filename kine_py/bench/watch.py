"""``watch-latency``: how long a Put takes to reach ``spec.watchers`` watchers of its key.

Order: up to ``spec.procs`` watcher processes each open their share of the watches (over
``spec.conns`` or more connections, at most 50 streams each, ``spec.watch_streams`` streams in
all or one per 10 watches) and report ready. This process then Puts the key, one Put at a time:
it notes when the Put was sent and when it was acknowledged, and waits until every watcher
process says all its watches have the event before the next Put (a closed loop: the
latency of delivery, not how far a flood of events can fall behind). A few warm-up Puts come
first and are not counted. The latency of an event is its arrival minus the Put's
acknowledgement (``--since acked``, the issue's definition; an event that beats the
acknowledgement counts 0) or minus the Put's sending (``--since sent``, etcd's benchmark tool).
``time.monotonic()`` is one clock for every process on Linux. An event missing for 60 s
raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import queue
import time
import traceback
from collections import Counter
from multiprocessing.process import BaseProcess
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.load import channels, receive
from kine_py.bench.spec import Spec, share, token
from kine_py.bench.stats import Result
from kine_py.bench.watchers import WatchGroup, streams_for

WARMUP = 3
EVENT_TIMEOUT = 60.0


def _watcher_main(
    endpoint: str, key: bytes, count: int, streams: int, conns: int, msgs: Any, progress: Any, stop: Any
) -> None:
    """A watcher process: ``count`` watches on ``key``; tells ``progress`` each revision all of
    them have seen; on ``stop`` sends every arrival time, by revision, to ``msgs``."""
    arrivals: dict[int, list[float]] = {}

    def on_response(resp: pb.WatchResponse, arrival: float) -> None:
        for event in resp.events:
            seen = arrivals.setdefault(event.kv.mod_revision, [])
            seen.append(arrival)
            if len(seen) == count:
                progress.put(event.kv.mod_revision)

    async def main() -> None:
        group = WatchGroup(on_response)
        conn_list = channels(endpoint, conns)
        try:
            await group.open(conn_list, key, b"", count, streams)
            msgs.put(("ready", None))
            await asyncio.to_thread(stop.wait)
        finally:
            await group.close()
            for ch in conn_list:
                await ch.close(None)

    try:
        asyncio.run(main())
        msgs.put(("done", arrivals))
    except BaseException:
        msgs.put(("error", traceback.format_exc()))


class _Putter:
    """Puts one at a time and waits for every watcher process to have each event."""

    def __init__(self, spec: Spec, kv: rpc.KVStub, key: bytes, progress: Any, procs: list[BaseProcess]):
        self.spec, self.kv, self.key, self.progress, self.procs = spec, kv, key, progress, procs
        self.seen: Counter[int] = Counter()
        self.sent: dict[int, tuple[float, float]] = {}

    def put(self) -> tuple[int, float, float]:
        sent = time.monotonic()
        resp = self.kv.Put(pb.PutRequest(key=self.key, value=b"v" * self.spec.val_size))
        acked = time.monotonic()
        rev: int = resp.header.revision
        deadline = acked + EVENT_TIMEOUT
        while self.seen[rev] < len(self.procs):
            try:
                self.seen[self.progress.get(timeout=max(0.01, min(1.0, deadline - time.monotonic())))] += 1
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"watch event of revision {rev} missing after {EVENT_TIMEOUT}s"
                    ) from None
                if any(p.exitcode not in (None, 0) for p in self.procs):
                    raise RuntimeError("a watcher process died") from None
        return rev, sent, acked

    def timed(self) -> float:
        for _ in range(WARMUP):
            self.put()
        begin = time.monotonic()
        deadline = begin + self.spec.duration if self.spec.duration > 0 else 0.0
        while (deadline and time.monotonic() < deadline) or (
            not deadline and len(self.sent) < self.spec.total
        ):
            rev, sent, acked = self.put()
            self.sent[rev] = (sent, acked)
        return time.monotonic() - begin


def watch_latency(spec: Spec, endpoint: str) -> Result:
    """Run the workload against ``endpoint``; ``latencies`` are the events', ``kinds`` also
    has the Puts' own latency."""
    key = b"bench/watch/" + token()
    nprocs = max(1, min(spec.procs, spec.watchers))
    total_streams = streams_for(spec.watchers, spec.watch_streams)
    ctx = multiprocessing.get_context("spawn")
    msgs, progress, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs: list[BaseProcess] = []
    for w in range(nprocs):
        count = share(spec.watchers, nprocs, w)[1]
        streams = max(1, share(total_streams, nprocs, w)[1])
        conns = max(spec.conns if nprocs == 1 else 1, math.ceil(streams / 50))
        args = (endpoint, key, count, streams, conns, msgs, progress, stop)
        procs.append(ctx.Process(target=_watcher_main, args=args, daemon=True))
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            receive(msgs, procs, "ready")
        with grpc.insecure_channel(endpoint) as channel:
            putter = _Putter(spec, rpc.KVStub(channel), key, progress, procs)
            seconds = putter.timed()
        stop.set()
        arrivals = [receive(msgs, procs, "done") for _ in procs]
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return _result(spec, putter.sent, arrivals, seconds)


def _result(
    spec: Spec, sent: dict[int, tuple[float, float]], arrivals: list[dict[int, list[float]]], seconds: float
) -> Result:
    after_ack: list[float] = []
    after_send: list[float] = []
    for rev, (at_sent, at_acked) in sent.items():
        for part in arrivals:
            for t in part.get(rev, []):
                after_ack.append(max(0.0, t - at_acked))
                after_send.append(t - at_sent)
    kinds = {"put": [acked - at_sent for at_sent, acked in sent.values()]}
    kinds |= {"event after ack": after_ack, "event after send": after_send}
    events = after_ack if spec.since == "acked" else after_send
    return Result(len(sent), seconds, events, kinds, {}, {"events": float(len(events))})
