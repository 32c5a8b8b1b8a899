"""Throwaway databases on the machine's PostgreSQL and MariaDB/MySQL, for tests.

``KINE_TEST_BACKEND`` (sqlite | postgres | mysql | raft) chooses the storage of every
kine-py a test starts; SQLite by default. ``raft`` makes every kine-py a member of its
own 3-replica Raft cluster (``kine_py.testing.processes.kine_process`` starts the two
other members beside it). The servers come from
``KINE_TEST_POSTGRES`` and ``KINE_TEST_MYSQL`` (DSNs without a database), with
this project's machines' defaults. Each kine-py data directory gets its own
database, named after the directory, so a restart on the same directory finds
its data again; ``drop_created()`` removes them all.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

POSTGRES = os.environ.get("KINE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")
MYSQL = os.environ.get("KINE_TEST_MYSQL", "mysql://root@tcp(127.0.0.1:3306)")
PREFIX = "kine_test_"
_created: set[tuple[str, str]] = set()


def backend() -> str:
    name = os.environ.get("KINE_TEST_BACKEND", "sqlite").lower()
    if name not in ("sqlite", "postgres", "mysql", "raft"):
        raise ValueError(f"KINE_TEST_BACKEND={name!r}: use sqlite, postgres, mysql or raft")
    return name


def database_name(data_dir: Path) -> str:
    return PREFIX + hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]


def endpoint_for(data_dir: Path, which: str | None = None) -> str:
    """The --endpoint for a kine-py whose data lives in ``data_dir`` (or its database)."""
    which = which or backend()
    if which == "sqlite":
        return f"sqlite://{data_dir / 'state.db'}"
    if which == "raft":
        return f"raft://{data_dir / 'raft'}"
    name = database_name(data_dir)
    _created.add((which, name))
    return f"{POSTGRES}/{name}" if which == "postgres" else f"{MYSQL}/{name}"


def check_reachable(which: str) -> None:
    """Raise (with the reason) if the server for ``which`` cannot be reached."""
    if which == "postgres":
        import psycopg

        with psycopg.connect(
            f"{POSTGRES.replace('postgres://', 'postgresql://', 1)}/postgres", connect_timeout=3
        ):
            pass
    elif which == "mysql":
        import pymysql

        from kine_py.backends import Endpoint
        from kine_py.backends.mysql import parse

        args = parse(Endpoint.parse(f"{MYSQL}/x"))
        args.pop("database")
        pymysql.connect(**args, connect_timeout=3).close()


def _postgres_admin_url() -> str:
    return f"{POSTGRES.replace('postgres://', 'postgresql://', 1)}/postgres"


def drop_created() -> None:
    """Drop every database this process handed out."""
    for which, name in sorted(_created):
        try:
            _drop(which, name)
        except Exception as exc:  # cleanup must not hide the test result
            print(f"could not drop {which} database {name}: {exc}")
    _created.clear()


def _drop(which: str, name: str) -> None:
    if which == "postgres":
        import psycopg

        with psycopg.connect(_postgres_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        import pymysql

        from kine_py.backends import Endpoint
        from kine_py.backends.mysql import parse

        args = parse(Endpoint.parse(f"{MYSQL}/x"))
        args.pop("database")
        with pymysql.connect(**args, autocommit=True) as mysql, mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
