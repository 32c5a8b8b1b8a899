"""Range maths as etcd's applier does it: key bounds, how many to fetch, filters, sort, limit.

The order of steps is etcd's (``applierV3backend.Range``): fetch ``limit + 1``
keys (every key when sorting or filtering), drop keys outside the min/max
revision filters, sort, cut to ``limit`` and set ``more``, then clear values
for ``keys_only``. ``count`` is the number of keys in the range, whatever the
limit and filters.
"""

from __future__ import annotations

from collections.abc import Callable

from kine_py.errors import EmptyKeyError, InvalidSortOptionError
from kine_py.model import KeyValue, RangeOp, SortOrder, SortTarget
from kine_py.mvcc.gosort import go_sort

_LESS: dict[int, Callable[[KeyValue, KeyValue], bool]] = {
    SortTarget.KEY: lambda a, b: a.key < b.key,
    SortTarget.VERSION: lambda a, b: a.version < b.version,
    SortTarget.CREATE: lambda a, b: a.create_revision < b.create_revision,
    SortTarget.MOD: lambda a, b: a.mod_revision < b.mod_revision,
    SortTarget.VALUE: lambda a, b: a.value < b.value,
}


# Only these orders sort; etcd 3.5.1 accepts any other value and then does not sort.
_SORTING = (SortOrder.ASCEND, SortOrder.DESCEND)


def end_bound(range_end: bytes) -> bytes | None:
    """The index's end bound: None for a single key, b"" for every key >= key."""
    if not range_end:
        return None
    return b"" if range_end == b"\0" else range_end


def check_range(op: RangeOp) -> None:
    """etcd's request checks for a Range (also applied to Ranges inside a Txn)."""
    if not op.key:
        raise EmptyKeyError()
    if _effective_order(op) in _SORTING and op.sort_target not in _LESS:
        # etcd 3.5.1 panics here (no sorter for the target); later releases answer this error.
        raise InvalidSortOptionError()


def _has_filters(op: RangeOp) -> bool:
    return bool(
        op.min_mod_revision or op.max_mod_revision or op.min_create_revision or op.max_create_revision
    )


def _effective_order(op: RangeOp) -> int:
    if op.sort_target != SortTarget.KEY and op.sort_order == SortOrder.NONE:
        return SortOrder.ASCEND
    if op.sort_target == SortTarget.KEY and op.sort_order == SortOrder.ASCEND:
        return SortOrder.NONE
    return op.sort_order


def fetch_limit(op: RangeOp) -> int:
    """How many keys to take from the index: 0 means all."""
    if op.sort_order != SortOrder.NONE or _has_filters(op):
        return 0
    return op.limit + 1 if op.limit > 0 else 0


def needs_values(op: RangeOp) -> bool:
    """Whether the values of the selected keys are needed to answer ``op``."""
    return not op.keys_only or (_effective_order(op) in _SORTING and op.sort_target == SortTarget.VALUE)


def _keep(op: RangeOp, kv: KeyValue) -> bool:
    if op.max_mod_revision and kv.mod_revision > op.max_mod_revision:
        return False
    if op.min_mod_revision and kv.mod_revision < op.min_mod_revision:
        return False
    if op.max_create_revision and kv.create_revision > op.max_create_revision:
        return False
    return not (op.min_create_revision and kv.create_revision < op.min_create_revision)


def finish(op: RangeOp, kvs: list[KeyValue]) -> tuple[list[KeyValue], bool]:
    """Filter, sort and cut ``kvs`` (in key order) as etcd does; return (kvs, more)."""
    if _has_filters(op):
        kvs = [kv for kv in kvs if _keep(op, kv)]
    order = _effective_order(op)
    if order in _SORTING:
        less = _LESS[op.sort_target]
        if order == SortOrder.DESCEND:
            forward = less
            less = lambda a, b: forward(b, a)  # noqa: E731
        go_sort(kvs, less)
    more = False
    if 0 < op.limit < len(kvs):
        kvs = kvs[: op.limit]
        more = True
    if op.keys_only:
        kvs = [KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease) for kv in kvs]
    return kvs, more
