"""MySQL 8 and MariaDB 10.6+ (``mysql://user:pass@tcp(host:port)/db``, Kine's format), via PyMySQL.

Install with ``pip install 'kine-py[mysql]'``. The database is created if it does
not exist (default ``kubernetes``). Keys and values are ``LONGBLOB``: compared
bytewise. MySQL has no LISTEN/NOTIFY: other processes' writes are found by
polling the meta row (``--poll-interval``).
"""

from __future__ import annotations

import re
import ssl
from typing import Any
from urllib.parse import unquote

from kine_py.backends import BackendOptions, Endpoint
from kine_py.sqllog.dialect import COMMON, Dialect
from kine_py.sqllog.log import SqlLog

try:
    import pymysql
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the mysql backend needs PyMySQL: pip install 'kine-py[mysql]'") from exc

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) ENGINE=InnoDB",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY,
        revision BIGINT NOT NULL,
        compact BIGINT NOT NULL,
        cluster_id BIGINT NOT NULL,
        member_id BIGINT NOT NULL,
        lease_version BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS kv (
        main BIGINT NOT NULL,
        sub INTEGER NOT NULL,
        name LONGBLOB NOT NULL,
        value LONGBLOB NOT NULL,
        create_rev BIGINT NOT NULL,
        version BIGINT NOT NULL,
        lease BIGINT NOT NULL,
        deleted SMALLINT NOT NULL,
        PRIMARY KEY (main, sub)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS leases (
        id BIGINT PRIMARY KEY,
        ttl BIGINT NOT NULL,
        expiry DOUBLE NOT NULL) ENGINE=InnoDB""",
)


def _size(cur: Any) -> tuple[int, int]:
    cur.execute(
        "SELECT COALESCE(SUM(data_length + index_length + data_free), 0),"
        " COALESCE(SUM(data_length + index_length), 0)"
        " FROM information_schema.tables WHERE table_schema = DATABASE()"
    )
    total, used = cur.fetchone()
    return int(total), int(used)


DIALECT = Dialect(
    name="mysql",
    schema=SCHEMA,
    statements={
        **COMMON,
        "insert_meta": "INSERT IGNORE INTO meta (id, revision, compact, cluster_id, member_id)"
        " VALUES (1, ?, ?, ?, ?)",
        "put_lease": "INSERT INTO leases (id, ttl, expiry) VALUES (?, ?, ?)"
        " ON DUPLICATE KEY UPDATE ttl = VALUES(ttl), expiry = VALUES(expiry)",
    },
    begin="BEGIN",
    size=_size,
    shared=True,
    paramstyle="format",
    session_setup=("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",),
    # Lock names are server-wide: include the database so that each has its own leader.
    leader_lock="SELECT GET_LOCK(CONCAT('kine_py_leader_', DATABASE()), 0)",
    driver_errors=(pymysql.err.Error,),
)

_DSN = re.compile(
    r"^(?:(?P<user>[^:@/]*)(?::(?P<password>[^@]*))?@)?"
    r"(?:tcp\((?P<tcp>[^)]*)\)|(?P<plain>[^/]*))?"
    r"/(?P<db>[^?]*)$"
)


def parse(endpoint: Endpoint) -> dict[str, Any]:
    """PyMySQL connect() arguments from ``user:pass@tcp(host:port)/db`` (or ``host:port``)."""
    match = _DSN.match(endpoint.rest)
    if match is None:
        raise ValueError(f"cannot parse mysql endpoint {endpoint.redacted()!r}")
    hostport = match["tcp"] or match["plain"] or "127.0.0.1:3306"
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "3306")
    return {
        "host": host or "127.0.0.1",
        "port": int(port or 3306),
        "user": unquote(match["user"] or "root"),
        "password": unquote(match["password"] or ""),
        "database": match["db"] or "kubernetes",
    }


def _tls(options: BackendOptions) -> ssl.SSLContext | None:
    if not (options.ca_file or options.cert_file):
        return None
    context = ssl.create_default_context(cafile=options.ca_file or None)
    if options.cert_file:
        context.load_cert_chain(options.cert_file, options.key_file or None)
    return context


def open_log(endpoint: Endpoint, options: BackendOptions) -> SqlLog:
    args = parse(endpoint)
    database = args.pop("database")
    tls = _tls(options)
    # FOUND_ROWS: an UPDATE's rowcount counts matched rows, as the meta compare-and-swap expects.
    common = {
        **args,
        "autocommit": True,
        "connect_timeout": 5,
        "ssl": tls,
        "binary_prefix": True,
        "client_flag": pymysql.constants.CLIENT.FOUND_ROWS,
    }
    try:
        with pymysql.connect(**common) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    except pymysql.err.Error as exc:
        raise OSError(f"cannot reach MySQL at {endpoint.redacted()}: {exc}") from exc

    def connect() -> Any:
        return pymysql.connect(**common, database=database)

    return SqlLog(
        DIALECT,
        connect,
        target=endpoint.redacted(),
        readers=max(1, options.max_open_connections - 1),
        observer=options.observer,
    )
