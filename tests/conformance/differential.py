"""Differential testing of an etcd v3 KV server against the real etcd 3.5.1.

A seeded :class:`RequestGenerator` produces KV requests (Range, Put, DeleteRange,
Txn, Compact, and deliberately bad input) over a small key space, so that keys
collide, prefixes overlap and compares hit real keys. :func:`run_differential`
sends each request to a *reference* server (etcd) and to a *candidate* server
(kine-py, or a second etcd for the self-check) in lockstep, records either the
response message or the gRPC error of each, normalises away the fields that
legitimately differ between clusters (``cluster_id``, ``member_id``,
``raft_term`` in every ``ResponseHeader``) and stops at the first mismatch,
returning a :class:`Mismatch` whose :meth:`Mismatch.report` is meant to be
debugged from.

Request shapes that crash etcd 3.5.1 itself are never sent (each is checked where
it is generated):

* inside one Txn, a Put with ignore_value or ignore_lease on a key that existed
  before the txn and that an earlier op of the same txn deleted (a from-key
  DeleteRange gets past the duplicate-key check): etcd validates the flags
  against the pre-txn state, then panics "unexpected error during txn" while
  applying (see :func:`strip_unsafe_ignores`);
* a Range (top level or in a Txn) with an out-of-range sort_target: not
  validated, and the missing sorter is dereferenced (SIGSEGV) whenever the
  order is, or defaults to, ASCEND/DESCEND (see
  :meth:`RequestGenerator.bad_enum_values`).

The generator looks at the reference server's current state before each
request (a serializable Range over all keys, sent to the reference only), so
compares can aim at the real values of keys and reads at real old revisions.
The request sequence is therefore a function of the seed and etcd's
(deterministic) behaviour, and is identical for both servers.

Run one seed by hand (starts a fresh etcd and a fresh kine-py unless endpoints
are given)::

    python -m tests.conformance.differential --seed 3 --ops 2000 [--trace]
"""

from __future__ import annotations

import argparse
import collections
import difflib
import os
import random
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py._pb.mvccpb import kv_pb2

Request = (
    rpc_pb2.RangeRequest
    | rpc_pb2.PutRequest
    | rpc_pb2.DeleteRangeRequest
    | rpc_pb2.TxnRequest
    | rpc_pb2.CompactionRequest
)
Bounds = tuple[bytes, bytes]

# ---------------------------------------------------------------------------
# The key and value space
# ---------------------------------------------------------------------------

#: 30 keys: 15 under b"a/" (so prefix ranges sort more than 12 keys, where Go's
#: unstable sort.Sort stops being an insertion sort), 9 under b"b/", and odd ones.
KEYS: tuple[bytes, ...] = (
    b"\x00",
    b"\xff",
    b"a",
    b"a\xff",
    b"a/",
    b"b",
    b"b/",
    b"c/x",
    *(b"a/%02d" % i for i in range(14)),
    *(b"b/%d" % i for i in range(8)),
)
#: Keys that are never written, for reads, deletes and compares that find nothing.
MISSING_KEYS: tuple[bytes, ...] = (b"a/5", b"zz", b"b/\x00", b"a/99", b"\x00\x00")
#: Prefixes for prefix ranges; b"\xff" has no prefix end (it becomes a from-key range).
PREFIXES: tuple[bytes, ...] = (b"a/", b"a/", b"b/", b"a", b"b", b"c", b"a/0", b"a/1", b"\xff", b"\x00")
#: A small pool of values, so that sorting by VALUE has many ties.
VALUES: tuple[bytes, ...] = (
    b"",
    b"x",
    b"y",
    b"v1",
    b"v2",
    b"\x00",
    b"\xff\xfe",
    b"hello world",
    b"x" * 100,
    b"value-" * 40,
)
ALL_KEYS: Bounds = (b"\x00", b"\x00")
#: Ranges that usually hold more than 12 keys.
WIDE_RANGES: tuple[Bounds, ...] = (
    ALL_KEYS,
    (b"a/", b"a0"),
    (b"a", b"\x00"),
    (b"\x00", b"c"),
    (b"a/", b"b/5"),
)
#: The value a compare of each target reads from a KeyValue, by target number.
COMPARE_FIELDS: dict[int, str] = {
    rpc_pb2.Compare.VERSION: "version",
    rpc_pb2.Compare.CREATE: "create_revision",
    rpc_pb2.Compare.MOD: "mod_revision",
    rpc_pb2.Compare.VALUE: "value",
    rpc_pb2.Compare.LEASE: "lease",
}
MAX_TXN_OPS = 128
# Enum value types (plain ints at run time; out-of-range numbers are allowed on purpose).
SortOrder = rpc_pb2.RangeRequest.SortOrder.ValueType
SortTarget = rpc_pb2.RangeRequest.SortTarget.ValueType
CompareTarget = rpc_pb2.Compare.CompareTarget.ValueType
CompareResult = rpc_pb2.Compare.CompareResult.ValueType


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


