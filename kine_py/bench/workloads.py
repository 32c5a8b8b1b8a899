"""One operation of each KV workload: ``make_op(spec, stub, state, client)`` returns an async
callable that performs operation number ``i`` and returns its kind (for the latency split).

Called in each client process after the setup (``setup.prepare``); the runner (``load.py``)
times each call. RPC errors propagate to the runner, which counts them. A paginated list
that does not return every key of the prefix raises ``BenchError``: a wrong answer is not a
fast one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.setup import State, fixed_key, list_range
from kine_py.bench.spec import Spec

Op = Callable[[int], Awaitable[str]]


class BenchError(Exception):
    """A server gave an answer that cannot be right (missing keys in a list, ...)."""


def make_op(spec: Spec, stub: rpc.KVAsyncStub, state: State, client: int) -> Op:
    """The operation of ``spec.workload`` (not ``mixed`` nor ``watch-latency``)."""
    factories: dict[str, Callable[[Spec, rpc.KVAsyncStub, State], Op]] = {
        "put": _put,
        "range": _range,
        "txn-put": _txn_put,
        "txn-create": _txn_create,
        "range-prefix": _range_prefix,
    }
    return factories[spec.workload](spec, stub, state)


def _put(spec: Spec, stub: rpc.KVAsyncStub, state: State) -> Op:
    value = b"v" * spec.val_size

    async def put(i: int) -> str:
        await stub.Put(
            pb.PutRequest(key=fixed_key(b"bench/", i % spec.key_space, spec.key_size), value=value)
        )
        return "put"

    return put


def _range(spec: Spec, stub: rpc.KVAsyncStub, state: State) -> Op:
    async def get(i: int) -> str:
        key = fixed_key(b"bench/", i % spec.key_space, spec.key_size)
        await stub.Range(pb.RangeRequest(key=key, serializable=spec.serializable))
        return "range"

    return get


def update_txn(key: bytes, value: bytes, mod_revision: int) -> pb.TxnRequest:
    """kube-apiserver's update: ``MOD(key) == rev ? Put(key) : Range(key)``."""
    cmp = pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=mod_revision)
    return pb.TxnRequest(
        compare=[cmp],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
    )


def _txn_put(spec: Spec, stub: rpc.KVAsyncStub, state: State) -> Op:
    """Read the key's mod_revision, then update it if unchanged (kube-apiserver's
    GuaranteedUpdate: a Get and a conditional Txn)."""
    value = b"v" * spec.val_size

    async def txn_put(i: int) -> str:
        key = fixed_key(b"bench/", i % spec.key_space, spec.key_size)
        got = await stub.Range(pb.RangeRequest(key=key))
        await stub.Txn(update_txn(key, value, got.kvs[0].mod_revision if got.kvs else 0))
        return "txn-put"

    return txn_put


def create_txn(
    key: bytes, value: bytes, target: pb.Compare.CompareTarget.ValueType = pb.Compare.CREATE
) -> pb.TxnRequest:
    """Create if absent: ``CREATE(key) == 0 ? Put(key) : Range(key)`` (kube-apiserver compares
    ``MOD``, which is 0 exactly when CREATE is)."""
    cmp = pb.Compare(key=key, target=target, result=pb.Compare.EQUAL)
    return pb.TxnRequest(
        compare=[cmp],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
    )


def _txn_create(spec: Spec, stub: rpc.KVAsyncStub, state: State) -> Op:
    """Each operation creates a new key (this run's tag keeps rounds apart)."""
    value = b"v" * spec.val_size
    prefix = b"bench/create/" + state.run + b"/"

    async def txn_create(i: int) -> str:
        await stub.Txn(create_txn(fixed_key(prefix, i, spec.key_size), value))
        return "txn-create"

    return txn_create


def _range_prefix(spec: Spec, stub: rpc.KVAsyncStub, state: State) -> Op:
    key, end = list_range(state)
    pinned = state.old_rev if spec.at == "old" else 0
    if not spec.paginate:

        async def page(i: int) -> str:
            await stub.Range(pb.RangeRequest(key=key, range_end=end, limit=spec.limit, revision=pinned))
            return "page"

        return page

    async def walk(i: int) -> str:
        got = await list_all(stub, key, end, spec.limit, pinned)
        if got != spec.prefix_keys:
            raise BenchError(f"paginated list returned {got} keys, not {spec.prefix_keys}")
        return "list"

    return walk


async def list_all(stub: rpc.KVAsyncStub, key: bytes, end: bytes, limit: int, revision: int) -> int:
    """kube-apiserver's paginated list: pages of ``limit`` keys, each starting after the last
    key of the one before, all at the first page's revision (or ``revision`` if given);
    returns how many keys it saw."""
    seen = 0
    while True:
        resp = await stub.Range(pb.RangeRequest(key=key, range_end=end, limit=limit, revision=revision))
        revision = revision or resp.header.revision
        seen += len(resp.kvs)
        if not resp.more or not resp.kvs:
            return seen
        key = resp.kvs[-1].key + b"\0"
