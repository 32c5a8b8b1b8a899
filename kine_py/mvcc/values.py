"""A bounded cache of values released from the index, by revision.

The index keeps only the newest value of each key; older ones are read back from
the log when a Range at an old revision, a watch catching up, or a ``prev_kv``
needs them. A revision's value never changes, so it can be cached without any
invalidation: this cache keeps the most recently used ones, up to a byte budget,
so that paginated lists at one old revision (kube-apiserver's), and several
watchers catching up over the same history, read each value from the log once.

Owned by the store; used from the event loop only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

Revision = tuple[int, int]

# Per-entry bookkeeping, added to the value's length against the budget.
_OVERHEAD = 100


class ValueCache:
    """Least recently used values, at most ``max_bytes`` of them (values plus overhead)."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._values: OrderedDict[Revision, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        return self._bytes

    def take(self, wanted: Iterable[Revision], into: dict[Revision, bytes]) -> list[Revision]:
        """Copy the cached ones of ``wanted`` into ``into``; return those not cached."""
        missing: list[Revision] = []
        values = self._values
        for rev in wanted:
            value = values.get(rev)
            if value is None:
                missing.append(rev)
            else:
                values.move_to_end(rev)
                into[rev] = value
        return missing

    def put(self, found: dict[Revision, bytes]) -> None:
        """Remember values just read from the log, evicting the least recently used."""
        values = self._values
        for rev, value in found.items():
            if rev in values or len(value) + _OVERHEAD > self._max:
                continue
            values[rev] = value
            self._bytes += len(value) + _OVERHEAD
        while self._bytes > self._max:
            _, gone = values.popitem(last=False)
            self._bytes -= len(gone) + _OVERHEAD