def covers(bounds: Bounds, key: bytes) -> bool:
    """Whether the mvcc range ``bounds`` (key, range_end) contains ``key``."""
    start, end = bounds
    if end == b"":
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


def put_op(request: rpc_pb2.PutRequest) -> rpc_pb2.RequestOp:
    """Wrap a Put into a txn op."""
    return rpc_pb2.RequestOp(request_put=request)


def range_op(request: rpc_pb2.RangeRequest) -> rpc_pb2.RequestOp:
    """Wrap a Range into a txn op."""
    return rpc_pb2.RequestOp(request_range=request)


def delete_op(request: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.RequestOp:
    """Wrap a DeleteRange into a txn op."""
    return rpc_pb2.RequestOp(request_delete_range=request)


def txn_op(request: rpc_pb2.TxnRequest) -> rpc_pb2.RequestOp:
    """Wrap a Txn into a txn op."""
    return rpc_pb2.RequestOp(request_txn=request)


def flat_ops(txn: rpc_pb2.TxnRequest) -> Iterator[rpc_pb2.RequestOp]:
    """Every op of a txn tree, success before failure, depth first.

    Any order in which etcd can execute the ops of the tree is a subsequence of this one.
    """
    for op in [*txn.success, *txn.failure]:
        yield op
        if op.WhichOneof("request") == "request_txn":
            yield from flat_ops(op.request_txn)


def strip_unsafe_ignores(txn: rpc_pb2.TxnRequest) -> None:
    """Clear ignore_value/ignore_lease of any txn Put that a delete earlier in the tree may cover.

    etcd 3.5.1 checks ignore_value/ignore_lease against the state *before* the txn and then
    panics (``unexpected error during txn``) when the key is gone at apply time because an
    earlier op of the same txn deleted it. The request shape kills etcd, so it is never sent.
    """
    deleted: list[Bounds] = []
    for op in flat_ops(txn):
        kind = op.WhichOneof("request")
        if kind == "request_delete_range":
            deleted.append((op.request_delete_range.key, op.request_delete_range.range_end))
        elif kind == "request_put" and any(covers(b, op.request_put.key) for b in deleted):
            op.request_put.ignore_value = False
            op.request_put.ignore_lease = False


@dataclass(frozen=True)
class StoreView:
    """What the generator may know about the reference store before a request."""

    revision: int
    compact_revision: int
    kvs: dict[bytes, kv_pb2.KeyValue] = field(default_factory=dict)


class KeyPlan:
    """Chooses the keys written by one txn tree.

    A strict plan never puts a key twice, nor puts a key covered by a delete of the same tree,
    so etcd accepts the txn; a loose plan picks keys freely and often gets ``duplicate key``.
    """

    def __init__(self, rng: random.Random, strict: bool) -> None:
        self.rng = rng
        self.strict = strict
        self.free = list(KEYS)
        rng.shuffle(self.free)
        self.written: list[bytes] = []

    def put_key(self) -> bytes | None:
        """A key for a Put, or None when a strict plan has run out of keys."""
        if not self.strict:
            key = self.rng.choice(KEYS)
        elif self.free:
            key = self.free.pop()
        else:
            return None
        self.written.append(key)
        return key

    def delete_bounds(self, bounds: Bounds) -> Bounds | None:
        """``bounds`` for a DeleteRange, made safe for a strict plan (None if impossible)."""
        if not self.strict:
            return bounds
        if any(covers(bounds, key) for key in self.written):
            if not self.free:
                return None
            bounds = (self.free.pop(), b"")
        self.free = [key for key in self.free if not covers(bounds, key)]
        return bounds


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


class RequestGenerator:
    """A seeded source of etcd KV requests, valid and invalid, over :data:`KEYS`."""

    def __init__(self, seed: int, max_depth: int = 2) -> None:
        self.rng = random.Random(seed)
        self.max_depth = max_depth
        self.view = StoreView(revision=1, compact_revision=0)

    # -- small helpers ------------------------------------------------------

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def pick(self, weights: dict[str, int]) -> str:
        """One of the names in ``weights``, drawn by weight."""
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def key(self) -> bytes:
        """A key, usually one that may exist."""
        return self.rng.choice(MISSING_KEYS) if self.chance(0.08) else self.rng.choice(KEYS)

    def value(self) -> bytes:
        """A value from the pool, or random bytes of random length."""
        if self.chance(0.2):
            return self.rng.randbytes(self.rng.randrange(0, 64))
        return self.rng.choice(VALUES)

    def lease(self) -> int:
        """A lease id that was never granted (no Put with it may succeed)."""
        return self.rng.choice([1, 7, 1 << 40, -1, (1 << 63) - 1])

    def bounds(self, kind: str) -> Bounds:
        """(key, range_end) of a given shape: key, missing, prefix, from, all, wide or span."""
        if kind == "key":
            return self.rng.choice(KEYS), b""
        if kind == "missing":
            return self.rng.choice(MISSING_KEYS), b""
        if kind == "prefix":
            prefix = self.rng.choice(PREFIXES)
            return prefix, prefix_end(prefix)
        if kind == "from":
            return self.key(), b"\x00"
        if kind == "all":
            return ALL_KEYS
        if kind == "wide":
            return self.rng.choice(WIDE_RANGES)
        first, second = self.rng.choice(KEYS), self.rng.choice(KEYS)
        return (first, second) if self.chance(0.85) else (max(first, second), min(first, second))

    # -- top level ----------------------------------------------------------

    def next_request(self, view: StoreView) -> Request:
        """The next request, given the reference store's state right now."""
        self.view = view
        kind = self.pick({"range": 28, "put": 34, "delete": 6, "txn": 22, "compact": 3, "bad": 7})
        makers: dict[str, Callable[[], Request]] = {
            "range": self.range_request,
            "put": self.put_request,
            "delete": self.delete_request,
            "txn": self.txn_request,
            "compact": self.compact_request,
            "bad": self.bad_request,
        }
        return makers[kind]()

    # -- Range ----------------------------------------------------------------

    def range_request(self, in_txn: bool = False) -> rpc_pb2.RangeRequest:
        """A Range: any bounds, limit, revision, sort, flags and revision filters."""
        sort = self.chance(0.4)
        weights = {"key": 30, "missing": 5, "prefix": 25, "from": 10, "all": 10, "wide": 10, "span": 10}
        if sort:
            weights.update(key=5, missing=1, wide=50)
        key, end = self.bounds(self.pick(weights))
        request = rpc_pb2.RangeRequest(key=key, range_end=end, limit=self.limit())
        request.revision = self.read_revision(errors=1 if in_txn else 6)
        if sort:
            request.sort_order = SortOrder(self.rng.randrange(3))
            request.sort_target = SortTarget(self.rng.randrange(5))
        request.serializable = self.chance(0.2)
        request.keys_only = self.chance(0.15)
        request.count_only = self.chance(0.1)
        self.add_filters(request)
        return request

    def limit(self) -> int:
        """A Range limit: mostly none, sometimes around the 12-key sort threshold, or negative."""
        return self.rng.choices([0, 1, 2, 3, 5, 12, 13, 20, -1, -7], weights=[55, 6, 5, 5, 5, 5, 5, 4, 5, 5])[
            0
        ]

    def read_revision(self, errors: int) -> int:
        """A Range revision: 0, current, old, compacted, future or negative (``errors`` weighs the last 3)."""
        rev, compacted = self.view.revision, self.view.compact_revision
        weights = {
            "zero": 60,
            "current": 8,
            "old": 14,
            "compacted": errors,
            "future": errors,
            "negative": errors,
        }
        kind = self.pick(weights)
        if kind == "compacted" and compacted > 1:
            return self.rng.randint(1, compacted - 1)
        if kind in ("old", "compacted"):
            return self.rng.randint(max(1, compacted), max(1, rev))
        if kind == "current":
            return rev
        if kind == "future":
            return rev + self.rng.randint(1, 3)
        if kind == "negative":
            return -self.rng.randint(1, 3)
        return 0

    def add_filters(self, request: rpc_pb2.RangeRequest) -> None:
        """Sometimes set min/max mod/create revision filters around real revisions."""
        if not self.chance(0.2):
            return
        top = self.view.revision + 1
        for name in ("min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision"):
            if self.chance(0.4):
                setattr(request, name, self.rng.randint(0, top))

    # -- Put and DeleteRange --------------------------------------------------

    def put_request(self, key: bytes | None = None) -> rpc_pb2.PutRequest:
        """A Put, sometimes with prev_kv, an unknown lease, ignore_value or ignore_lease."""
        request = rpc_pb2.PutRequest(key=self.key() if key is None else key, value=self.value())
        request.prev_kv = self.chance(0.4)
        roll = self.rng.random()
        if roll < 0.04:
            request.lease = self.lease()
        elif roll < 0.10:
            request.ignore_value, request.value = True, b""
        elif roll < 0.15:
            request.ignore_lease = True
        elif roll < 0.17:
            request.ignore_value, request.ignore_lease, request.value = True, True, b""
        return request

    def delete_bounds(self) -> Bounds:
        """Bounds for a DeleteRange: mostly single keys, rarely everything."""
        weights = {"key": 70, "missing": 8, "prefix": 6, "from": 3, "all": 1, "span": 6}
        return self.bounds(self.pick(weights))

    def delete_request(self, bounds: Bounds | None = None) -> rpc_pb2.DeleteRangeRequest:
        """A DeleteRange over ``bounds`` (or random ones), sometimes with prev_kv."""
        key, end = bounds or self.delete_bounds()
        return rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=self.chance(0.5))

    # -- Compact ----------------------------------------------------------------

    def compact_request(self) -> rpc_pb2.CompactionRequest:
        """A Compact at an old, current, already compacted or future revision."""
        rev, compacted = self.view.revision, self.view.compact_revision
        kind = self.pick({"old": 45, "current": 15, "compacted": 20, "future": 20})
        if kind == "old" and compacted < rev:
            target = max(compacted + 1, rev - self.rng.randint(0, 30))
        elif kind == "compacted":
            target = self.rng.randint(min(-1, compacted), compacted)
        elif kind == "future":
            target = rev + self.rng.randint(1, 5)
        else:
            target = rev
        return rpc_pb2.CompactionRequest(revision=target, physical=self.chance(0.5))

    # -- Txn --------------------------------------------------------------------

    def txn_request(self) -> rpc_pb2.TxnRequest:
        """A Txn tree (nested up to ``max_depth``), read-only or writing, strict or loose keys."""
        plan = KeyPlan(self.rng, strict=self.chance(0.8))
        txn = self.txn(plan, depth=0, read_only=self.chance(0.15))
        strip_unsafe_ignores(txn)
        return txn

    def txn(self, plan: KeyPlan, depth: int, read_only: bool) -> rpc_pb2.TxnRequest:
        """One level of a txn tree: compares, then success and failure ops."""
        n_compares = self.rng.choices(range(5), weights=[20, 40, 25, 10, 5])[0]
        txn = rpc_pb2.TxnRequest(compare=[self.compare(plan) for _ in range(n_compares)])
        if not read_only and depth == 0 and self.chance(0.15):
            txn.success.extend(self.multi_put(plan))
        txn.success.extend(self.ops(plan, depth, read_only))
        txn.failure.extend(self.ops(plan, depth, read_only))
        return txn

    def multi_put(self, plan: KeyPlan) -> list[rpc_pb2.RequestOp]:
        """3 to 8 puts in one txn: keys sharing a create/mod revision, for sort ties."""
        keys = [plan.put_key() for _ in range(self.rng.randint(3, 8))]
        return [put_op(rpc_pb2.PutRequest(key=key, value=self.value())) for key in keys if key is not None]

    def ops(self, plan: KeyPlan, depth: int, read_only: bool) -> list[rpc_pb2.RequestOp]:
        """The ops of one branch; fewer in nested txns."""
        top = 6 if depth == 0 else 3
        return [self.op(plan, depth, read_only) for _ in range(self.rng.randint(0, top))]

    def op(self, plan: KeyPlan, depth: int, read_only: bool) -> rpc_pb2.RequestOp:
        """One txn op: Range, Put, DeleteRange or a nested Txn."""
        weights = {"range": 30, "put": 40, "delete": 15, "txn": 12}
        if read_only:
            weights.update(put=0, delete=0)
        if depth >= self.max_depth:
            weights["txn"] = 0
        kind = self.pick(weights)
        if kind == "txn":
            return txn_op(self.txn(plan, depth + 1, read_only))
        if kind == "put" and (key := plan.put_key()) is not None:
            return put_op(self.put_request(key))
        if kind == "delete" and (bounds := plan.delete_bounds(self.delete_bounds())) is not None:
            return delete_op(self.delete_request(bounds))
        return range_op(self.range_request(in_txn=True))

    def compare(self, plan: KeyPlan) -> rpc_pb2.Compare:
        """A compare of any target and result, on a key often written by the same txn."""
        written = plan.written
        key = self.rng.choice(written) if written and self.chance(0.3) else self.key()
        target, result = CompareTarget(self.rng.randrange(5)), CompareResult(self.rng.randrange(4))
        compare = rpc_pb2.Compare(key=key, target=target, result=result)
        if self.chance(0.1):
            compare.range_end = self.rng.choice([prefix_end(key), b"\x00", self.rng.choice(KEYS)])
        self.set_compare_target(compare)
        return compare

    def set_compare_target(self, compare: rpc_pb2.Compare) -> None:
        """Fill target_union: often the key's real value, sometimes near it, unset or mismatched."""
        roll = self.rng.random()
        if roll < 0.08:
            return
        name = COMPARE_FIELDS[compare.target]
        if roll < 0.15:
            name = self.rng.choice(list(COMPARE_FIELDS.values()))
        setattr(compare, name, self.compare_value(name, self.view.kvs.get(compare.key)))

    def compare_value(self, name: str, kv: kv_pb2.KeyValue | None) -> bytes | int:
        """The current value of field ``name`` of ``kv`` (or its default), or something near it."""
        actual: bytes | int = getattr(kv, name) if kv is not None else (b"" if name == "value" else 0)
        if self.chance(0.55):
            return actual
        if isinstance(actual, bytes):
            return self.value()
        if self.chance(0.5):
            return actual + self.rng.choice([-2, -1, 1, 2])
        return self.rng.randint(0, self.view.revision + 2)

    # -- bad input --------------------------------------------------------------

    def bad_request(self) -> Request:
        """A request etcd rejects (or a borderline one it accepts)."""
        makers: list[Callable[[], Request]] = [
            self.bad_empty_key,
            self.bad_empty_key_in_txn,
            self.bad_too_many_ops,
            self.bad_nested_too_many_ops,
            self.bad_duplicate_keys,
            self.bad_empty_op,
            self.bad_ignore_flags,
            self.bad_enum_values,
        ]
        return self.rng.choice(makers)()

    def bad_empty_key(self) -> Request:
        """Range, Put or DeleteRange with an empty key (sometimes with a range_end)."""
        end = self.rng.choice([b"", b"\x00", b"a"])
        options: list[Request] = [
            rpc_pb2.RangeRequest(key=b"", range_end=end),
            rpc_pb2.PutRequest(key=b"", value=b"v"),
            rpc_pb2.DeleteRangeRequest(key=b"", range_end=end),
        ]
        return self.rng.choice(options)

    def bad_empty_key_in_txn(self) -> rpc_pb2.TxnRequest:
        """A txn whose compare, or one of whose (possibly nested) ops, has an empty key."""
        bad = self.rng.choice(
            [
                range_op(rpc_pb2.RangeRequest(key=b"")),
                put_op(rpc_pb2.PutRequest(key=b"", value=b"v")),
                delete_op(rpc_pb2.DeleteRangeRequest(key=b"", range_end=b"\x00")),
                txn_op(rpc_pb2.TxnRequest(failure=[put_op(rpc_pb2.PutRequest(key=b""))])),
            ]
        )
        if self.chance(0.25):
            return rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"", target=rpc_pb2.Compare.VERSION)])
        return self.wrap_ops([self.op_on_key(self.rng.choice(KEYS)), bad])

    def bad_too_many_ops(self) -> rpc_pb2.TxnRequest:
        """128 (accepted) or 129 (rejected) compares, success ops or failure ops."""
        count = MAX_TXN_OPS + self.rng.choice([0, 1, 1])
        where = self.rng.choice(["compare", "success", "failure"])
        if where == "compare":
            compare = rpc_pb2.Compare(key=self.rng.choice(KEYS), target=rpc_pb2.Compare.VERSION, version=0)
            compare.result = rpc_pb2.Compare.GREATER
            return rpc_pb2.TxnRequest(compare=[compare] * count)
        key = self.rng.choice(KEYS)
        ops = [range_op(rpc_pb2.RangeRequest(key=key, count_only=True)) for _ in range(count)]
        if where == "success":
            return rpc_pb2.TxnRequest(success=ops)
        return rpc_pb2.TxnRequest(failure=ops)

    def bad_nested_too_many_ops(self) -> rpc_pb2.TxnRequest:
        """A nested txn at or just over the op budget its parent leaves it (128 - parent's ops)."""
        outer = self.rng.randint(40, 120)
        budget = MAX_TXN_OPS - (outer + 1)
        inner = [range_op(rpc_pb2.RangeRequest(key=b"a/00")) for _ in range(budget + self.rng.choice([0, 1]))]
        ops = [range_op(rpc_pb2.RangeRequest(key=b"b/0", keys_only=True)) for _ in range(outer)]
        return rpc_pb2.TxnRequest(success=[*ops, txn_op(rpc_pb2.TxnRequest(success=inner))])

    def bad_duplicate_keys(self) -> rpc_pb2.TxnRequest:
        """Puts and deletes of one key in one txn tree; some shapes etcd rejects, some it accepts."""
        key = self.rng.choice(KEYS[8:])
        put = put_op(rpc_pb2.PutRequest(key=key, value=self.value(), prev_kv=self.chance(0.5)))
        delete = delete_op(rpc_pb2.DeleteRangeRequest(key=key, prev_kv=True))
        around = delete_op(rpc_pb2.DeleteRangeRequest(key=key[:2], range_end=prefix_end(key[:2])))
        from_key = delete_op(rpc_pb2.DeleteRangeRequest(key=key, range_end=b"\x00"))
        shapes = [
            [put, put],
            [around, put],
            [put, around],
            [from_key, put],
            [put, from_key],
            [txn_op(rpc_pb2.TxnRequest(success=[put])), put],
            [txn_op(rpc_pb2.TxnRequest(success=[put], failure=[put]))],
            [txn_op(rpc_pb2.TxnRequest(success=[delete])), txn_op(rpc_pb2.TxnRequest(failure=[put]))],
            [txn_op(rpc_pb2.TxnRequest(success=[put])), txn_op(rpc_pb2.TxnRequest(success=[delete]))],
            [delete, txn_op(rpc_pb2.TxnRequest(success=[put]))],
            [txn_op(rpc_pb2.TxnRequest(success=[put])), delete],
        ]
        if self.chance(0.2):
            compares = [self.compare(KeyPlan(self.rng, False))]
            return rpc_pb2.TxnRequest(compare=compares, success=[delete], failure=[put])
        return self.wrap_ops(self.rng.choice(shapes))

    def bad_empty_op(self) -> rpc_pb2.TxnRequest:
        """A txn with an empty RequestOp, at the top or in a nested txn."""
        empty = rpc_pb2.RequestOp()
        if self.chance(0.3):
            empty = txn_op(rpc_pb2.TxnRequest(failure=[rpc_pb2.RequestOp()]))
        return self.wrap_ops([self.op_on_key(self.rng.choice(KEYS)), empty])

    def bad_ignore_flags(self) -> Request:
        """ignore_value with a value, or ignore_lease with a lease, alone or inside a txn."""
        request = rpc_pb2.PutRequest(key=self.rng.choice(KEYS), value=b"v")
        if self.chance(0.5):
            request.ignore_value = True
        else:
            request.ignore_lease, request.value, request.lease = True, b"", self.lease()
        return self.wrap_ops([put_op(request)]) if self.chance(0.3) else request

    def bad_enum_values(self) -> Request:
        """Out-of-range sort order or compare target/result numbers.

        Never an out-of-range sort_target: etcd 3.5.1 does not validate it and dereferences a
        nil sorter (SIGSEGV, the whole server dies) whenever the sort order is, or defaults
        to, ASCEND/DESCEND, which it does for any target other than KEY.
        """
        if self.chance(0.5):
            request = rpc_pb2.RangeRequest(key=b"a/", range_end=b"a0")
            request.sort_order = SortOrder(self.rng.choice([3, 7, 1 << 20]))
            request.sort_target = SortTarget(self.rng.randrange(5))
            return request
        target = CompareTarget(self.rng.choice([0, 5, 8]))
        compare = rpc_pb2.Compare(key=self.rng.choice(KEYS), target=target)
        compare.result = CompareResult(self.rng.choice([0, 4, 9]) if target < 5 else 0)
        compare.version = self.rng.randint(0, 3)
        return rpc_pb2.TxnRequest(compare=[compare], success=[self.op_on_key(b"b/1")])

    def op_on_key(self, key: bytes) -> rpc_pb2.RequestOp:
        """A valid op touching ``key``."""
        if self.chance(0.5):
            return range_op(rpc_pb2.RangeRequest(key=key))
        return put_op(rpc_pb2.PutRequest(key=key, value=self.value()))

    def wrap_ops(self, ops: Sequence[rpc_pb2.RequestOp]) -> rpc_pb2.TxnRequest:
        """A txn with ``ops`` as its success or failure branch, and maybe a compare."""
        compares = [self.compare(KeyPlan(self.rng, False))] if self.chance(0.5) else []
        branch = "success" if self.chance(0.6) else "failure"
        txn = rpc_pb2.TxnRequest(compare=compares, **{branch: list(ops)})
        strip_unsafe_ignores(txn)
        return txn


