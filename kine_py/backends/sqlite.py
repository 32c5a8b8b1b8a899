"""The embedded default: the log in one SQLite file (``sqlite://PATH``).

WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is
fsynced, so an acknowledged write survives power loss. One connection writes
(on its own thread, so the event loop never waits on an fsync), another reads;
in WAL mode readers see the last commit and never block the writer.

Schema (version 1): ``kv`` holds one row per change of a key, keyed by
(main, sub) revision, values stored once; ``meta`` holds the current and
compact revisions and the cluster identity; ``leases`` holds each lease's TTL and expiry;
``schema_version`` lets a later release migrate.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kine_py.backends import Endpoint
from kine_py.errors import BackendUnavailableError, RevisionConflictError
from kine_py.mvcc.log import DbSize, LeaseRow, Meta, Row

SCHEMA_VERSION = 1

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL,
        compact INTEGER NOT NULL,
        cluster_id INTEGER NOT NULL,
        member_id INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY,
        main INTEGER NOT NULL,
        sub INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        create_rev INTEGER NOT NULL,
        version INTEGER NOT NULL,
        lease INTEGER NOT NULL,
        deleted INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS kv_revision ON kv (main, sub)",
    """CREATE TABLE IF NOT EXISTS leases (
        id INTEGER PRIMARY KEY,
        ttl INTEGER NOT NULL,
        expiry REAL NOT NULL)""",
]

_ROW_COLUMNS = "main, sub, key, value, create_rev, version, lease, deleted"
_INSERT = f"INSERT INTO kv ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_ROWS_AFTER = f"SELECT {_ROW_COLUMNS} FROM kv WHERE (main, sub) > (?, ?) ORDER BY main, sub LIMIT ?"
_VALUE = "SELECT value FROM kv WHERE main = ? AND sub = ?"
_PUT_LEASE = "INSERT OR REPLACE INTO leases (id, ttl, expiry) VALUES (?, ?, ?)"

T = TypeVar("T")


def open_log(endpoint: Endpoint) -> SQLiteLog:
    path = endpoint.rest or "./db/state.db"
    return SQLiteLog(Path(path))


class SQLiteLog:
    """``Log`` on one SQLite file. See the module docstring for durability."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    # ---- plumbing ----

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    async def _on(self, executor: ThreadPoolExecutor, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"kine-py: sqlite {what} on {self.path} failed: {exc}") from exc

    def _w(self) -> sqlite3.Connection:
        if self._wconn is None:
            self._wconn = self._connect()
        return self._wconn

    def _r(self) -> sqlite3.Connection:
        if self._rconn is None:
            self._rconn = self._connect()
        return self._rconn

    # ---- Log ----

    async def start(self) -> Meta:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return await self._on(self._writer, "start", self._start)

    def _start(self) -> Meta:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._migrate(conn)
            row = conn.execute("SELECT revision, compact, cluster_id, member_id FROM meta").fetchone()
            if row is None:
                row = (1, -1, random.getrandbits(63), random.getrandbits(63))
                conn.execute("INSERT INTO meta VALUES (1, ?, ?, ?, ?)", row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Meta(*row)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {row[0]} is newer than this kine-py ({SCHEMA_VERSION})"
            )

    async def rows_after(self, after: tuple[int, int], limit: int) -> list[Row]:
        def read() -> list[Row]:
            cur = self._r().execute(_ROWS_AFTER, (*after, limit))
            return [Row(m, s, k, v, c, ver, lease, bool(d)) for m, s, k, v, c, ver, lease, d in cur]

        return await self._on(self._reader, "read", read)

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
        lease_params = [(lease.id, lease.ttl, lease.expiry) for lease in lease_puts]
        lease_ids = [(lease_id,) for lease_id in lease_deletes]

        def write() -> None:
            conn = self._w()
            conn.execute("BEGIN IMMEDIATE")
            try:
                moved = conn.execute(
                    "UPDATE meta SET revision = ? WHERE id = 1 AND revision = ?", (revision, expect)
                ).rowcount
                if moved != 1:
                    raise RevisionConflictError(f"log revision is not {expect}")
                conn.executemany(_INSERT, params)
                conn.executemany(_PUT_LEASE, lease_params)
                conn.executemany("DELETE FROM leases WHERE id = ?", lease_ids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._on(self._writer, "append", write)

    async def leases(self) -> list[LeaseRow]:
        def read() -> list[LeaseRow]:
            return [LeaseRow(*row) for row in self._r().execute("SELECT id, ttl, expiry FROM leases")]

        return await self._on(self._reader, "read", read)

    async def set_compact(self, revision: int) -> None:
        def write() -> None:
            self._w().execute("UPDATE meta SET compact = ? WHERE id = 1", (revision,))

        await self._on(self._writer, "compact", write)

    async def delete_rows(self, revisions: Sequence[tuple[int, int]]) -> None:
        def write() -> None:
            conn = self._w()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM kv WHERE main = ? AND sub = ?", revisions)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._on(self._writer, "delete", write)

    async def values(self, revisions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        def read() -> dict[tuple[int, int], bytes]:
            conn = self._r()
            found = {}
            for rev in set(revisions):
                row = conn.execute(_VALUE, rev).fetchone()
                if row is not None:
                    found[rev] = row[0]
            return found

        return await self._on(self._reader, "read", read)

    async def size(self) -> DbSize:
        def read() -> DbSize:
            conn = self._r()
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return DbSize(page * pages, page * (pages - free))

        return await self._on(self._reader, "size", read)

    async def close(self) -> None:
        def close_writer() -> None:
            if self._wconn is not None:
                self._wconn.close()

        def close_reader() -> None:
            if self._rconn is not None:
                self._rconn.close()

        await asyncio.get_running_loop().run_in_executor(self._writer, close_writer)
        await asyncio.get_running_loop().run_in_executor(self._reader, close_reader)
        self._writer.shutdown()
        self._reader.shutdown()
