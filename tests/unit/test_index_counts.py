"""KeyIndex.page: counts from the committed live list and the transitions, against a walk.

The store tells the index what is committed (``loaded``, then ``commit`` after each batch);
pages at the committed revision, at older ones and at uncommitted ones (a Txn reading its
own writes) must all equal the plain definition: the live keys of the range at that
revision, in key order.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kine_py.mvcc.index import Change, KeyIndex

KEYS = [b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"d\xff", b"e"]


def brute(index: KeyIndex, key: bytes, end: bytes | None, at: int) -> list[bytes]:
    return [k for k, _ in index.range(key, end, at)]


# A batch: writes (key number, delete?) each taking a revision, or a compaction.
writes = st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.booleans()), min_size=0, max_size=4)
steps = st.lists(st.one_of(writes, st.just("compact")), min_size=1, max_size=12)
ranges = st.tuples(st.sampled_from([*KEYS, b"0", b"z"]), st.sampled_from([None, b"", b"b", b"c", b"e", b"z"]))


@settings(max_examples=300, deadline=None)
@given(steps, st.lists(ranges, min_size=1, max_size=6), st.integers(0, 3), st.booleans())
def test_pages_equal_a_walk_at_every_revision(
    plan: list[list[tuple[int, bool]] | str],
    queries: list[tuple[bytes, bytes | None]],
    limit: int,
    pending: bool,
) -> None:
    index = KeyIndex()
    index.loaded(1, -1)
    rev, compact = 1, -1
    for step in plan:
        if step == "compact":
            compact = rev
            index.compact(compact)
            continue
        assert isinstance(step, list)
        base, touched = rev, set()
        for n, deleted in step:
            rev += 1
            key = KEYS[n]
            index.add(key, Change(rev, 0, 0, 1, 0, b"" if deleted else b"v%d" % rev, deleted=deleted))
            touched.add(key)
        index.commit(touched, base, rev)
    committed = rev
    if pending:  # uncommitted writes above the committed revision, as while a batch is built
        index.add(b"ab", Change(rev + 1, 0, 0, 1, 0, b"p"))
        index.add(b"new", Change(rev + 1, 1, 0, 1, 0, b"p"))
    for key, end in queries:
        if end and key >= end:
            continue
        for at in range(max(compact, 1), committed + 2):
            want = brute(index, key, end, at)
            items, total = index.page(key, end, at, limit)
            assert total == len(want), (key, end, at)
            assert [k for k, _ in items] == (want[:limit] if limit else want)
            assert index.page(key, end, at, limit, count_only=True) == ([], len(want))


def test_rolled_back_batches_leave_the_counts_alone() -> None:
    index = KeyIndex()
    index.loaded(1, -1)
    index.add(b"a", Change(2, 0, 2, 1, 0, b"x"))
    index.commit({b"a"}, 1, 2)
    index.add(b"b", Change(3, 0, 3, 1, 0, b"y"))
    index.rollback([b"b"], 2)
    assert index.page(b"a", b"", 2, 0)[1] == 1
    index.add(b"a", Change(3, 0, 0, 0, 0, b"", deleted=True))
    index.commit({b"a"}, 2, 3)
    assert index.page(b"a", b"", 3, 0) == ([], 0)
    assert index.page(b"a", b"", 2, 0)[1] == 1