# ---------------------------------------------------------------------------
# Running requests and comparing outcomes
# ---------------------------------------------------------------------------

#: gRPC codes that mean the server is down or stuck, not that it answered.
TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def clear_header_ids(message: Message) -> None:
    """Clear cluster_id, member_id and raft_term in every ResponseHeader inside ``message``."""
    if isinstance(message, rpc_pb2.ResponseHeader):
        for name in ("cluster_id", "member_id", "raft_term"):
            message.ClearField(name)
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        for item in value if descriptor.is_repeated else [value]:
            clear_header_ids(item)


def normalise(message: Message) -> Message:
    """A copy of ``message`` with the cluster-specific header fields cleared."""
    copy = type(message)()
    copy.CopyFrom(message)
    clear_header_ids(copy)
    return copy


def to_text(message: Message, one_line: bool = False) -> str:
    """Protobuf text format, bytes escaped, with the message type in front."""
    body = text_format.MessageToString(message, as_utf8=False, as_one_line=one_line).strip()
    if one_line:
        return f"{type(message).__name__} {{ {body} }}"
    return f"{type(message).__name__} {{\n{textwrap.indent(body, '  ')}\n}}"


@dataclass(frozen=True)
class Outcome:
    """What a server answered: a normalised response, or a gRPC status code and details."""

    response: Message | None = None
    code: grpc.StatusCode | None = None
    details: str = ""

    def signature(self) -> tuple[str, str, bytes]:
        """What must be equal between servers: code, details and deterministic response bytes."""
        data = self.response.SerializeToString(deterministic=True) if self.response is not None else b""
        return (self.code.name if self.code else "OK", self.details, data)

    def is_transport_failure(self) -> bool:
        """Whether the server did not really answer (down, stuck, or crashed)."""
        return self.code in TRANSPORT_CODES

    def text(self) -> str:
        """A readable rendering for reports."""
        if self.response is not None:
            return to_text(self.response)
        assert self.code is not None
        return f"error {self.code.name}: {self.details!r}"


