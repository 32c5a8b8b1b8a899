"""``Log`` on a SQL database through a synchronous DB-API driver (sqlite3, psycopg, PyMySQL).

Threads: one writer thread owns the connection that writes (so the event loop
never waits on a commit's fsync), a few reader threads each own a connection
for reads. A driver error closes that thread's connection (the next call
reconnects) and becomes ``BackendUnavailableError`` with the statement's name.

Appends are a compare-and-swap on the meta row (``move_revision``): it takes
the row's write lock, so concurrent writers — other kine-py processes on a
shared database — are serialised, and a writer that finds the revision moved
writes nothing and raises ``RevisionConflictError``. If the connection is lost
during COMMIT the outcome is unknown: the log reconnects and reads back whether
its rows are there before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from kine_py.errors import BackendUnavailableError, CompactedError, FutureRevisionError, RevisionConflictError
from kine_py.mvcc.log import DbSize, LeaseRow, Meta, Row
from kine_py.sqllog.dialect import Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")
Connect = Callable[[], Any]
SCHEMA_VERSION = 1
# Values read by revision in one statement at most this many at a time.
VALUES_PER_QUERY = 100


class QueryObserver(Protocol):
    def query(self, name: str, seconds: float, error: BaseException | None) -> None: ...


class _Conn(threading.local):
    conn: Any = None
    leading: bool = False  # this thread's connection holds the leader lock


class SqlLog:
    """A ``Log`` for one database. ``connect`` opens a DB-API connection in autocommit mode."""

    def __init__(
        self,
        dialect: Dialect,
        connect: Connect,
        *,
        target: str,
        readers: int = 2,
        observer: QueryObserver | None = None,
    ) -> None:
        self.observer = observer
        self.dialect = dialect
        self.target = target  # for messages: a path or a redacted DSN
        self._connect = connect
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{dialect.name}-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix=f"{dialect.name}-reader")
        self._local = _Conn()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self.member_id = random.getrandbits(63)
        self._leader = ThreadPoolExecutor(1, thread_name_prefix=f"{dialect.name}-leader")
        self._stop = threading.Event()
        self._own_revision = 0  # the revision of this process's last append without lease changes
        self._follower: threading.Thread | None = None
        self._values_sql_cache: dict[int, str] = {}

    @property
    def shared(self) -> bool:
        return self.dialect.shared

    @property
    def barrier_shared(self) -> bool:
        return False

    # ---- plumbing ----

    def _conn(self) -> Any:
        if self._local.conn is None:
            conn = self._connect()
            cur = conn.cursor()
            for statement in self.dialect.session_setup:
                cur.execute(statement)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return self._local.conn

    def _drop(self) -> None:
        self._local.leading = False
        conn, self._local.conn = self._local.conn, None
        if conn is not None:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    async def _run(self, executor: ThreadPoolExecutor, what: str, fn: Callable[[Any], T]) -> T:
        # A read on a connection that died while idle (the database restarted, the network
        # was cut) is retried once on a fresh connection; a write never is.
        retry_stale = executor is self._readers

        def call() -> T:
            started, error = time.perf_counter(), None
            reused = self._local.conn is not None
            try:
                return fn(self._conn())
            except self.dialect.driver_errors as exc:
                self._drop()
                if not (retry_stale and reused):
                    error = exc
                    raise
                try:
                    return fn(self._conn())
                except self.dialect.driver_errors as again:
                    error = again
                    self._drop()
                    raise
            finally:
                if self.observer is not None:
                    self.observer.query(what, time.perf_counter() - started, error)

        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except self.dialect.driver_errors as exc:
            raise BackendUnavailableError(
                f"kine-py: {self.dialect.name} {what} on {self.target} failed: {exc}".strip()
            ) from exc

    def _q(self, name: str) -> str:
        return self.dialect.sql(name)

    def _begin(self, cur: Any) -> None:
        cur.execute(self.dialect.begin)

    # ---- Log ----

    async def start(self) -> Meta:
        return await self._run(self._writer, "schema setup", self._start)

    def _start(self, conn: Any) -> Meta:
        cur = conn.cursor()
        self._begin(cur)
        try:
            for statement in self.dialect.schema:
                cur.execute(statement)
            cur.execute(self._q("schema_version"))
            row = cur.fetchone()
            if row is None:
                cur.execute(self._q("insert_schema_version"), (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise RuntimeError(f"schema version {row[0]} is newer than this kine-py ({SCHEMA_VERSION})")
            cur.execute(self._q("meta"))
            if cur.fetchone() is None:
                cur.execute(self._q("insert_meta"), (1, -1, random.getrandbits(63), random.getrandbits(63)))
            cur.execute(self._q("meta"))
            meta = cur.fetchone()
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        member = meta[3] if not self.dialect.shared else self.member_id
        return Meta(meta[0], meta[1], meta[2], member, meta[4])

    async def meta(self) -> Meta:
        def read(conn: Any) -> Meta:
            cur = conn.cursor()
            cur.execute(self._q("meta"))
            revision, compact, cluster, member, leases = cur.fetchone()
            return Meta(revision, compact, cluster, member, leases)

        return await self._run(self._readers, "meta read", read)

    async def barrier(self) -> None:
        """Every commit is visible to the next ``meta`` read: nothing to wait for."""

    async def rows_after(self, after: tuple[int, int], limit: int) -> list[Row]:
        def read(conn: Any) -> list[Row]:
            cur = conn.cursor()
            cur.execute(self._q("rows_after"), (after[0], after[0], after[1], limit))
            return [
                Row(m, s, bytes(k), bytes(v), c, ver, lease, bool(d)) for m, s, k, v, c, ver, lease, d in cur
            ]

        return await self._run(self._readers, "rows_after", read)

    async def append(
        self,
        rows: Sequence[Row],
        *,
        expect: int,
        revision: int,
        lease_puts: Sequence[LeaseRow] = (),
        lease_deletes: Sequence[int] = (),
    ) -> None:
        params = [(r.main, r.sub, r.key, r.value, r.create, r.version, r.lease, int(r.deleted)) for r in rows]
        leases = [(lease.id, lease.ttl, lease.expiry) for lease in lease_puts]
        gone = [(lease_id,) for lease_id in lease_deletes]
        committing = threading.Event()
        one_statement = self.dialect.append_rows if params and not leases and not gone else None

        def write_at_once(conn: Any, sql: str) -> None:
            columns = [list(column) for column in zip(*params, strict=True)]
            cur = conn.cursor()
            committing.set()  # the statement is the transaction: it may commit as it fails
            cur.execute(sql, (revision, expect, *columns))
            if cur.rowcount != len(params):
                raise RevisionConflictError(f"log revision is not {expect}")
            self._own_revision = revision

        def write(conn: Any) -> None:
            if one_statement is not None:
                write_at_once(conn, one_statement)
                return
            cur = conn.cursor()
            self._begin(cur)
            try:
                cur.execute(self._q("move_revision"), (revision, expect))
                if cur.rowcount != 1:
                    raise RevisionConflictError(f"log revision is not {expect}")
                if params:
                    cur.executemany(self._q("insert_row"), params)
                if leases or gone:
                    self._write_leases(cur, leases, gone)
                if self.dialect.notify:
                    cur.execute(self.dialect.notify, (str(revision),))
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            committing.set()
            cur.execute("COMMIT")
            if not leases and not gone:
                self._own_revision = revision

        try:
            await self._run(self._writer, "append", write)
        except BackendUnavailableError:
            if not committing.is_set():
                raise
            await self._resolve(rows, revision)

    def _write_leases(self, cur: Any, leases: list[tuple[int, int, float]], gone: list[tuple[int]]) -> None:
        if leases:
            cur.executemany(self._q("put_lease"), leases)
        if gone:
            cur.executemany(self._q("delete_lease"), gone)
        cur.execute(self._q("bump_leases"))

    async def _resolve(self, rows: Sequence[Row], revision: int) -> None:
        """The connection died during COMMIT: find out from the database whether it committed."""
        log.warning("commit outcome unknown for revision %d on %s; checking", revision, self.target)
        meta = await self.meta()
        if meta.revision >= revision and rows:
            found = await self.values([(r.main, r.sub) for r in rows])
            if all(found.get((r.main, r.sub)) == r.value for r in rows):
                log.warning("revision %d did commit", revision)
                return
        raise BackendUnavailableError(
            f"kine-py: {self.dialect.name} connection lost during commit on {self.target}; "
            "the write did not commit"
        )

    async def set_compact(self, revision: int) -> None:
        def write(conn: Any) -> tuple[int, int] | None:
            cur = conn.cursor()
            cur.execute(self._q("set_compact"), (revision, revision, revision))
            if cur.rowcount == 1:
                return None
            cur.execute(self._q("meta"))
            row = cur.fetchone()
            return int(row[0]), int(row[1])

        refused = await self._run(self._writer, "compact", write)
        if refused is not None:
            current = refused[0]
            raise FutureRevisionError() if revision > current else CompactedError()

    async def delete_rows(self, revisions: Sequence[tuple[int, int]]) -> None:
        def write(conn: Any) -> None:
            cur = conn.cursor()
            self._begin(cur)
            try:
                cur.executemany(self._q("delete_row"), list(revisions))
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

        await self._run(self._writer, "delete compacted rows", write)

    async def values(self, revisions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(revisions))

        def read(conn: Any) -> dict[tuple[int, int], bytes]:
            cur = conn.cursor()
            found: dict[tuple[int, int], bytes] = {}
            for i in range(0, len(wanted), VALUES_PER_QUERY):
                chunk = wanted[i : i + VALUES_PER_QUERY]
                if len(chunk) == 1:
                    cur.execute(self._q("value"), chunk[0])
                    row = cur.fetchone()
                    if row is not None:
                        found[chunk[0]] = bytes(row[0])
                    continue
                cur.execute(self._values_sql(len(chunk)), [n for rev in chunk for n in rev])
                for main, sub, value in cur:
                    found[(int(main), int(sub))] = bytes(value)
            return found

        return await self._run(self._readers, "value read", read)

    def _values_sql(self, count: int) -> str:
        """One statement for ``count`` rows by (main, sub): an OR of equalities on the primary
        key, which SQLite, PostgreSQL and MySQL all answer with index lookups."""
        sql = self._values_sql_cache.get(count)
        if sql is None:
            match = " OR ".join(["(main = ? AND sub = ?)"] * count)
            sql = f"SELECT main, sub, value FROM kv WHERE {match}"
            if self.dialect.paramstyle == "format":
                sql = sql.replace("?", "%s")
            self._values_sql_cache[count] = sql
        return sql

    async def leases(self) -> list[LeaseRow]:
        def read(conn: Any) -> list[LeaseRow]:
            cur = conn.cursor()
            cur.execute(self._q("leases"))
            return [LeaseRow(int(i), int(ttl), float(expiry)) for i, ttl, expiry in cur]

        return await self._run(self._readers, "lease read", read)

    async def size(self) -> DbSize:
        return DbSize(*await self._run(self._readers, "size", lambda conn: self.dialect.size(conn.cursor())))

    # ---- other processes ----

    def follow(self, on_change: Callable[[], None], interval: float) -> None:
        """Call ``on_change`` (from a thread) whenever the meta row may have moved: on
        NOTIFY where the database has it, and at least every ``interval`` seconds."""
        if not self.dialect.shared:
            return
        self._follower = threading.Thread(
            target=self._follow, args=(on_change, interval), name=f"{self.dialect.name}-follower", daemon=True
        )
        self._follower.start()

    def _follow(self, on_change: Callable[[], None], interval: float) -> None:
        last: tuple[int, ...] | None = None
        while not self._stop.is_set():
            try:
                conn = self._connect()
                try:
                    if self.dialect.listen:
                        conn.execute(self.dialect.listen)
                    while not self._stop.is_set():
                        last = self._poll_once(conn, last, on_change, interval)
                finally:
                    with contextlib.suppress(Exception):
                        conn.close()
            except self.dialect.driver_errors as exc:
                log.warning("following %s failed (%s); retrying", self.target, exc)
                self._stop.wait(1)

    def _poll_once(
        self, conn: Any, last: tuple[int, ...] | None, on_change: Callable[[], None], interval: float
    ) -> tuple[int, ...]:
        if self.dialect.listen:
            notified = any(True for _ in conn.notifies(timeout=interval, stop_after=1))
        else:
            self._stop.wait(interval)
            notified = False
        cur = conn.cursor()
        cur.execute(self._q("meta"))
        row = cur.fetchone()
        state = (int(row[0]), int(row[1]), int(row[4]))
        # Our own append moved it: the store has every row up to there already (the append's
        # compare-and-swap proves nothing else was committed before it), so a catch-up would
        # only cost the writer a query. Compactions and lease changes are always followed.
        own = last is not None and state[0] == self._own_revision and state[1:] == last[1:]
        if (notified or state != last) and not own:
            on_change()
        return state

    async def try_lead(self) -> bool:
        """Whether this process holds the leader lock (taking it if it is free)."""
        lock = self.dialect.leader_lock
        if lock is None:
            return True

        def attempt(conn: Any) -> bool:
            cur = conn.cursor()
            if self._local.leading:
                cur.execute("SELECT 1")  # still connected, so still holding it
                return True
            cur.execute(lock)
            self._local.leading = bool(cur.fetchone()[0])
            return bool(self._local.leading)

        try:
            return await self._run(self._leader, "leader lock", attempt)
        except BackendUnavailableError:
            return False  # the connection, and with it the lock, is gone

    async def close(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._drop)
        await loop.run_in_executor(self._leader, self._drop)
        self._writer.shutdown()
        self._readers.shutdown()
        self._leader.shutdown()
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
