"""``RaftLog``: the store's ``Log`` on a Raft-replicated state machine (``raft://DATA_DIR``).

The store behaves as it does on a shared SQL database: it decides a write batch against its
index and appends the rows with the revision they expect to follow. Here the append is a
Raft proposal; it answers once the entry is committed by a quorum and applied to this
replica's SQLite, or raises ``RevisionConflictError`` when another replica's write applied
first (the store then catches up and decides again). Reads go to the local SQLite. The store
follows other replicas' writes through ``follow`` (called after every apply that changed
data); ``barrier`` is a ReadIndex, so linearizable reads see every write committed before
them. Lease expiry and other leader-only work run where ``try_lead`` is true: on the leader.
Compacted rows are deleted by every replica when it applies the compaction, so
``delete_rows`` has nothing to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from kine_py.backends.sqlite import DIALECT
from kine_py.cluster import ConsensusStatus, MemberInfo
from kine_py.errors import CompactedError, FutureRevisionError, MemberBadURLsError, RevisionConflictError
from kine_py.mvcc.log import DbSize, LeaseRow, Meta, Row
from kine_py.raft.types import NONE
from kine_py.replication.fsm import Outcome
from kine_py.replication.members import Member, check_url
from kine_py.replication.node import NodeConfig, RaftNode
from kine_py.sqllog.log import QueryObserver, SqlLog


class RaftLog:
    def __init__(self, config: NodeConfig, observer: QueryObserver | None = None) -> None:
        self.node = RaftNode(config)
        path = config.data_dir / "state.db"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        self._local = SqlLog(DIALECT, connect, target=str(path), readers=2, observer=observer)

    @property
    def shared(self) -> bool:
        return True

    @property
    def barrier_shared(self) -> bool:
        return True  # Node.read_barrier shares ReadIndex rounds; meta is the local fsm's

    async def start(self) -> Meta:
        await self.node.start()
        meta = await self._local.start()
        return self._ids(meta)

    def _ids(self, meta: Meta) -> Meta:
        return Meta(meta.revision, meta.compact, self.node.cluster_id, self.node.id, meta.lease_version)

    async def meta(self) -> Meta:
        """This replica's applied meta (call ``barrier`` first for a linearizable view)."""
        return self._ids(self.node.fsm.meta)

    async def barrier(self) -> None:
        await self.node.read_barrier()

    async def rows_after(self, after: tuple[int, int], limit: int) -> list[Row]:
        return await self._local.rows_after(after, limit)

    async def append(
        self,
        rows: Sequence[Row],
        *,
        expect: int,
        revision: int,
        lease_puts: Sequence[LeaseRow] = (),
        lease_deletes: Sequence[int] = (),
    ) -> None:
        outcome = await self.node.propose_append(rows, expect, revision, lease_puts, lease_deletes)
        if outcome is Outcome.CONFLICT:
            raise RevisionConflictError(f"log revision is not {expect}")

    async def leases(self) -> list[LeaseRow]:
        return await self._local.leases()

    async def set_compact(self, revision: int) -> None:
        outcome = await self.node.propose_compact(revision)
        if outcome is Outcome.COMPACTED:
            raise CompactedError()
        if outcome is Outcome.FUTURE:
            raise FutureRevisionError()

    async def delete_rows(self, revisions: Sequence[tuple[int, int]]) -> None:
        """Nothing: each replica deleted them when it applied the compaction."""

    async def values(self, revisions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return await self._local.values(revisions)

    async def size(self) -> DbSize:
        return await self._local.size()

    def follow(self, on_change: Callable[[], None], interval: float) -> None:
        self.node.on_change(on_change)

    async def try_lead(self) -> bool:
        return self.node.is_leader

    async def close(self) -> None:
        await self._local.close()
        await self.node.close()

    # ---- ClusterControl ----

    def members(self) -> list[MemberInfo]:
        return [_info(m) for m in self.node.members()]

    async def add_member(self, peer_urls: tuple[str, ...], is_learner: bool) -> MemberInfo:
        try:
            urls = tuple(check_url(u) for u in peer_urls)
        except ValueError:
            raise MemberBadURLsError() from None
        if not urls:
            raise MemberBadURLsError()
        return _info(await self.node.add_member(urls, is_learner))

    async def remove_member(self, member_id: int) -> None:
        await self.node.remove_member(member_id)

    async def promote_member(self, member_id: int) -> None:
        await self.node.promote_member(member_id)

    async def move_leader(self, target_id: int) -> None:
        await self.node.move_leader(target_id)

    def consensus_status(self) -> ConsensusStatus:
        s = self.node.status()
        return ConsensusStatus(self.node.id, s.leader, s.term, s.index, s.applied, s.is_learner)

    def has_leader(self) -> bool:
        return self.node.leader != NONE

    def is_learner(self) -> bool:
        return self.node.is_learner

    def election_timeout(self) -> float:
        return self.node.election_timeout

    def on_removed(self, callback: Callable[[], None]) -> None:
        self.node.on_removed(callback)


def _info(m: Member) -> MemberInfo:
    return MemberInfo(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)
