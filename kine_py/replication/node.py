"""The asyncio driver of one Raft-mode replica: it owns the Raft core (``RawNode``), the
durable Raft storage (``DiskStorage``: write-ahead log + in-memory log), the state machine
(``StateMachine`` on the local SQLite) and the peer transport, and runs etcd's Ready loop.

Order per Ready (etcd-raft's contract, see ``kine_py.raft.types.Ready``):

1. a leader sends ``messages`` at once (its disk write runs in parallel with replication);
2. the snapshot marker, entries and hard state are written to the WAL (one fsync);
3. a received snapshot's database replaces the state machine's;
4. a follower sends ``messages`` now; everyone sends ``persisted_messages`` (votes, acks);
5. committed entries are applied in one SQLite transaction with the applied index;
   conf changes go to the core; proposers waiting on this replica are answered;
6. ReadIndex answers are released once applied; ``advance()``; maybe compact the log.

Every core call happens on the event loop; the WAL and the state machine each run on one
dedicated thread, so neither blocks the loop (a Ready that only moves the commit index is one
small unsynced WAL write, done on the loop: a thread hop took longer, ~0.4 ms per write).
A storage or apply error stops the node (``failed`` is set and every waiter gets the error):
a replica that cannot persist must not take part any longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kine_py import errors
from kine_py.mvcc.log import LeaseRow, Row
from kine_py.raft import Config, RawNode, codec
from kine_py.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    ProposalDroppedError,
    RaftError,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)
from kine_py.replication import command
from kine_py.replication.fsm import Applied, Outcome, StateMachine
from kine_py.replication.members import Member, cluster_id, member_id
from kine_py.replication.raft_storage import DiskStorage
from kine_py.replication.transport import PeerTLS, PeerTransport

log = logging.getLogger(__name__)
T = TypeVar("T")
BOOTSTRAP_INDEX = 1


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One replica's settings (etcd's flag names in the CLI)."""

    data_dir: Path
    name: str
    initial_cluster: tuple[Member, ...]
    cluster_state: str = "new"
    token: str = "kine-py-cluster"
    listen_peer_urls: tuple[str, ...] = ()
    advertise_peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    tick_seconds: float = 0.1
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_count: int = 10_000
    catch_up_entries: int = 5_000
    request_timeout: float = 7.0
    tls: PeerTLS | None = None


@dataclass(frozen=True, slots=True)
class RaftStatus:
    leader: int
    term: int
    index: int
    applied: int
    is_learner: bool


