"""A synchronous in-memory network of Raft nodes for tests (the idea of etcd-raft's
``raft_test.go`` network).

Each ``Peer`` is a real ``RawNode`` over a real ``MemoryStorage``. Persistence is instant:
``Peer.process_ready`` writes every ``Ready`` to the storage, applies committed entries
(conf changes included) and calls ``advance``, returning the messages to send.
``Network.send`` delivers messages breadth-first until none is left, through the fault
filters: ``drop`` (seeded, per direction), ``cut``, ``isolate``, ``ignore`` (by type),
``msg_hook`` and black-hole peers that swallow everything.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kine_py.raft import (
    LOCAL_MESSAGES,
    NONE,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    StepPeerNotFoundError,
)
from kine_py.raft.codec import decode_conf_change
from kine_py.raft.raft import Raft

NO_LIMIT = 1 << 62
"""A size limit that is never reached."""


def config_for(node_id: int, **overrides: Any) -> Config:
    """etcd-raft's test defaults: election 10, heartbeat 1, no size limits, and neither
    pre-vote nor check-quorum (nor kine-py's forwarder read ack and stale-ack drop) unless asked for."""
    fields: dict[str, object] = {
        "id": node_id,
        "election_tick": 10,
        "heartbeat_tick": 1,
        "max_size_per_msg": NO_LIMIT,
        "max_inflight_msgs": 256,
        "pre_vote": False,
        "check_quorum": False,
        "forwarder_read_ack": False,
        "drop_stale_acks": False,
    }
    fields.update(overrides)
    return Config(**fields)  # type: ignore[arg-type]


def entries_of_terms(terms: Sequence[int], start: int = 1) -> list[Entry]:
    """Entries with the given terms at indexes ``start, start + 1, ...``."""
    return [Entry(term=t, index=start + i) for i, t in enumerate(terms)]


class Peer:
    """One node with its storage and what its state machine applied."""

    def __init__(self, node: RawNode, storage: MemoryStorage) -> None:
        self.node = node
        self.storage = storage
        self.applied: list[Entry] = []
        self.read_states: list[ReadState] = []
        self.snapshots: list[Snapshot] = []
        self.readies: list[Ready] = []

    @property
    def id(self) -> int:
        return self.node.id

    @property
    def raft(self) -> Raft:
        return self.node.raft

    def step(self, m: Message) -> None:
        """Deliver ``m``; local types (HUP, BEAT, ...) go to the state machine directly."""
        if m.type in LOCAL_MESSAGES:
            self.raft.step(m)
        else:
            self.node.step(m)

    def process_ready(self) -> list[Message]:
        """Handle every pending ``Ready`` (persist, apply, advance); the messages to send."""
        out: list[Message] = []
        while self.node.has_ready():
            rd = self.node.ready()
            self.readies.append(rd)
            self.persist(rd)
            out.extend(rd.messages)
            out.extend(rd.persisted_messages)
            self.apply(rd)
            self.node.advance()
        return out

    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)

    def apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshots.append(rd.snapshot)
        for e in rd.committed_entries:
            self.applied.append(e)
            if e.type == EntryType.CONF_CHANGE:
                self.node.apply_conf_change(decode_conf_change(e.data))
        self.read_states.extend(rd.read_states)

    def applied_data(self) -> list[bytes]:
        """The data of the applied entries that carry data (leaders' empty entries skipped)."""
        return [e.data for e in self.applied if e.data and e.type == EntryType.NORMAL]

    def log(self) -> list[tuple[int, int]]:
        """``(index, term)`` of every entry in the log (stable and unstable)."""
        return [(e.index, e.term) for e in self.raft.raft_log.all_entries()]

    def restart(self, **overrides: Any) -> Peer:
        """A new node over this peer's storage (a crash and restart with everything synced)."""
        applied = self.applied[-1].index if self.applied else 0
        if self.snapshots:
            applied = max(applied, self.snapshots[-1].metadata.index)
        fields: dict[str, object] = {"applied": applied}
        fields.update(overrides)
        peer = Peer(RawNode(config_for(self.id, **fields), self.storage), self.storage)
        peer.applied = list(self.applied)
        return peer


