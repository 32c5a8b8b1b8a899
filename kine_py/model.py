"""The request and result types the gRPC layer hands to and gets from the MVCC store.

They mirror etcd's messages field for field (names as in the .proto), as plain
frozen dataclasses, so that ``kine_py.mvcc`` never sees protobuf. Keys and
values are bytes everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes
    lease: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as a watcher sees it. For DELETE, ``kv`` holds the key and the delete revision."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class RangeOp:
    """A Range. ``range_end``: b"" the single key; b"\\0" every key >= key; else [key, range_end).

    ``sort_order`` and ``sort_target`` are plain ints: a value outside the enums
    must reach the store so that it can answer etcd's error.
    """

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: int = 0
    sort_target: int = 0
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class PutOp:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOp:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Compare:
    """A Txn guard. ``operand`` is the target_union value; None when none was set.

    ``operand_target`` says which target_union field was set: etcd compares
    against 0 / b"" when it is not the one the target names.
    """

    key: bytes
    target: int = CompareTarget.VERSION
    result: int = CompareResult.EQUAL
    operand: int | bytes | None = None
    operand_target: int | None = None
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class TxnOp:
    compare: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()


# A RequestOp; None is an empty one (no request set), which etcd rejects.
Op: TypeAlias = RangeOp | PutOp | DeleteOp | TxnOp | None


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: list[KeyValue]
    more: bool
    count: int


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TxnResult:
    revision: int
    succeeded: bool
    responses: list[OpResult]


OpResult: TypeAlias = RangeResult | PutResult | DeleteResult | TxnResult


@dataclass(frozen=True, slots=True)
class WatchCreate:
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    progress_notify: bool = False
    filters: tuple[int, ...] = ()
    prev_kv: bool = False
    watch_id: int = 0
    fragment: bool = False


@dataclass(frozen=True, slots=True)
class WatchReply:
    """One WatchResponse: ``revision`` is its header revision. No events, not created, not
    canceled and no compact revision: a progress notification."""

    watch_id: int
    revision: int
    events: list[Event] = field(default_factory=list)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""

    def with_revision(self, revision: int) -> WatchReply:
        return WatchReply(
            self.watch_id,
            revision,
            self.events,
            self.created,
            self.canceled,
            self.compact_revision,
            self.cancel_reason,
        )


@dataclass(frozen=True, slots=True)
class LeaseGrantOp:
    ttl: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRevokeOp:
    id: int


@dataclass(frozen=True, slots=True)
class LeaseRenewOp:
    id: int


LeaseOp: TypeAlias = LeaseGrantOp | LeaseRevokeOp | LeaseRenewOp


@dataclass(frozen=True, slots=True)
class LeaseGrantResult:
    id: int
    ttl: int
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """LeaseTimeToLive's answer: remaining and granted TTL in seconds, attached keys (sorted)."""

    id: int
    ttl: int
    granted_ttl: int
    keys: list[bytes]


@dataclass(frozen=True, slots=True)
class StoreStatus:
    revision: int
    compact_revision: int
    db_size: int
    db_size_in_use: int
    cluster_id: int
    member_id: int
