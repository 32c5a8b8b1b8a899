"""``RawNode``: the synchronous, thread-unsafe interface to one Raft node (etcd-raft's
``RawNode``), and the assembly of ``Ready`` batches.

The driver owns the loop, in this order (the ``Ready`` docstring has the details)::

    rd = node.ready()           # only when node.has_ready()
    persist rd.snapshot, rd.entries, rd.hard_state (fsync if rd.must_sync)
    send rd.messages (may happen before persisting); send rd.persisted_messages after it
    apply rd.snapshot, then rd.committed_entries (apply_conf_change for conf changes)
    node.advance()

Everything else (tick, step, propose, ...) may be called between two loop turns, or
between ``ready()`` and ``advance()``; all calls must come from one thread at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from kine_py.raft.codec import encode_conf_change
from kine_py.raft.config import Config
from kine_py.raft.log import ents_size, payloads_size
from kine_py.raft.raft import Raft
from kine_py.raft.storage import Storage
from kine_py.raft.types import (
    LOCAL_MESSAGES,
    RESPONSE_MESSAGES,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Ready,
    Snapshot,
    StateType,
    Status,
    StepLocalMessageError,
    StepPeerNotFoundError,
)


@dataclass(frozen=True, slots=True)
class _OnAdvance:
    """What ``advance`` must tell the state machine about the ``Ready`` it concludes."""

    self_messages: tuple[Message, ...]
    """This node's own append ack and vote: they count only once durable."""
    stable_index: int
    stable_term: int
    ready_term: int
    snapshot: Snapshot | None
    applied_index: int
    applied_size: int
    applied_payload: int