class KVClient:
    """A synchronous etcd KV client for one endpoint (host:port)."""

    def __init__(self, endpoint: str, timeout: float = 30) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.channel = grpc.insecure_channel(endpoint)
        self.stub = rpc_pb2_grpc.KVStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def method(self, request: Request) -> Callable[..., Message]:
        """The stub method that takes ``request``."""
        methods: dict[type[Message], Callable[..., Message]] = {
            rpc_pb2.RangeRequest: self.stub.Range,
            rpc_pb2.PutRequest: self.stub.Put,
            rpc_pb2.DeleteRangeRequest: self.stub.DeleteRange,
            rpc_pb2.TxnRequest: self.stub.Txn,
            rpc_pb2.CompactionRequest: self.stub.Compact,
        }
        return methods[type(request)]

    def call(self, request: Request) -> Outcome:
        """Send ``request`` and record the normalised response or the error."""
        try:
            response = self.method(request)(request, timeout=self.timeout)
        except grpc.RpcError as error:
            return Outcome(code=error.code(), details=error.details() or "")
        return Outcome(response=normalise(response))

    def view(self, compact_revision: int) -> StoreView:
        """Every key and the current revision (a serializable read, which changes nothing)."""
        request = rpc_pb2.RangeRequest(key=ALL_KEYS[0], range_end=ALL_KEYS[1], serializable=True)
        response = self.stub.Range(request, timeout=self.timeout)
        kvs = {kv.key: kv for kv in response.kvs}
        return StoreView(revision=response.header.revision, compact_revision=compact_revision, kvs=kvs)


