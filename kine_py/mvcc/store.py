"""The MVCC store: etcd's KV semantics over a durable ``Log``, with one writer and group commit.

Theory of operation
-------------------
Reads (Range, read-only Txn) are answered from the in-memory ``KeyIndex`` at the
committed revision, with no database round trip unless an old value was
released from memory.

Writes (Put, DeleteRange, Txn, Compact) go into a queue. One writer task takes
everything queued and applies the requests in order against the index,
assigning revisions committed+1, committed+2, ... (a request that changes
nothing takes no revision). Their rows go to the log in ONE ``append`` (one
transaction, one fsync); only when it is durable does the committed revision
move and do the requests get their answers. If the append fails, the index
changes of the whole batch are rolled back and every request in it fails with
the backend's error: nothing is acknowledged that is not durable, and nothing
is answered on the strength of a write that did not happen.

Compaction is recorded durably and applied to the index in the writer, in a
batch of its own; the superseded rows are then deleted in the background in
small chunks (``physical`` waits for that).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kine_py.errors import (
    BackendUnavailableError,
    CompactedError,
    FutureRevisionError,
    KeyNotFoundError,
    KineError,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseTTLTooLargeError,
    RequestTooLargeError,
    RevisionConflictError,
    ServerStoppedError,
)
from kine_py.model import (
    Compare,
    DeleteOp,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    LeaseGrantOp,
    LeaseGrantResult,
    LeaseInfo,
    LeaseOp,
    LeaseRenewOp,
    LeaseRevokeOp,
    OpResult,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    StoreStatus,
    TxnOp,
    TxnResult,
)
from kine_py.mvcc import ranges
from kine_py.mvcc.index import Change, KeyIndex
from kine_py.mvcc.lease import MAX_LEASE_TTL, Lease, LeaseIds, Lessor
from kine_py.mvcc.log import LeaseRow, Log, Meta, Row
from kine_py.mvcc.rounds import SharedRound
from kine_py.mvcc.txn_eval import (
    check_delete,
    check_intervals,
    check_put,
    check_txn,
    compare_kv,
    is_read_only,
)
from kine_py.mvcc.values import ValueCache
from kine_py.mvcc.watch import WatchHub

log = logging.getLogger(__name__)


class StoreObserver(Protocol):
    """Receives the store's events for metrics (``kine_py.metrics.Metrics`` is one)."""

    def committed(self, requests: int, seconds: float) -> None: ...

    def insert_failed(self, retriable: bool) -> None: ...

    def compacted(self, ok: bool) -> None: ...

    def delivered(self, committed_at: float) -> None: ...


