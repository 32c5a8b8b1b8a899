"""A node's view of its Raft log: the stable ``Storage`` plus the ``Unstable`` tail that is not
durable yet, with the committed / applying / applied positions (etcd-raft's ``raftLog``).

Who owns what: the core appends to ``Unstable``; ``RawNode.ready`` hands unstable entries
(and a snapshot) to the driver and marks them in progress; ``RawNode.advance`` tells the log
they are durable (``stable_to``) so they are dropped from memory, the driver having written
them to the ``Storage`` by then. Invariant: ``applied <= applying <= committed <= last_index``.
"""

from __future__ import annotations

import logging

from kine_py.raft.storage import Storage, entry_size, limit_size
from kine_py.raft.types import (
    CompactedError,
    Entry,
    RaftInvariantError,
    Snapshot,
    UnavailableError,
)


class Unstable:
    """Entries (and possibly one snapshot) not yet known to be durable.

    ``entries[i]`` has index ``offset + i``. ``offset`` may be below the storage's last index:
    then the next write replaces the storage's tail. ``entries[: offset_in_progress - offset]``
    and, if ``snapshot_in_progress``, the snapshot were handed to the driver already.
    """

    __slots__ = ("entries", "logger", "offset", "offset_in_progress", "snapshot", "snapshot_in_progress")

    def __init__(self, offset: int, logger: logging.Logger) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.snapshot_in_progress = False
        self.offset_in_progress = offset
        self.logger = logger

    def maybe_first_index(self) -> int | None:
        """The first index if there is an unstable snapshot, else None."""
        return self.snapshot.metadata.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        """The last index if there are unstable entries or a snapshot, else None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        return self.snapshot.metadata.index if self.snapshot is not None else None

    def maybe_term(self, i: int) -> int | None:
        """The term of entry ``i`` if the unstable part knows it, else None."""
        if i < self.offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == i:
                return snap.metadata.term
            return None
        k = i - self.offset
        if k < len(self.entries):
            return self.entries[k].term
        return None

    def next_entries(self) -> list[Entry]:
        """The entries not yet handed to the driver."""
        return self.entries[self.offset_in_progress - self.offset :]

    def has_next_entries(self) -> bool:
        return self.offset_in_progress - self.offset < len(self.entries)

    def next_snapshot(self) -> Snapshot | None:
        """The snapshot, if there is one not yet handed to the driver."""
        return None if self.snapshot_in_progress else self.snapshot

    def accept_in_progress(self) -> None:
        """Mark everything held now as handed to the driver."""
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``(index, term)`` are durable; forget them. Ignored if that entry was
        replaced in the meantime (another term at that index) or is not held here."""
        t = self.maybe_term(index)
        if t is None or index < self.offset:
            return
        if t != term:
            self.logger.info(
                "entry at (index,term)=(%d,%d) mismatched with entry at (%d,%d) in unstable log; ignoring",
                index,
                term,
                index,
                t,
            )
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)

    def stable_snap_to(self, index: int) -> None:
        """The snapshot at ``index`` is durable; forget it."""
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snap: Snapshot) -> None:
        """Replace everything by ``snap`` (a follower catching up by snapshot)."""
        self.offset = snap.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append ``ents``, first dropping held entries at and after ``ents[0].index``."""
        first = ents[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif first <= self.offset:
            self.logger.info("replace the unstable entries from index %d", first)
            self.entries = list(ents)
            self.offset = first
            self.offset_in_progress = first
        else:
            self.logger.info("truncate the unstable entries before index %d", first)
            self.entries = self.slice(self.offset, first) + ents
            self.offset_in_progress = min(self.offset_in_progress, first)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``, all of which must be held here."""
        upper = self.offset + len(self.entries)
        if lo > hi or lo < self.offset or hi > upper:
            raise RaftInvariantError(f"unstable.slice[{lo},{hi}) out of bound [{self.offset},{upper}]")
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """The log as the Raft state machine sees it (stable storage + unstable tail).

    Storage errors other than CompactedError / UnavailableError propagate (fatal);
    inconsistencies raise RaftInvariantError.
    """

    __slots__ = (
        "applied",
        "applying",
        "applying_ents_paused",
        "applying_ents_size",
        "committed",
        "logger",
        "max_applying_ents_size",
        "storage",
        "unstable",
    )

    def __init__(self, storage: Storage, logger: logging.Logger, max_applying_ents_size: int | None) -> None:
        """``max_applying_ents_size``: bytes of committed entries that may be handed out and
        not yet acknowledged as applied (None: no limit)."""
        self.storage = storage
        self.logger = logger
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1, logger)
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_ents_size = max_applying_ents_size
        self.applying_ents_size = 0
        self.applying_ents_paused = False

    def __repr__(self) -> str:
        u = self.unstable
        return (
            f"committed={self.committed}, applied={self.applied}, applying={self.applying}, "
            f"unstable.offset={u.offset}, unstable.offsetInProgress={u.offset_in_progress}, "
            f"len(unstable.Entries)={len(u.entries)}"
        )

    # -- appending --------------------------------------------------------------------------

    def maybe_append(self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]) -> int | None:
        """Append a leader's ``ents`` that follow ``(index, log_term)`` and advance the commit
        index to ``min(committed, last new index)``. Returns the last new index, or None if the
        log does not contain ``(index, log_term)``."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci != 0:
            if ci <= self.committed:
                raise RaftInvariantError(
                    f"entry {ci} conflict with committed entry [committed({self.committed})]"
                )
            self.append(list(ents[ci - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        """Append ``ents`` to the unstable tail (replacing a conflicting suffix); returns the new
        last index."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise RaftInvariantError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """The index of the first of ``ents`` that is new or differs in term from the log, or 0
        if the log holds them all."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                if e.index <= self.last_index():
                    self.logger.info(
                        "found conflict at index %d [existing term: %d, conflicting term: %d]",
                        e.index,
                        self.term_or_zero(e.index),
                        e.term,
                    )
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``i <= index`` whose term is ``<= term`` or unknown (compacted), with its
        term (0 if unknown). Used to skip a whole divergent term per append probe."""
        while index > 0:
            try:
                our_term = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- handing out work ---------------------------------------------------------------------

    def next_unstable_ents(self) -> list[Entry]:
        return self.unstable.next_entries()

    def has_next_unstable_ents(self) -> bool:
        return self.unstable.has_next_entries()

    def has_next_or_in_progress_unstable_ents(self) -> bool:
        return bool(self.unstable.entries)

    def next_committed_ents(self, allow_unstable: bool) -> list[Entry]:
        """Committed entries not yet handed out for applying, within the apply budget."""
        if self.applying_ents_paused or self.has_next_or_in_progress_snapshot():
            return []
        lo, hi = self.applying + 1, self.max_appliable_index(allow_unstable) + 1
        if lo >= hi:
            return []
        budget = None
        if self.max_applying_ents_size is not None:
            budget = self.max_applying_ents_size - self.applying_ents_size
            if budget <= 0:
                raise RaftInvariantError(f"applying entry size {self.applying_ents_size} not below budget")
        return self.slice(lo, hi, budget)

    def has_next_committed_ents(self, allow_unstable: bool) -> bool:
        if self.applying_ents_paused or self.has_next_or_in_progress_snapshot():
            return False
        return self.applying < self.max_appliable_index(allow_unstable)

    def max_appliable_index(self, allow_unstable: bool) -> int:
        if allow_unstable:
            return self.committed
        return min(self.committed, self.unstable.offset - 1)

    def next_unstable_snapshot(self) -> Snapshot | None:
        return self.unstable.next_snapshot()

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        """The unstable snapshot if any, else the storage's (may raise its errors)."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def accept_unstable(self) -> None:
        """The driver took the unstable entries and snapshot (a ``Ready``)."""
        self.unstable.accept_in_progress()

    def accept_applying(self, index: int, size: int, allow_unstable: bool) -> None:
        """Committed entries up to ``index`` (``size`` bytes) were handed out for applying."""
        if self.committed < index:
            raise RaftInvariantError(f"applying({index}) is out of range [committed({self.committed})]")
        self.applying = index
        self.applying_ents_size += size
        limit = self.max_applying_ents_size
        self.applying_ents_paused = (
            limit is not None and self.applying_ents_size >= limit
        ) or index < self.max_appliable_index(allow_unstable)

    def applied_to(self, index: int, size: int) -> None:
        """The state machine applied up to ``index``; ``size`` bytes of the budget are free."""
        if self.committed < index or index < self.applied:
            raise RaftInvariantError(
                f"applied({index}) is out of range [prevApplied({self.applied}), committed({self.committed})]"
            )
        self.applied = index
        self.applying = max(self.applying, index)
        self.applying_ents_size = max(0, self.applying_ents_size - size)
        limit = self.max_applying_ents_size
        self.applying_ents_paused = limit is not None and self.applying_ents_size >= limit

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    # -- positions ---------------------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def commit_to(self, to_commit: int) -> None:
        """Advance the commit index (never backwards; never past the last entry)."""
        if self.committed < to_commit:
            if self.last_index() < to_commit:
                raise RaftInvariantError(
                    f"tocommit({to_commit}) is out of range [lastIndex({self.last_index()})]. "
                    "Was the raft log corrupted, truncated, or lost?"
                )
            self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is of ``term`` (the commit rule: a leader
        only counts replicas for entries of its own term)."""
        if max_index > self.committed and term != 0 and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def restore(self, snap: Snapshot) -> None:
        """Replace the log by ``snap`` (a follower behind the leader's compaction)."""
        self.logger.info(
            "log [%r] starts to restore snapshot [index: %d, term: %d]",
            self,
            snap.metadata.index,
            snap.metadata.term,
        )
        self.committed = snap.metadata.index
        self.unstable.restore(snap)

    # -- reading -------------------------------------------------------------------------------

    def term(self, i: int) -> int:
        """The term of entry ``i``. Raises CompactedError / UnavailableError outside
        ``first_index() - 1 .. last_index()``; other storage errors propagate."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i + 1 < self.first_index():
            raise CompactedError(f"term of {i}: compacted")
        if i > self.last_index():
            raise UnavailableError(f"term of {i}: past the last index {self.last_index()}")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """``term(i)``, or 0 when ``i`` is compacted or not in the log."""
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at ``(last_index, term)`` is at least as up to date as ours
        (Raft paper 5.4.1: later last term wins, then the longer log)."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    def entries(self, i: int, max_size: int | None) -> list[Entry]:
        """Entries from ``i`` to the end, cut to ``max_size``. Raises CompactedError."""
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[Entry]:
        """Every entry still in the log (for tests and debugging)."""
        return self.entries(self.first_index(), None)

    def slice(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        """Entries ``[lo, hi)`` cut to ``max_size``. Raises CompactedError if ``lo`` is
        compacted; asking past the last entry is an invariant violation."""
        self._check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        offset = self.unstable.offset
        ents: list[Entry] = []
        if lo < offset:
            stored_hi = min(hi, offset)
            try:
                ents = self.storage.entries(lo, stored_hi, max_size)
            except UnavailableError as exc:
                raise RaftInvariantError(f"entries[{lo}:{stored_hi}) is unavailable from storage") from exc
            if len(ents) < stored_hi - lo:
                return ents
        if hi > offset:
            unstable = self.unstable.slice(max(lo, offset), hi)
            ents = ents + unstable if ents else unstable
        return limit_size(ents, max_size)

    def _check_out_of_bounds(self, lo: int, hi: int) -> None:
        if lo > hi:
            raise RaftInvariantError(f"invalid slice {lo} > {hi}")
        first = self.first_index()
        if lo < first:
            raise CompactedError(f"slice from {lo}: first index is {first}")
        last = self.last_index()
        if hi > last + 1:
            raise RaftInvariantError(f"slice[{lo},{hi}) out of bound [{first},{last}]")


def ents_size(ents: list[Entry] | tuple[Entry, ...]) -> int:
    """Total ``entry_size`` of ``ents``."""
    return sum(len(e.data) for e in ents) + len(ents) * _OVERHEAD


def payloads_size(ents: list[Entry] | tuple[Entry, ...]) -> int:
    """Total data bytes of ``ents`` (what the uncommitted-size limit counts)."""
    return sum(len(e.data) for e in ents)


_OVERHEAD = entry_size(Entry(term=0, index=0))