@dataclass(frozen=True)
class Step:
    """One request and what both servers answered."""

    index: int
    request: Request
    reference: Outcome
    candidate: Outcome

    def summary(self, width: int = 600) -> str:
        """One line: index, request (cut to ``width`` characters) and the reference's outcome kind."""
        answer = self.reference.code.name if self.reference.code else "OK"
        request = textwrap.shorten(to_text(self.request, one_line=True), width, placeholder=" ...")
        return f"#{self.index} {request} -> {answer}"


@dataclass(frozen=True)
class Mismatch:
    """The first request on which the two servers disagreed, with enough context to debug it."""

    seed: int
    step: Step
    names: tuple[str, str]
    history: tuple[Step, ...] = ()

    def report(self) -> str:
        """A readable report: seed, op index, request, both outcomes and their diff."""
        ref_name, cand_name = self.names
        ref_text, cand_text = self.step.reference.text(), self.step.candidate.text()
        diff = difflib.unified_diff(
            ref_text.splitlines(), cand_text.splitlines(), ref_name, cand_name, lineterm=""
        )
        recent = "\n".join(step.summary() for step in self.history) or "(none)"
        return (
            f"MISMATCH seed={self.seed} op={self.step.index}\n"
            f"--- request #{self.step.index}:\n{to_text(self.step.request)}\n"
            f"--- {ref_name}:\n{ref_text}\n"
            f"--- {cand_name}:\n{cand_text}\n"
            f"--- diff:\n" + "\n".join(diff) + "\n"
            f"--- previous requests:\n{recent}\n"
        )