class _NoObserver:
    def committed(self, requests: int, seconds: float) -> None:
        pass

    def insert_failed(self, retriable: bool) -> None:
        pass

    def compacted(self, ok: bool) -> None:
        pass

    def delivered(self, committed_at: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class StoreConfig:
    max_txn_ops: int = 128
    max_request_bytes: int = 1536 * 1024
    max_batch: int = 1000
    load_chunk: int = 10_000
    delete_chunk: int = 1_000
    poll_interval: float = 0.1


@dataclass(slots=True)
class _Decision:
    """Which branch a txn takes, and the decisions of the nested txns in that branch, in order."""

    succeeded: bool
    children: list[_Decision]


@dataclass(slots=True)
class _Pending:
    """The writer's state while it builds one batch; revisions above ``base`` are not committed."""

    base: int
    revision: int
    rows: list[Row] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    touched: set[bytes] = field(default_factory=set)
    lease_puts: list[LeaseRow] = field(default_factory=list)
    lease_deletes: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Write:
    """One request being applied: its changes all get revision ``main``, subs 0, 1, ..."""

    start: int
    sub: int = 0
    keys: set[bytes] = field(default_factory=set)

    @property
    def main(self) -> int:
        return self.start + 1

    @property
    def read_rev(self) -> int:
        """What reads inside the request see: its own earlier changes included."""
        return self.main if self.sub else self.start


@dataclass(frozen=True, slots=True)
class _CatchUp:
    """A writer job: bring the index up to the log, which another process moved (at least
    to ``seen``, when given: done already if the index is there)."""

    seen: Meta | None = None


_Outcome = OpResult | int | LeaseGrantResult | Exception

# A write job: a KV write, a compaction (its revision), or a lease operation.
_JobOp = TxnOp | PutOp | DeleteOp | int | LeaseOp | _CatchUp


@dataclass(slots=True)
class _Job:
    op: _JobOp
    physical: bool
    future: asyncio.Future[OpResult | int | LeaseGrantResult]


class Store:
    """etcd's KV API over a ``Log``. Create, ``await start()``, use, ``await close()``."""

    def __init__(
        self, log_backend: Log, config: StoreConfig | None = None, observer: StoreObserver | None = None
    ) -> None:
        self._log = log_backend
        self.observer: StoreObserver = observer or _NoObserver()
        self._cfg = config or StoreConfig()
        self._index = KeyIndex()
        self._value_cache = ValueCache()
        self._rev = 1
        self._compact = -1
        self._cluster_id = 0
        self._member_id = 0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._deleting: asyncio.Task[None] | None = None
        self._closed = False
        self.lessor = Lessor()
        self._lease_version = 0
        self._catch_up_queued = False
        # Raft shares ReadIndex rounds itself and its meta is local: a SharedRound on top
        # would only add a task and two loop iterations to every linearizable read.
        self._fresh_meta: Callable[[], Awaitable[Meta]] = (
            self._read_meta if log_backend.barrier_shared else SharedRound(self._read_meta)
        )
        self._expirer: asyncio.Task[None] | None = None
        self._expiring: dict[int, asyncio.Task[None]] = {}
        self.hub = WatchHub(self, observer=self.observer)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Open the log, rebuild the index from it, start the writer."""
        meta = await self._log.start()
        self._rev, self._compact = meta.revision, meta.compact
        self._cluster_id, self._member_id = meta.cluster_id, meta.member_id
        self._lease_version = meta.lease_version
        await self._load()
        await self._load_leases()
        # The index just loaded lives as long as the process: keep the cyclic GC from
        # walking it on every full collection (it holds no reference cycles to collect).
        gc.freeze()
        self.hub.reset()
        if self._compact > 0:
            self._schedule_delete(self._index.compact(self._compact))
        self._writer = asyncio.create_task(self._run_writer(), name="kine-writer")
        self._expirer = asyncio.create_task(self._expire_leases(), name="kine-lease-expiry")
        if self._log.shared:
            loop = asyncio.get_running_loop()

            def changed() -> None:  # called from the log's follower thread
                loop.call_soon_threadsafe(self._remote_changed)

            self._log.follow(changed, self._cfg.poll_interval)
        log.info(
            "store ready at revision %d (compacted at %d), %d keys",
            self._rev,
            self._compact,
            len(self._index),
        )

    async def _load(self) -> None:
        """Build the index from the log, up to the revision read from meta (later rows, from
        other processes, are taken in by the next catch-up)."""
        cursor = (0, 0)
        while batch := await self._log.rows_after(cursor, self._cfg.load_chunk):
            rows = [row for row in batch if row.main <= self._rev]
            for row in rows:
                self._index.add(row.key, _change(row))
            self._index.release_values({row.key for row in rows})
            if len(rows) < len(batch):
                break
            cursor = (batch[-1].main, batch[-1].sub)
        self._index.loaded(self._rev, self._compact)

    async def _load_leases(self) -> None:
        self.lessor.ids = LeaseIds(self._member_id, int(self.lessor.clock() * 1000))
        for row in await self._log.leases():
            self.lessor.put(Lease(row.id, row.ttl, row.expiry))
        for key in self._index.keys_in(b"\0", b""):
            change = self._index.get(key, self._rev)
            if change is not None and change.lease:
                self.lessor.attach(change.lease, key)

    async def close(self) -> None:
        """Stop taking writes, let queued ones fail, wait for background deletes, close the log."""
        self._closed = True
        for task in (self._expirer, self._writer):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ServerStoppedError())
        if self._deleting:
            with contextlib.suppress(Exception):
                await self._deleting
        await self._log.close()

    # ---- reads ----

    @property
    def revision(self) -> int:
        """The committed revision: every write acknowledged so far is at or below it."""
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact

    async def range(self, op: RangeOp) -> RangeResult:
        ranges.check_range(op)
        if not op.serializable:
            await self._sync()
        current = self._rev
        at = op.revision
        if at > current:
            raise FutureRevisionError()
        if at <= 0:
            at = current
        if at < self._compact:
            raise CompactedError()
        return await self._range_at(op, at, current)

    async def _range_at(self, op: RangeOp, at: int, current: int) -> RangeResult:
        end = ranges.end_bound(op.range_end)
        items, total = self._index.page(op.key, end, at, ranges.fetch_limit(op), count_only=op.count_only)
        if op.count_only:
            return RangeResult(current, [], False, total)
        kvs = await self._key_values(items, ranges.needs_values(op))
        kvs, more = ranges.finish(op, kvs)
        return RangeResult(current, kvs, more, total)

    async def _key_values(self, items: list[tuple[bytes, Change]], with_values: bool) -> list[KeyValue]:
        """KeyValues for index entries, fetching released values from the log when needed."""
        if not with_values:
            return [KeyValue(k, c.create, c.main, c.version, b"", c.lease) for k, c in items]
        kvs = [
            KeyValue(k, c.create, c.main, c.version, c.value, c.lease)
            for k, c in items
            if c.value is not None
        ]
        if len(kvs) == len(items):  # all in memory (the usual case: current values)
            return kvs
        values = await self._released_values([c for _, c in items])
        return [_kv(k, c, values) for k, c in items]

    async def history(self, key: bytes, end: bytes | None, first: int, last: int) -> list[Event]:
        """Events on [key, end) with revision in [first, last], rebuilt from the index."""
        found: list[tuple[bytes, Change, Change | None]] = []
        for k in self._index.keys_in(key, end):
            history = self._index.history(k)
            i = bisect.bisect_left(history, first, key=_main)
            while i < len(history) and history[i].main <= last:
                found.append((k, history[i], self._index.get(k, history[i].main - 1)))
                i += 1
        found.sort(key=lambda item: (item[1].main, item[1].sub))
        values = await self._released_values([c for _, c, _ in found] + [p for _, _, p in found if p])
        return [_event(k, c, p, values) for k, c, p in found]

    async def _released_values(self, changes: list[Change]) -> dict[tuple[int, int], bytes]:
        """The value of every change, by (main, sub): those in memory taken now (the writer
        may release them while we wait), the released ones read from the log.

        Raises CompactedError if one is gone: compaction removed it while we read.
        """
        values: dict[tuple[int, int], bytes] = {}
        released = set()
        for c in changes:
            if c.value is not None:
                values[(c.main, c.sub)] = c.value
            elif not c.deleted:
                released.add((c.main, c.sub))
        missing = self._value_cache.take(released, values)
        if missing:
            fetched = await self._log.values(missing)
            if len(fetched) < len(missing):
                raise CompactedError()
            self._value_cache.put(fetched)
            values.update(fetched)
        return values

    def stats(self) -> dict[str, int]:
        """Numbers for gauges, read at scrape time."""
        return {
            "revision": self._rev,
            "compact_revision": self._compact,
            "keys": len(self._index),
            "leases": len(self.lessor.all()),
            **self.hub.stats(self._rev),
        }

    async def ready(self) -> bool:
        """Whether the log answers now (the index is loaded once ``start`` returned)."""
        try:
            await self._log.size()
        except KineError:
            return False
        return not self._closed

    async def status(self) -> StoreStatus:
        size = await self._log.size()
        return StoreStatus(
            self._rev, self._compact, size.total, size.in_use, self._cluster_id, self._member_id
        )

    # ---- writes ----

    def _check_size(self, request_size: int) -> None:
        if request_size > self._cfg.max_request_bytes:
            raise RequestTooLargeError()

    async def put(self, op: PutOp, request_size: int = 0) -> PutResult:
        """``request_size``: the encoded request's size, checked after the other checks as etcd does."""
        check_put(op)
        self._check_size(request_size)
        if op.lease:
            await self._sync()  # the lease may have been granted through another process
        result = await self._submit(op)
        assert isinstance(result, PutResult)
        return result

    async def delete_range(self, op: DeleteOp, request_size: int = 0) -> DeleteResult:
        check_delete(op)
        self._check_size(request_size)
        await self._sync()  # a delete that finds nothing writes nothing, so it must not answer stale
        result = await self._submit(op)
        assert isinstance(result, DeleteResult)
        return result

    async def txn(self, op: TxnOp, request_size: int = 0) -> TxnResult:
        check_txn(op, self._cfg.max_txn_ops)
        check_intervals(op.success)
        check_intervals(op.failure)
        if is_read_only(op):
            return await self._read_txn(op)
        self._check_size(request_size)
        await self._sync()  # a lease it names may have been granted through another process
        result = await self._submit(op)
        assert isinstance(result, TxnResult)
        return result

    async def compact(self, revision: int, physical: bool = False) -> int:
        """Compact at ``revision``; return the header revision. ``physical`` waits for the deletes."""
        result = await self._submit(revision, physical)
        assert isinstance(result, int)
        return result

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResult:
        result = await self._submit(LeaseGrantOp(ttl, lease_id))
        assert isinstance(result, LeaseGrantResult)
        return result

    async def lease_revoke(self, lease_id: int) -> int:
        """Revoke the lease and delete its keys in one revision; return the header revision."""
        result = await self._submit(LeaseRevokeOp(lease_id))
        assert isinstance(result, int)
        return result

    async def lease_renew(self, lease_id: int) -> int:
        """Restart the lease's TTL; return it, or 0 if there is no such (live) lease, as etcd."""
        result = await self._submit(LeaseRenewOp(lease_id))
        assert isinstance(result, int)
        return result

    async def lease_info(self, lease_id: int, with_keys: bool) -> LeaseInfo:
        await self._sync()
        lease = self.lessor.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        keys = sorted(lease.keys) if with_keys else []
        return LeaseInfo(lease.id, Lessor.seconds_left(lease, self.lessor.clock()), lease.ttl, keys)

    async def lease_ids(self) -> list[int]:
        await self._sync()
        return [lease.id for lease in self.lessor.all()]

    async def _submit(self, op: _JobOp, physical: bool = False) -> OpResult | int | LeaseGrantResult:
        if self._closed:
            raise ServerStoppedError()
        future: asyncio.Future[OpResult | int | LeaseGrantResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(op, physical, future))
        return await future

    async def _read_txn(self, op: TxnOp) -> TxnResult:
        await self._sync()
        current = self._rev
        decision = self._decide(op, current)
        self._check_ranges(op, decision, current)
        return await self._exec_txn(op, decision, _Write(current), current)

    # ---- the writer ----

    async def _run_writer(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self._cfg.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._run_until_committed(jobs)
            except Exception as exc:  # the database, or a bug: fail the batch, keep serving
                if not isinstance(exc, KineError):
                    log.exception("writer failed")
                _fail(jobs, exc)

    async def _run_until_committed(self, jobs: list[_Job]) -> None:
        """Run the batch; when another process appended first, follow it and run again."""
        while True:
            try:
                await self._run_batch(jobs)
                return
            except RevisionConflictError:
                await self._catch_up()
                jobs = [job for job in jobs if not job.future.done()]

    async def _run_batch(self, jobs: list[_Job]) -> None:
        pending = _Pending(self._rev, self._rev)
        done: list[tuple[_Job, _Outcome]] = []
        for job in jobs:
            if isinstance(job.op, TxnOp | PutOp | DeleteOp):
                done.append((job, await self._apply(job.op, pending)))
                continue
            # Compactions and lease operations each run in a batch of their own.
            await self._commit(pending, done)
            if isinstance(job.op, int):
                await self._run_compact(job)
            elif isinstance(job.op, _CatchUp):
                if not self._has_seen(job.op.seen):
                    await self._catch_up()
                job.future.set_result(self._rev)
            else:
                await self._run_lease(job, job.op)
            # Only now: the solo job may have moved the committed revision.
            pending, done = _Pending(self._rev, self._rev), []
        await self._commit(pending, done)

    async def _apply(self, op: TxnOp | PutOp | DeleteOp, pending: _Pending) -> OpResult | Exception:
        """Apply one request to the index; on error undo its changes and return the error."""
        w = _Write(pending.revision)
        rows_before, events_before = len(pending.rows), len(pending.events)
        try:
            if isinstance(op, PutOp):
                result: OpResult = self._put(op, w, pending, standalone=True)
            elif isinstance(op, DeleteOp):
                result = self._delete(op, w, pending)
            else:
                result = await self._write_txn(op, w, pending)
        except Exception as exc:  # KineError: the client's error; anything else: a bug, INTERNAL
            self._index.rollback(w.keys, w.start)
            del pending.rows[rows_before:]
            del pending.events[events_before:]
            if not isinstance(exc, KineError):
                log.exception("applying %r failed", op)
            return exc
        if w.sub:
            pending.revision = w.main
            pending.touched |= w.keys
        return result

    async def _commit(self, pending: _Pending, done: list[tuple[_Job, _Outcome]]) -> None:
        if pending.rows or pending.lease_puts or pending.lease_deletes:
            started = time.perf_counter()
            try:
                await self._log.append(
                    pending.rows,
                    expect=pending.base,
                    revision=pending.revision,
                    lease_puts=pending.lease_puts,
                    lease_deletes=pending.lease_deletes,
                )
            except RevisionConflictError:
                self._index.rollback(pending.touched, pending.base)
                self.observer.insert_failed(retriable=True)
                raise
            except Exception as exc:
                self._index.rollback(pending.touched, pending.base)
                self.observer.insert_failed(retriable=False)
                if not isinstance(exc, KineError):
                    log.exception("append failed")
                    exc = BackendUnavailableError(f"kine-py: write to the database failed: {exc}")
                _fail([job for job, _ in done], exc)
                return
            self.observer.committed(len(done), time.perf_counter() - started)
            self._rev = pending.revision
            self._index.commit(pending.touched, pending.base, pending.revision)
            self._index.release_values(pending.touched)
            for row in pending.lease_puts:
                self.lessor.put(Lease(row.id, row.ttl, row.expiry))
            for lease_id in pending.lease_deletes:
                self.lessor.remove(lease_id)
            if pending.lease_puts or pending.lease_deletes:
                self._lease_version += 1
            self.lessor.follow(pending.events)
            self.hub.publish(pending.events, pending.revision)
        for job, result in done:
            if not job.future.done():
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    # ---- applying one request (writer only) ----

    def _record(self, key: bytes, change: Change, w: _Write, pending: _Pending) -> None:
        """Add one change to the index, the rows to append and the events to publish.

        An event's prev_kv is the key before the whole request (etcd reads it at
        revision - 1), even when an earlier op of the same txn changed the key.
        """
        prev = self._index.get(key, w.start)
        self._index.add(key, change)
        w.keys.add(key)
        w.sub += 1
        value = change.value if change.value is not None else b""
        pending.rows.append(
            Row(
                change.main,
                change.sub,
                key,
                value,
                change.create,
                change.version,
                change.lease,
                change.deleted,
            )
        )
        event = _event(key, change, prev)
        pending.events.append(event)

    def _put(self, op: PutOp, w: _Write, pending: _Pending, *, standalone: bool = False) -> PutResult:
        if standalone and op.lease and op.lease not in self.lessor:
            raise LeaseNotFoundError()  # a plain Put checks the lease before the key
        prev = self._index.get(op.key, w.read_rev)
        if (op.ignore_value or op.ignore_lease) and prev is None:
            raise KeyNotFoundError()
        value = op.value
        if op.ignore_value:
            assert prev is not None and prev.value is not None
            value = prev.value
        lease = prev.lease if op.ignore_lease and prev is not None else op.lease
        create = prev.create if prev is not None else w.main
        version = prev.version + 1 if prev is not None else 1
        prev_kv = _kv(op.key, prev) if op.prev_kv and prev is not None else None
        self._record(op.key, Change(w.main, w.sub, create, version, lease, value), w, pending)
        return PutResult(w.main, prev_kv)

    def _delete(self, op: DeleteOp, w: _Write, pending: _Pending) -> DeleteResult:
        found = list(self._index.range(op.key, ranges.end_bound(op.range_end), w.read_rev))
        prev_kvs = [_kv(key, c) for key, c in found] if op.prev_kv else []
        for key, _ in found:
            self._record(key, Change(w.main, w.sub, 0, 0, 0, b"", deleted=True), w, pending)
        revision = w.main if w.sub else w.start
        return DeleteResult(revision, len(found), prev_kvs)

    async def _write_txn(self, op: TxnOp, w: _Write, pending: _Pending) -> TxnResult:
        decision = self._decide(op, w.start)
        self._check_puts(op, decision, w.start)
        self._check_ranges(op, decision, w.start)
        return await self._exec_txn(op, decision, w, None, pending)

    def _decide(self, op: TxnOp, at: int) -> _Decision:
        """Evaluate every compare, nested ones included, against the state before the txn."""
        ok = all(self._compare(c, at) for c in op.compare)
        branch = op.success if ok else op.failure
        return _Decision(ok, [self._decide(t, at) for t in branch if isinstance(t, TxnOp)])

    def _compare(self, c: Compare, at: int) -> bool:
        end = ranges.end_bound(c.range_end)
        found = [_kv(key, change) for key, change in self._index.range(c.key, end, at)]
        if not found:
            return compare_kv(c, None)
        return all(compare_kv(c, kv) for kv in found)

    def _check_puts(self, op: TxnOp, decision: _Decision, at: int) -> None:
        children = iter(decision.children)
        for request in op.success if decision.succeeded else op.failure:
            if isinstance(request, TxnOp):
                self._check_puts(request, next(children), at)
            elif isinstance(request, PutOp):
                if (request.ignore_value or request.ignore_lease) and self._index.get(
                    request.key, at
                ) is None:
                    raise KeyNotFoundError()
                if request.lease and request.lease not in self.lessor:
                    raise LeaseNotFoundError()

    def _check_ranges(self, op: TxnOp, decision: _Decision, at: int) -> None:
        children = iter(decision.children)
        for request in op.success if decision.succeeded else op.failure:
            if isinstance(request, TxnOp):
                self._check_ranges(request, next(children), at)
            elif isinstance(request, RangeOp) and request.revision:
                if request.revision > at:
                    raise FutureRevisionError()
                if request.revision < self._compact:
                    raise CompactedError()

    async def _exec_txn(
        self, op: TxnOp, decision: _Decision, w: _Write, top: int | None, pending: _Pending | None = None
    ) -> TxnResult:
        """Run the chosen branch. Nested txn results carry revision 0, as etcd's do."""
        children = iter(decision.children)
        responses: list[OpResult] = []
        for request in op.success if decision.succeeded else op.failure:
            if isinstance(request, RangeOp):
                at = request.revision if request.revision > 0 else w.read_rev
                responses.append(await self._range_at(request, at, w.read_rev))
            elif isinstance(request, PutOp):
                assert pending is not None
                responses.append(self._put(request, w, pending))
            elif isinstance(request, DeleteOp):
                assert pending is not None
                responses.append(self._delete(request, w, pending))
            elif isinstance(request, TxnOp):
                responses.append(await self._exec_txn(request, next(children), w, 0, pending))
        revision = w.read_rev if top is None else top
        return TxnResult(revision, decision.succeeded, responses)

    # ---- following other processes on a shared log ----

    async def _sync(self) -> None:
        """Before a linearizable read on a shared log: take in every write committed so far.
        Concurrent reads share one barrier and ``meta`` read (``SharedRound``), and a catch-up
        that an earlier one already did is skipped."""
        if not self._log.shared:
            return
        meta = await self._fresh_meta()
        if not self._has_seen(meta):
            await self._submit(_CatchUp(meta))

    async def _read_meta(self) -> Meta:
        await self._log.barrier()
        return await self._log.meta()

    def _has_seen(self, meta: Meta | None) -> bool:
        """Whether the index already holds everything ``meta`` says the log holds."""
        return meta is not None and meta.revision <= self._rev and meta.lease_version == self._lease_version

    def _remote_changed(self) -> None:
        """From the log's follower: the database may be ahead; queue one catch-up."""
        if self._closed or self._catch_up_queued:
            return
        self._catch_up_queued = True
        future: asyncio.Future[OpResult | int | LeaseGrantResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_ignore_outcome)
        self._queue.put_nowait(_Job(_CatchUp(), False, future))

    async def _catch_up(self) -> None:
        """Writer only: apply what other processes committed (rows, compaction, leases)."""
        self._catch_up_queued = False
        meta = await self._log.meta()
        if meta.compact > self._rev:
            await self._reload(meta)  # what we missed is compacted away: start from the log
            return
        found: list[tuple[bytes, Change, Change | None]] = []
        cursor = (self._rev, 1 << 62)
        while cursor[0] < meta.revision:
            rows = await self._log.rows_after(cursor, self._cfg.load_chunk)
            if not rows:
                break
            for row in rows:
                if row.main > meta.revision:
                    break
                prev = self._index.get(row.key, row.main - 1)
                change = _change(row)
                self._index.add(row.key, change)
                found.append((row.key, change, prev))
            cursor = (rows[-1].main, rows[-1].sub)
        log.debug("catch-up from %d to %d: %d changes", self._rev, meta.revision, len(found))
        await self._take_in(meta, found)

    async def _reload(self, meta: Meta) -> None:
        log.warning(
            "behind compaction at %d (local revision %d): reloading the index", meta.compact, self._rev
        )
        self._index = KeyIndex()
        self.lessor = Lessor(self.lessor.clock)
        self._rev, self._compact, self._lease_version = meta.revision, meta.compact, meta.lease_version
        await self._load()
        await self._load_leases()
        self._index.compact(self._compact)
        self.hub.reset()
        self.hub.publish([], self._rev)

    async def _take_in(self, meta: Meta, found: list[tuple[bytes, Change, Change | None]]) -> None:
        values = await self._released_values([c for _, c, _ in found] + [p for _, _, p in found if p])
        events = [_event(k, c, p, values) for k, c, p in found]
        if meta.lease_version != self._lease_version:
            await self._reload_leases()  # first: the events may attach keys to new leases
            self._lease_version = meta.lease_version
        # No await from here to the publish: the watch hub must see the revision move and
        # its events in one step (a watcher catching up meanwhile would skip them).
        keys = {k for k, _, _ in found}
        self._index.commit(keys, self._rev, max(self._rev, meta.revision))
        self._rev = max(self._rev, meta.revision)
        self._index.release_values(keys)
        self.lessor.follow(events)
        self.hub.publish(events, self._rev)
        if meta.compact > self._compact:
            self._compact = meta.compact
            removed = self._index.compact(meta.compact)
            if await self._log.try_lead():  # the leader deletes too, in case the compactor died
                self._schedule_delete(removed)

    async def _reload_leases(self) -> None:
        fresh = {row.id: row for row in await self._log.leases()}
        for lease in self.lessor.all():
            if lease.id not in fresh:
                self.lessor.remove(lease.id)
        for row in fresh.values():
            self.lessor.put(Lease(row.id, row.ttl, row.expiry))

    # ---- leases (writer only) ----

    async def _run_lease(self, job: _Job, op: LeaseOp) -> None:
        pending = _Pending(self._rev, self._rev)
        try:
            result = self._apply_lease(op, pending)
        except KineError as exc:
            _fail([job], exc)
            return
        await self._commit(pending, [(job, result)])

    def _apply_lease(self, op: LeaseOp, pending: _Pending) -> int | LeaseGrantResult:
        now = self.lessor.clock()
        if isinstance(op, LeaseGrantOp):
            if op.ttl > MAX_LEASE_TTL:
                raise LeaseTTLTooLargeError()
            lease_id = op.id
            while lease_id == 0 or lease_id in self.lessor:
                if op.id:
                    raise LeaseExistsError()
                lease_id = self.lessor.ids.next()
            ttl = Lessor.granted_ttl(op.ttl)
            pending.lease_puts.append(LeaseRow(lease_id, ttl, now + ttl))
            return LeaseGrantResult(lease_id, ttl, self._rev)
        lease = self.lessor.get(op.id)
        if isinstance(op, LeaseRenewOp):
            if lease is None or lease.expiry <= now:
                return 0
            pending.lease_puts.append(LeaseRow(lease.id, lease.ttl, now + lease.ttl))
            return lease.ttl
        if lease is None:
            raise LeaseNotFoundError()
        w = _Write(pending.revision)
        for key in sorted(lease.keys):
            prev = self._index.get(key, w.read_rev)
            if prev is not None:
                self._record(key, Change(w.main, w.sub, 0, 0, 0, b"", deleted=True), w, pending)
        if w.sub:
            pending.revision = w.main
            pending.touched |= w.keys
        pending.lease_deletes.append(lease.id)
        return pending.revision

    async def _expire_leases(self) -> None:
        """Revoke expired leases, each in its own revision, as etcd's lessor does."""
        while True:
            await asyncio.sleep(0.5)
            try:
                if not await self._log.try_lead():
                    continue
                await self._sync()  # another process may have renewed or revoked it
            except KineError:
                continue
            for lease_id in self.lessor.expired():
                if lease_id not in self._expiring:
                    self._expiring[lease_id] = asyncio.create_task(self._expire(lease_id))

    async def _expire(self, lease_id: int) -> None:
        try:
            await self.lease_revoke(lease_id)
        except LeaseNotFoundError:
            pass
        except Exception:
            log.exception("revoking expired lease %x failed; retrying", lease_id)
        finally:
            self._expiring.pop(lease_id, None)

    # ---- compaction ----

    async def _run_compact(self, job: _Job) -> None:
        assert isinstance(job.op, int)
        revision = job.op
        try:
            if revision <= self._compact:
                raise CompactedError()
            if revision > self._rev:
                raise FutureRevisionError()
            await self._log.set_compact(revision)
        except Exception as exc:
            self.observer.compacted(ok=False)
            _fail([job], exc if isinstance(exc, KineError) else BackendUnavailableError(str(exc)))
            return
        self.observer.compacted(ok=True)
        self._compact = revision
        self._schedule_delete(self._index.compact(revision))
        if job.physical and self._deleting:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._deleting)
        if not job.future.done():
            job.future.set_result(self._rev)

    def _schedule_delete(self, removed: list[tuple[int, int]]) -> None:
        if removed:
            self._deleting = asyncio.create_task(self._delete_rows(self._deleting, removed))

    async def _delete_rows(self, before: asyncio.Task[None] | None, removed: list[tuple[int, int]]) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await before
        chunk = self._cfg.delete_chunk
        for i in range(0, len(removed), chunk):
            try:
                await self._log.delete_rows(removed[i : i + chunk])
            except Exception:
                log.exception("deleting compacted rows failed; they are retried at the next start")
                return


def _change(row: Row) -> Change:
    return Change(row.main, row.sub, row.create, row.version, row.lease, row.value, row.deleted)


def _kv(key: bytes, c: Change, values: dict[tuple[int, int], bytes] | None = None) -> KeyValue:
    """The KeyValue of a live change; with ``values`` (from ``_released_values``) its value is
    taken from there, else from memory (the caller has not awaited since it found ``c``)."""
    if values is not None:
        value = values.get((c.main, c.sub), b"")
    else:
        value = c.value if c.value is not None else b""
    return KeyValue(key, c.create, c.main, c.version, value, c.lease)


def _main(c: Change) -> int:
    return c.main


def _event(
    key: bytes, c: Change, prev: Change | None, values: dict[tuple[int, int], bytes] | None = None
) -> Event:
    prev_kv = None if prev is None or prev.deleted else _kv(key, prev, values)
    if c.deleted:
        return Event(EventType.DELETE, KeyValue(key, 0, c.main, 0, b"", 0), prev_kv)
    return Event(EventType.PUT, _kv(key, c, values), prev_kv)


def _kv_or_none(key: bytes, c: Change | None) -> KeyValue | None:
    return None if c is None else _kv(key, c)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a failed background catch-up is retried on the next change


def _fail(jobs: Iterable[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
