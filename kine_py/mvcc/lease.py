"""Leases: ids, TTLs, expiry times and the keys attached to each.

The ``Lessor`` is the in-memory state; the store changes it only after the log
has durably recorded the change (grant, renewal, revocation), so it always
matches what a restart would load. Expiry times are wall-clock (Unix seconds)
because they are persisted: a restarted server keeps each lease's remaining
TTL, and revokes, with their keys, the leases that expired while it was down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kine_py.model import Event, EventType

# etcd's limits: lease.MaxLeaseTTL, and the minimum TTL of a default etcd
# (3/2 election timeout of 1 s, rounded up to whole seconds).
MAX_LEASE_TTL = 9_000_000_000
MIN_LEASE_TTL = 2


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int
    expiry: float
    keys: set[bytes] = field(default_factory=set)

    def remaining(self, now: float) -> float:
        return self.expiry - now


class LeaseIds:
    """etcd's id generator: 16 bits of member id, 40 bits of milliseconds, 8 of counter."""

    def __init__(self, member_id: int, now_ms: int) -> None:
        self._prefix = (member_id & 0xFFFF) << 48
        self._suffix = (now_ms & ((1 << 40) - 1)) << 8

    def next(self) -> int:
        self._suffix += 1
        return (self._prefix | (self._suffix & ((1 << 48) - 1))) & ((1 << 63) - 1)


class Lessor:
    """The leases of one store. Single-threaded (asyncio); mutated by the store's writer only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._key_lease: dict[bytes, int] = {}  # which lease each attached key is on
        self.ids = LeaseIds(0, int(clock() * 1000))

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def all(self) -> list[Lease]:
        """Every lease, soonest expiry first (etcd lists them so)."""
        return sorted(self._leases.values(), key=lambda lease: (lease.expiry, lease.id))

    def expired(self) -> list[int]:
        now = self.clock()
        return [lease.id for lease in self._leases.values() if lease.expiry <= now]

    def put(self, lease: Lease) -> None:
        """Add or replace a lease (its attached keys are kept on replace)."""
        old = self._leases.get(lease.id)
        if old is not None:
            lease.keys = old.keys
        self._leases[lease.id] = lease

    def remove(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        for key in lease.keys if lease is not None else ():
            self._key_lease.pop(key, None)

    def attach(self, lease_id: int, key: bytes) -> None:
        """Attach ``key`` to ``lease_id`` (0: to none), detaching it from any other lease."""
        old = self._key_lease.pop(key, 0)
        if old and old in self._leases:
            self._leases[old].keys.discard(key)
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.add(key)
            self._key_lease[key] = lease_id

    def follow(self, events: Iterable[Event]) -> None:
        """Move key attachments as committed events dictate, in order."""
        for event in events:
            self.attach(event.kv.lease if event.type == EventType.PUT else 0, event.kv.key)

    @staticmethod
    def granted_ttl(ttl: int) -> int:
        return max(ttl, MIN_LEASE_TTL)

    @staticmethod
    def seconds_left(lease: Lease, now: float) -> int:
        """Remaining whole seconds, truncated like etcd's int64(Remaining().Seconds())."""
        return math.trunc(lease.remaining(now))