class ReferenceFailure(RuntimeError):
    """The reference server did not answer: the harness sent something that breaks etcd."""


def track_compaction(compact_revision: int, request: Request, outcome: Outcome) -> int:
    """The compacted revision after ``request`` was answered with ``outcome``."""
    if isinstance(request, rpc_pb2.CompactionRequest) and outcome.code is None:
        return max(compact_revision, request.revision)
    return compact_revision


def final_request() -> rpc_pb2.RangeRequest:
    """A last read of the whole store, to compare the final states."""
    return rpc_pb2.RangeRequest(key=ALL_KEYS[0], range_end=ALL_KEYS[1])


def run_differential(
    seed: int,
    ops: int,
    reference: str,
    candidate: str,
    names: tuple[str, str] = ("etcd", "candidate"),
    trace: Callable[[Step], None] | None = None,
) -> Mismatch | None:
    """Send ``ops`` generated requests (plus a final full read) to both endpoints in lockstep.

    Returns the first :class:`Mismatch`, or None when every outcome was equal. Raises
    :class:`ReferenceFailure` if the reference stops answering.
    """
    generator = RequestGenerator(seed)
    ref, cand = KVClient(reference), KVClient(candidate)
    history: collections.deque[Step] = collections.deque(maxlen=5)
    compact_revision = 0
    try:
        for index in range(ops + 1):
            view = ref.view(compact_revision)
            request = generator.next_request(view) if index < ops else final_request()
            step = Step(index, request, ref.call(request), cand.call(request))
            if trace is not None:
                trace(step)
            if step.reference.is_transport_failure():
                failure = f"{step.summary()}\n{step.reference.text()}"
                raise ReferenceFailure(f"seed={seed}: {names[0]} stopped answering at\n{failure}")
            if step.reference.signature() != step.candidate.signature():
                return Mismatch(seed, step, names, tuple(history))
            history.append(step)
            compact_revision = track_compaction(compact_revision, request, step.reference)
    finally:
        ref.close()
        cand.close()
    return None


