"""Watch: the hub of recent events, an index of who watches what, and one session per stream.

Theory of operation
-------------------
Every watcher has a position: the first revision it has not been sent. After
each commit the store hands the new events to the ``WatchHub``, which keeps
the most recent ones in a bounded ring and looks each event's key up in an
index of watched keys and ranges (exact keys in a dict, prefixes in a dict per
prefix length, other ranges in a short list). Only the watchers an event
matches are touched: each is marked *dirty* in its session and the session is
woken. A commit therefore costs work in proportion to its events and the
watchers they match — not to the number of watchers, and sessions with no
matching watcher are not woken at all.

A watcher that is not dirty is *clean*: nothing committed since it was last
brought up to date concerns it, so its position is implicitly the committed
revision + 1 (``_Watcher.next_rev`` may lag behind; ``WatchSession.position``
is the truth). When an event marks a clean watcher, its ``next_rev`` moves
straight to that event's revision (nothing between matched).

A session's sender loop then *pulls*, for its dirty watchers only, the events
from each one's position up to the committed revision — from the ring when it
still holds them, else rebuilt from the index (and the log, for released
values) — one reply per watcher per turn, round robin. A watcher that reaches
the committed revision is clean again.

So a slow consumer is never dropped and never buffered without bound: while
its gRPC stream is blocked the loop simply does not pull, and when it resumes
it catches up from history and rejoins the live edge (etcd's unsynced/synced
watchers without per-watcher buffers). A watcher whose position falls below
the compact revision is cancelled with ``compact_revision`` set, as etcd does.

Progress: a periodic tick sends a progress reply to each ``progress_notify``
watcher that is synced and had no events since the last tick; a
``WatchProgressRequest`` is answered (watch id -1) once every watcher of the
stream is synced — immediately if they already are, otherwise as soon as the
loop has caught them all up. A progress reply for revision R is thus never sent
before every event up to R.

Per stream, replies go out in the order the loop produces them; a watcher's
``created`` reply is queued before the watcher can produce events, and
``header.revision`` never goes backwards on a stream — except that, as in etcd,
the reply cancelling a compacted watcher carries no revision (0).

Ownership: the store calls ``WatchHub.publish`` (after each durable commit, in
revision order, in the same event-loop step that moved the committed revision)
and ``reset``; the gRPC layer creates sessions, feeds them requests and
iterates ``WatchSession.replies``. Everything runs on one event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from kine_py.errors import CompactedError
from kine_py.model import Event, EventType, WatchCreate, WatchReply

# At most this many revisions of events in one reply (etcd's watchBatchMaxRevs).
MAX_REVS_PER_REPLY = 1000
NO_PUT, NO_DELETE = 0, 1
ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
T = TypeVar("T")


class EventSource(Protocol):
    """What the watch machinery needs from the store."""

    @property
    def revision(self) -> int: ...

    @property
    def compact_revision(self) -> int: ...

    async def history(self, key: bytes, end: bytes | None, first: int, last: int) -> list[Event]:
        """Events on [key, end) with revision in [first, last], in (revision, sub) order."""
        ...


class DeliveryObserver(Protocol):
    def delivered(self, committed_at: float) -> None: ...


def prefix_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the end of the range of keys starting with ``prefix``
    (b"\\0", every key, when ``prefix`` is all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(slots=True, eq=False)
class _Watcher:
    id: int
    key: bytes
    end: bytes | None  # None: only ``key``; b"": every key >= ``key``
    next_rev: int
    prev_kv: bool
    progress_notify: bool
    fragment: bool
    no_put: bool
    no_delete: bool
    session: WatchSession
    active_since_tick: bool = False
    # Has (or may have) events to send: in its session's dirty set.
    dirty: bool = False
    # Cancelled by compaction: gets nothing more, but (as in etcd) keeps its id until the
    # client cancels it, and keeps the stream from counting as synced.
    compacted: bool = False

    def keep(self, event: Event) -> bool:
        if event.type == EventType.PUT:
            return not self.no_put
        return not self.no_delete


class WatcherIndex:
    """Which watchers a key concerns, in time independent of how many watchers there are.

    Single keys are a dict lookup; a prefix range [p, prefix_end(p)) is a dict lookup
    of the key's first len(p) bytes, for each distinct prefix length in use; any other
    range (from-key, arbitrary [key, end)) is checked one by one (they are rare).
    """

    def __init__(self) -> None:
        self._exact: dict[bytes, set[_Watcher]] = {}
        self._prefixes: dict[bytes, set[_Watcher]] = {}
        self._prefix_lengths: Counter[int] = Counter()
        self._lengths: list[int] = []
        self._ranges: set[_Watcher] = set()

    def __len__(self) -> int:
        exact = sum(len(s) for s in self._exact.values())
        return exact + sum(len(s) for s in self._prefixes.values()) + len(self._ranges)

    @staticmethod
    def _prefix_of(w: _Watcher) -> bytes | None:
        if w.end and w.end == prefix_end(w.key):
            return w.key
        return None

    def add(self, w: _Watcher) -> None:
        if w.end is None:
            self._exact.setdefault(w.key, set()).add(w)
        elif (prefix := self._prefix_of(w)) is not None:
            self._prefixes.setdefault(prefix, set()).add(w)
            self._prefix_lengths[len(prefix)] += 1
            self._lengths = sorted(self._prefix_lengths)
        else:
            self._ranges.add(w)

    def remove(self, w: _Watcher) -> None:
        if w.end is None:
            _discard(self._exact, w.key, w)
        elif (prefix := self._prefix_of(w)) is not None:
            if _discard(self._prefixes, prefix, w):
                self._prefix_lengths[len(prefix)] -= 1
                if not self._prefix_lengths[len(prefix)]:
                    del self._prefix_lengths[len(prefix)]
                self._lengths = sorted(self._prefix_lengths)
        else:
            self._ranges.discard(w)

    def matching(self, key: bytes) -> Iterator[_Watcher]:
        """Every watcher whose key or range holds ``key`` (each once)."""
        exact = self._exact.get(key)
        if exact:
            yield from exact
        for length in self._lengths:
            if length > len(key):
                break
            found = self._prefixes.get(key[:length])
            if found:
                yield from found
        for w in self._ranges:
            if w.key <= key and (not w.end or key < w.end):
                yield w


def _discard(table: dict[bytes, set[_Watcher]], key: bytes, w: _Watcher) -> bool:
    found = table.get(key)
    if found is None or w not in found:
        return False
    found.discard(w)
    if not found:
        del table[key]
    return True


class WatchHub:
    """Recent events in a ring bounded by count and bytes, and the index of watchers."""

    def __init__(
        self,
        source: EventSource,
        *,
        max_events: int = 20_000,
        max_bytes: int = 64 << 20,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._source = source
        self.observer = observer
        self._commit_times: _Window[float] = _Window()
        self._ring: _Window[Event] = _Window()
        self._bytes = 0
        self._max_events, self._max_bytes = max_events, max_bytes
        self._covered_from = source.revision + 1  # every event at or above this is in the ring
        self._sessions: set[WatchSession] = set()
        self.index = WatcherIndex()
        # The revision of the last publish: where clean watchers stand (position - 1).
        self.published = source.revision

    def reset(self) -> None:
        """Forget the ring; everything after the source's current revision will be published.

        Called when the store reloaded its state (it may have skipped history): every
        watcher is made dirty at its true position, so each is either caught up from
        the index or cancelled as compacted.
        """
        self._ring.clear()
        self._bytes = 0
        self._covered_from = self._source.revision + 1
        for session in self._sessions:
            session.recheck_all(self.published)
        self.published = self._source.revision

    def publish(self, events: Iterable[Event], revision: int) -> None:
        """Called by the store after each durable commit, in revision order, in the same
        event-loop step in which ``source.revision`` became ``revision``."""
        self._commit_times.append(revision, time.time())
        if len(self._commit_times) > 100_000:
            self._commit_times.popleft()
        self.published = revision
        index = self.index
        for event in events:
            kv = event.kv
            self._ring.append(kv.mod_revision, event)
            self._bytes += _size(event)
            for w in index.matching(kv.key):
                if not w.dirty and w.keep(event):
                    w.session.mark(w, kv.mod_revision)
        while self._ring and (len(self._ring) > self._max_events or self._bytes > self._max_bytes):
            gone = self._ring.popleft()
            self._bytes -= _size(gone)
            self._covered_from = gone.kv.mod_revision + 1

    async def events(self, key: bytes, end: bytes | None, first: int, last: int) -> list[Event]:
        """Events on [key, end) (``end`` None: only ``key``; b"": no bound) in [first, last]."""
        # At or below the compact revision only what compaction kept may be sent (etcd
        # reads it from its compacted backend): the index has exactly that, the ring not.
        if first < self._covered_from or first <= self._source.compact_revision:
            return await self._source.history(key, end, first, last)
        matches = _matcher(key, end)
        return [e for e in self._ring.between(first, last) if matches(e.kv.key)]

    def committed_at(self, revision: int) -> float | None:
        """When ``revision`` was published (None if too old to remember)."""
        return self._commit_times.first_from(revision)

    def stats(self, current: int) -> dict[str, int]:
        """Gauges, computed at scrape time (this walks every watcher)."""
        watchers = [(s, w) for s in self._sessions for w in s.watchers()]
        behind = sum(max(0, current + 1 - s.position(w)) for s, w in watchers)
        return {
            "watch_streams": len(self._sessions),
            "watchers": len(watchers),
            "watch_pending_revisions": behind,
        }

    def close_all(self) -> None:
        """End every watch stream (shutdown): clients reconnect to another server."""
        for session in list(self._sessions):
            session.close()

    def attach(self, session: WatchSession) -> None:
        self._sessions.add(session)

    def detach(self, session: WatchSession) -> None:
        self._sessions.discard(session)


class _Window(Generic[T]):
    """Items with ascending integer keys: appended at the back, dropped from the front, and
    found by key in O(log n) (a deque's indexing is O(n) away from its ends)."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._items: list[T] = []
        self._start = 0

    def __len__(self) -> int:
        return len(self._keys) - self._start

    def __bool__(self) -> bool:
        return len(self._keys) > self._start

    def clear(self) -> None:
        self._keys, self._items, self._start = [], [], 0

    def append(self, key: int, item: T) -> None:
        self._keys.append(key)
        self._items.append(item)

    def popleft(self) -> T:
        item = self._items[self._start]
        self._start += 1
        if self._start >= 1024 and 2 * self._start >= len(self._keys):
            del self._keys[: self._start]
            del self._items[: self._start]
            self._start = 0
        return item

    def between(self, first: int, last: int) -> list[T]:
        """The items with first <= key <= last, in order."""
        lo = bisect.bisect_left(self._keys, first, self._start)
        return self._items[lo : bisect.bisect_right(self._keys, last, lo)]

    def first_from(self, key: int) -> T | None:
        """The first item whose key is >= ``key``."""
        i = bisect.bisect_left(self._keys, key, self._start)
        return self._items[i] if i < len(self._keys) else None


def _size(event: Event) -> int:
    size = len(event.kv.key) + len(event.kv.value) + 64
    return size + (len(event.prev_kv.value) if event.prev_kv is not None else 0)


def _matcher(key: bytes, end: bytes | None) -> Callable[[bytes], bool]:
    if end is None:
        return lambda k: k == key
    if end == b"":
        return lambda k: k >= key
    return lambda k: key <= k < end


@dataclass(slots=True)
class _State:
    watchers: dict[int, _Watcher] = field(default_factory=dict)
    # Watchers that may have events to send, in the order they were marked.
    dirty: dict[int, _Watcher] = field(default_factory=dict)
    control: deque[WatchReply] = field(default_factory=deque)
    next_id: int = 0
    progress_wanted: bool = False
    last_header: int = 0


class WatchSession:
    """The watches of one gRPC stream. ``create``/``cancel``/``request_progress`` come from
    the stream's reader; ``replies()`` is iterated by its writer; ``close()`` ends both."""

    def __init__(self, hub: WatchHub, source: EventSource, progress_interval: float) -> None:
        self._hub = hub
        self._source = source
        self._interval = progress_interval
        self._s = _State()
        self._wakeup = asyncio.Event()
        self._closed = False
        hub.attach(self)

    def wake(self) -> None:
        self._wakeup.set()

    def close(self) -> None:
        if not self._closed:
            for w in self._s.watchers.values():
                if not w.compacted:
                    self._hub.index.remove(w)
        self._closed = True
        self._hub.detach(self)
        self.wake()

    def watchers(self) -> list[_Watcher]:
        return list(self._s.watchers.values())

    def is_fragmenting(self, watch_id: int) -> bool:
        """Whether the watcher ``watch_id`` asked for large replies to be fragmented."""
        w = self._s.watchers.get(watch_id)
        return w is not None and w.fragment

    def position(self, w: _Watcher) -> int:
        """The first revision ``w`` has not been sent (a clean watcher is at the live edge)."""
        if w.dirty or w.compacted:
            return w.next_rev
        return max(w.next_rev, self._hub.published + 1)

    # ---- called by the hub ----

    def mark(self, w: _Watcher, revision: int) -> None:
        """An event at ``revision`` concerns the clean watcher ``w``: nothing between its
        last position and ``revision`` did, so that is where it now stands."""
        if revision > w.next_rev:
            w.next_rev = revision
        w.dirty = True
        self._s.dirty[w.id] = w
        self._wakeup.set()

    def recheck_all(self, published: int) -> None:
        """Make every watcher dirty at its true position (the store reloaded its state;
        ``published`` is the last revision published before that)."""
        for w in self._s.watchers.values():
            if not w.compacted and not w.dirty:
                w.next_rev = max(w.next_rev, published + 1)
                w.dirty = True
                self._s.dirty[w.id] = w
        self.wake()

    # ---- requests ----

    def create(self, req: WatchCreate) -> None:
        current = self._source.revision
        key = req.key or b"\0"
        end = None if not req.range_end else (b"" if req.range_end == b"\0" else req.range_end)
        error = None
        if end and key >= end:
            error = ERR_EMPTY_RANGE
        elif req.watch_id and req.watch_id in self._s.watchers:
            error = ERR_DUPLICATE_ID
        if error is not None:
            self._queue(WatchReply(-1, current, created=True, canceled=True, cancel_reason=error))
            return
        watch_id = req.watch_id if req.watch_id else self._auto_id()
        w = _Watcher(
            watch_id,
            key,
            end,
            req.start_revision if req.start_revision else current + 1,
            req.prev_kv,
            req.progress_notify,
            req.fragment,
            NO_PUT in req.filters,
            NO_DELETE in req.filters,
            self,
        )
        self._s.watchers[watch_id] = w
        if not self._closed:
            self._hub.index.add(w)
        if w.next_rev <= current:  # starts in the past: has history to catch up on
            w.dirty = True
            self._s.dirty[watch_id] = w
        self._queue(WatchReply(watch_id, current, created=True))

    def _auto_id(self) -> int:
        while self._s.next_id in self._s.watchers:
            self._s.next_id += 1
        watch_id = self._s.next_id
        self._s.next_id += 1
        return watch_id

    def cancel(self, watch_id: int) -> None:
        """Cancel a watcher of this stream; an unknown id is ignored, as etcd does."""
        w = self._s.watchers.pop(watch_id, None)
        if w is not None:
            self._s.dirty.pop(watch_id, None)
            w.dirty = False
            if not w.compacted and not self._closed:
                self._hub.index.remove(w)
            self._queue(WatchReply(watch_id, self._source.revision, canceled=True))

    def request_progress(self) -> None:
        if self._s.watchers:
            self._s.progress_wanted = True
            self.wake()

    def _queue(self, reply: WatchReply) -> None:
        self._s.control.append(reply)
        self.wake()

    # ---- the sender loop ----

    async def replies(self) -> AsyncIterator[WatchReply]:
        """Every reply of this stream, in order, until ``close()``."""
        ticker = asyncio.create_task(self._tick()) if self._interval > 0 else None
        try:
            while not self._closed:
                self._wakeup.clear()
                while self._s.control:
                    yield self._stamp(self._s.control.popleft())
                async for reply in self._pump():
                    yield reply
                self._answer_progress_request()
                if not self._s.control and not self._closed:
                    await self._wakeup.wait()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            self.close()

    def _stamp(self, reply: WatchReply) -> WatchReply:
        """Keep header.revision monotonic on the stream."""
        if reply.revision < self._s.last_header:
            reply = reply.with_revision(self._s.last_header)
        self._s.last_header = reply.revision
        return reply

    async def _pump(self) -> AsyncIterator[WatchReply]:
        """Bring the dirty watchers up to the committed revision, one reply each per turn."""
        dirty = self._s.dirty
        while dirty and not self._closed:
            for watcher in list(dirty.values()):
                if self._closed or self._s.control:
                    return  # control replies first: a new watcher's "created" precedes its events
                if self._s.watchers.get(watcher.id) is not watcher or not watcher.dirty:
                    self._clean(watcher)
                    continue
                reply = await self._step(watcher)
                if reply is not None:
                    yield reply

    def _clean(self, watcher: _Watcher) -> None:
        watcher.dirty = False
        if self._s.dirty.get(watcher.id) is watcher:
            del self._s.dirty[watcher.id]

    async def _step(self, watcher: _Watcher) -> WatchReply | None:
        """One reply's worth of catching up for ``watcher`` (None if it had nothing to send)."""
        current = self._source.revision
        if watcher.next_rev > current:
            self._clean(watcher)
            return None
        compact = self._source.compact_revision
        try:
            if watcher.next_rev < compact:
                raise CompactedError()
            reply = await self._catch_up(watcher, current, compact)
        except CompactedError:  # before its position, or while we read its history
            self._clean(watcher)
            if self._s.watchers.get(watcher.id) is not watcher or watcher.compacted:
                return None  # cancelled meanwhile
            watcher.compacted = True
            if not self._closed:
                self._hub.index.remove(watcher)
            # etcd sends this one with no revision (0): not stamped.
            return WatchReply(watcher.id, 0, canceled=True, compact_revision=self._source.compact_revision)
        if watcher.next_rev > self._source.revision:
            self._clean(watcher)
        if reply is None or self._s.watchers.get(watcher.id) is not watcher:
            return None
        return self._stamp(reply)

    async def _catch_up(self, watcher: _Watcher, current: int, compact: int) -> WatchReply | None:
        last = min(current, watcher.next_rev + MAX_REVS_PER_REPLY - 1)
        events = await self._hub.events(watcher.key, watcher.end, watcher.next_rev, last)
        watcher.next_rev = last + 1
        events = [_for_watcher(e, watcher, compact) for e in events if watcher.keep(e)]
        if not events:
            return None
        watcher.active_since_tick = True
        observer = self._hub.observer
        if observer is not None:
            committed_at = self._hub.committed_at(events[-1].kv.mod_revision)
            if committed_at is not None:
                observer.delivered(committed_at)
        return WatchReply(watcher.id, last, events=events)

    def _synced(self, current: int) -> bool:
        return all(not w.compacted and self.position(w) > current for w in self._s.watchers.values())

    def _answer_progress_request(self) -> None:
        if not self._s.progress_wanted:
            return
        if not self._s.watchers:
            self._s.progress_wanted = False
            return
        current = self._source.revision
        if self._synced(current):
            self._s.progress_wanted = False
            self._s.control.append(WatchReply(-1, current))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            current = self._source.revision
            for w in self._s.watchers.values():
                if (
                    w.progress_notify
                    and not w.compacted
                    and not w.active_since_tick
                    and self.position(w) == current + 1
                ):
                    self._s.control.append(WatchReply(w.id, current))
                w.active_since_tick = False
            self.wake()


def _for_watcher(event: Event, watcher: _Watcher, compact: int) -> Event:
    """etcd attaches prev_kv only when asked, never to a create, and not once compacted away."""
    is_create = event.type == EventType.PUT and event.kv.create_revision == event.kv.mod_revision
    keep_prev = watcher.prev_kv and not is_create and event.kv.mod_revision - 1 >= compact
    if keep_prev == (event.prev_kv is not None):
        return event
    return Event(event.type, event.kv, event.prev_kv if keep_prev else None)
