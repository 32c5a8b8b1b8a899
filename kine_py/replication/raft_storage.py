"""Raft's durable storage: the write-ahead log on disk, a ``MemoryStorage`` as the read path.

etcd-server's pattern. The ``WAL`` is the durable copy of the log; ``memory`` (a
``kine_py.raft.MemoryStorage``) is what the Raft core reads, and is only ever updated after
the WAL holds the same thing. On restart ``memory`` is rebuilt from the WAL: the latest
snapshot marker (as a snapshot with empty data), the hard state, then the entries above it.
Entries the memory kept below a snapshot for slow followers ("catch-up entries") are not
rebuilt, as in etcd: after a restart the log starts right after the latest snapshot.

Ownership: the driver owns the ``DiskStorage`` and calls ``save``, ``compact`` and ``close``
from one thread at a time (they block on fsync); the core may read ``memory`` concurrently
(it has its own lock). The snapshot's data (the state machine database) is stored by the
driver, not here; this class only records the snapshot's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from kine_py.raft.storage import MemoryStorage
from kine_py.raft.types import ConfState, Ready, Snapshot, SnapshotMetadata, SnapshotOutOfDateError
from kine_py.replication.wal import DEFAULT_SEGMENT_SIZE, WAL, TornTail, WalState

__all__ = ["DEFAULT_CATCH_UP_ENTRIES", "DiskStorage"]

DEFAULT_CATCH_UP_ENTRIES: Final = 5000
"""Entries kept in memory below a new snapshot (etcd's DefaultSnapshotCatchUpEntries)."""


class DiskStorage:
    """The WAL in a directory plus the ``MemoryStorage`` rebuilt from it."""

    def __init__(self, wal: WAL, memory: MemoryStorage, state: WalState) -> None:
        self._wal = wal
        self._memory = memory
        self._torn_tail = state.torn_tail
        self._is_new = state.snapshot is None and not state.entries and state.hard_state.is_empty()

    @classmethod
    def open(
        cls, directory: Path, *, initial: ConfState, segment_size: int = DEFAULT_SEGMENT_SIZE
    ) -> DiskStorage:
        """Open (or create) the WAL in ``directory`` and rebuild the memory storage from it.

        ``initial`` is the configuration of a log without any snapshot marker (the empty
        snapshot at index 0). Raises what ``WAL.open`` raises (``WalCorruptError``: refuse to
        start) and ``ValueError`` if the WAL's contents do not fit together.
        """
        wal, state = WAL.open(directory, segment_size=segment_size)
        try:
            memory = MemoryStorage(initial)
            if state.snapshot is not None:
                memory.apply_snapshot(Snapshot(state.snapshot))
            memory.set_hard_state(state.hard_state)
            memory.append(state.entries)
        except BaseException:
            wal.close()
            raise
        return cls(wal, memory, state)

    @property
    def memory(self) -> MemoryStorage:
        """Raft's read path (pass it to ``RawNode``). Do not mutate it directly."""
        return self._memory

    @property
    def wal(self) -> WAL:
        return self._wal

    @property
    def torn_tail(self) -> TornTail | None:
        """The torn tail the WAL truncated when it was opened, if any."""
        return self._torn_tail

    @property
    def is_new(self) -> bool:
        """True when nothing was ever made durable here (no snapshot, entries or hard state):
        a new member that still has to bootstrap or receive a snapshot."""
        return self._is_new

    def save(self, ready: Ready) -> None:
        """Make ``ready``'s snapshot, entries and hard state durable, then show them to Raft.

        Order: the snapshot marker (synced) first, then entries and hard state in one WAL
        write (fdatasync iff ``ready.must_sync``); then ``memory``: apply_snapshot, append,
        set_hard_state. Raises ``OSError``/``WalError`` from the WAL (the node must stop) and
        ``SnapshotOutOfDateError`` if the snapshot is older than the stored one.
        """
        snapshot = ready.snapshot if ready.snapshot is not None and not ready.snapshot.is_empty() else None
        if snapshot is not None:
            have = self._memory.snapshot().metadata.index
            if snapshot.metadata.index <= have:
                raise SnapshotOutOfDateError(f"snapshot {snapshot.metadata.index} is not newer than {have}")
            self._wal.save_snapshot(snapshot.metadata, replaces_log=True)
        if ready.entries or ready.hard_state is not None:
            self._wal.save(ready.hard_state, ready.entries, sync=ready.must_sync)
        self._is_new = False
        if snapshot is not None:
            self._memory.apply_snapshot(snapshot)
        self._memory.append(ready.entries)
        if ready.hard_state is not None:
            self._memory.set_hard_state(ready.hard_state)

    def quick_save(self, ready: Ready) -> bool:
        """Whether ``save(ready)`` is one small write with no fsync (a new commit index only),
        cheap enough for the event loop instead of the WAL thread."""
        quick = not (ready.entries or ready.must_sync) and (
            ready.snapshot is None or ready.snapshot.is_empty()
        )
        return quick and not self._wal.near_cut

    def compact(
        self, index: int, conf_state: ConfState, data: bytes, *, keep: int = DEFAULT_CATCH_UP_ENTRIES
    ) -> Snapshot:
        """Record a snapshot of the applied state machine at ``index`` and shorten the log.

        Order: the WAL marker (synced), delete WAL segments wholly below ``index``; then
        ``memory.create_snapshot`` and drop memory entries up to ``index - keep`` (the last
        ``keep`` entries stay so slow followers can catch up without a snapshot). Returns the
        new snapshot. Raises ``SnapshotOutOfDateError`` (not newer than the stored snapshot),
        ``UnavailableError`` (``index`` past the last entry), ``ValueError`` (negative
        ``keep``) and the WAL's errors; ``memory`` is unchanged when it raises.
        """
        if keep < 0:
            raise ValueError(f"keep must not be negative, not {keep}")
        have = self._memory.snapshot().metadata.index
        if index <= have:
            raise SnapshotOutOfDateError(f"snapshot {index} is not newer than {have}")
        meta = SnapshotMetadata(conf_state, index, self._memory.term(index))
        self._wal.save_snapshot(meta)
        self._wal.release_to(index)
        snapshot = self._memory.create_snapshot(index, conf_state, data)
        compact_to = index - keep
        if compact_to >= self._memory.first_index():
            self._memory.compact(compact_to)
        return snapshot

    def close(self) -> None:
        """Close the WAL (releasing its directory lock)."""
        self._wal.close()
