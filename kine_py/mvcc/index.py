"""The in-memory MVCC index: every retained change of every key, in revision order.

Like etcd's treeIndex, it answers "which change of key K is visible at revision
R" for single keys and ranges without touching the database. Entries with a
revision above the committed one may be present while the writer builds a
batch; readers always pass the committed revision, so they never see them, and
``rollback`` removes them if the commit fails.

Values are held for the newest change of each key; an older change may have
``value is None`` (released to save memory), and the store then fetches it
from the log by its revision.
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


class KeyIndex:
    """Sorted keys plus each key's history. Owned by the store; single-threaded (asyncio)."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._history: dict[bytes, list[Change]] = {}

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
