"""The interface between the MVCC store and a durable log backend (SQLite, later others).

The store owns every etcd rule; a log only keeps, durably and in revision
order, the rows the store hands it. One row is one change of one key at
revision (main, sub): all changes of one write share ``main``, as in etcd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Row:
    """One change of one key. A delete is a tombstone: ``deleted`` set, value empty."""

    main: int
    sub: int
    key: bytes
    value: bytes
    create: int
    version: int
    lease: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class Meta:
    """What the log knows besides rows. ``compact`` is -1 for a store never compacted (etcd's value);
    ``lease_version`` moves whenever a lease is granted, renewed or revoked."""

    revision: int
    compact: int
    cluster_id: int
    member_id: int
    lease_version: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as stored: granted TTL in seconds and expiry as Unix time."""

    id: int
    ttl: int
    expiry: float


@dataclass(frozen=True, slots=True)
class DbSize:
    total: int
    in_use: int


class Log(Protocol):
    """A durable, revision-ordered log of key changes.

    Calls come from one store in one event loop. ``start`` first, ``close`` last.
    ``append`` and ``set_compact`` are called by the store's single writer task,
    one at a time; reads (``rows_after``, ``values``, ``size``) may run at any
    time, concurrently with a write, and see only committed data.

    Every method raises ``BackendUnavailableError`` (with a message saying what
    failed) when the database cannot be used; the store keeps running.
    """

    async def start(self) -> Meta:
        """Create or migrate the schema, then return the committed meta."""
        ...

    async def rows_after(self, after: tuple[int, int], limit: int) -> list[Row]:
        """Up to ``limit`` rows with (main, sub) > ``after``, in (main, sub) order."""
        ...

    async def append(
        self,
        rows: Sequence[Row],
        *,
        expect: int,
        revision: int,
        lease_puts: Sequence[LeaseRow] = (),
        lease_deletes: Sequence[int] = (),
    ) -> None:
        """Durably add ``rows``, upsert and delete leases, and move the log's revision from
        ``expect`` to ``revision`` (equal when only leases change).

        Atomic: all or nothing. Returns only once the commit is durable. Raises
        ``RevisionConflictError`` (writing nothing) if the log's revision is not
        ``expect``, i.e. another process appended first.
        """
        ...

    async def leases(self) -> list[LeaseRow]:
        """Every stored lease."""
        ...

    async def set_compact(self, revision: int) -> None:
        """Durably record ``revision`` as the compact revision."""
        ...

    async def delete_rows(self, revisions: Sequence[tuple[int, int]]) -> None:
        """Physically remove rows by (main, sub), which compaction made unreachable."""
        ...

    async def values(self, revisions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The values of the rows at ``revisions``; rows that no longer exist are left out."""
        ...

    async def size(self) -> DbSize:
        """Bytes the database takes on disk, and how many of them hold data."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other processes may write the same log (then reads check ``meta``)."""
        ...

    async def meta(self) -> Meta:
        """The committed meta, as the database has it now."""
        ...

    async def barrier(self) -> None:
        """Before a linearizable read: return once ``meta`` reflects every write committed
        (by any process) before the call. A SQL database is its own barrier (no-op); a
        replicated log waits for a ReadIndex. Raises ``UnavailableError`` subclasses."""
        ...

    @property
    def barrier_shared(self) -> bool:
        """Whether concurrent ``barrier`` calls already share one round (a caller joining the
        next one, never one in flight) and ``meta`` after it is local, so the store needs no
        sharing of its own (Raft: the node shares ReadIndex rounds). False for a database,
        whose ``meta`` is a query worth sharing."""
        ...

    def follow(self, on_change: Callable[[], None], interval: float) -> None:
        """For a shared log: call ``on_change`` from any thread whenever another process may
        have written (at once where the database can notify, else by polling)."""
        ...

    async def try_lead(self) -> bool:
        """Whether this process is the one (of those sharing the log) that expires leases."""
        ...

    async def close(self) -> None:
        """Release connections and threads. Nothing may be called afterwards."""
        ...
