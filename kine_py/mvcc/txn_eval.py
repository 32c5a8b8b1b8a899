"""Txn rules that need no storage: etcd's request checks, its put/delete overlap check,
and how one compare judges one key-value.

These follow etcd 3.5's ``checkTxnRequest``, ``checkIntervals`` and
``compareKV``; comments note where etcd's behaviour is surprising but kept,
because clients see it.
"""

from __future__ import annotations

from collections.abc import Sequence

from kine_py.errors import (
    DuplicateKeyError,
    EmptyKeyError,
    KeyNotFoundError,
    LeaseProvidedError,
    TooManyOpsError,
    ValueProvidedError,
)
from kine_py.model import Compare, CompareResult, CompareTarget, DeleteOp, KeyValue, Op, PutOp, RangeOp, TxnOp
from kine_py.mvcc.ranges import check_range


def check_put(op: PutOp) -> None:
    if not op.key:
        raise EmptyKeyError()
    if op.ignore_value and op.value:
        raise ValueProvidedError()
    if op.ignore_lease and op.lease:
        raise LeaseProvidedError()


def check_delete(op: DeleteOp) -> None:
    if not op.key:
        raise EmptyKeyError()


def check_txn(op: TxnOp, max_ops: int) -> None:
    """Size and shape checks, recursively; a nested txn gets what the outer one left."""
    width = max(len(op.compare), len(op.success), len(op.failure))
    if width > max_ops:
        raise TooManyOpsError()
    for c in op.compare:
        if not c.key:
            raise EmptyKeyError()
    for request in (*op.success, *op.failure):
        _check_op(request, max_ops - width)


def _check_op(op: Op, max_ops: int) -> None:
    if isinstance(op, RangeOp):
        check_range(op)
    elif isinstance(op, PutOp):
        check_put(op)
    elif isinstance(op, DeleteOp):
        check_delete(op)
    elif isinstance(op, TxnOp):
        check_txn(op, max_ops)
    else:
        raise KeyNotFoundError()  # an empty RequestOp: etcd answers "key not found"


def is_read_only(op: TxnOp) -> bool:
    """True when no branch, at any depth, holds a Put or a DeleteRange."""
    for request in (*op.success, *op.failure):
        if isinstance(request, PutOp | DeleteOp):
            return False
        if isinstance(request, TxnOp) and not is_read_only(request):
            return False
    return True


# ---- put/delete overlap (etcd's checkIntervals) ----

Interval = tuple[bytes, bytes]


def _delete_interval(op: DeleteOp) -> Interval:
    # etcd takes range_end as given here (no "\0" = from-key translation), so a
    # from-key delete is the empty interval [key, "\0") and overlaps nothing.
    return (op.key, op.range_end) if op.range_end else (op.key, op.key + b"\0")


def _hits(intervals: Sequence[Interval], key: bytes) -> bool:
    return any(begin <= key < end for begin, end in intervals)


def check_intervals(ops: Sequence[Op]) -> tuple[set[bytes], list[Interval]]:
    """Raise DuplicateKeyError if one branch writes a key twice; return (puts, deletes).

    A key may be put in both branches of a nested txn (only one runs), and
    deletes may overlap each other.
    """
    dels = [_delete_interval(op) for op in ops if isinstance(op, DeleteOp)]
    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnOp):
            continue
        puts_then, dels_then = check_intervals(op.success)
        puts_else, dels_else = check_intervals(op.failure)
        for key in puts_then:
            if key in puts or _hits(dels, key):
                raise DuplicateKeyError()
            puts.add(key)
        for key in puts_else:
            if (key in puts and key not in puts_then) or _hits(dels, key):
                raise DuplicateKeyError()
            puts.add(key)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if isinstance(op, PutOp):
            if op.key in puts or _hits(dels, op.key):
                raise DuplicateKeyError()
            puts.add(op.key)
    return puts, dels


# ---- compares ----

_EMPTY = KeyValue(b"", 0, 0, 0, b"", 0)


def compare_kv(c: Compare, kv: KeyValue | None) -> bool:
    """One compare against one key-value (None: the key does not exist).

    As in etcd, an operand set for another target compares as 0 (or b""), an
    unknown target compares as equal, and an unknown result is true.
    """
    if kv is None:
        if c.target == CompareTarget.VALUE:
            return False  # a missing key has no value to compare
        kv = _EMPTY
    mine = c.operand if c.operand_target == c.target else None
    diff: int
    if c.target == CompareTarget.VALUE:
        other = mine if isinstance(mine, bytes) else b""
        diff = (kv.value > other) - (kv.value < other)
    else:
        ours = _int_field(c.target, kv)
        theirs = mine if isinstance(mine, int) else 0
        diff = (ours > theirs) - (ours < theirs)
    return _judge(c.result, diff)


def _int_field(target: int, kv: KeyValue) -> int:
    if target == CompareTarget.VERSION:
        return kv.version
    if target == CompareTarget.CREATE:
        return kv.create_revision
    if target == CompareTarget.MOD:
        return kv.mod_revision
    if target == CompareTarget.LEASE:
        return kv.lease
    return 0


def _judge(result: int, diff: int) -> bool:
    if result == CompareResult.EQUAL:
        return diff == 0
    if result == CompareResult.NOT_EQUAL:
        return diff != 0
    if result == CompareResult.GREATER:
        return diff > 0
    if result == CompareResult.LESS:
        return diff < 0
    return True
