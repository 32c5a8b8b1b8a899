"""The replicated state machine of a Raft-mode replica: kine-py's SQLite schema, plus the
applied Raft index and the membership, in one local SQLite file.

Applying committed entries is one SQLite transaction per batch, and the applied index is
written in that same transaction (etcd's lesson from #13766): after a crash the database
says exactly which entries it holds, so a restart re-applies only what is missing and
nothing twice. Entries at or below the applied index are skipped.

Applying does not fsync (``synchronous=NORMAL`` in WAL mode): the Raft write-ahead log already
holds every committed entry durably, so a transaction lost to a power cut is applied again
from it on restart. What the WAL is about to forget must be durable here first: ``sync`` runs
before the Raft log is compacted and after a snapshot is restored (etcd's backend likewise
commits in batches and forces a commit before a snapshot).

Owned by one thread: every method runs on the node's apply executor. The store reads the
same file through its own connections (``SqlLog`` readers), which WAL mode allows.
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kine_py.backends.sqlite import SCHEMA
from kine_py.mvcc.log import Meta
from kine_py.raft import codec
from kine_py.raft.types import ConfChange, ConfChangeType, ConfState, Entry, EntryType
from kine_py.replication import command
from kine_py.replication.members import Member

log = logging.getLogger(__name__)

RAFT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raft_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        applied INTEGER NOT NULL,
        conf TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS members (
        id INTEGER PRIMARY KEY,
        body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS kv_name ON kv (name, main)",
)

# Rows a compaction at :rev made unreachable: superseded at or before :rev, or tombstones
# before it. (The store's index drops the same and a little more; what it keeps, stays.)
COMPACT_SQL = """DELETE FROM kv WHERE main < :rev AND (deleted = 1 OR EXISTS (
    SELECT 1 FROM kv AS newer WHERE newer.name = kv.name AND newer.main <= :rev
    AND (newer.main > kv.main OR (newer.main = kv.main AND newer.sub > kv.sub))))"""


class Outcome(enum.Enum):
    OK = "ok"
    CONFLICT = "conflict"  # the log's revision was not the command's ``expect``
    COMPACTED = "compacted"
    FUTURE = "future"


@dataclass(slots=True)
class Applied:
    """What one ``apply`` did: outcomes of commands by (proposer, seq)."""

    index: int
    outcomes: dict[tuple[int, int], Outcome] = field(default_factory=dict)
    data_changed: bool = False
    members_changed: bool = False
    conf_changes: list[ConfChange] = field(default_factory=list)


class StateMachine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self.applied = 0
        self.meta = Meta(1, -1, 0, 0, 0)
        self.conf = ConfState()
        self.removed: frozenset[int] = frozenset()  # members removed from the cluster, never reused

    # ---- lifecycle ----

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=10000"):
            conn.execute(pragma)
        for statement in (*SCHEMA, *RAFT_SCHEMA):
            conn.execute(statement)
        self._conn = conn
        self._load()

    def bootstrap(self, members: Sequence[Member], cluster_id: int, index: int) -> bool:
        """Make a new cluster's initial state (identical on every replica) unless there is one."""
        db = self._db()
        if db.execute("SELECT 1 FROM raft_state").fetchone() is not None:
            return False
        conf = ConfState(tuple(sorted(m.id for m in members)), ())
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM meta")
        db.execute(
            "INSERT INTO meta (id, revision, compact, cluster_id, member_id) VALUES (1, 1, -1, ?, 0)",
            (cluster_id,),
        )
        initial = (index, _conf_json(conf, frozenset()))
        db.execute("INSERT INTO raft_state (id, applied, conf) VALUES (1, ?, ?)", initial)
        db.executemany("INSERT INTO members (id, body) VALUES (?, ?)", [(m.id, m.to_json()) for m in members])
        db.execute("COMMIT")
        self.sync()
        self._load()
        return True

    def sync(self) -> None:
        """Make every applied transaction durable: one commit with ``synchronous=FULL``
        fsyncs SQLite's WAL file, and with it every earlier commit."""
        db = self._db()
        db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE raft_state SET applied = applied WHERE id = 1")
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("state machine is not open")
        return self._conn

    def _load(self) -> None:
        db = self._db()
        row = db.execute("SELECT applied, conf FROM raft_state WHERE id = 1").fetchone()
        if row is not None:
            self.applied, self.conf = int(row[0]), _conf_from_json(row[1])
            self.removed = _removed_from_json(row[1])
        meta = db.execute(
            "SELECT revision, compact, cluster_id, member_id, lease_version FROM meta WHERE id = 1"
        ).fetchone()
        if meta is not None:
            self.meta = Meta(*(int(v) for v in meta))

    # ---- reads ----

    def members(self) -> list[Member]:
        rows = self._db().execute("SELECT body FROM members ORDER BY id").fetchall()
        return [Member.from_json(body) for (body,) in rows]

    # ---- apply ----

    def apply(self, entries: Sequence[Entry]) -> Applied:
        """Apply the entries above ``applied`` in one transaction; raises on a database error
        (the node stops: a replica that cannot apply must not go on)."""
        fresh = [e for e in entries if e.index > self.applied]
        result = Applied(self.applied)
        if not fresh:
            return result
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for entry in fresh:
                self._apply_one(db, entry, result)
            result.index = fresh[-1].index
            db.execute(
                "UPDATE raft_state SET applied = ?, conf = ? WHERE id = 1",
                (result.index, _conf_json(self.conf, self.removed)),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._load()
            raise
        self.applied = result.index
        self._load()
        return result

    def _apply_one(self, db: sqlite3.Connection, entry: Entry, result: Applied) -> None:
        if entry.type is EntryType.CONF_CHANGE:
            cc = codec.decode_conf_change(entry.data)
            self._apply_conf_change(db, cc)
            result.conf_changes.append(cc)
            result.members_changed = True
            return
        if not entry.data:
            return
        cmd = command.decode(entry.data)
        key = (cmd.proposer, cmd.seq)
        if cmd.kind is command.Kind.APPEND:
            result.outcomes[key] = self._append(db, cmd)
            result.data_changed |= result.outcomes[key] is Outcome.OK
        elif cmd.kind is command.Kind.COMPACT:
            result.outcomes[key] = self._compact(db, cmd.revision)
            result.data_changed |= result.outcomes[key] is Outcome.OK
        else:
            member = Member.from_json(cmd.member)
            db.execute("UPDATE members SET body = ? WHERE id = ?", (member.to_json(), member.id))
            result.members_changed = True
            result.outcomes[key] = Outcome.OK

    def _append(self, db: sqlite3.Connection, cmd: command.Command) -> Outcome:
        moved = db.execute(
            "UPDATE meta SET revision = ? WHERE id = 1 AND revision = ?", (cmd.revision, cmd.expect)
        )
        if moved.rowcount != 1:
            return Outcome.CONFLICT
        db.executemany(
            "INSERT INTO kv (main, sub, name, value, create_rev, version, lease, deleted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.main, r.sub, r.key, r.value, r.create, r.version, r.lease, int(r.deleted)) for r in cmd.rows],
        )
        if cmd.lease_puts or cmd.lease_deletes:
            db.executemany(
                "INSERT INTO leases (id, ttl, expiry) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expiry = excluded.expiry",
                [(lease.id, lease.ttl, lease.expiry) for lease in cmd.lease_puts],
            )
            db.executemany("DELETE FROM leases WHERE id = ?", [(i,) for i in cmd.lease_deletes])
            db.execute("UPDATE meta SET lease_version = lease_version + 1 WHERE id = 1")
        return Outcome.OK

    def _compact(self, db: sqlite3.Connection, revision: int) -> Outcome:
        current, compact = db.execute("SELECT revision, compact FROM meta WHERE id = 1").fetchone()
        if revision <= compact:
            return Outcome.COMPACTED
        if revision > current:
            return Outcome.FUTURE
        db.execute("UPDATE meta SET compact = ? WHERE id = 1", (revision,))
        db.execute(COMPACT_SQL, {"rev": revision})
        return Outcome.OK

    def _apply_conf_change(self, db: sqlite3.Connection, cc: ConfChange) -> None:
        voters, learners = set(self.conf.voters), set(self.conf.learners)
        known = {m.id: m for m in self.members()}
        member = Member.from_json(cc.context) if cc.context else known.get(cc.node_id)
        if cc.type is ConfChangeType.REMOVE_NODE:
            voters.discard(cc.node_id)
            learners.discard(cc.node_id)
            db.execute("DELETE FROM members WHERE id = ?", (cc.node_id,))
            self.removed |= {cc.node_id}
        elif cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE) and member is not None:
            learner = cc.type is ConfChangeType.ADD_LEARNER_NODE
            (learners if learner else voters).add(cc.node_id)
            (voters if learner else learners).discard(cc.node_id)
            member = member.with_(is_learner=learner)
            db.execute(
                "INSERT INTO members (id, body) VALUES (?, ?)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (member.id, member.to_json()),
            )
        self.conf = ConfState(tuple(sorted(voters)), tuple(sorted(learners)))

    # ---- snapshots ----

    def backup_to(self, path: Path) -> int:
        """A consistent copy of the database (SQLite's backup API); returns its applied index."""
        dst = sqlite3.connect(path)
        try:
            self._db().backup(dst)
            row = dst.execute("SELECT applied FROM raft_state WHERE id = 1").fetchone()
        finally:
            dst.close()
        return int(row[0])

    def restore_from(self, path: Path) -> None:
        """Replace the whole state with a snapshot's database, in place (open readers see the
        new content on their next transaction)."""
        src = sqlite3.connect(path)
        try:
            row = src.execute("SELECT applied FROM raft_state WHERE id = 1").fetchone()
            if row is None:
                raise ValueError(f"snapshot {path} holds no raft_state")
            src.backup(self._db())
        finally:
            src.close()
        self.sync()
        self._load()
        log.info("restored the state machine from a snapshot at applied index %d", self.applied)


def _conf_json(conf: ConfState, removed: frozenset[int]) -> str:
    body = {"voters": list(conf.voters), "learners": list(conf.learners), "removed": sorted(removed)}
    return json.dumps(body)


def _conf_from_json(text: str) -> ConfState:
    raw = json.loads(text)
    return ConfState(tuple(raw["voters"]), tuple(raw["learners"]))


def _removed_from_json(text: str) -> frozenset[int]:
    return frozenset(json.loads(text).get("removed", ()))
