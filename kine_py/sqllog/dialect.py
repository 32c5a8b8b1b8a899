"""What differs between SQL databases, as data: SQL text, DDL, hooks and capability flags.

Statements are written with ``?`` placeholders; a dialect whose driver uses the
``format`` paramstyle (``%s``) gets them rewritten once, when it is built. Each
statement has a name (the dict key), used in logs and error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The statements every dialect provides (plus its schema). ``insert_meta`` must do
# nothing when the row exists (several processes may start at once).
STATEMENTS = (
    "meta",
    "insert_meta",
    "move_revision",
    "bump_leases",
    "set_compact",
    "insert_row",
    "rows_after",
    "value",
    "delete_row",
    "leases",
    "put_lease",
    "delete_lease",
    "schema_version",
    "insert_schema_version",
)

COMMON: dict[str, str] = {
    "meta": "SELECT revision, compact, cluster_id, member_id, lease_version FROM meta WHERE id = 1",
    "move_revision": "UPDATE meta SET revision = ? WHERE id = 1 AND revision = ?",
    "bump_leases": "UPDATE meta SET lease_version = lease_version + 1 WHERE id = 1",
    "set_compact": "UPDATE meta SET compact = ? WHERE id = 1 AND compact < ? AND revision >= ?",
    "insert_row": "INSERT INTO kv (main, sub, name, value, create_rev, version, lease, deleted)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "rows_after": "SELECT main, sub, name, value, create_rev, version, lease, deleted FROM kv"
    " WHERE main > ? OR (main = ? AND sub > ?) ORDER BY main, sub LIMIT ?",
    "value": "SELECT value FROM kv WHERE main = ? AND sub = ?",
    "delete_row": "DELETE FROM kv WHERE main = ? AND sub = ?",
    "leases": "SELECT id, ttl, expiry FROM leases",
    "delete_lease": "DELETE FROM leases WHERE id = ?",
    "put_lease": "INSERT INTO leases (id, ttl, expiry) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expiry = excluded.expiry",
    "schema_version": "SELECT version FROM schema_version",
    "insert_schema_version": "INSERT INTO schema_version (version) VALUES (?)",
}


@dataclass(frozen=True)
class Dialect:
    """One database's SQL and behaviour.

    ``begin`` opens a write transaction; in it the first statement run is
    ``move_revision`` (a compare-and-swap on the meta row), which also takes the
    database's write lock for that row, so writers are serialised and revisions
    stay gapless and in commit order. ``shared`` says several kine-py processes
    may use one database (then the store checks the database's revision before
    linearizable reads and follows other processes' commits). ``size`` returns
    (bytes on disk, bytes in use). ``notify``, when set, is run in every write
    transaction with the new revision, to wake other processes (PostgreSQL), and
    ``listen`` subscribes a connection to it. ``leader_lock`` tries to take a
    session lock that at most one process holds (lease expiry runs there); it
    returns one row whose first column is true when taken. None: always leader.
    ``append_rows``, when set, is one statement (its own transaction, in autocommit mode)
    that does a whole append of rows without lease changes: ``move_revision``, the inserts
    from one array per column, and ``notify``; its parameters are (revision, expect, then
    the columns of ``insert_row`` as arrays) and it inserts nothing when the revision had
    moved. One round trip instead of five (PostgreSQL).
    """

    name: str
    schema: tuple[str, ...]
    statements: dict[str, str]
    begin: str
    size: Callable[[Any], tuple[int, int]]
    shared: bool
    paramstyle: str = "qmark"
    notify: str | None = None
    listen: str | None = None
    leader_lock: str | None = None
    append_rows: str | None = None
    session_setup: tuple[str, ...] = ()
    driver_errors: tuple[type[BaseException], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        missing = [name for name in STATEMENTS if name not in self.statements]
        if missing:
            raise ValueError(f"dialect {self.name} lacks statements {missing}")
        if self.paramstyle == "format":
            converted = {name: sql.replace("?", "%s") for name, sql in self.statements.items()}
            object.__setattr__(self, "statements", converted)
            for name in ("notify", "append_rows"):
                if (text := getattr(self, name)) is not None:
                    object.__setattr__(self, name, text.replace("?", "%s"))

    def sql(self, name: str) -> str:
        return self.statements[name]
