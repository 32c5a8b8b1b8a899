"""The in-memory MVCC index: every retained change of every key, in revision order.

Like etcd's treeIndex, it answers "which change of key K is visible at revision
R" for single keys and ranges without touching the database. Entries with a
revision above the committed one may be present while the writer builds a
batch; readers always pass the committed revision, so they never see them, and
``rollback`` removes them if the commit fails.

Values are held for the newest change of each key; an older change may have
``value is None`` (released to save memory), and the store then fetches it
from the log by its revision.

Counting without walking: a Range returns how many keys its range holds, so a
page of 500 keys out of 10,000 would otherwise visit all 10,000. The index
keeps, for the *committed* revision only (the store tells it with ``commit``
after each durable commit, and ``loaded`` after loading), the sorted list of
live keys — a count at the committed revision is two bisections — and the
list of liveness transitions (creations and deletions, by revision) since the
compact revision: a count at an older revision R is the count at the committed
revision corrected for the keys that were created or deleted after R. Updates
of existing keys, however many, cost nothing there. Reads at any other
revision (a Txn reading its own uncommitted writes) walk the keys.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Change:
    """One change of one key at revision (main, sub). A delete is a tombstone (``deleted``)."""

    main: int
    sub: int
    create: int
    version: int
    lease: int
    value: bytes | None
    deleted: bool = False


def _main(change: Change) -> int:
    return change.main


def _rev_of(item: tuple[int, bytes]) -> int:
    return item[0]


class KeyIndex:
    """Sorted keys plus each key's history. Owned by the store; single-threaded (asyncio)."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._history: dict[bytes, list[Change]] = {}
        # For the committed revision (None until the store says what it is): see the module doc.
        self._committed: int | None = None
        self._live: list[bytes] = []
        self._transitions: list[tuple[int, bytes]] = []  # (revision, key), by revision

    def __len__(self) -> int:
        return len(self._keys)

    def history(self, key: bytes) -> list[Change]:
        """The retained changes of ``key``, oldest first (empty if none). Do not mutate."""
        return self._history.get(key, [])

    def get(self, key: bytes, at_rev: int) -> Change | None:
        """The live (not deleted) change of ``key`` visible at ``at_rev``, or None."""
        history = self._history.get(key)
        if not history:
            return None
        change = history[-1]
        if change.main > at_rev:
            i = bisect.bisect_right(history, at_rev, key=_main)
            if i == 0:
                return None
            change = history[i - 1]
        return None if change.deleted else change

    def keys_in(self, key: bytes, end: bytes | None) -> Iterator[bytes]:
        """Every indexed key in [key, end) in order (``end`` None: only ``key``; b"": no bound)."""
        if end is None:
            if key in self._history:
                yield key
            return
        keys = self._keys
        for i in range(bisect.bisect_left(keys, key), len(keys)):
            k = keys[i]
            if end and k >= end:
                return
            yield k

    def range(self, key: bytes, end: bytes | None, at_rev: int) -> Iterator[tuple[bytes, Change]]:
        """Live changes visible at ``at_rev`` for keys in [key, end), in key order.

        ``end`` None: only ``key``; b"": every key >= ``key``.
        """
        for k in self.keys_in(key, end):
            change = self.get(k, at_rev)
            if change is not None:
                yield k, change

    def page(
        self, key: bytes, end: bytes | None, at_rev: int, limit: int, *, count_only: bool = False
    ) -> tuple[list[tuple[bytes, Change]], int]:
        """The first ``limit`` (0: all) live changes visible at ``at_rev`` in [key, end), in key
        order, and how many live keys the whole range holds at ``at_rev``.

        ``end`` None: only ``key``; b"": every key >= ``key``. With ``count_only`` no
        changes are returned.
        """
        if end is None:
            change = self.get(key, at_rev)
            return ([] if change is None or count_only else [(key, change)]), int(change is not None)
        total = self._count(key, end, at_rev)
        if total is None:
            return self._walk(key, end, at_rev, 0 if count_only else limit, count_only)
        if count_only or total == 0:
            return [], total
        if not limit:
            return self._walk(key, end, at_rev, 0, False)[0], total
        keys = self._live if at_rev == self._committed else self._keys
        return self._leading(keys, key, end, at_rev, limit), total

    def _leading(
        self, keys: list[bytes], key: bytes, end: bytes, at_rev: int, limit: int
    ) -> list[tuple[bytes, Change]]:
        found: list[tuple[bytes, Change]] = []
        get = self.get
        for i in range(bisect.bisect_left(keys, key), len(keys)):
            k = keys[i]
            if end and k >= end:
                break
            change = get(k, at_rev)
            if change is not None:
                found.append((k, change))
                if len(found) == limit:
                    break
        return found

    def _walk(
        self, key: bytes, end: bytes, at_rev: int, limit: int, count_only: bool
    ) -> tuple[list[tuple[bytes, Change]], int]:
        """Visit every key of the range: the changes (up to ``limit``) and the live count."""
        found: list[tuple[bytes, Change]] = []
        total = 0
        keys, history = self._keys, self._history
        for i in range(bisect.bisect_left(keys, key), len(keys)):
            k = keys[i]
            if end and k >= end:
                break
            changes = history[k]
            change = changes[-1]
            if change.main > at_rev:
                j = bisect.bisect_right(changes, at_rev, key=_main)
                if j == 0:
                    continue
                change = changes[j - 1]
            if change.deleted:
                continue
            total += 1
            if not count_only and (not limit or len(found) < limit):
                found.append((k, change))
        return found, total

    def _count(self, key: bytes, end: bytes, at_rev: int) -> int | None:
        """Live keys in [key, end) at ``at_rev`` from the committed state; None if that
        cannot answer (a revision above the committed one, or too much churn since)."""
        committed = self._committed
        if committed is None or at_rev > committed:
            return None
        live = self._live
        lo = bisect.bisect_left(live, key)
        hi = bisect.bisect_left(live, end, lo) if end else len(live)
        total = hi - lo
        if at_rev == committed:
            return total
        transitions = self._transitions
        first = bisect.bisect_right(transitions, at_rev, key=_rev_of)
        if len(transitions) - first > max(64, total):
            return None  # walking the range is cheaper
        seen: set[bytes] = set()
        for _, k in transitions[first:]:
            if k in seen or k < key or (end and k >= end):
                continue
            seen.add(k)
            now = self.get(k, committed) is not None
            then = self.get(k, at_rev) is not None
            total += int(then) - int(now)
        return total

    def commit(self, keys: Iterable[bytes], base: int, revision: int) -> None:
        """The changes of ``keys`` above ``base``, up to ``revision``, are durable: the
        committed revision moves from ``base`` to ``revision`` (writer only)."""
        if self._committed is None:
            return
        new: list[tuple[int, bytes]] = []
        for key in keys:
            changes = self._history.get(key, [])
            i = len(changes)
            while i > 0 and changes[i - 1].main > base:
                i -= 1
            live = i > 0 and not changes[i - 1].deleted
            was = live
            for change in changes[i:]:
                if change.main > revision:
                    break
                if change.deleted == live:
                    live = not live
                    new.append((change.main, key))
            if live != was:
                if live:
                    bisect.insort(self._live, key)
                else:
                    del self._live[bisect.bisect_left(self._live, key)]
        new.sort()
        self._transitions.extend(new)
        self._committed = revision

    def loaded(self, revision: int, compact: int) -> None:
        """Everything up to ``revision`` is committed (after loading from the log): build
        the live list and the transitions above ``compact`` from the histories."""
        self._live = []
        transitions: list[tuple[int, bytes]] = []
        for key in self._keys:
            live = False
            for change in self._history[key]:
                if change.main > revision:
                    break
                if change.deleted == live:
                    live = not live
                    if change.main > compact:
                        transitions.append((change.main, key))
            if live:
                self._live.append(key)
        transitions.sort()
        self._transitions = transitions
        self._committed = revision

    def add(self, key: bytes, change: Change) -> None:
        """Append ``change`` as the newest change of ``key`` (its revision must be the highest)."""
        history = self._history.get(key)
        if history is None:
            self._history[key] = [change]
            bisect.insort(self._keys, key)
        else:
            history.append(change)

    def rollback(self, keys: Iterable[bytes], above_rev: int) -> None:
        """Drop the changes of ``keys`` with a revision above ``above_rev`` (a failed commit)."""
        emptied = False
        for key in set(keys):
            history = self._history.get(key)
            if history is None:
                continue
            while history and history[-1].main > above_rev:
                history.pop()
            if not history:
                del self._history[key]
                emptied = True
        if emptied:
            self._keys = [k for k in self._keys if k in self._history]

    def release_values(self, keys: Iterable[bytes]) -> None:
        """Forget the values of every change of ``keys`` but the newest (they stay in the log)."""
        for key in keys:
            for change in reversed(self._history.get(key, [])[:-1]):
                if change.value is None:
                    break
                change.value = None

    def compact(self, at_rev: int) -> list[tuple[int, int]]:
        """Drop what no read at revision >= ``at_rev`` can see; return the dropped (main, sub).

        For each key the newest change at or below ``at_rev`` is kept unless it is
        a tombstone, in which case it goes too, with everything before it.
        """
        removed: list[tuple[int, int]] = []
        emptied = False
        # Reads below ``at_rev`` are refused from now on: older transitions are not needed.
        del self._transitions[: bisect.bisect_right(self._transitions, at_rev, key=_rev_of)]
        for history in self._history.values():
            if history[0].main > at_rev:
                continue
            i = bisect.bisect_right(history, at_rev, key=_main)
            keep_from = i if history[i - 1].deleted else i - 1
            if keep_from <= 0:
                continue
            removed.extend((c.main, c.sub) for c in history[:keep_from])
            del history[:keep_from]
            emptied = emptied or not history
        if emptied:
            for key in [k for k, h in self._history.items() if not h]:
                del self._history[key]
            self._keys = [k for k in self._keys if k in self._history]
        return removed
