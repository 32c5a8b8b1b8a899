"""PostgreSQL (``postgres://user:pass@host:port/db?params``, also ``postgresql://``), via psycopg 3.

Install with ``pip install 'kine-py[postgres]'``. The database is created if it
does not exist (default name ``kubernetes``, as Kine). Keys and values are
``bytea``: compared bytewise, never through a collation. Every write
transaction ends with ``pg_notify('kine_py', revision)``, so other kine-py
processes on the same database learn of it at once (LISTEN), and poll as a
fallback.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from kine_py.backends import BackendOptions, Endpoint
from kine_py.sqllog.dialect import COMMON, Dialect
from kine_py.sqllog.log import SqlLog

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the postgres backend needs psycopg: pip install 'kine-py[postgres]'") from exc

CHANNEL = "kine_py"
# Serialises schema set-up between processes starting at once.
_SETUP_LOCK = 0x6B696E65
# Held for its whole life by the one process that expires leases.
_LEADER_LOCK = 0x6B696E66

SCHEMA = (
    f"SELECT pg_advisory_xact_lock({_SETUP_LOCK})",
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision BIGINT NOT NULL,
        compact BIGINT NOT NULL,
        cluster_id BIGINT NOT NULL,
        member_id BIGINT NOT NULL,
        lease_version BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS kv (
        main BIGINT NOT NULL,
        sub INTEGER NOT NULL,
        name BYTEA NOT NULL,
        value BYTEA NOT NULL,
        create_rev BIGINT NOT NULL,
        version BIGINT NOT NULL,
        lease BIGINT NOT NULL,
        deleted SMALLINT NOT NULL,
        PRIMARY KEY (main, sub))""",
    """CREATE TABLE IF NOT EXISTS leases (
        id BIGINT PRIMARY KEY,
        ttl BIGINT NOT NULL,
        expiry DOUBLE PRECISION NOT NULL)""",
)


def _size(cur: Any) -> tuple[int, int]:
    cur.execute(
        "SELECT pg_database_size(current_database()),"
        " pg_total_relation_size('kv') + pg_total_relation_size('meta') + pg_total_relation_size('leases')"
    )
    total, used = cur.fetchone()
    return int(total), int(used)


# An append as one statement: the compare-and-swap on meta, the notification and the inserts
# run only when the revision was the expected one (every CTE that modifies data runs once).
APPEND_ROWS = f"""WITH moved AS (
    UPDATE meta SET revision = ? WHERE id = 1 AND revision = ? RETURNING revision
), told AS (
    SELECT pg_notify('{CHANNEL}', moved.revision::text) AS sent FROM moved
)
INSERT INTO kv (main, sub, name, value, create_rev, version, lease, deleted)
SELECT r.* FROM unnest(
    ?::bigint[], ?::integer[], ?::bytea[], ?::bytea[], ?::bigint[], ?::bigint[], ?::bigint[], ?::smallint[]
) AS r CROSS JOIN told"""

DIALECT = Dialect(
    name="postgres",
    schema=SCHEMA,
    statements={
        **COMMON,
        "insert_meta": "INSERT INTO meta (id, revision, compact, cluster_id, member_id)"
        " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    },
    begin="BEGIN",
    size=_size,
    shared=True,
    paramstyle="format",
    notify=f"SELECT pg_notify('{CHANNEL}', ?)",
    listen=f"LISTEN {CHANNEL}",
    leader_lock=f"SELECT pg_try_advisory_lock({_LEADER_LOCK})",
    append_rows=APPEND_ROWS,
    driver_errors=(psycopg.Error,),
)


def conninfo(endpoint: Endpoint, options: BackendOptions, *, database: str | None = None) -> str:
    """A libpq URI for the endpoint, with TLS files from the options and a default database."""
    parts = urlsplit(f"postgresql://{endpoint.rest}")
    params = dict(endpoint.params)
    for param, path in (
        ("sslrootcert", options.ca_file),
        ("sslcert", options.cert_file),
        ("sslkey", options.key_file),
    ):
        if path:
            params[param] = path
    if options.ca_file and "sslmode" not in params:
        params["sslmode"] = "verify-full"
    path = "/" + (database or parts.path.strip("/") or "kubernetes")
    return urlunsplit(("postgresql", parts.netloc, path, urlencode(params), ""))


def _ensure_database(endpoint: Endpoint, options: BackendOptions) -> None:
    name = urlsplit(conninfo(endpoint, options)).path.strip("/")
    with psycopg.connect(conninfo(endpoint, options, database="postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process was first
                conn.execute(f'CREATE DATABASE "{name}"')


def open_log(endpoint: Endpoint, options: BackendOptions) -> SqlLog:
    try:
        _ensure_database(endpoint, options)
    except psycopg.Error as exc:
        raise OSError(f"cannot reach PostgreSQL at {endpoint.redacted()}: {exc}") from exc
    info = conninfo(endpoint, options)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(info, autocommit=True, connect_timeout=5)

    return SqlLog(
        DIALECT,
        connect,
        target=endpoint.redacted(),
        readers=max(1, options.max_open_connections - 1),
        observer=options.observer,
    )
