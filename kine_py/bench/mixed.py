"""The ``mixed`` workload: what kube-apiserver (with its watch cache) sends to etcd.

Each client owns a share of the ``--prefix-keys`` objects written by the setup (slot ``s``
belongs to client ``s mod clients-in-all``), so its conditional writes do not conflict with
other clients', and picks each operation at random (seeded) with these weights:

==========  ======  ==================================================================
kind        weight  request
==========  ======  ==================================================================
update      35 %    ``MOD(key) == rev ? Put : Range`` (GuaranteedUpdate)
get         30 %    linearizable ``Range(key)`` (a GET with no resourceVersion)
create      10 %    ``MOD(key) == 0 ? Put : Range`` of one of its absent objects
delete      10 %    ``MOD(key) == rev ? DeleteRange : Range`` of one of its objects
revision    10 %    ``Range(prefix without the last /, limit=1)``: the current revision,
                    asked before every consistent list served from the watch cache
list         5 %    paginated list of the whole prefix, ``--limit`` keys a page, pinned
                    to the first page's revision
==========  ======  ==================================================================

Creates and deletes balance, so the number of objects stays near ``--prefix-keys``. With no
present object an update/get/delete becomes a create, and with no absent one a create becomes
an update. ``--watchers`` watches on the prefix (opened by the runner, ``load.py``) receive
every event, as the apiserver's cacher does.
"""

from __future__ import annotations

import random

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.bench.setup import State, fixed_key, list_range
from kine_py.bench.spec import Spec
from kine_py.bench.workloads import create_txn, list_all, update_txn

WEIGHTS = (("update", 35), ("get", 30), ("create", 10), ("delete", 10), ("revision", 10), ("list", 5))


async def current_revisions(stub: rpc.KVAsyncStub, state: State, limit: int) -> dict[bytes, int]:
    """Every key of the prefix with its mod_revision (read once by each process, untimed)."""
    key, end = list_range(state)
    found: dict[bytes, int] = {}
    revision = 0
    while True:
        resp = await stub.Range(pb.RangeRequest(key=key, range_end=end, limit=limit, revision=revision))
        revision = revision or resp.header.revision
        found.update((kv.key, kv.mod_revision) for kv in resp.kvs)
        if not resp.more or not resp.kvs:
            return found
        key = resp.kvs[-1].key + b"\0"


class MixedClient:
    """One client's objects and its random choice of operations."""

    def __init__(
        self, spec: Spec, stub: rpc.KVAsyncStub, state: State, slots: range, revisions: dict[bytes, int]
    ) -> None:
        self._spec, self._stub, self._state = spec, stub, state
        self._rng = random.Random(spec.seed * 1_000_003 + slots.start)
        self._keys = {s: fixed_key(state.prefix, s, spec.key_size) for s in slots}
        self._present = {s: revisions[k] for s, k in self._keys.items() if k in revisions}
        self._absent = [s for s in slots if s not in self._present]
        self._value = b"v" * spec.val_size
        self._choices = [kind for kind, weight in WEIGHTS for _ in range(weight)]

    def _kind(self) -> str:
        kind = self._rng.choice(self._choices)
        if kind in ("update", "get", "delete") and not self._present:
            return "create"
        if kind == "create" and not self._absent:
            return "update"
        return kind

    async def op(self, i: int) -> str:
        kind = self._kind()
        await getattr(self, "_" + kind)()
        return kind

    def _pick_present(self) -> int:
        return self._rng.choice(list(self._present))

    async def _update(self) -> None:
        slot = self._pick_present()
        resp = await self._stub.Txn(update_txn(self._keys[slot], self._value, self._present[slot]))
        self._after_conditional(slot, resp)

    async def _delete(self) -> None:
        slot = self._pick_present()
        key = self._keys[slot]
        cmp = pb.Compare(
            key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=self._present[slot]
        )
        resp = await self._stub.Txn(
            pb.TxnRequest(
                compare=[cmp],
                success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
            )
        )
        if resp.succeeded:
            del self._present[slot]
            self._absent.append(slot)
        else:
            self._after_conditional(slot, resp)

    async def _create(self) -> None:
        slot = self._absent.pop(self._rng.randrange(len(self._absent)))
        resp = await self._stub.Txn(create_txn(self._keys[slot], self._value, pb.Compare.MOD))
        if resp.succeeded:
            self._present[slot] = resp.header.revision
        else:
            self._after_conditional(slot, resp)

    def _after_conditional(self, slot: int, resp: pb.TxnResponse) -> None:
        """Success: the object is at the Txn's revision; failure: take what the Range saw."""
        if resp.succeeded:
            self._present[slot] = resp.header.revision
            return
        kvs = resp.responses[0].response_range.kvs if resp.responses else []
        self._present.pop(slot, None)
        if slot in self._absent:
            self._absent.remove(slot)
        if kvs:
            self._present[slot] = kvs[0].mod_revision
        else:
            self._absent.append(slot)

    async def _get(self) -> None:
        await self._stub.Range(pb.RangeRequest(key=self._keys[self._pick_present()]))

    async def _revision(self) -> None:
        await self._stub.Range(pb.RangeRequest(key=self._state.prefix[:-1], limit=1))

    async def _list(self) -> None:
        key, end = list_range(self._state)
        await list_all(self._stub, key, end, self._spec.limit, 0)
