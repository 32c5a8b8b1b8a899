"""MemoryStorage: the log as Raft reads it (etcd-raft's storage_test.go cases)."""

from __future__ import annotations

import pytest

from kine_py.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    UnavailableError,
)
from kine_py.raft.storage import ENTRY_OVERHEAD, entry_size, limit_size


def storage_with(*pairs: tuple[int, int]) -> MemoryStorage:
    """A storage whose first pair is the snapshot position and the rest its entries,
    as etcd-raft's tests build them (``ents[0]`` is the dummy)."""
    snap_index, snap_term = pairs[0]
    s = MemoryStorage()
    if snap_index:
        s.apply_snapshot(Snapshot(SnapshotMetadata(index=snap_index, term=snap_term)))
    s.append([Entry(term=t, index=i) for i, t in pairs[1:]])
    return s


def test_new_storage_is_empty_with_bootstrap_conf_state() -> None:
    cs = ConfState(voters=(1, 2, 3))
    s = MemoryStorage(cs)
    assert s.initial_state() == (HardState(), cs)
    assert (s.first_index(), s.last_index()) == (1, 0)
    assert s.term(0) == 0
    assert s.snapshot().metadata.conf_state == cs and s.snapshot().is_empty()
    with pytest.raises(UnavailableError):
        s.entries(1, 1)


@pytest.mark.parametrize(
    ("i", "expected"),
    [(2, CompactedError), (3, 3), (4, 4), (5, 5), (6, UnavailableError)],
)
def test_term(i: int, expected: int | type[Exception]) -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    if isinstance(expected, int):
        assert s.term(i) == expected
    else:
        with pytest.raises(expected):
            s.term(i)


def test_entries_bounds_and_size_limit() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5), (6, 6))
    one = entry_size(Entry(term=0, index=0))
    with pytest.raises(CompactedError):
        s.entries(2, 6)
    with pytest.raises(CompactedError):
        s.entries(3, 4)
    assert [e.index for e in s.entries(4, 5)] == [4]
    assert [e.index for e in s.entries(4, 7)] == [4, 5, 6]
    # At least one entry, whatever the budget; otherwise as many as fit.
    assert [e.index for e in s.entries(4, 7, 0)] == [4]
    assert [e.index for e in s.entries(4, 7, 2 * one)] == [4, 5]
    assert [e.index for e in s.entries(4, 7, 2 * one + 1)] == [4, 5]
    assert [e.index for e in s.entries(4, 7, 3 * one)] == [4, 5, 6]
    with pytest.raises(UnavailableError):
        s.entries(4, 8)


def test_entries_returns_a_copy() -> None:
    s = storage_with((0, 0), (1, 1), (2, 1))
    got = s.entries(1, 3)
    got.clear()
    assert [e.index for e in s.entries(1, 3)] == [1, 2]


def test_first_and_last_index_follow_compaction() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.compact(4)
    assert (s.first_index(), s.last_index()) == (5, 5)
    assert s.term(4) == 4


@pytest.mark.parametrize(
    ("i", "error", "first", "term_of_first_minus_one"),
    [(2, CompactedError, 4, 3), (3, CompactedError, 4, 3), (4, None, 5, 4), (5, None, 6, 5)],
)
def test_compact(i: int, error: type[Exception] | None, first: int, term_of_first_minus_one: int) -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    if error is not None:
        with pytest.raises(error):
            s.compact(i)
    else:
        s.compact(i)
    assert s.first_index() == first
    assert s.term(first - 1) == term_of_first_minus_one


def test_compact_past_last_index_is_refused() -> None:
    s = storage_with((3, 3), (4, 4))
    with pytest.raises(ValueError, match="out of bound"):
        s.compact(5)


def test_create_snapshot() -> None:
    cs = ConfState(voters=(1, 2, 3))
    s = storage_with((3, 3), (4, 4), (5, 5))
    snap = s.create_snapshot(4, cs, b"data")
    assert snap == Snapshot(SnapshotMetadata(conf_state=cs, index=4, term=4), b"data")
    assert s.snapshot() == snap
    # None keeps the configuration of the previous snapshot.
    assert s.create_snapshot(5, None, b"more").metadata.conf_state == cs
    with pytest.raises(SnapshotOutOfDateError):
        s.create_snapshot(5, cs, b"")
    with pytest.raises(ValueError, match="out of bound"):
        s.create_snapshot(6, cs, b"")


def test_apply_snapshot_replaces_everything_and_refuses_older() -> None:
    cs = ConfState(voters=(1, 2))
    s = MemoryStorage(ConfState(voters=(1,)))
    s.append([Entry(term=1, index=1), Entry(term=1, index=2)])
    s.apply_snapshot(Snapshot(SnapshotMetadata(conf_state=cs, index=4, term=4)))
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
    assert s.initial_state()[1] == cs
    with pytest.raises(SnapshotOutOfDateError):
        s.apply_snapshot(Snapshot(SnapshotMetadata(conf_state=cs, index=3, term=3)))
    with pytest.raises(SnapshotOutOfDateError):
        s.apply_snapshot(Snapshot(SnapshotMetadata(conf_state=cs, index=4, term=4)))


@pytest.mark.parametrize(
    ("append", "want"),
    [
        # the same entries
        ([(3, 3), (4, 4), (5, 5)], [(3, 3), (4, 4), (5, 5)]),
        # a conflicting suffix is truncated
        ([(3, 3), (4, 6), (5, 6)], [(3, 3), (4, 6), (5, 6)]),
        # a longer log
        ([(3, 3), (4, 4), (5, 5), (6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
        # entries before the snapshot are skipped
        ([(2, 3), (3, 3), (4, 5)], [(3, 3), (4, 5)]),
        # truncate from the middle
        ([(4, 5)], [(3, 3), (4, 5)]),
        # plain append
        ([(6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
    ],
)
def test_append(append: list[tuple[int, int]], want: list[tuple[int, int]]) -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    s.append([Entry(term=t, index=i) for i, t in append])
    got = [(i, s.term(i)) for i in range(s.first_index() - 1, s.last_index() + 1)]
    assert got == want


def test_append_with_a_gap_is_refused() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    with pytest.raises(ValueError, match="missing log entry"):
        s.append([Entry(term=5, index=7)])


def test_hard_state_round_trip() -> None:
    s = MemoryStorage()
    s.set_hard_state(HardState(term=3, vote=2, commit=1))
    assert s.initial_state()[0] == HardState(term=3, vote=2, commit=1)
    assert s.hard_state() == HardState(term=3, vote=2, commit=1)


def test_limit_size_keeps_at_least_one_entry() -> None:
    ents = [Entry(term=1, index=i, data=b"x" * 10) for i in range(1, 5)]
    size = 10 + ENTRY_OVERHEAD
    assert limit_size(ents, None) == ents
    assert limit_size(ents, 0) == ents[:1]
    assert limit_size(ents, size * 2) == ents[:2]
    assert limit_size(ents, size * 4) == ents
    assert limit_size([], 0) == []