def new_peer(
    node_id: int,
    voters: Iterable[int] = (1, 2, 3),
    learners: Iterable[int] = (),
    *,
    log_terms: Sequence[int] = (),
    term: int = 0,
    vote: int = NONE,
    commit: int = 0,
    **config: Any,
) -> Peer:
    """A node whose storage holds entries of ``log_terms`` (indexes 1..n) and the given hard
    state, in a configuration of ``voters`` and ``learners``."""
    storage = MemoryStorage(ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners))))
    storage.append(entries_of_terms(log_terms))
    if term or vote or commit:
        storage.set_hard_state(HardState(term=term, vote=vote, commit=commit))
    return Peer(RawNode(config_for(node_id, **config), storage), storage)


class BlackHole:
    """A peer that swallows every message."""


BLACK_HOLE = BlackHole()


class Network:
    """Peers 1..n on a lossless, synchronous network with fault filters."""

    def __init__(
        self,
        *peers: Peer | BlackHole | None,
        seed: int = 1,
        **config: Any,
    ) -> None:
        """``None`` makes a fresh node (config ``**config``) in a configuration of all peers."""
        ids = list(range(1, len(peers) + 1))
        self.peers: dict[int, Peer | BlackHole] = {}
        for node_id, p in zip(ids, peers, strict=True):
            self.peers[node_id] = new_peer(node_id, ids, **config) if p is None else p
        self.dropm: dict[tuple[int, int], float] = {}
        self.ignorem: set[MessageType] = set()
        self.msg_hook: Callable[[Message], bool] | None = None
        self.rand = random.Random(seed)
        self.delivered: list[Message] = []
        for p in self.peers.values():
            if isinstance(p, Peer):
                p.process_ready()

    def peer(self, node_id: int) -> Peer:
        p = self.peers[node_id]
        assert isinstance(p, Peer), f"{node_id} is a black hole"
        return p

    def raft(self, node_id: int) -> Raft:
        return self.peer(node_id).raft

    # -- delivery -------------------------------------------------------------------------------

    def send(self, *msgs: Message) -> None:
        """Deliver ``msgs`` (injected by the test: not filtered) and everything they cause
        (filtered), breadth-first, until quiet."""
        self._deliver(list(msgs))

    def _deliver(self, msgs: list[Message]) -> None:
        queue = deque(msgs)
        while queue:
            m = queue.popleft()
            p = self.peers.get(m.to)
            if not isinstance(p, Peer):
                continue
            self.delivered.append(m)
            # A dropped forwarded proposal, or a response from a removed node: as in etcd-raft's
            # tests, the network ignores what the receiver refuses.
            with contextlib.suppress(ProposalDroppedError, StepPeerNotFoundError):
                p.step(m)
            queue.extend(self.filter(p.process_ready()))

    def filter(self, msgs: Iterable[Message]) -> list[Message]:
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if perc and self.rand.random() < perc:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    def flush(self, node_id: int) -> None:
        """Deliver whatever ``node_id`` has to send (after a direct call on it)."""
        p = self.peer(node_id)
        self._deliver(self.filter(p.process_ready()))

    # -- conveniences -----------------------------------------------------------------------------

    def campaign(self, node_id: int) -> None:
        self.send(Message(MessageType.HUP, to=node_id, from_=node_id))

    def propose(self, node_id: int, data: bytes = b"somedata") -> None:
        self.send(Message(MessageType.PROP, to=node_id, from_=node_id, entries=(Entry(0, 0, data=data),)))

    def beat(self, node_id: int) -> None:
        self.send(Message(MessageType.BEAT, to=node_id, from_=node_id))

    def tick(self, node_id: int, n: int = 1) -> None:
        """Tick ``node_id`` ``n`` times, delivering what each tick makes it send."""
        p = self.peer(node_id)
        for _ in range(n):
            p.node.tick()
            self.flush(node_id)

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for node_id, p in self.peers.items():
                if isinstance(p, Peer):
                    p.node.tick()
                    self.flush(node_id)

    # -- faults -------------------------------------------------------------------------------------

    def drop(self, frm: int, to: int, perc: float) -> None:
        """Drop messages from ``frm`` to ``to`` with probability ``perc``."""
        self.dropm[(frm, to)] = perc

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b, 2.0)
        self.drop(b, a, 2.0)

    def isolate(self, node_id: int) -> None:
        for other in self.peers:
            if other != node_id:
                self.cut(node_id, other)

    def ignore(self, t: MessageType) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm.clear()
        self.ignorem.clear()
        self.msg_hook = None
