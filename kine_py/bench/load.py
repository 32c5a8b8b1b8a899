"""Run a KV workload from ``spec.procs`` processes x ``spec.clients`` asyncio clients.

Order: the parent calls ``run(spec, endpoint, state)`` after ``setup.prepare``. Each process
opens ``spec.conns`` gRPC connections (clients are spread over them round-robin), waits until
they are connected and its clients are ready, reports ready, and starts when the parent has
heard from every process, so process start-up is never timed. Client ``g`` of ``G`` in all
performs operations ``g, g + G, g + 2G, ...``: its share of ``spec.total``, or as many as fit
in ``spec.duration`` seconds. The run's time is from the first process's start to the last
one's end. An RPC error is counted under its status code (a client gives up after 100) and
is not a latency sample; a process that dies makes ``run`` raise ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.mixed import MixedClient, current_revisions
from kine_py.bench.setup import State, list_range
from kine_py.bench.spec import Spec, share
from kine_py.bench.stats import Result, merge
from kine_py.bench.watchers import WatchGroup, streams_for
from kine_py.bench.workloads import BenchError, Op, make_op

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]
MAX_ERRORS = 100
Gate = Callable[[], Awaitable[None]]
Part = tuple[float, float, Result]  # one process's (begin, end) in time.monotonic() and result


def channels(endpoint: str, count: int) -> list[grpc.aio.Channel]:
    """``count`` separate connections (a channel each: gRPC would otherwise share one)."""
    return [
        grpc.aio.insecure_channel(endpoint, options=[*CHANNEL_OPTIONS, ("grpc.channel_id", i)])
        for i in range(count)
    ]


class _Worker:
    """One process's clients, their latencies and errors."""

    def __init__(self, spec: Spec, state: State, worker: int) -> None:
        self.spec, self.state, self.worker = spec, state, worker
        self.kinds: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.events = 0

    async def ops(self, stubs: list[rpc.KVAsyncStub]) -> list[Op]:
        spec, first = self.spec, self.worker * self.spec.clients
        if spec.workload != "mixed":
            return [make_op(spec, stubs[c % len(stubs)], self.state, first + c) for c in range(spec.clients)]
        revisions = await current_revisions(stubs[0], self.state, spec.limit)
        every = spec.procs * spec.clients
        return [
            MixedClient(
                spec, stubs[c % len(stubs)], self.state, range(first + c, spec.prefix_keys, every), revisions
            ).op
            for c in range(spec.clients)
        ]

    async def client(self, op: Op, g: int, deadline: float) -> None:
        every = self.spec.procs * self.spec.clients
        count = share(self.spec.total, every, g)[1] if deadline == 0 else -1
        i, failed = g, 0
        while count != 0 and (deadline == 0 or time.monotonic() < deadline):
            started = time.perf_counter()
            try:
                kind = await op(i)
            except (grpc.aio.AioRpcError, BenchError) as exc:
                name = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                failed += 1
                if failed >= MAX_ERRORS:
                    return
            else:
                self.kinds.setdefault(kind, []).append(time.perf_counter() - started)
            i += every
            count -= 1

    def on_watch(self, resp: pb.WatchResponse, arrival: float) -> None:
        self.events += len(resp.events)

    async def run(self, endpoint: str, gate: Gate) -> Part:
        conns = channels(endpoint, self.spec.conns)
        watch = WatchGroup(self.on_watch)
        try:
            await asyncio.gather(*(ch.channel_ready() for ch in conns))
            ops = await self.ops([rpc.KVStub(ch) for ch in conns])
            await self._watch(watch, conns)
            await gate()
            begin = time.monotonic()
            deadline = begin + self.spec.duration if self.spec.duration > 0 else 0.0
            first = self.worker * self.spec.clients
            await asyncio.gather(*(self.client(op, first + c, deadline) for c, op in enumerate(ops)))
            end = time.monotonic()
        finally:
            await watch.close()
            for ch in conns:
                await ch.close(None)
        latencies = [x for lat in self.kinds.values() for x in lat]
        extra = {"events": float(self.events)} if self.spec.workload == "mixed" and self.spec.watchers else {}
        return begin, end, Result(len(latencies), end - begin, latencies, self.kinds, self.errors, extra)

    async def _watch(self, group: WatchGroup, conns: list[grpc.aio.Channel]) -> None:
        if self.spec.workload != "mixed" or not self.spec.watchers:
            return
        count = share(self.spec.watchers, self.spec.procs, self.worker)[1]
        streams = share(
            streams_for(self.spec.watchers, self.spec.watch_streams), self.spec.procs, self.worker
        )[1]
        key, end = list_range(self.state)
        await group.open(conns, key, end, count, max(1, streams))


async def _now() -> None:
    return None


def _process_main(spec: Spec, endpoint: str, state: State, worker: int, msgs: Any, go: Any) -> None:
    """Body of a client process: report ready, wait for the parent's go, report the result."""

    async def gate() -> None:
        msgs.put(("ready", worker))
        await asyncio.to_thread(go.wait)

    try:
        msgs.put(("done", asyncio.run(_Worker(spec, state, worker).run(endpoint, gate))))
    except BaseException:
        msgs.put(("error", f"client process {worker}:\n{traceback.format_exc()}"))


def receive(msgs: Any, procs: list[BaseProcess], kind: str) -> Any:
    """The next ``kind`` message; raise if a process reported an error or died."""
    while True:
        try:
            what, body = msgs.get(timeout=1.0)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"client process exited with {dead[0].exitcode}") from None
            continue
        if what == "error":
            raise RuntimeError(body)
        if what == kind:
            return body


def run(spec: Spec, endpoint: str, state: State) -> Result:
    """Run ``spec`` against ``endpoint``; one process runs in this one, more are spawned."""
    if spec.procs == 1:
        return _combine([asyncio.run(_Worker(spec, state, 0).run(endpoint, _now))])
    ctx = multiprocessing.get_context("spawn")
    msgs, go = ctx.Queue(), ctx.Event()
    procs: list[BaseProcess] = [
        ctx.Process(target=_process_main, args=(spec, endpoint, state, w, msgs, go), daemon=True)
        for w in range(spec.procs)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            receive(msgs, procs, "ready")
        go.set()
        parts = [receive(msgs, procs, "done") for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return _combine(parts)


def _combine(parts: list[Part]) -> Result:
    begin = min(p[0] for p in parts)
    end = max(p[1] for p in parts)
    return merge(end - begin, [p[2] for p in parts])
