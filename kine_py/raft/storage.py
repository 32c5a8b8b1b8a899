"""The stable log as Raft reads it (``Storage``) and an in-memory implementation.

Ownership: Raft only ever *reads* a ``Storage``. The driver writes it, after it made the
``Ready``'s entries, hard state and snapshot durable in its own files: ``MemoryStorage``
is then the read path (etcd keeps its write-ahead log on disk and rebuilds a
``MemoryStorage`` from it on restart).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from kine_py.raft.types import (
    EMPTY_HARD_STATE,
    CompactedError,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    UnavailableError,
)

_NO_MEMBERS = ConfState()

ENTRY_OVERHEAD = 16
"""Bytes counted for an entry besides its data (term, index and type) in size limits."""


def entry_size(entry: Entry) -> int:
    """The size an entry counts for in ``max_size_per_msg`` and the per-Ready apply budget."""
    return len(entry.data) + ENTRY_OVERHEAD


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` whose total ``entry_size`` is at most ``max_size``,
    but always at least the first entry (so progress is possible with any budget)."""
    if max_size is None or len(entries) <= 1:
        return entries
    size = entry_size(entries[0])
    for i in range(1, len(entries)):
        size += entry_size(entries[i])
        if size > max_size:
            return entries[:i]
    return entries


class Storage(Protocol):
    """The stable part of a node's Raft log, read by the core.

    Any error other than the ``StorageError`` subclasses named below is treated as fatal:
    it propagates out of the ``RawNode`` call that triggered the read, and the node must stop.
    The caller owns returned lists; entries themselves are immutable and may be shared.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration as of the last snapshot (or the
        bootstrap configuration of a new node)."""
        ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, cut to ``max_size`` bytes (``entry_size``) but at least one if
        any exist. Raises CompactedError if ``lo`` is at or before the snapshot index,
        UnavailableError if the log holds no entries or ``hi`` is past ``last_index() + 1``."""
        ...

    def term(self, i: int) -> int:
        """The term of entry ``i``, valid for ``first_index() - 1 .. last_index()`` (the
        snapshot's index included). Raises CompactedError below, UnavailableError above."""
        ...

    def first_index(self) -> int:
        """The index of the first entry that may be available (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The index of the last entry (the snapshot index when the log is empty)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot. Raises SnapshotTemporarilyUnavailableError while one is
        being prepared; Raft asks again later."""
        ...


class MemoryStorage:
    """A ``Storage`` in memory: the snapshot plus the entries after it.

    ``_ents[0]`` is a dummy entry carrying the snapshot's index and term, so ``term()`` works
    for the snapshot index. A new cluster's nodes start with ``conf_state`` (the initial
    voters) as the configuration of an empty snapshot at index 0, term 0.

    Methods take a lock: the driver may append from another thread while the core reads.
    """

    def __init__(self, conf_state: ConfState = _NO_MEMBERS) -> None:
        self._lock = threading.Lock()
        self._hard_state = EMPTY_HARD_STATE
        self._snapshot = Snapshot(metadata=SnapshotMetadata(conf_state=conf_state))
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # -- Storage --------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        with self._lock:
            return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        with self._lock:
            offset = self._ents[0].index
            if lo <= offset:
                raise CompactedError(f"entries from {lo}: compacted up to {offset}")
            if hi > self._last_index() + 1:
                raise UnavailableError(f"entries up to {hi}: last index is {self._last_index()}")
            if len(self._ents) == 1:
                raise UnavailableError("the log holds no entries")
            return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        with self._lock:
            offset = self._ents[0].index
            if i < offset:
                raise CompactedError(f"term of {i}: compacted up to {offset}")
            if i - offset >= len(self._ents):
                raise UnavailableError(f"term of {i}: last index is {self._last_index()}")
            return self._ents[i - offset].term

    def first_index(self) -> int:
        with self._lock:
            return self._ents[0].index + 1

    def last_index(self) -> int:
        with self._lock:
            return self._last_index()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    # -- mutators (the driver's) ----------------------------------------------------------

    def hard_state(self) -> HardState:
        """The hard state last set (for tests and restarts)."""
        with self._lock:
            return self._hard_state

    def set_hard_state(self, hs: HardState) -> None:
        """Record the hard state of a ``Ready`` (after it is durable elsewhere)."""
        with self._lock:
            self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace everything with ``snap``. Raises SnapshotOutOfDateError if it is not newer
        than the stored snapshot (the bootstrap snapshot at index 0 can always be replaced)."""
        with self._lock:
            have = self._snapshot.metadata.index
            if have != 0 and have >= snap.metadata.index:
                raise SnapshotOutOfDateError(f"snapshot {snap.metadata.index} is not newer than {have}")
            self._snapshot = snap
            self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of ``index`` (which must be applied) and
        return it. ``conf_state`` is the configuration at ``index`` (``None``: unchanged since
        the last snapshot). Raises SnapshotOutOfDateError if ``index`` is not newer than the
        stored snapshot, ValueError if it is past the last entry."""
        with self._lock:
            if index <= self._snapshot.metadata.index:
                raise SnapshotOutOfDateError(f"snapshot {index} is not newer than {self._snapshot}")
            if index > self._last_index():
                raise ValueError(f"snapshot {index} is out of bound lastindex({self._last_index()})")
            term = self._ents[index - self._ents[0].index].term
            cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
            self._snapshot = Snapshot(SnapshotMetadata(conf_state=cs, index=index, term=term), data)
            return self._snapshot

    def compact(self, index: int) -> None:
        """Drop the entries before ``index`` (which must not be past the applied index).
        Raises CompactedError if already compacted there, ValueError if past the last entry."""
        with self._lock:
            offset = self._ents[0].index
            if index <= offset:
                raise CompactedError(f"compact {index}: already compacted up to {offset}")
            if index > self._last_index():
                raise ValueError(f"compact {index} is out of bound lastindex({self._last_index()})")
            i = index - offset
            self._ents = [Entry(term=self._ents[i].term, index=index), *self._ents[i + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries`` (consecutive indexes), replacing any stored entries at and after
        the first of them; entries at or before the snapshot index are skipped. Raises
        ValueError if they would leave a gap after the last stored entry."""
        if not entries:
            return
        with self._lock:
            first = self._ents[0].index + 1
            if entries[-1].index < first:
                return
            if entries[0].index < first:
                entries = entries[first - entries[0].index :]
            offset = entries[0].index - self._ents[0].index
            if offset > len(self._ents):
                raise ValueError(
                    f"missing log entry [last: {self._last_index()}, append at: {entries[0].index}]"
                )
            # Lists handed out by entries() are copies, so the stored list can change in place.
            del self._ents[offset:]
            self._ents.extend(entries)

    def _last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1