class RawNode:
    """One Raft node, driven by the caller. Raises what the state machine raises: storage
    errors (fatal), ``RaftInvariantError`` (fatal), and the per-method errors below."""

    __slots__ = ("_on_advance", "_prev_hard", "_prev_soft", "_raft")

    def __init__(self, config: Config, storage: Storage) -> None:
        """Start (or restart) the node from ``storage``; raises ValueError for a bad config."""
        self._raft = Raft(config, storage)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._on_advance: _OnAdvance | None = None

    # -- inputs ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick (elections, heartbeats, check-quorum)."""
        self._raft.tick()

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round if configured)."""
        self._raft.step(Message(MessageType.HUP, from_=self._raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log (a follower forwards it to the leader). Raises
        ProposalDroppedError when there is no leader, a leader transfer is in progress,
        forwarding is disabled, this node was removed, or the uncommitted-size limit is hit.
        Acceptance does not mean commitment: watch the committed entries."""
        self._raft.step(Message(MessageType.PROP, from_=self._raft.id, entries=(Entry(0, 0, data=data),)))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change. Raises ProposalDroppedError as ``propose`` does, and
        on the leader also while an earlier conf change is not applied yet or if the change
        would remove the last voter. It takes effect when applied (``apply_conf_change``)."""
        entry = Entry(0, 0, type=EntryType.CONF_CHANGE, data=encode_conf_change(cc))
        self._raft.step(Message(MessageType.PROP, from_=self._raft.id, entries=(entry,)))

    def step(self, m: Message) -> None:
        """Feed a message received from a peer. Raises StepLocalMessageError for local types
        (HUP, BEAT, ...), StepPeerNotFoundError for a response from a node not in the
        configuration, ProposalDroppedError when a forwarded proposal cannot be appended
        (the caller may ignore it). Messages of an older term are ignored."""
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMessageError(f"cannot step local message {m.type.name}")
        if m.type in RESPONSE_MESSAGES and m.from_ not in self._raft.trk.progress:
            raise StepPeerNotFoundError(f"no peer {m.from_:x} for {m.type.name}")
        self._raft.step(m)

    def read_index(self, request_ctx: bytes) -> None:
        """Ask for a linearizable read point. The answer is a ``ReadState`` carrying
        ``request_ctx`` in a later ``Ready``; serve the read once ``applied >= index``.
        Dropped silently without a leader: time out and retry with a new context."""
        self._raft.step(Message(MessageType.READ_INDEX, entries=(Entry(0, 0, data=request_ctx),)))

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to ``transferee`` (a voter)."""
        self._raft.step(Message(MessageType.TRANSFER_LEADER, from_=transferee))

    def forget_leader(self) -> None:
        """A follower forgets its leader (see ``Raft.forget_leader``)."""
        self._raft.forget_leader()

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to deliver to ``node_id``; the leader probes it again."""
        self._raft.step(Message(MessageType.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        """The snapshot sent to ``node_id`` was delivered (or failed); call after every SNAP."""
        self._raft.step(Message(MessageType.SNAP_STATUS, from_=node_id, reject=failed))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change; returns the new configuration (store it with the next
        snapshot). Raises ConfChangeError for a change that would leave no voter."""
        return self._raft.apply_conf_change(cc)

    # -- outputs ----------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return something to do."""
        r = self._raft
        log = r.raft_log
        soft, hard = self._prev_soft, self._prev_hard
        return bool(
            r.msgs
            or r.msgs_after_append
            or r.read_states
            or r.lead != soft.lead
            or r.state != soft.raft_state
            or r.term != hard.term
            or r.vote != hard.vote
            or log.committed != hard.commit
            or log.has_next_unstable_ents()
            or log.has_next_committed_ents(True)
            or log.next_unstable_snapshot() is not None
        )

    def ready(self) -> Ready:
        """Take the pending work. Must be followed by ``advance()`` before the next ``ready()``
        (RuntimeError otherwise)."""
        if self._on_advance is not None:
            raise RuntimeError("ready() called again before advance()")
        r = self._raft
        log = r.raft_log
        entries = log.next_unstable_ents()
        committed = log.next_committed_ents(True)
        prev_soft, prev_hard = self._prev_soft, self._prev_hard
        soft = hard = None
        if r.lead != prev_soft.lead or r.state != prev_soft.raft_state:
            soft = r.soft_state()
        if r.term != prev_hard.term or r.vote != prev_hard.vote or log.committed != prev_hard.commit:
            hard = r.hard_state()
        after: tuple[Message, ...] = ()
        self_messages: tuple[Message, ...] = ()
        if r.msgs_after_append:
            after = tuple(
                m
                for m in r.msgs_after_append
                if m.to != r.id and not (r.drop_stale_acks and _stale_ack(m, r.term))
            )
            self_messages = tuple(m for m in r.msgs_after_append if m.to == r.id)
        rd = Ready(
            soft_state=soft,
            hard_state=hard,
            read_states=tuple(r.read_states),
            entries=tuple(entries),
            snapshot=log.next_unstable_snapshot(),
            committed_entries=tuple(committed),
            messages=tuple(r.msgs),
            persisted_messages=after,
            must_sync=bool(entries)
            or (hard is not None and (hard.term, hard.vote) != (prev_hard.term, prev_hard.vote)),
        )
        self._accept(rd, self_messages)
        return rd

    def _accept(self, rd: Ready, self_messages: tuple[Message, ...]) -> None:
        """Record that ``rd`` was handed out, and what ``advance`` will have to do."""
        r = self._raft
        log = r.raft_log
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        stable_index = stable_term = 0
        if log.has_next_or_in_progress_unstable_ents():
            stable_index = log.last_index()
            stable_term = log.term(stable_index)
        committed = rd.committed_entries
        self._on_advance = _OnAdvance(
            self_messages=self_messages,
            stable_index=stable_index,
            stable_term=stable_term,
            ready_term=r.term,
            snapshot=rd.snapshot,
            applied_index=committed[-1].index if committed else 0,
            applied_size=ents_size(committed),
            applied_payload=payloads_size(committed),
        )
        r.read_states = []
        r.msgs = []
        r.msgs_after_append = []
        log.accept_unstable()
        if committed:
            log.accept_applying(committed[-1].index, self._on_advance.applied_size, True)

    def advance(self) -> None:
        """The last ``Ready`` was persisted and applied: step this node's own append ack and
        vote, forget the now durable unstable entries, and free the apply budget. A no-op
        without an outstanding ``Ready``."""
        done, self._on_advance = self._on_advance, None
        if done is None:
            return
        r = self._raft
        for m in done.self_messages:
            r.step(m)
        if done.stable_index or done.snapshot is not None:
            r.storage_appended(done.stable_index, done.stable_term, done.ready_term, done.snapshot)
        if done.applied_index:
            r.entries_applied(done.applied_index, done.applied_size, done.applied_payload)

    # -- introspection ----------------------------------------------------------------------------

    def status(self) -> Status:
        return self._raft.status()

    @property
    def id(self) -> int:
        return self._raft.id

    @property
    def lead(self) -> int:
        """The leader this node knows of, or NONE."""
        return self._raft.lead

    @property
    def state(self) -> StateType:
        return self._raft.state

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def raft(self) -> Raft:
        """The state machine itself, for tests and introspection. Driving it directly
        bypasses the ``Ready`` contract."""
        return self._raft


def _stale_ack(m: Message, term: int) -> bool:
    """An append ack of an earlier term than the node's (``Config.drop_stale_acks``)."""
    return m.type is MessageType.APP_RESP and m.term < term
