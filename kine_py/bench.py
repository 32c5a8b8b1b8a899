"""``python -m kine_py.bench``: load an etcd v3 endpoint (kine-py or a real etcd) and report.

Workloads, after etcd's own ``benchmark`` tool:

- ``put``: Puts of ``--key-size``/``--val-size`` byte keys and values over ``--key-space`` keys;
- ``range``: single-key Ranges, linearizable or ``--serializable``;
- ``txn-put``: kube-apiserver's create/update shape, ``MOD(key) == rev ? Put``;
- ``watch-latency``: ``--watchers`` watches on one key; time from issuing a Put to its event
  reaching each watcher (one Put at a time).

Load comes from ``--procs`` processes, each running ``--clients`` asyncio clients over
``--conns`` gRPC connections, so the client is not the bottleneck. ``--compare ENDPOINT`` runs
the same workload against both endpoints, alternating ``--rounds`` times, and prints the ratio
(first / second) of throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc


@dataclass(frozen=True)
class Result:
    ops: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0

    def line(self, name: str) -> str:
        ms = {p: self.percentile(p) * 1000 for p in (0.5, 0.9, 0.99, 1.0)}
        return (
            f"{name}: {self.ops} ops in {self.seconds:.2f}s = {self.rate:,.0f}/s; latency ms "
            f"p50 {ms[0.5]:.2f} p90 {ms[0.9]:.2f} p99 {ms[0.99]:.2f} max {ms[1.0]:.2f}"
        )


def _key(args: argparse.Namespace, i: int) -> bytes:
    return (b"bench/%d" % (i % args.key_space)).ljust(args.key_size, b"k")


def _op(args: argparse.Namespace, stub: rpc.KVAsyncStub) -> Callable[[int], Awaitable[None]]:
    value = b"v" * args.val_size
    if args.workload == "put":

        async def put(i: int) -> None:
            await stub.Put(pb.PutRequest(key=_key(args, i), value=value))

        return put
    if args.workload == "range":

        async def get(i: int) -> None:
            await stub.Range(pb.RangeRequest(key=_key(args, i), serializable=args.serializable))

        return get

    async def txn_put(i: int) -> None:
        key = _key(args, i)
        got = await stub.Range(pb.RangeRequest(key=key))
        rev = got.kvs[0].mod_revision if got.kvs else 0
        cmp = pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=rev)
        put = pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))
        await stub.Txn(pb.TxnRequest(compare=[cmp], success=[put]))

    return txn_put


async def _load(args: argparse.Namespace, endpoint: str, worker: int) -> tuple[int, list[float]]:
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(args.conns)]
    ops = [_op(args, rpc.KVStub(ch)) for ch in channels]
    per_client = max(1, args.total // (args.procs * args.clients))
    latencies: list[float] = []

    async def client(c: int) -> None:
        op = ops[c % len(ops)]
        base = (worker * args.clients + c) * per_client
        for i in range(per_client):
            started = time.perf_counter()
            await op(base + i)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(c) for c in range(args.clients)))
    for ch in channels:
        await ch.close(None)
    return len(latencies), latencies


Outcome = tuple[int, list[float]]


def _worker(
    args: argparse.Namespace, endpoint: str, worker: int, start: float, out: multiprocessing.Queue[Outcome]
) -> None:
    time.sleep(max(0.0, start - time.time()))
    out.put(asyncio.run(_load(args, endpoint, worker)))


def run_load(args: argparse.Namespace, endpoint: str) -> Result:
    """Run the workload from ``args.procs`` processes at once; merge their latencies."""
    if args.workload == "range":
        asyncio.run(_prefill(args, endpoint))
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Outcome] = ctx.Queue()
    start = time.time() + 1.0
    procs = [ctx.Process(target=_worker, args=(args, endpoint, w, start, out)) for w in range(args.procs)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    elapsed = time.time() - start
    for proc in procs:
        proc.join()
    latencies = [x for _, lat in results for x in lat]
    return Result(sum(n for n, _ in results), elapsed, latencies)


async def _prefill(args: argparse.Namespace, endpoint: str) -> None:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        stub = rpc.KVStub(ch)
        for i in range(min(args.key_space, args.total)):
            await stub.Put(pb.PutRequest(key=_key(args, i), value=b"v" * args.val_size))


async def watch_latency(args: argparse.Namespace, endpoint: str) -> Result:
    """Put ``total`` times on one key; measure from each Put until every watcher has its event."""
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv, watch = rpc.KVStub(ch), rpc.WatchStub(ch)
        key = b"bench/watch/%d" % os.getpid()
        queues: list[asyncio.Queue[float]] = [asyncio.Queue() for _ in range(args.watchers)]
        streams, readers = [], []
        for q in queues:
            create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key))
            stream = watch.Watch(iter([create]))
            first = await stream.read()
            assert isinstance(first, pb.WatchResponse) and first.created
            streams.append(stream)
            readers.append(asyncio.create_task(_read_events(stream, q)))
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(args.total):
            sent = time.perf_counter()  # as etcd's tool: from issuing the Put to each event
            await kv.Put(pb.PutRequest(key=key, value=b"v" * args.val_size))
            for q in queues:
                latencies.append(await q.get() - sent)
        elapsed = time.perf_counter() - started
        for task, stream in zip(readers, streams, strict=True):
            task.cancel()
            stream.cancel()
        return Result(args.total, elapsed, latencies)


async def _read_events(stream: grpc.aio.StreamStreamCall[Any, Any], q: asyncio.Queue[float]) -> None:
    while True:
        resp = await stream.read()
        assert isinstance(resp, pb.WatchResponse)
        for _ in resp.events:
            q.put_nowait(time.perf_counter())


def measure(args: argparse.Namespace, endpoint: str) -> Result:
    if args.workload == "watch-latency":
        return asyncio.run(watch_latency(args, endpoint))
    return run_load(args, endpoint)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kine_py.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=["put", "range", "txn-put", "watch-latency"])
    p.add_argument("--endpoint", default="127.0.0.1:2379", help="host:port of the server to load")
    p.add_argument("--compare", default="", help="a second endpoint: run both, alternating, and print ratios")
    p.add_argument("--rounds", type=int, default=2, help="alternations with --compare")
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per process")
    p.add_argument("--conns", type=int, default=2, help="gRPC connections per process")
    p.add_argument("--total", type=int, default=2000, help="requests in all (puts for watch-latency)")
    p.add_argument("--key-size", type=int, default=16)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--key-space", type=int, default=1000, help="distinct keys")
    p.add_argument("--serializable", action="store_true", help="range: serializable reads")
    p.add_argument("--watchers", type=int, default=1, help="watch-latency: watchers of the key")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if not args.compare:
        print(measure(args, args.endpoint).line(args.endpoint))
        return 0
    firsts, seconds = [], []
    for _ in range(args.rounds):
        firsts.append(measure(args, args.endpoint))
        seconds.append(measure(args, args.compare))
    for endpoint, results in ((args.endpoint, firsts), (args.compare, seconds)):
        for r in results:
            print(r.line(endpoint))
    rate = statistics.median(a.rate for a in firsts) / max(1e-9, statistics.median(b.rate for b in seconds))
    p99 = statistics.median(a.percentile(0.99) for a in firsts) / max(
        1e-9, statistics.median(b.percentile(0.99) for b in seconds)
    )
    print(f"ratio {args.endpoint} / {args.compare}: throughput {rate:.2f}x, p99 latency {p99:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
