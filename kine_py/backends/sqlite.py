"""The embedded default: the log in one SQLite file (``sqlite://PATH``).

WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is
fsynced, so an acknowledged write survives power loss. ``BEGIN IMMEDIATE``
takes SQLite's write lock at the start of a write. One kine-py process per file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from kine_py.backends import BackendOptions, Endpoint
from kine_py.sqllog.dialect import COMMON, Dialect
from kine_py.sqllog.log import SqlLog

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL,
        compact INTEGER NOT NULL,
        cluster_id INTEGER NOT NULL,
        member_id INTEGER NOT NULL,
        lease_version INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY,
        main INTEGER NOT NULL,
        sub INTEGER NOT NULL,
        name BLOB NOT NULL,
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
)


def _size(cur: Any) -> tuple[int, int]:
    page = cur.execute("PRAGMA page_size").fetchone()[0]
    pages = cur.execute("PRAGMA page_count").fetchone()[0]
    free = cur.execute("PRAGMA freelist_count").fetchone()[0]
    return page * pages, page * (pages - free)


DIALECT = Dialect(
    name="sqlite",
    schema=SCHEMA,
    statements={
        **COMMON,
        "insert_meta": "INSERT OR IGNORE INTO meta (id, revision, compact, cluster_id, member_id)"
        " VALUES (1, ?, ?, ?, ?)",
    },
    begin="BEGIN IMMEDIATE",
    size=_size,
    shared=False,
    session_setup=("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000"),
    driver_errors=(sqlite3.Error,),
)


def open_log(endpoint: Endpoint, options: BackendOptions) -> SqlLog:
    path = Path(endpoint.rest or "./db/state.db")
    path.parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        # Each connection is used by one thread at a time (the log's executors); closing
        # may happen from another, hence check_same_thread=False.
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    return SqlLog(DIALECT, connect, target=str(path), readers=1, observer=options.observer)