class RaftNode:
    def __init__(self, config: NodeConfig) -> None:
        self.cfg = config
        self.id = 0
        self.cluster_id = 0
        self._wal_pool = ThreadPoolExecutor(1, thread_name_prefix="raft-wal")
        self._apply_pool = ThreadPoolExecutor(1, thread_name_prefix="raft-apply")
        self.fsm = StateMachine(config.data_dir / "state.db")
        self._storage: DiskStorage | None = None
        self._raw: RawNode | None = None
        self.transport: PeerTransport | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = itertools.count(time.time_ns())  # unique across restarts: outcomes match (id, seq)
        self._proposals: dict[int, asyncio.Future[Outcome]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_round: asyncio.Future[int] | None = None  # the ReadIndex in flight
        self._next_read: asyncio.Future[int] | None = None  # barriers waiting for the next one
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._conf_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._snapshot_files: dict[int, Path] = {}
        self._on_change: list[Callable[[], None]] = []
        self._on_removed: list[Callable[[], None]] = []
        self.removed = False
        self._members: list[Member] = []
        self._lead = NONE
        self._snapshot_index = 0
        self._snapshot_now = False
        self.failed: BaseException | None = None
        self._closed = False

    # ---- lifecycle ----

    async def start(self) -> None:
        """Open (or create, or join) the replica and start the Ready loop and the ticker."""
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        await self._in(self._apply_pool, self.fsm.open)
        spool = self.cfg.data_dir / "snap"
        for stale in spool.glob("*.db") if spool.exists() else ():
            stale.unlink()
        self.transport = PeerTransport(0, self, spool, self.cfg.tls)
        self.id, self.cluster_id = await self._identity()
        self.transport.id = self.id
        storage = await self._in(
            self._wal_pool, DiskStorage.open, self.cfg.data_dir / "wal", initial=ConfState()
        )
        self._storage = storage
        if storage.torn_tail is not None:
            log.warning("the write-ahead log had a torn tail, truncated: %s", storage.torn_tail)
        if self.cfg.cluster_state == "new":
            await self._bootstrap(storage)
        self._snapshot_index = storage.memory.snapshot().metadata.index
        hard = storage.memory.hard_state()
        if hard.commit < self._snapshot_index:  # a crash kept the snapshot but not the state after it
            storage.memory.set_hard_state(HardState(hard.term, hard.vote, self._snapshot_index))
        self._raw = RawNode(self._raft_config(), storage.memory)
        self._members = await self._in(self._apply_pool, self.fsm.members)
        if self.id in self.fsm.removed:
            raise ValueError(
                f"raft member {self.id:x} has been removed from the cluster; "
                "to join again, delete its data directory and add it as a new member"
            )
        await self.transport.start(self.cfg.listen_peer_urls)
        self._update_peers()
        self._tasks = [
            asyncio.create_task(self._run(), name="raft-ready"),
            asyncio.create_task(self._tick(), name="raft-tick"),
            asyncio.create_task(self._publish(), name="raft-publish"),
        ]
        log.info("raft member %x (%s) of cluster %x started", self.id, self.cfg.name, self.cluster_id)

    def _raft_config(self) -> Config:
        return Config(
            id=self.id,
            election_tick=self.cfg.election_ticks,
            heartbeat_tick=self.cfg.heartbeat_ticks,
            applied=self._snapshot_index,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
            check_quorum=True,
            pre_vote=True,
            rand=None,
            logger=logging.getLogger("kine_py.raft"),
        )

    async def _identity(self) -> tuple[int, int]:
        path = self.cfg.data_dir / "member.json"
        if path.exists():
            raw = json.loads(path.read_text())
            return int(raw["id"]), int(raw["cluster_id"])
        if self.cfg.cluster_state == "new":
            mine = [m for m in self.cfg.initial_cluster if m.name == self.cfg.name]
            if not mine:
                raise ValueError(f"--initial-cluster has no member named {self.cfg.name!r}")
            ids = [m.id for m in self.cfg.initial_cluster]
            found = (mine[0].id, cluster_id(ids, self.cfg.token))
        else:
            found = await self._discover()
        _write_synced(path, json.dumps({"id": found[0], "cluster_id": found[1], "name": self.cfg.name}))
        return found

    async def _discover(self) -> tuple[int, int]:
        """Joining an existing cluster: ask its members who we are (added by MemberAdd)."""
        assert self.transport is not None
        mine = set(self.cfg.advertise_peer_urls)
        for peer in self.cfg.initial_cluster:
            for url in peer.peer_urls:
                if url in mine:
                    continue
                try:
                    raw = json.loads(await self.transport.unary(url, "Members", b""))
                except Exception as exc:
                    log.info("asking %s for the members failed: %s", url, exc)
                    continue
                for body in raw["members"]:
                    member = Member.from_json(json.dumps(body))
                    if mine & set(member.peer_urls):
                        return member.id, int(raw["cluster_id"])
                raise ValueError(
                    f"the cluster at {url} has no member with peer URLs {sorted(mine)}: "
                    "add it first (etcdctl member add NAME --peer-urls=URL)"
                )
        raise OSError("no member of --initial-cluster answered; cannot join the cluster")

    async def _bootstrap(self, storage: DiskStorage) -> None:
        """A new cluster: every member starts from the same snapshot at index 1 holding the
        initial membership, so a member added later learns it by snapshot."""
        voters = tuple(sorted(m.id for m in self.cfg.initial_cluster))
        if storage.is_new:
            meta = SnapshotMetadata(ConfState(voters, ()), BOOTSTRAP_INDEX, 1)
            ready = Ready(
                hard_state=HardState(1, NONE, BOOTSTRAP_INDEX), snapshot=Snapshot(meta), must_sync=True
            )
            await self._in(self._wal_pool, storage.save, ready)
        await self._in(
            self._apply_pool, self.fsm.bootstrap, self.cfg.initial_cluster, self.cluster_id, BOOTSTRAP_INDEX
        )

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_all(errors.ServerStoppedError())
        if self.transport is not None:
            await self.transport.close()
        if self._storage is not None:
            await self._in(self._wal_pool, self._storage.close)
        await self._in(self._apply_pool, self.fsm.close)
        self._wal_pool.shutdown()
        self._apply_pool.shutdown()

    async def _in(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, lambda: fn(*args, **kwargs))

    # ---- the loop ----

    @property
    def raw(self) -> RawNode:
        if self._raw is None:
            raise errors.ServerStoppedError()
        return self._raw

    def _kick(self) -> None:
        self._wake.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.tick_seconds)
            self.raw.tick()
            self._kick()

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.raw.has_ready():
                    await self._handle(self.raw.ready())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.critical("raft member %x stopped: %s", self.id, exc, exc_info=exc)
            self.failed = exc
            self._fail_all(errors.BackendUnavailableError(f"kine-py: raft replica stopped: {exc}"))
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()

    async def _handle(self, rd: Ready) -> None:
        assert self._storage is not None and self.transport is not None
        if rd.soft_state is not None:
            self._soft_state(rd.soft_state)
        leader = self.raw.state is StateType.LEADER
        if leader:
            self.transport.send(rd.messages)
        if rd.must_sync or rd.entries or rd.hard_state is not None or rd.snapshot is not None:
            if self._storage.quick_save(rd):
                self._storage.save(rd)  # a new commit index only: a thread hop costs more
            else:
                await self._in(self._wal_pool, self._storage.save, rd)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            await self._install(rd.snapshot)
        if not leader:
            self.transport.send(rd.messages)
        self.transport.send(rd.persisted_messages)
        if rd.committed_entries:
            await self._apply(rd.committed_entries)
        for rs in rd.read_states:
            self._read_answered(rs)
        self.raw.advance()
        await self._maybe_compact()

    def _soft_state(self, soft: SoftState) -> None:
        if soft.lead != self._lead:
            log.info("raft member %x: leader is now %x (was %x)", self.id, soft.lead, self._lead)
            if self._lead != NONE:
                self._fail_pending(errors.LeaderChangedError())
            self._lead = soft.lead

    async def _apply(self, entries: Sequence[Entry]) -> None:
        result: Applied = await self._in(self._apply_pool, self.fsm.apply, entries)
        conf_changed = False
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE:
                cc = codec.decode_conf_change(entry.data)
                self.raw.apply_conf_change(cc)
                conf_changed = True
                for waiter in self._conf_waiters.pop(cc.node_id, []):
                    _resolve(waiter, None)
        if conf_changed or result.members_changed:
            self._members = await self._in(self._apply_pool, self.fsm.members)
            if conf_changed:
                self._snapshot_now = True  # so a member added now gets a snapshot that names it
                self._update_peers()
                if self.id in self.fsm.removed:
                    self._leave(f"applied the removal at index {entries[-1].index}", delay=1.0)
        for (proposer, seq), outcome in result.outcomes.items():
            if proposer == self.id and (future := self._proposals.pop(seq, None)) is not None:
                _resolve(future, outcome)
        self._release_applied()
        if result.data_changed:
            self._changed()

    def _changed(self) -> None:
        for callback in self._on_change:
            callback()

    def _release_applied(self) -> None:
        applied = self.fsm.applied
        keep = []
        for index, future in self._applied_waiters:
            if index <= applied:
                _resolve(future, None)
            else:
                keep.append((index, future))
        self._applied_waiters = keep

    async def _install(self, snapshot: Snapshot) -> None:
        index = snapshot.metadata.index
        path = self._snapshot_files.pop(index, None)
        if path is None:
            raise RuntimeError(f"no database received for the snapshot at index {index}")
        if self.fsm.applied < index:
            await self._in(self._apply_pool, self.fsm.restore_from, path)
        for old in [i for i in self._snapshot_files if i <= index]:
            self._snapshot_files.pop(old).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        self._snapshot_index = index
        self._members = await self._in(self._apply_pool, self.fsm.members)
        self._update_peers()
        self._release_applied()
        self._changed()

    async def _maybe_compact(self) -> None:
        assert self._storage is not None
        applied = self.fsm.applied
        due = applied - self._snapshot_index >= self.cfg.snapshot_count or self._snapshot_now
        if not due or applied <= self._snapshot_index:
            return
        self._snapshot_now = False
        conf = self.raw.status().conf_state
        keep = self.cfg.catch_up_entries
        await self._in(self._apply_pool, self.fsm.sync)  # what the log forgets must be durable here
        await self._in(self._wal_pool, self._storage.compact, applied, conf, b"", keep=keep)
        self._snapshot_index = applied
        log.info("raft member %x: log compacted at index %d", self.id, applied)

    def _update_peers(self) -> None:
        assert self.transport is not None
        peers = {m.id: m.peer_urls for m in self._members}
        if self.cfg.cluster_state == "existing":
            for m in self.cfg.initial_cluster:  # until the membership arrives by snapshot
                known_urls = {u for urls in peers.values() for u in urls}
                if not known_urls & set(m.peer_urls) and not set(m.peer_urls) & set(
                    self.cfg.advertise_peer_urls
                ):
                    peers.setdefault(member_id(m.peer_urls, self.cfg.token), m.peer_urls)
        self.transport.set_peers({i: urls for i, urls in peers.items() if i != self.id})

    # ---- transport callbacks (PeerHandler) ----

    def receive(self, messages: list[Message]) -> None:
        if self._raw is None or self.failed is not None:
            return
        for msg in messages:
            try:
                self._raw.step(msg)
            except RaftError as exc:
                log.debug("ignoring %s from %x: %s", msg.type.name, msg.from_, exc)
        self._kick()

    async def receive_snapshot(self, message: Message, path: Path) -> None:
        index = message.snapshot.metadata.index if message.snapshot else 0
        old = self._snapshot_files.get(index)
        if old is not None:
            old.unlink(missing_ok=True)
        self._snapshot_files[index] = path
        self.receive([message])

    async def snapshot_file(self) -> Path:
        assert self.transport is not None
        path = self.cfg.data_dir / "snap" / f"send-{time.monotonic_ns()}.db"
        await self._in(self._apply_pool, self.fsm.backup_to, path)
        return path

    def members_json(self) -> bytes:
        body = {"cluster_id": self.cluster_id, "members": [json.loads(m.to_json()) for m in self._members]}
        return json.dumps(body).encode()

    async def admin(self, request: bytes) -> bytes:
        body = json.loads(request)
        try:
            if body.get("op") == "promote":
                await self.promote_member(int(body["id"]))
            else:
                raise ValueError(f"unknown admin op {body.get('op')!r}")
        except errors.KineError as exc:
            return json.dumps({"error": type(exc).__name__}).encode()
        return b"{}"

    def is_removed(self, node_id: int) -> bool:
        return node_id in self.fsm.removed

    def removed_by_peer(self, node_id: int) -> None:
        self._leave(f"member {node_id:x} says so", delay=0.0)

    def report_unreachable(self, node_id: int) -> None:
        if self._raw is not None:
            self._raw.report_unreachable(node_id)
            self._kick()

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        if self._raw is not None:
            self._raw.report_snapshot(node_id, failed)
            self._kick()

    # ---- what the log and the Cluster API use ----

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) after every apply that changed data."""
        self._on_change.append(callback)

    def on_removed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) once this member is removed from the cluster: one
        second after it applied its own removal (so the leader hears the acknowledgement, as
        etcd's ``stopWithDelay``), or at once when a peer refuses it as a removed member."""
        self._on_removed.append(callback)

    def _leave(self, why: str, delay: float) -> None:
        if self.removed:
            return
        self.removed = True
        log.error("raft member %x has been permanently removed from the cluster (%s)", self.id, why)
        for callback in self._on_removed:
            asyncio.get_running_loop().call_later(delay, callback)

    @property
    def is_learner(self) -> bool:
        return self.id in self.fsm.conf.learners

    @property
    def election_timeout(self) -> float:
        return self.cfg.tick_seconds * self.cfg.election_ticks

    @property
    def is_leader(self) -> bool:
        return self._raw is not None and self._raw.state is StateType.LEADER

    @property
    def leader(self) -> int:
        return self._lead

    def members(self) -> list[Member]:
        return list(self._members)

    def status(self) -> RaftStatus:
        assert self._storage is not None
        conf = self.raw.status().conf_state
        return RaftStatus(
            self._lead,
            self.raw.term,
            self._storage.memory.last_index(),
            self.fsm.applied,
            self.id in conf.learners,
        )

    async def propose_append(
        self,
        rows: Sequence[Row],
        expect: int,
        revision: int,
        lease_puts: Sequence[LeaseRow],
        lease_deletes: Sequence[int],
    ) -> Outcome:
        seq = next(self._seq)
        cmd = command.Command(
            command.Kind.APPEND,
            self.id,
            seq,
            expect,
            revision,
            tuple(rows),
            tuple(lease_puts),
            tuple(lease_deletes),
        )
        return await self._propose(seq, command.encode(cmd))

    async def propose_compact(self, revision: int) -> Outcome:
        seq = next(self._seq)
        return await self._propose(
            seq, command.encode(command.Command(command.Kind.COMPACT, self.id, seq, revision=revision))
        )

    async def _propose(self, seq: int, data: bytes) -> Outcome:
        self._check_usable()
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._proposals[seq] = future
        try:
            self.raw.propose(data)
        except ProposalDroppedError:
            self._proposals.pop(seq, None)
            raise errors.NoLeaderError() if self._lead == NONE else errors.LeaderChangedError() from None
        self._kick()
        try:
            return await _within(future, self.cfg.request_timeout)
        except errors.RequestTimeoutError:
            self._proposals.pop(seq, None)
            raise

    def _check_usable(self) -> None:
        if self.failed is not None:
            raise errors.BackendUnavailableError(f"kine-py: raft replica stopped: {self.failed}")
        if self._closed:
            raise errors.ServerStoppedError()
        if self._lead == NONE:
            raise errors.NoLeaderError()

    async def read_barrier(self) -> None:
        """Linearizable-read barrier: ReadIndex, then wait until applied up to it.

        Concurrent barriers share one ReadIndex (etcd's linearizable read loop does the same):
        a caller joins the next round to be issued, never one already in flight, since that
        one may have been answered by a leader that had not yet seen the caller's request."""
        self._check_usable()
        if self._next_read is None:
            self._next_read = asyncio.get_running_loop().create_future()
            if self._read_round is None:
                self._start_read_round()
        round_ = self._next_read if self._next_read is not None else self._read_round
        assert round_ is not None
        index = await _within(round_, self.cfg.request_timeout)
        await self.wait_applied(index)

    def _start_read_round(self) -> None:
        """Issue the ReadIndex for the waiting barriers; the next round starts when it ends."""
        future, self._next_read = self._next_read, None
        if future is None:
            return
        self._read_round = future
        ctx = struct.pack("<QQ", self.id, next(self._seq))
        self._reads[ctx] = future

        def ended(done: asyncio.Future[int]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: waiters that timed out must not leave it unseen
            self._reads.pop(ctx, None)
            self._read_round = None
            self._start_read_round()

        future.add_done_callback(ended)
        try:
            self.raw.read_index(ctx)
        except RaftError:
            _fail(future, errors.NoLeaderError())
            return
        self._kick()
        # A ReadIndex that is never answered (dropped by a deposed leader) must not hold up
        # every later round.
        asyncio.get_running_loop().call_later(
            self.cfg.request_timeout, _fail, future, errors.RequestTimeoutError()
        )

    def _read_answered(self, rs: ReadState) -> None:
        future = self._reads.pop(rs.request_ctx, None)
        if future is not None:
            _resolve(future, rs.index)

    async def wait_applied(self, index: int) -> None:
        if self.fsm.applied >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, future))
        await _within(future, self.cfg.request_timeout)

    # ---- membership ----

    async def add_member(self, peer_urls: tuple[str, ...], learner: bool) -> Member:
        urls = set(peer_urls)
        if any(urls & set(m.peer_urls) for m in self._members):
            raise errors.PeerURLExistsError()
        new = Member(member_id(peer_urls, self.cfg.token, str(time.time_ns())), "", peer_urls, (), learner)
        kind = ConfChangeType.ADD_LEARNER_NODE if learner else ConfChangeType.ADD_NODE
        await self._conf_change(ConfChange(kind, new.id, new.to_json()))
        return new

    async def remove_member(self, node_id: int) -> None:
        if node_id not in {m.id for m in self._members}:
            raise errors.MemberNotFoundError()
        await self._conf_change(ConfChange(ConfChangeType.REMOVE_NODE, node_id))

    async def promote_member(self, node_id: int) -> None:
        member = next((m for m in self._members if m.id == node_id), None)
        if member is None:
            raise errors.MemberNotFoundError()
        if not member.is_learner:
            raise errors.MemberNotLearnerError()
        if not self.is_leader:
            await self._forward_admin({"op": "promote", "id": node_id})
            return
        progress = self.raw.status().progress
        leader_match = progress[self.id].match if self.id in progress else 0
        learner = progress.get(node_id)
        if learner is None or learner.match < leader_match * 0.9:
            raise errors.LearnerNotReadyError()
        await self._conf_change(
            ConfChange(ConfChangeType.ADD_NODE, node_id, member.with_(is_learner=False).to_json())
        )

    async def _forward_admin(self, body: dict[str, Any]) -> None:
        assert self.transport is not None
        leader = next((m for m in self._members if m.id == self._lead), None)
        if leader is None:
            raise errors.NoLeaderError()
        answer = json.loads(
            await self.transport.unary(leader.peer_urls[0], "Admin", json.dumps(body).encode())
        )
        if "error" in answer:
            raise getattr(errors, answer["error"], errors.KineError)()

    async def _conf_change(self, cc: ConfChange) -> None:
        self._check_usable()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conf_waiters.setdefault(cc.node_id, []).append(future)
        try:
            self.raw.propose_conf_change(cc)
        except ProposalDroppedError:
            raise errors.NoLeaderError() if self._lead == NONE else errors.LeaderChangedError() from None
        self._kick()
        await _within(future, self.cfg.request_timeout)

    async def move_leader(self, target: int) -> None:
        if not self.is_leader:
            raise errors.NotLeaderError()
        if target not in self.raw.status().conf_state.voters:
            raise errors.BadLeaderTransfereeError()
        self.raw.transfer_leader(target)
        self._kick()
        deadline = time.monotonic() + self.cfg.tick_seconds * self.cfg.election_ticks * 2
        while self._lead != target:
            if time.monotonic() > deadline:
                raise errors.RequestTimeoutError()
            await asyncio.sleep(self.cfg.tick_seconds / 2)

    async def _publish(self) -> None:
        """Make this member's name and client URLs known to the cluster (etcd's publish)."""
        while True:
            await asyncio.sleep(self.cfg.tick_seconds * 2)
            mine = next((m for m in self._members if m.id == self.id), None)
            if mine is None or self._lead == NONE:
                continue
            wanted = mine.with_(name=self.cfg.name, client_urls=self.cfg.client_urls)
            if wanted == mine:
                return
            seq = next(self._seq)
            cmd = command.Command(command.Kind.MEMBER, self.id, seq, member=wanted.to_json())
            with contextlib.suppress(errors.KineError):
                await self._propose(seq, command.encode(cmd))

    # ---- failing waiters ----

    def _fail_pending(self, exc: errors.KineError) -> None:
        for future in self._proposals.values():
            _fail(future, exc)
        self._proposals.clear()
        for read in self._reads.values():
            _fail(read, exc)
        self._reads.clear()

    def _fail_all(self, exc: errors.KineError) -> None:
        self._fail_pending(exc)
        for _, waiter in self._applied_waiters:
            _fail(waiter, exc)
        self._applied_waiters.clear()
        for waiters in self._conf_waiters.values():
            for future in waiters:
                _fail(future, exc)
        self._conf_waiters.clear()


async def _within(future: asyncio.Future[T], seconds: float) -> T:
    """``future``'s outcome, or ``RequestTimeoutError`` after ``seconds``; cancelling
    the caller leaves ``future`` alone (other callers may share it). What
    ``wait_for(shield(future), seconds)`` does, with one callback and one timer instead of
    two chained futures: one event-loop iteration less per wait, on every linearizable read
    and every write."""
    if not future.done():
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        timer = loop.call_later(seconds, wake, None)
        try:
            await waiter
        finally:
            timer.cancel()
            future.remove_done_callback(wake)
        if not future.done():
            raise errors.RequestTimeoutError()
    return future.result()


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _write_synced(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