# ---------------------------------------------------------------------------
# Command line: run one seed by hand
# ---------------------------------------------------------------------------


def print_step(step: Step) -> None:
    """Trace callback: one line per request."""
    print(step.summary(), flush=True)


@contextmanager
def started_servers(reference: str | None, candidate: str | None) -> Iterator[tuple[str, str]]:
    """The given endpoints, or a fresh etcd and a fresh kine-py in a temporary directory."""
    from kine_py.testing.processes import etcd_process, kine_process

    with tempfile.TemporaryDirectory(prefix="kine-diff-") as tmp:
        procs = []
        if reference is None:
            procs.append(etcd_process(Path(tmp) / "etcd").start())
            reference = procs[-1].endpoint
        if candidate is None:
            procs.append(kine_process(Path(tmp) / "kine").start())
            candidate = procs[-1].endpoint
        try:
            yield reference, candidate
        finally:
            for proc in procs:
                proc.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one seed against etcd and kine-py (or given endpoints); print the mismatch report."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--reference", help="host:port of the reference etcd (default: start one)")
    parser.add_argument("--candidate", help="host:port of the server under test (default: start kine-py)")
    parser.add_argument("--trace", action="store_true", help="print every request as it is sent")
    args = parser.parse_args(argv)
    with started_servers(args.reference, args.candidate) as (reference, candidate):
        trace = print_step if args.trace else None
        mismatch = run_differential(args.seed, args.ops, reference, candidate, ("etcd", "kine"), trace)
    print(mismatch.report() if mismatch else f"seed {args.seed}: {args.ops} ops, no mismatch")
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())


def seeds_from_env(variable: str, default: int = 20) -> list[int]:
    """Seeds from an environment variable: ``N`` (0..N-1), ``a,b,c`` or ``a-b``; 0..default-1 if unset."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return list(range(default))
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    if "-" in text:
        first, last = (int(part) for part in text.split("-", 1))
        return list(range(first, last + 1))
    return list(range(int(text)))


def ops_from_env(variable: str, default: int = 2000) -> int:
    """Requests per seed, from an environment variable."""
    return int(os.environ.get(variable, default))
