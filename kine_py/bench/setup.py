"""Data a workload needs before it is timed, written once per endpoint by the parent process.

``prepare(spec, endpoint)`` is called by the runner before the timed rounds and returns a
``State`` that is pickled to every client process. Bulk writes go in Txns of
``spec.setup_batch`` Puts (one revision each; etcd and kine-py refuse more than 128 ops per
Txn by default) from a few concurrent clients. RPC errors propagate (``grpc.aio.AioRpcError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.spec import Spec, prefix_end, token


@dataclass(frozen=True)
class State:
    """``prefix`` holds the workload's keys; ``old_rev`` is the revision right after the first
    round of setup writes (range-prefix ``--at old``); ``run`` tags this run's fresh keys."""

    prefix: bytes = b""
    old_rev: int = 0
    run: bytes = b""


def fixed_key(prefix: bytes, i: int, size: int) -> bytes:
    """The ``i``-th key under ``prefix``, zero-padded so that byte order is numeric order,
    and padded with ``k`` up to ``size`` bytes."""
    return (prefix + b"%08d" % i).ljust(size, b"k")


async def write_all(
    stub: rpc.KVAsyncStub, items: Sequence[tuple[bytes, bytes]], batch: int, concurrency: int = 8
) -> int:
    """Put every ``(key, value)``, ``batch`` per Txn from ``concurrency`` clients; return the
    highest revision acknowledged (0 if ``items`` is empty)."""
    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    highest = 0

    async def writer(first: int) -> None:
        nonlocal highest
        for chunk in chunks[first::concurrency]:
            ops = [pb.RequestOp(request_put=pb.PutRequest(key=k, value=v)) for k, v in chunk]
            resp = await stub.Txn(pb.TxnRequest(success=ops))
            highest = max(highest, resp.header.revision)

    await asyncio.gather(*(writer(i) for i in range(min(concurrency, len(chunks)))))
    return highest


async def prepare(spec: Spec, endpoint: str) -> State:
    """Write what ``spec.workload`` reads; nothing for workloads that write their own keys."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = rpc.KVStub(channel)
        if spec.workload == "range":
            return await _range(spec, stub)
        if spec.workload == "range-prefix":
            return await _prefix(spec, stub, b"bench/list/")
        if spec.workload == "mixed":
            return await _prefix(spec.with_(revisions_per_key=1), stub, b"bench/mixed/")
    return State(run=token())


async def _range(spec: Spec, stub: rpc.KVAsyncStub) -> State:
    value = b"v" * spec.val_size
    keys = [fixed_key(b"bench/", i, spec.key_size) for i in range(spec.key_space)]
    await write_all(stub, [(k, value) for k in keys], spec.setup_batch)
    return State(prefix=b"bench/", run=token())


async def _prefix(spec: Spec, stub: rpc.KVAsyncStub, base: bytes) -> State:
    """``prefix_keys`` keys under a fresh prefix, each written ``revisions_per_key`` times."""
    prefix = base + token() + b"/"
    keys = [fixed_key(prefix, i, spec.key_size) for i in range(spec.prefix_keys)]
    old_rev = 0
    for round_ in range(spec.revisions_per_key):
        value = (b"r%d-" % round_).ljust(spec.val_size, b"v")
        rev = await write_all(stub, [(k, value) for k in keys], spec.setup_batch)
        old_rev = old_rev or rev
    return State(prefix=prefix, old_rev=old_rev, run=token())


def list_range(state: State) -> tuple[bytes, bytes]:
    """``(key, range_end)`` of the whole prefix."""
    return state.prefix, prefix_end(state.prefix)
