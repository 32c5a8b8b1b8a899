"""KeyIndex: visibility by revision, ranges, rollback and compaction."""

from kine_py.mvcc.index import Change, KeyIndex


def put(index: KeyIndex, key: bytes, main: int, create: int, version: int, value: bytes = b"v") -> None:
    index.add(key, Change(main, 0, create, version, 0, value))


def delete(index: KeyIndex, key: bytes, main: int) -> None:
    index.add(key, Change(main, 0, 0, 0, 0, b"", deleted=True))


def sample() -> KeyIndex:
    index = KeyIndex()
    put(index, b"a", 2, 2, 1, b"a1")
    put(index, b"b", 3, 3, 1, b"b1")
    put(index, b"a", 4, 2, 2, b"a2")
    delete(index, b"b", 5)
    put(index, b"c", 6, 6, 1, b"c1")
    return index


def test_get_sees_the_change_visible_at_each_revision() -> None:
    index = sample()
    assert index.get(b"a", 1) is None
    a2 = index.get(b"a", 3)
    assert a2 is not None and a2.value == b"a1"
    a4 = index.get(b"a", 4)
    assert a4 is not None and (a4.value, a4.version) == (b"a2", 2)
    assert index.get(b"b", 4) is not None
    assert index.get(b"b", 5) is None


def test_range_bounds() -> None:
    index = sample()
    assert [k for k, _ in index.range(b"a", b"c", 6)] == [b"a"]
    assert [k for k, _ in index.range(b"a", b"", 6)] == [b"a", b"c"]
    assert [k for k, _ in index.range(b"a", b"", 3)] == [b"a", b"b"]
    assert [k for k, _ in index.range(b"b", None, 4)] == [b"b"]
    assert list(index.range(b"z", b"a", 6)) == []


def test_rollback_drops_uncommitted_changes_and_new_keys() -> None:
    index = sample()
    put(index, b"a", 7, 2, 3)
    put(index, b"new", 7, 7, 1)
    index.rollback([b"a", b"new"], 6)
    a = index.get(b"a", 100)
    assert a is not None and a.main == 4
    assert index.get(b"new", 100) is None
    assert [k for k, _ in index.range(b"\0", b"", 100)] == [b"a", b"c"]


def test_compact_keeps_what_reads_at_or_above_the_revision_see() -> None:
    index = sample()
    removed = index.compact(5)
    # a@2 superseded by a@4; b@3 and its tombstone b@5 both go.
    assert sorted(removed) == [(2, 0), (3, 0), (5, 0)]
    a = index.get(b"a", 5)
    assert a is not None and a.main == 4
    assert index.get(b"b", 5) is None
    assert len(index) == 2
    assert index.compact(5) == []


def test_release_values_keeps_only_the_newest() -> None:
    index = sample()
    put(index, b"a", 7, 2, 3, b"a3")
    index.release_values([b"a"])
    assert [c.value for c in index.history(b"a")] == [None, None, b"a3"]
