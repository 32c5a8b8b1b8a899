"""RaftLog and Unstable: the stable + unstable view of a node's log (ideas of etcd-raft's
log_test.go and log_unstable_test.go)."""

from __future__ import annotations

import logging

import pytest

from kine_py.raft import (
    CompactedError,
    ConfState,
    Entry,
    MemoryStorage,
    RaftInvariantError,
    Snapshot,
    SnapshotMetadata,
    UnavailableError,
)
from kine_py.raft.log import RaftLog, Unstable
from kine_py.raft.storage import entry_size

from .network import entries_of_terms

LOGGER = logging.getLogger("tests.raft")


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from ``(index, term)`` pairs."""
    return [Entry(term=t, index=i) for i, t in pairs]


def pairs(entries: list[Entry]) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in entries]


def new_log(stored: list[Entry] | None = None, snapshot: tuple[int, int] | None = None, **kw: int) -> RaftLog:
    s = MemoryStorage()
    if snapshot is not None:
        s.apply_snapshot(
            Snapshot(SnapshotMetadata(ConfState(voters=(1,)), index=snapshot[0], term=snapshot[1]))
        )
    if stored:
        s.append(stored)
    return RaftLog(s, LOGGER, kw.get("max_applying"))


@pytest.mark.parametrize(
    ("new", "conflict"),
    [
        ([], 0),
        (ents((1, 1), (2, 2), (3, 3)), 0),
        (ents((2, 2), (3, 3)), 0),
        (ents((3, 3)), 0),
        (ents((1, 1), (2, 2), (3, 3), (4, 4), (5, 4)), 4),
        (ents((3, 3), (4, 4), (5, 4)), 4),
        (ents((4, 4), (5, 4)), 4),
        (ents((1, 4), (2, 4)), 1),
        (ents((2, 1), (3, 4), (4, 4)), 2),
        (ents((3, 1), (4, 2), (5, 4), (6, 4)), 3),
    ],
)
def test_find_conflict(new: list[Entry], conflict: int) -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2), (3, 3)))
    assert log.find_conflict(new) == conflict


@pytest.mark.parametrize(
    ("terms", "snapshot", "index", "term", "want"),
    [
        # log: indexes 1..10, terms 2,2,2,5,5,5,6,6,6,6
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 9, (10, 6)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 6, (10, 6)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 5, (6, 5)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 4, (3, 2)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 2, (3, 2)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 10, 1, (0, 0)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 5, 4, (3, 2)),
        ([2, 2, 2, 5, 5, 5, 6, 6, 6, 6], None, 0, 0, (0, 0)),
        # compacted up to index 10 (term 3): below it the term is unknown
        ([], (10, 3), 10, 2, (9, 0)),  # term 3 > 2 at 10, and 9 is compacted
        ([], (10, 3), 10, 3, (10, 3)),
        ([], (10, 3), 9, 2, (9, 0)),
    ],
)
def test_find_conflict_by_term(
    terms: list[int], snapshot: tuple[int, int] | None, index: int, term: int, want: tuple[int, int]
) -> None:
    log = new_log(entries_of_terms(terms), snapshot)
    assert log.find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_after_compaction_of_a_longer_log() -> None:
    s = MemoryStorage()
    s.apply_snapshot(Snapshot(SnapshotMetadata(ConfState(voters=(1,)), index=10, term=3)))
    s.append(entries_of_terms([3, 4, 4, 5], start=11))
    log = RaftLog(s, LOGGER, None)
    assert log.find_conflict_by_term(14, 4) == (13, 4)
    assert log.find_conflict_by_term(14, 3) == (11, 3)
    assert log.find_conflict_by_term(14, 2) == (9, 0)


@pytest.mark.parametrize(
    ("last_index", "term", "up_to_date"),
    [
        (2, 4, True),  # higher last term wins whatever the length
        (3, 4, True),
        (4, 4, True),
        (2, 2, False),  # lower last term loses
        (3, 2, False),
        (4, 2, False),
        (2, 3, False),  # same term: the longer log wins, a tie is up to date
        (3, 3, True),
        (4, 3, True),
    ],
)
def test_is_up_to_date(last_index: int, term: int, up_to_date: bool) -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2), (3, 3)))
    assert log.is_up_to_date(last_index, term) is up_to_date


@pytest.mark.parametrize(
    ("new", "want_last", "want", "unstable_offset"),
    [
        ([], 2, [(1, 1), (2, 2)], 3),
        (ents((3, 2)), 3, [(1, 1), (2, 2), (3, 2)], 3),
        # conflicts with index 1: everything is replaced
        (ents((1, 2)), 1, [(1, 2)], 1),
        # conflicts with index 2: index 1 stays
        (ents((2, 3), (3, 3)), 3, [(1, 1), (2, 3), (3, 3)], 2),
    ],
)
def test_append(new: list[Entry], want_last: int, want: list[tuple[int, int]], unstable_offset: int) -> None:
    log = new_log(ents((1, 1), (2, 2)))
    assert log.append(new) == want_last
    assert pairs(log.all_entries()) == want
    assert log.unstable.offset == unstable_offset


@pytest.mark.parametrize(
    ("prev", "committed", "new", "want_last", "want_commit", "want_conflict_at"),
    [
        # (index, term) not in the log: rejected
        ((3, 2), 3, ents((4, 4)), None, 1, None),
        ((4, 3), 3, ents((5, 4)), None, 1, None),
        # matching prev: commit moves up to min(committed, last new)
        ((3, 3), 3, [], 3, 3, None),
        ((3, 3), 4, [], 3, 3, None),
        ((3, 3), 2, [], 3, 2, None),
        ((3, 3), 4, ents((4, 4)), 4, 4, None),
        ((3, 3), 5, ents((4, 4)), 4, 4, None),
        ((3, 3), 4, ents((4, 4), (5, 4)), 5, 4, None),
        # a conflict after the commit index truncates
        ((1, 1), 3, ents((2, 4)), 2, 2, 2),
        ((2, 2), 3, ents((3, 4)), 3, 3, 3),
        ((2, 2), 3, ents((3, 3), (4, 4)), 4, 3, None),
    ],
)
def test_maybe_append(
    prev: tuple[int, int],
    committed: int,
    new: list[Entry],
    want_last: int | None,
    want_commit: int,
    want_conflict_at: int | None,
) -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2), (3, 3)))
    log.committed = 1
    assert log.maybe_append(prev[0], prev[1], committed, tuple(new)) == want_last
    assert log.committed == want_commit
    if want_conflict_at is not None:
        assert log.term(want_conflict_at) == new[want_conflict_at - prev[0] - 1].term


def test_maybe_append_refuses_to_rewrite_committed_entries() -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2), (3, 3)))
    log.committed = 2
    with pytest.raises(RaftInvariantError, match="conflict with committed"):
        log.maybe_append(0, 0, 3, tuple(ents((1, 4))))


def test_commit_to_never_decreases_and_never_passes_the_last_index() -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2), (3, 3)))
    log.commit_to(2)
    log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(RaftInvariantError, match="out of range"):
        log.commit_to(4)


def test_maybe_commit_only_for_the_given_term() -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 2)))
    assert not log.maybe_commit(2, 1)
    assert not log.maybe_commit(3, 2)
    assert log.maybe_commit(2, 2) and log.committed == 2
    assert not log.maybe_commit(2, 2)


def test_term_across_snapshot_storage_and_unstable() -> None:
    log = new_log(entries_of_terms([4, 5], start=4), snapshot=(3, 3))
    log.append(ents((6, 6)))
    assert [log.term(i) for i in (3, 4, 5, 6)] == [3, 4, 5, 6]
    with pytest.raises(CompactedError):
        log.term(2)
    with pytest.raises(UnavailableError):
        log.term(7)
    assert log.term_or_zero(2) == 0 and log.term_or_zero(7) == 0


def test_slice_spans_storage_and_unstable_with_size_limit() -> None:
    log = new_log(entries_of_terms([1, 1, 1]))
    log.append(ents((4, 2), (5, 2)))
    one = entry_size(Entry(0, 0))
    assert pairs(log.slice(2, 6, None)) == [(2, 1), (3, 1), (4, 2), (5, 2)]
    assert pairs(log.slice(2, 6, 0)) == [(2, 1)]
    assert pairs(log.slice(2, 6, 3 * one)) == [(2, 1), (3, 1), (4, 2)]
    assert pairs(log.slice(4, 6, one)) == [(4, 2)]
    assert log.slice(3, 3, None) == []
    with pytest.raises(RaftInvariantError):
        log.slice(2, 7, None)


def test_slice_of_compacted_index_raises_compacted() -> None:
    log = new_log(entries_of_terms([4, 4], start=4), snapshot=(3, 3))
    with pytest.raises(CompactedError):
        log.slice(3, 5, None)
    with pytest.raises(CompactedError):
        log.entries(2, None)
    assert pairs(log.entries(4, None)) == [(4, 4), (5, 4)]
    assert log.entries(6, None) == []


def test_stable_to_drops_persisted_unstable_entries() -> None:
    log = new_log()
    log.append(ents((1, 1), (2, 1), (3, 2)))
    log.accept_unstable()
    log.stable_to(2, 1)
    assert log.unstable.offset == 3 and pairs(log.unstable.entries) == [(3, 2)]
    log.stable_to(3, 1)  # wrong term: ignored
    assert log.unstable.offset == 3
    log.stable_to(3, 2)
    assert log.unstable.entries == [] and log.unstable.offset == 4


def test_stable_to_ignores_an_entry_replaced_at_a_newer_term() -> None:
    """The ABA race: an entry written while a newer leader overwrote the same index must not
    make the newer entry count as durable."""
    log = new_log()
    log.append(ents((1, 1), (2, 1)))
    log.accept_unstable()  # (2, 1) handed to the driver
    log.append(ents((2, 3)))  # overwritten by a later leader before the write finished
    log.stable_to(2, 1)
    assert pairs(log.unstable.entries) == [(1, 1), (2, 3)]
    assert log.has_next_unstable_ents()
    assert pairs(log.next_unstable_ents()) == [(2, 3)]


def test_next_unstable_ents_excludes_those_in_progress() -> None:
    log = new_log(entries_of_terms([1]))
    log.append(ents((2, 1), (3, 1)))
    assert pairs(log.next_unstable_ents()) == [(2, 1), (3, 1)]
    log.accept_unstable()
    assert log.next_unstable_ents() == [] and not log.has_next_unstable_ents()
    assert log.has_next_or_in_progress_unstable_ents()
    log.append(ents((4, 1)))
    assert pairs(log.next_unstable_ents()) == [(4, 1)]


@pytest.mark.parametrize(
    ("applied", "committed", "allow_unstable", "want"),
    [
        (3, 5, True, [(4, 1), (5, 1)]),
        (3, 5, False, [(4, 1)]),  # 5 is not stable yet
        (3, 4, True, [(4, 1)]),
        (4, 4, True, []),
        (3, 3, True, []),
    ],
)
def test_next_committed_ents(
    applied: int, committed: int, allow_unstable: bool, want: list[tuple[int, int]]
) -> None:
    log = new_log(entries_of_terms([1, 1], start=4), snapshot=(3, 1))
    log.append(ents((6, 1)))
    log.append([])
    log.unstable.truncate_and_append(ents((5, 1), (6, 1)))
    log.commit_to(committed)
    log.applied_to(applied, 0)
    assert pairs(log.next_committed_ents(allow_unstable)) == want
    assert log.has_next_committed_ents(allow_unstable) is bool(want)


def test_apply_budget_pauses_until_applied() -> None:
    one = entry_size(Entry(0, 0))
    log = new_log(entries_of_terms([1] * 6), max_applying=2 * one)
    log.commit_to(6)
    got = log.next_committed_ents(True)
    assert pairs(got) == [(1, 1), (2, 1)]
    log.accept_applying(2, 2 * one, True)
    assert log.applying_ents_paused and not log.has_next_committed_ents(True)
    log.applied_to(2, 2 * one)
    assert not log.applying_ents_paused
    assert pairs(log.next_committed_ents(True)) == [(3, 1), (4, 1)]


def test_applied_to_out_of_range_is_an_invariant_violation() -> None:
    log = new_log(entries_of_terms([1, 1]))
    log.commit_to(1)
    with pytest.raises(RaftInvariantError):
        log.applied_to(2, 0)


def test_restore_replaces_the_log_by_a_snapshot() -> None:
    log = new_log(entries_of_terms([1, 1, 1]))
    log.append(ents((4, 2)))
    snap = Snapshot(SnapshotMetadata(ConfState(voters=(1,)), index=10, term=5))
    log.restore(snap)
    assert log.committed == 10
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 5)
    assert log.next_unstable_snapshot() is snap
    assert log.has_next_or_in_progress_snapshot()
    assert not log.has_next_committed_ents(True)  # nothing is handed out before the snapshot
    log.accept_unstable()
    assert log.next_unstable_snapshot() is None
    log.stable_snap_to(10)
    assert not log.has_next_or_in_progress_snapshot()


def test_unstable_maybe_first_last_and_term() -> None:
    u = Unstable(5, LOGGER)
    assert (u.maybe_first_index(), u.maybe_last_index(), u.maybe_term(5)) == (None, None, None)
    u.truncate_and_append(ents((5, 1)))
    assert (u.maybe_first_index(), u.maybe_last_index(), u.maybe_term(5), u.maybe_term(4)) == (
        None,
        5,
        1,
        None,
    )
    u.restore(Snapshot(SnapshotMetadata(index=4, term=1)))
    assert (u.maybe_first_index(), u.maybe_last_index(), u.maybe_term(4), u.maybe_term(5)) == (5, 4, 1, None)


@pytest.mark.parametrize(
    ("offset", "held", "in_progress", "new", "want_offset", "want", "want_in_progress"),
    [
        # append to the end
        (5, [(5, 1)], 5, [(6, 1), (7, 1)], 5, [(5, 1), (6, 1), (7, 1)], 5),
        (5, [(5, 1)], 6, [(6, 1), (7, 1)], 5, [(5, 1), (6, 1), (7, 1)], 6),
        # replace everything
        (5, [(5, 1)], 6, [(5, 2), (6, 2)], 5, [(5, 2), (6, 2)], 5),
        (5, [(5, 1)], 6, [(4, 2), (5, 2)], 4, [(4, 2), (5, 2)], 4),
        # truncate the middle and append
        (5, [(5, 1), (6, 1), (7, 1)], 5, [(6, 2)], 5, [(5, 1), (6, 2)], 5),
        (5, [(5, 1), (6, 1), (7, 1)], 8, [(6, 2)], 5, [(5, 1), (6, 2)], 6),
        (5, [(5, 1), (6, 1), (7, 1)], 8, [(7, 2), (8, 2)], 5, [(5, 1), (6, 1), (7, 2), (8, 2)], 7),
    ],
)
def test_unstable_truncate_and_append(
    offset: int,
    held: list[tuple[int, int]],
    in_progress: int,
    new: list[tuple[int, int]],
    want_offset: int,
    want: list[tuple[int, int]],
    want_in_progress: int,
) -> None:
    u = Unstable(offset, LOGGER)
    u.entries = ents(*held)
    u.offset_in_progress = in_progress
    u.truncate_and_append(ents(*new))
    assert (u.offset, pairs(u.entries), u.offset_in_progress) == (want_offset, want, want_in_progress)
