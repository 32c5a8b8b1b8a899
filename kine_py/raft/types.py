"""The vocabulary of the Raft core: entries, states, messages, snapshots and the ``Ready`` batch.

These are plain frozen, slotted dataclasses (etcd-raft's ``raftpb`` types, renamed to Python
style). Nothing here does I/O; the codec that turns them into bytes for the write-ahead log
and the peer transport lives in ``kine_py.raft.codec``.

Node ids are positive integers; 0 (``NONE``) means "nobody" (no vote, no leader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The id of no node: no vote cast, no leader known."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1
    """``data`` is an encoded ``ConfChange`` (``kine_py.raft.codec``)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. An entry with empty ``data`` and type NORMAL is a leader's no-op."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voters and learners (disjoint, sorted)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = ConfState()
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine as of ``metadata.index``. ``data`` is opaque to the core (the
    replication layer puts a small descriptor here and ships the database file separately)."""

    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    """Add a voter, or promote the learner of that id."""
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change (etcd-raft's ConfChange v1). Takes effect when applied.
    ``context`` is for the application (e.g. the new member's peer URLs)."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""


class MessageType(enum.IntEnum):
    """etcd-raft's message types, with its numbering. HUP, BEAT, UNREACHABLE, SNAP_STATUS and
    CHECK_QUORUM are local: they never travel between nodes."""

    HUP = 0
    BEAT = 1
    PROP = 2
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10
    SNAP_STATUS = 11
    CHECK_QUORUM = 12
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)

RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    """A message between nodes (or a local input such as HUP). Field meanings follow
    etcd-raft's ``raftpb.Message``; ``from_`` because ``from`` is a keyword."""

    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


class StateType(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, reported when it changes; never persisted."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: the read asked for with ``request_ctx`` may be served once the
    state machine has applied ``index``."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in this order (etcd-raft's contract):

    1. Persist ``snapshot`` (if any), then ``entries`` and ``hard_state`` (if any); fsync when
       ``must_sync``. Entries with index >= the first new one replace what was stored.
    2. Send ``messages`` (may be sent before or while step 1 runs) and, only once step 1 is
       durable, ``persisted_messages`` (votes, append acks).
    3. Apply ``snapshot``, then ``committed_entries`` in order; for a CONF_CHANGE entry call
       ``RawNode.apply_conf_change``.
    4. Call ``RawNode.advance()``. The next ``ready()`` may only be taken after that.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: tuple[ReadState, ...] = ()
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    persisted_messages: tuple[Message, ...] = ()
    must_sync: bool = False


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state for ``Status`` RPCs and tests."""

    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    lead_transferee: int = NONE
    progress: dict[int, ProgressStatus] = field(default_factory=dict)
    conf_state: ConfState = ConfState()


# -- errors ---------------------------------------------------------------------------------


class RaftError(Exception):
    """Base of the core's errors."""


class ProposalDroppedError(RaftError):
    """The proposal was not appended: no leader known, leadership transfer in progress, this
    node is a learner or was removed, or the uncommitted-size limit was hit. Retry later."""


class StepLocalMessageError(RaftError):
    """``RawNode.step`` was given a local message type."""


class StepPeerNotFoundError(RaftError):
    """A response came from a node that is not in the configuration."""


class StorageError(RaftError):
    """Base of what a ``Storage`` may raise."""


class CompactedError(StorageError):
    """The requested index is older than the storage's first index (compacted away)."""


class UnavailableError(StorageError):
    """The requested index is newer than the storage's last index."""


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than the one already stored was offered."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """The snapshot is being prepared; Raft will ask again later."""


class ConfChangeError(RaftError):
    """``RawNode.apply_conf_change`` was given a change that cannot be applied (it would leave
    the configuration without a voter). Nothing was changed."""


class RaftInvariantError(RuntimeError):
    """An internal invariant of the core broke (etcd-raft panics here): the log or the state
    handed back by the driver is inconsistent. The node must stop; this is deliberately not a
    ``RaftError`` so that handlers of the ordinary errors do not swallow it."""
