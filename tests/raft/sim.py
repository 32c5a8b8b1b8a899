"""A seeded, deterministic cluster simulator for the Raft core, with safety checks after every step.

What it models:

* ``SimDisk``: a node's durable state (snapshot, entries, hard state). What a Ready writes
  goes to an *unsynced* tail first; ``sync`` makes it durable. A crash keeps the synced
  state plus a prefix of the unsynced writes (like a WAL whose last records may or may not
  have reached the disk, possibly torn inside a batch of entries) and loses the rest.
* ``SimNode``: one RawNode over a ``MemoryStorage`` that holds what was written (synced or
  not), the state machine (the list of applied proposal payloads) and the Ready the node is
  in the middle of handling. Handling a Ready is two steps, so other things can happen in
  between (as with a driver that fsyncs in a thread): ``ready`` takes the Ready, writes it
  unsynced and sends ``messages``; ``persist`` syncs (when ``must_sync``, or for a snapshot),
  only then sends ``persisted_messages``, applies, and calls ``advance()``. A crash between
  the two loses the unsynced writes and the Ready; the node restarts from its disk with a
  fresh RawNode (``Config.applied`` = its snapshot index; the state machine is rebuilt from
  the snapshot and re-applies the committed entries after it).
* ``SimNet``: in-flight messages that can be delivered in any order, dropped, duplicated and
  delayed (a message may not be delivered before its logical delivery time), and a
  partition (a set of blocked directed links).
* A logical clock: ``tick_all`` ticks every running node and advances time by one; ``tick``
  ticks one node (clock skew).

``Sim.check`` and the checks inside the steps assert Raft's safety properties (see
``Sim.__doc__``); a violation raises ``SafetyViolation`` with the seed and the last steps.
``run_random_walk`` drives a ``Sim`` from ``random.Random(seed)``; ``test_simulator`` also
drives it from a hypothesis state machine so failures shrink.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from kine_py.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
    StepPeerNotFoundError,
)
from kine_py.raft.codec import decode_conf_change
from tests.raft import datadriven as dd

TRACE_LINES = 80

FORWARDED = frozenset({MessageType.PROP, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER})
"""Messages a follower passes on to the leader keeping their ``from_`` (etcd-raft does the
same; for TRANSFER_LEADER ``from_`` is the transferee)."""


class SafetyViolation(AssertionError):
    """A Raft safety (or liveness) property does not hold. The message has the seed and trace."""


# -- storage as the driver presents it --------------------------------------------------------


SnapshotSource = Callable[[], "tuple[int, ConfState, bytes] | None"]


class AppliedSnapshotStorage(MemoryStorage):
    """A MemoryStorage whose ``snapshot()`` is the state machine as of its last applied index
    (with the configuration at that index) whenever that is newer than the stored snapshot.

    This is what etcd's server does (``createMergedSnapshotMessage``) and what etcd-raft's
    interaction harness does: a leader sends a snapshot of its current applied state, so a
    member added after the last compaction finds itself in the snapshot's configuration.
    (With only the compaction snapshot, such a member refuses it forever: etcd-raft's
    restore() drops a snapshot whose configuration does not contain the recipient.)
    ``source`` returns ``(applied index, configuration, data)`` or None."""

    def __init__(self, conf_state: ConfState, source: SnapshotSource) -> None:
        super().__init__(conf_state)
        self._source = source

    def snapshot(self) -> Snapshot:
        stored = super().snapshot()
        fresh = self._source()
        if fresh is None or fresh[0] <= stored.metadata.index:
            return stored
        index, cs, data = fresh
        meta = SnapshotMetadata(conf_state=cs, index=index, term=self.term(index))
        return Snapshot(metadata=meta, data=data)


# -- the disk --------------------------------------------------------------------------------


@dataclass
class DiskState:
    """What a node has on disk: a snapshot, the entries after it and a hard state."""

    snapshot: Snapshot
    entries: list[Entry]
    hard_state: HardState

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot.metadata.index

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.entries = []

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        first = self.snapshot.metadata.index + 1
        kept = [e for e in entries if e.index >= first]
        if not kept:
            return
        start = kept[0].index
        if start > self.last_index() + 1:
            raise AssertionError(f"disk write leaves a gap: last {self.last_index()}, write at {start}")
        del self.entries[start - first :]
        self.entries.extend(kept)

    def compact(self, snap: Snapshot) -> None:
        index = snap.metadata.index
        first = self.snapshot.metadata.index + 1
        self.entries = self.entries[index + 1 - first :] if index >= first else self.entries
        self.snapshot = snap


Op = tuple[str, object]


class SimDisk:
    """Synced state plus an ordered list of unsynced writes. ``on_durable`` is called with
    every hard state that becomes durable (on sync, and for the survivors of a crash)."""

    def __init__(self, conf_state: ConfState, on_durable: Callable[[HardState], None]) -> None:
        self.synced = DiskState(Snapshot(), [], HardState())
        self.synced.snapshot = replace(
            self.synced.snapshot, metadata=replace(self.synced.snapshot.metadata, conf_state=conf_state)
        )
        self.pending: list[Op] = []
        self._on_durable = on_durable

    def write(self, rd: Ready) -> None:
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            self.pending.append(("snap", rd.snapshot))
        if rd.entries:
            self.pending.append(("ents", rd.entries))
        if rd.hard_state is not None:
            self.pending.append(("hs", rd.hard_state))

    def sync(self) -> None:
        self._make_durable(self.pending)
        self.pending = []

    def crash(self, keep: int) -> None:
        """Keep the first ``keep`` unsynced units (a unit is one snapshot, one entry or one
        hard state, in write order) and lose the rest."""
        survivors: list[Op] = []
        for kind, value in self.pending:
            if keep <= 0:
                break
            if kind == "ents":
                assert isinstance(value, tuple)
                part = value[:keep]
                keep -= len(part)
                survivors.append((kind, part))
            else:
                keep -= 1
                survivors.append((kind, value))
        self.pending = []
        self._make_durable(survivors)

    def pending_units(self) -> int:
        return sum(len(v) if isinstance(v, tuple) else 1 for _, v in self.pending)

    def compact(self, snap: Snapshot) -> None:
        """Persist an application snapshot (durably, after syncing everything before it)."""
        self.sync()
        self.synced.compact(snap)

    def _make_durable(self, ops: list[Op]) -> None:
        for kind, value in ops:
            if kind == "snap":
                assert isinstance(value, Snapshot)
                self.synced.apply_snapshot(value)
            elif kind == "ents":
                assert isinstance(value, tuple)
                self.synced.append(value)
            else:
                assert isinstance(value, HardState)
                self.synced.hard_state = value
                self._on_durable(value)

    def storage(self, source: SnapshotSource) -> AppliedSnapshotStorage:
        """A storage holding the synced state (what a restart reads).

        A crash may keep a snapshot but not the hard state written after it, so the commit
        index on disk can be below the snapshot's index; a snapshot only holds committed
        entries, so the loader raises it (the core refuses commit < snapshot index, as
        etcd-raft does; etcd avoids the case by only loading snapshots its WAL records)."""
        d = self.synced
        storage = AppliedSnapshotStorage(d.snapshot.metadata.conf_state, source)
        if not d.snapshot.is_empty():
            storage.apply_snapshot(d.snapshot)
        storage.append(d.entries)
        hs = d.hard_state
        storage.set_hard_state(replace(hs, commit=max(hs.commit, d.snapshot.metadata.index)))
        return storage


# -- nodes and network -----------------------------------------------------------------------


def encode_sm(payloads: list[bytes]) -> bytes:
    return b"\n".join(payloads)


def decode_sm(data: bytes) -> list[bytes]:
    return data.split(b"\n") if data else []


@dataclass
class SimNode:
    id: int
    config: Config
    disk: SimDisk
    storage: AppliedSnapshotStorage
    rn: RawNode
    up: bool = True
    removed: bool = False
    incarnation: int = 1
    outstanding: Ready | None = None
    applied_index: int = 0
    payloads: list[bytes] = field(default_factory=list)
    """The state machine: applied proposal payloads, in order."""
    payload_index: list[int] = field(default_factory=list)
    """The log index each payload was applied at (for snapshots at an index)."""
    conf_history: list[tuple[int, ConfState]] = field(default_factory=list)
    last_hs: HardState = field(default_factory=HardState)

    def conf_state_at(self, index: int) -> ConfState:
        found = self.conf_history[0][1]
        for at, cs in self.conf_history:
            if at <= index:
                found = cs
        return found

    def conf(self) -> ConfState:
        return self.conf_history[-1][1]

    def applied_snapshot(self) -> tuple[int, ConfState, bytes] | None:
        """(applied index, configuration, state machine) for ``AppliedSnapshotStorage``."""
        if not self.up or self.applied_index == 0:
            return None
        return self.applied_index, self.conf(), encode_sm(self.payloads)


@dataclass
class InFlight:
    msg: Message
    deliver_at: int


class SimNet:
    """In-flight messages and the partition. Messages on a blocked link are lost."""

    def __init__(self) -> None:
        self.inflight: list[InFlight] = []
        self.blocked: set[tuple[int, int]] = set()

    def deliverable(self, now: int) -> list[int]:
        return [i for i, f in enumerate(self.inflight) if f.deliver_at <= now]


# -- the simulator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    nodes: int = 3
    election_tick: int = 6
    heartbeat_tick: int = 2
    max_nodes: int = 7
    """How many node ids may ever exist (adds stop here)."""
    min_voters: int = 3
    """Removals never take the proposer's configuration below this many voters."""
    pre_vote: bool = True
    check_quorum: bool = True
    forwarder_read_ack: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256


class Sim:
    """The cluster. Every mutating method is one step; steps that do not apply are no-ops.

    Safety properties checked (history-wide; the seed and trace are in any failure):

    * Election Safety: at most one leader per term, over the whole run.
    * Durable term/vote: the durable term never decreases and a node's durable vote in a term
      never changes once cast (across crashes), and a granted MsgVoteResp leaves only once
      the vote is durable; a MsgAppResp acknowledges only durable entries.
    * ``must_sync`` is true iff the Ready has entries or changes term or vote.
    * Log Matching: two entries with the same index and term (on any nodes, at any time) have
      the same content and the same term before them (hence identical prefixes).
    * Leader Completeness: a leader of term T holds every entry known committed by a node
      whose term was below T when it learned of the commit.
    * State Machine Safety: all nodes apply the same entry at each index, each node applies
      consecutive indexes, and snapshots hold exactly the payloads committed up to them.
    * No acknowledged proposal lost: a payload, once applied anywhere, is at the same index in
      every later leader and every state machine (the above), and after healing every running
      member applies it (``check_liveness``).
    * ReadIndex: a ReadState comes back to the node that asked, for a context it issued, with
      an index at least the highest index known committed anywhere when the read was issued.
    """

    def __init__(self, seed: int, options: SimOptions | None = None) -> None:
        self.seed = seed
        self.opts = options or SimOptions()
        self.rng = random.Random(seed)
        self.now = 0
        self.steps = 0
        self.trace: deque[tuple[int, int, str, Message | Ready | None]] = deque(maxlen=TRACE_LINES)
        self.net = SimNet()
        self.initial_conf = ConfState(voters=tuple(range(1, self.opts.nodes + 1)))
        self.nodes: dict[int, SimNode] = {}
        # history
        self.leaders: dict[int, int] = {}
        self.durable_votes: dict[tuple[int, int], int] = {}
        self.durable_term: dict[int, int] = {}
        self.entries_seen: dict[tuple[int, int], tuple[EntryType, bytes, int | None]] = {}
        self.committed: dict[int, Entry] = {}
        self.committed_term: dict[int, int] = {}
        self.max_committed = 0
        self.reads: dict[bytes, tuple[int, int]] = {}
        self.next_payload = 1
        self.next_read = 1
        self.proposed = 0
        self.acked_reads = 0
        for node_id in range(1, self.opts.nodes + 1):
            self._create(node_id)

    # -- building ---------------------------------------------------------------------------

    def _config(self, node_id: int, applied: int, incarnation: int) -> Config:
        o = self.opts
        return Config(
            id=node_id,
            election_tick=o.election_tick,
            heartbeat_tick=o.heartbeat_tick,
            applied=applied,
            max_size_per_msg=o.max_size_per_msg,
            max_inflight_msgs=o.max_inflight_msgs,
            check_quorum=o.check_quorum,
            pre_vote=o.pre_vote,
            forwarder_read_ack=o.forwarder_read_ack,
            rand=random.Random(self.seed * 1000 + node_id * 10 + incarnation),
        )

    def _create(self, node_id: int) -> SimNode:
        """A node that has never run: bootstrap configuration, empty log."""
        disk = SimDisk(self.initial_conf, lambda hs, n=node_id: self._durable_hs(n, hs))
        storage = disk.storage(lambda: self._applied_snapshot(node_id))
        config = self._config(node_id, 0, 1)
        node = SimNode(node_id, config, disk, storage, RawNode(config, storage))
        node.conf_history = [(0, self.initial_conf)]
        self.nodes[node_id] = node
        return node

    def _applied_snapshot(self, node_id: int) -> tuple[int, ConfState, bytes] | None:
        return self.nodes[node_id].applied_snapshot()

    def running(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    # -- trace and failure ------------------------------------------------------------------

    def log(self, text: str, obj: Message | Ready | None = None) -> None:
        """Add a trace line; a message or Ready is only described if the trace is printed."""
        self.trace.append((self.steps, self.now, text, obj))

    def trace_lines(self) -> list[str]:
        lines = []
        for steps, now, text, obj in self.trace:
            if isinstance(obj, Message):
                text = f"{text} {dd.describe_message(obj)}"
            elif isinstance(obj, Ready):
                text = f"{text} " + " | ".join(dd.describe_ready(obj)[1:])
            lines.append(f"[{steps}] t={now} {text}")
        return lines

    def fail(self, what: str) -> SafetyViolation:
        lines = "\n".join(self.trace_lines())
        return SafetyViolation(
            f"{what}\nseed={self.seed} step={self.steps} options={self.opts}\n"
            f"last {len(self.trace)} trace lines:\n{lines}"
        )

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Turn any unexpected exception (a crash in the core) into a SafetyViolation with the
        seed and the trace."""
        try:
            yield
        except SafetyViolation:
            raise
        except Exception as exc:
            raise self.fail(f"unexpected {type(exc).__name__}: {exc}") from exc

    # -- steps: time ------------------------------------------------------------------------

    def tick(self, node_id: int) -> None:
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return
        self.steps += 1
        node.rn.tick()
        self.log(f"tick {node_id}")
        self.check()

    def tick_all(self) -> None:
        self.steps += 1
        self.now += 1
        for node in self.running():
            node.rn.tick()
        self.log("tick all")
        self.check()

    # -- steps: Ready handling ----------------------------------------------------------------

    def ready(self, node_id: int) -> bool:
        """Take the node's Ready, write it (unsynced), send ``messages``. False if none."""
        node = self.nodes.get(node_id)
        if node is None or not node.up or node.outstanding is not None or not node.rn.has_ready():
            return False
        self.steps += 1
        rd = node.rn.ready()
        self.log(f"ready {node_id}:", rd)
        self._check_ready_shape(node, rd)
        node.disk.write(rd)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            node.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            node.storage.append(rd.entries)
            self._check_log_matching(node, rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
            self._check_hard_state(node, rd.hard_state)
        self._register_committed(node, rd.committed_entries)
        if node.rn.state == StateType.LEADER:
            self._check_leader_completeness(node)
        self._check_read_states(node, rd)
        for m in rd.messages:
            self._send(m)
        node.outstanding = rd
        self.check()
        return True

    def persist(self, node_id: int) -> bool:
        """Sync (if the Ready needs it), send ``persisted_messages``, apply, ``advance()``."""
        node = self.nodes.get(node_id)
        if node is None or not node.up or node.outstanding is None:
            return False
        self.steps += 1
        rd = node.outstanding
        has_snap = rd.snapshot is not None and not rd.snapshot.is_empty()
        if rd.must_sync or has_snap:
            node.disk.sync()
        self.log(f"persist {node_id} (sync={rd.must_sync or has_snap})")
        for m in rd.persisted_messages:
            self._check_durable_before_send(node, m)
            self._send(m)
        if has_snap:
            assert rd.snapshot is not None
            self._apply_snapshot(node, rd.snapshot)
        for e in rd.committed_entries:
            self._apply_entry(node, e)
        node.outstanding = None
        node.rn.advance()
        self.check()
        return True

    def handle_ready(self, node_id: int) -> bool:
        """Both halves at once (the common case)."""
        if not self.ready(node_id):
            return False
        self.persist(node_id)
        return True

    # -- steps: network -----------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        if m.to == m.from_ and m.type not in FORWARDED:
            raise self.fail(f"message to self leaves the node: {dd.describe_message(m)}")
        sender = self.nodes.get(m.from_)
        if (m.from_, m.to) in self.net.blocked:
            self.log("  lost (partition):", m)
            if sender is not None and sender.up:
                sender.rn.report_unreachable(m.to)
                if m.type == MessageType.SNAP:
                    sender.rn.report_snapshot(m.to, True)
            return
        delay = 0 if self.rng.random() < 0.85 else self.rng.randint(1, 3)
        self.net.inflight.append(InFlight(m, self.now + delay))

    def deliver(self, k: int) -> bool:
        """Deliver the k-th deliverable message (modulo their number)."""
        idxs = self.net.deliverable(self.now)
        if not idxs:
            return False
        self.steps += 1
        f = self.net.inflight.pop(idxs[k % len(idxs)])
        m = f.msg
        target = self.nodes.get(m.to)
        if target is None or not target.up or (m.from_, m.to) in self.net.blocked:
            self.log("lost:", m)
            self._snapshot_outcome(m, failed=True)
            self.check()
            return True
        self.log("deliver", m)
        try:
            target.rn.step(m)
        except StepPeerNotFoundError:
            self.log("  (peer not found)")
        except RaftError as exc:
            self.log(f"  ({type(exc).__name__})")
        self._snapshot_outcome(m, failed=False)
        self.check()
        return True

    def _snapshot_outcome(self, m: Message, failed: bool) -> None:
        if m.type != MessageType.SNAP:
            return
        sender = self.nodes.get(m.from_)
        if sender is not None and sender.up:
            sender.rn.report_snapshot(m.to, failed)

    def drop(self, k: int) -> bool:
        if not self.net.inflight:
            return False
        self.steps += 1
        f = self.net.inflight.pop(k % len(self.net.inflight))
        self.log("drop", f.msg)
        self._snapshot_outcome(f.msg, failed=True)
        self.check()
        return True

    def duplicate(self, k: int) -> bool:
        if not self.net.inflight:
            return False
        self.steps += 1
        f = self.net.inflight[k % len(self.net.inflight)]
        self.net.inflight.append(InFlight(f.msg, self.now + 1))
        self.log("duplicate", f.msg)
        self.check()
        return True

    def partition(self, side: list[int]) -> None:
        """Cut every link between ``side`` and the other nodes (both directions)."""
        self.steps += 1
        ids = list(self.nodes)
        a = set(side)
        self.net.blocked = {(x, y) for x in ids for y in ids if (x in a) != (y in a)}
        self.log(f"partition {sorted(a)} | {sorted(set(ids) - a)}")
        self.check()

    def split_leader(self, node_id: int, companions: list[int]) -> bool:
        """Cut the leader ``node_id`` off with ``companions`` (the largest minority: alone
        with 3 voters, with one follower of 5), so the majority elects a new leader while the
        old one and its followers still take reads: the stale-read check then meets reads at
        a deposed leader, forwarded ones included. False if ``node_id`` is not a running
        leader or a partition is already in place."""
        node = self.nodes.get(node_id)
        if node is None or not node.up or node.rn.state != StateType.LEADER or self.net.blocked:
            return False
        self.partition([node_id, *companions])
        return True

    def heal(self) -> None:
        self.steps += 1
        self.net.blocked = set()
        self.log("heal")
        self.check()

    # -- steps: crashes -----------------------------------------------------------------------

    def crash(self, node_id: int, keep_fraction: float) -> bool:
        """Stop the node; its unsynced writes survive only in part (a prefix)."""
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return False
        self.steps += 1
        units = node.disk.pending_units()
        keep = int(units * keep_fraction)
        node.disk.crash(keep)
        node.up = False
        node.outstanding = None
        self.log(f"crash {node_id} (kept {keep} of {units} unsynced writes)")
        self.check()
        return True

    def restart(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or node.up or node.removed:
            return False
        self.steps += 1
        node.incarnation += 1
        snap = node.disk.synced.snapshot
        node.storage = node.disk.storage(lambda: self._applied_snapshot(node_id))
        node.config = self._config(node_id, snap.metadata.index, node.incarnation)
        node.rn = RawNode(node.config, node.storage)
        node.up = True
        node.applied_index = snap.metadata.index
        node.payloads = decode_sm(snap.data)
        node.payload_index = [0] * len(node.payloads)
        node.conf_history = [(snap.metadata.index, snap.metadata.conf_state)]
        node.last_hs = node.storage.hard_state()
        if node.rn.term != node.last_hs.term:
            raise self.fail(
                f"node {node_id} restarted at term {node.rn.term}, durable term {node.last_hs.term}"
            )
        self.log(
            f"restart {node_id} (incarnation {node.incarnation}, {dd.describe_hard_state(node.last_hs)})"
        )
        self.check()
        return True

    # -- steps: client and admin calls --------------------------------------------------------

    def propose(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return False
        self.steps += 1
        data = b"p%d" % self.next_payload
        self.next_payload += 1
        self.proposed += 1
        self._call(node, f"propose {node_id} {data.decode()}", lambda: node.rn.propose(data))
        return True

    def read_index(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return False
        self.steps += 1
        ctx = self.new_read(node_id)
        self._call(
            node,
            f"read-index {node_id} {ctx.decode()} (known commit {self.max_committed})",
            lambda: node.rn.read_index(ctx),
        )
        return True

    def new_read(self, node_id: int) -> bytes:
        """A fresh read context issued at ``node_id`` now, remembered with the commit index
        known at this moment (the least a ReadState for it may carry)."""
        ctx = b"r%d" % self.next_read
        self.next_read += 1
        self.reads[ctx] = (node_id, self.max_committed)
        return ctx

    def transfer(self, node_id: int, target: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.up or node_id == target:
            return False
        self.steps += 1
        self._call(node, f"transfer-leader {node_id} -> {target}", lambda: node.rn.transfer_leader(target))
        return True

    def add_learner(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        new_id = len(self.nodes) + 1
        if node is None or not node.up or new_id > self.opts.max_nodes:
            return False
        self.steps += 1
        cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE, new_id)
        what = f"propose-conf-change {node_id} l{new_id}"
        if self._call(node, what, lambda: node.rn.propose_conf_change(cc)):
            self._create(new_id)  # its id is taken now; it hears from the leader once it applies
        return True

    def promote(self, node_id: int, k: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.up or not node.conf().learners:
            return False
        self.steps += 1
        learners = node.conf().learners
        target = learners[k % len(learners)]
        cc = ConfChange(ConfChangeType.ADD_NODE, target)
        self._call(node, f"propose-conf-change {node_id} v{target}", lambda: node.rn.propose_conf_change(cc))
        return True

    def remove(self, node_id: int, k: int) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return False
        cs = node.conf()
        candidates = list(cs.learners)
        if len(cs.voters) > self.opts.min_voters:
            candidates.extend(cs.voters)
        if not candidates:
            return False
        self.steps += 1
        target = candidates[k % len(candidates)]
        cc = ConfChange(ConfChangeType.REMOVE_NODE, target)
        self._call(node, f"propose-conf-change {node_id} r{target}", lambda: node.rn.propose_conf_change(cc))
        return True

    def compact(self, node_id: int, fraction: float) -> bool:
        """Snapshot the state machine at an applied index and compact the log up to it."""
        node = self.nodes.get(node_id)
        if node is None or not node.up or node.outstanding is not None:
            return False
        first = node.storage.first_index()
        if node.applied_index < first:
            return False
        index = first + int((node.applied_index - first) * fraction)
        self.steps += 1
        n = sum(1 for at in node.payload_index if at <= index)
        data = encode_sm(node.payloads[:n])
        snap = node.storage.create_snapshot(index, node.conf_state_at(index), data)
        node.storage.compact(index)
        node.disk.compact(snap)
        self._check_snapshot_content(node, snap)
        self.log(f"compact {node_id} at {index} (term {snap.metadata.term})")
        self.check()
        return True

    def _call(self, node: SimNode, what: str, fn: Callable[[], None]) -> bool:
        """Make a RawNode call; a core error is traced, not raised. True if it succeeded."""
        ok = True
        try:
            fn()
            self.log(what)
        except RaftError as exc:
            self.log(f"{what}: {type(exc).__name__}")
            ok = False
        self.check()
        return ok

    # -- applying -----------------------------------------------------------------------------

    def _apply_snapshot(self, node: SimNode, snap: Snapshot) -> None:
        md = snap.metadata
        self._check_snapshot_content(node, snap)
        node.payloads = decode_sm(snap.data)
        node.payload_index = [0] * len(node.payloads)
        node.applied_index = md.index
        node.conf_history = [(md.index, md.conf_state)]

    def _apply_entry(self, node: SimNode, e: Entry) -> None:
        if e.index != node.applied_index + 1:
            raise self.fail(f"node {node.id} applies index {e.index} after {node.applied_index}")
        self._check_committed_entry(node, e)
        node.applied_index = e.index
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e.data)
            cs = node.rn.apply_conf_change(cc)
            node.conf_history.append((e.index, cs))
            if cc.type == ConfChangeType.REMOVE_NODE:
                self._retire(cc.node_id)
        elif e.data:
            node.payloads.append(e.data)
            node.payload_index.append(e.index)

    def _retire(self, node_id: int) -> None:
        """A removal was applied: the operator shuts the removed node down for good."""
        node = self.nodes.get(node_id)
        if node is None or node.removed:
            return
        node.removed = True
        if node.up:
            node.up = False
            node.outstanding = None
        self.log(f"  node {node_id} removed and shut down")

    # -- checks -------------------------------------------------------------------------------

    def check(self) -> None:
        """The checks that look at every node after every step."""
        for node in self.nodes.values():
            if node.up and node.rn.state == StateType.LEADER:
                term = node.rn.term
                other = self.leaders.setdefault(term, node.id)
                if other != node.id:
                    raise self.fail(f"two leaders in term {term}: {other} and {node.id}")

    def _durable_hs(self, node_id: int, hs: HardState) -> None:
        last = self.durable_term.get(node_id, 0)
        if hs.term < last:
            raise self.fail(f"node {node_id}: durable term went from {last} to {hs.term}")
        self.durable_term[node_id] = hs.term
        key = (node_id, hs.term)
        had = self.durable_votes.get(key, NONE)
        if had not in (NONE, hs.vote):
            raise self.fail(f"node {node_id} voted for {had} and then {hs.vote} in term {hs.term}")
        if hs.vote != NONE:
            self.durable_votes[key] = hs.vote

    def _check_ready_shape(self, node: SimNode, rd: Ready) -> None:
        prev = node.last_hs
        hs = rd.hard_state or prev
        want = bool(rd.entries) or hs.term != prev.term or hs.vote != prev.vote
        if rd.must_sync != want:
            raise self.fail(f"node {node.id}: must_sync={rd.must_sync}, expected {want}")
        for m in (*rd.messages, *rd.persisted_messages):
            if m.type in FORWARDED:
                continue  # forwarded to the leader with the original from_ (as in etcd-raft)
            if m.from_ != node.id:
                raise self.fail(f"node {node.id} sends a message from {m.from_}: {dd.describe_message(m)}")
        for m in rd.messages:
            if m.type in (MessageType.APP_RESP, MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
                raise self.fail(f"node {node.id}: {dd.describe_message(m)} is not in persisted_messages")

    def _check_hard_state(self, node: SimNode, hs: HardState) -> None:
        prev = node.last_hs
        if hs.term < prev.term:
            raise self.fail(f"node {node.id}: term went from {prev.term} to {hs.term}")
        if hs.term == prev.term and prev.vote != NONE and hs.vote != prev.vote:
            raise self.fail(f"node {node.id} changed its vote in term {hs.term}")
        if hs.commit > node.storage.last_index():
            raise self.fail(
                f"node {node.id}: commit {hs.commit} beyond last index {node.storage.last_index()}"
            )
        node.last_hs = hs

    def _check_log_matching(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        prev_term: int | None
        try:
            prev_term = node.storage.term(entries[0].index - 1)
        except RaftError:
            prev_term = None
        for e in entries:
            key = (e.index, e.term)
            seen = self.entries_seen.setdefault(key, (e.type, e.data, prev_term))
            same = seen[0] == e.type and seen[1] == e.data
            same_prev = prev_term is None or seen[2] is None or seen[2] == prev_term
            if not (same and same_prev):
                raise self.fail(
                    f"log matching: node {node.id} has {dd.describe_entry(e)} after term {prev_term}, "
                    f"elsewhere {seen}"
                )
            prev_term = e.term

    def _register_committed(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        term = node.last_hs.term
        for e in entries:
            self._check_committed_entry(node, e)
            if e.index not in self.committed:
                self.committed[e.index] = e
                self.committed_term[e.index] = term
                self.max_committed = max(self.max_committed, e.index)

    def _check_committed_entry(self, node: SimNode, e: Entry) -> None:
        known = self.committed.get(e.index)
        if known is not None and known != e:
            raise self.fail(
                f"state machine safety: node {node.id} commits {dd.describe_entry(e)}, "
                f"elsewhere {dd.describe_entry(known) if known else None}"
            )

    def _check_leader_completeness(self, node: SimNode) -> None:
        term = node.rn.term
        storage = node.storage
        snap_index = storage.first_index() - 1
        last = storage.last_index()
        for index, e in self.committed.items():
            if index <= snap_index or self.committed_term[index] >= term:
                continue
            have = storage.term(index) if index <= last else None
            if have != e.term:
                raise self.fail(
                    f"leader completeness: leader {node.id} of term {term} lacks committed "
                    f"{dd.describe_entry(e)} (has term {have})"
                )

    def _check_snapshot_content(self, node: SimNode, snap: Snapshot) -> None:
        """Every entry at or below a snapshot's index was applied by some node before (through
        ``committed_entries``), so the snapshot must hold exactly the known payloads."""
        md = snap.metadata
        want = [
            self.committed[i].data
            for i in sorted(self.committed)
            if i <= md.index and self.committed[i].type == EntryType.NORMAL and self.committed[i].data
        ]
        if decode_sm(snap.data) != want:
            raise self.fail(
                f"node {node.id}: snapshot at {md.index} holds {decode_sm(snap.data)}, committed are {want}"
            )
        committed_at = self.committed.get(md.index)
        if committed_at is not None and committed_at.term != md.term:
            raise self.fail(
                f"node {node.id}: snapshot at {md.index} has term {md.term}, committed entry has "
                f"{committed_at.term if committed_at else None}"
            )

    def _check_durable_before_send(self, node: SimNode, m: Message) -> None:
        durable = node.disk.synced
        if m.type == MessageType.VOTE_RESP and not m.reject:
            hs = durable.hard_state
            # A later durable term also covers it: the node can never vote in m.term again.
            if hs.term < m.term or (hs.term == m.term and hs.vote != m.to):
                raise self.fail(
                    f"node {node.id} grants a vote ({dd.describe_message(m)}) before it is durable "
                    f"({dd.describe_hard_state(hs)})"
                )
        if m.type == MessageType.APP_RESP and not m.reject and m.index > durable.last_index():
            raise self.fail(
                f"node {node.id} acks index {m.index} before it is durable (durable last "
                f"{durable.last_index()})"
            )

    def _check_read_states(self, node: SimNode, rd: Ready) -> None:
        for rs in rd.read_states:
            issued = self.reads.get(rs.request_ctx)
            if issued is None:
                raise self.fail(f"node {node.id}: ReadState for unknown ctx {rs.request_ctx!r}")
            asker, known = issued
            if asker != node.id:
                raise self.fail(f"ReadState for {rs.request_ctx!r} at {node.id}, asked at {asker}")
            if rs.index < known:
                raise self.fail(
                    f"stale read: ReadState {rs.request_ctx!r} index {rs.index} < {known} committed "
                    "before the read was issued"
                )
            self.acked_reads += 1

    # -- healing and liveness ------------------------------------------------------------------

    def heal_all(self) -> None:
        """End every fault: heal the partition, restart crashed members, deliver delayed
        messages on time from now on."""
        self.heal()
        for node in list(self.nodes.values()):
            if not node.up and not node.removed:
                self.restart(node.id)

    def settle_round(self) -> None:
        """One fair round: every node handles its Ready, every deliverable message is delivered
        (repeated a few times, so a round covers a request and its response), then a tick."""
        for _ in range(3):
            for node in self.running():
                self.persist(node.id)
                self.handle_ready(node.id)
            while self.net.deliverable(self.now):
                self.deliver(0)
        self.tick_all()

    def check_liveness(self, max_ticks: int) -> int:
        """After ``heal_all``: within ``max_ticks`` ticks there must be a leader whose new
        proposal is applied by every running member of its configuration (so, by the state
        machine checks, they all hold every acknowledged payload). Returns the ticks it took;
        raises SafetyViolation otherwise."""
        probe = b"probe-%d" % self.seed
        asked: set[tuple[int, int]] = set()
        for elapsed in range(max_ticks):
            leader = self._leader()
            if leader is not None:
                if self._probe_everywhere(leader, probe):
                    self._check_nothing_acknowledged_lost(leader)
                    return elapsed
                key = (leader.id, leader.rn.term)
                if key not in asked and not self._probe_committed(probe):
                    self.steps += 1
                    rn = leader.rn
                    if self._call(
                        leader,
                        f"propose {leader.id} {probe.decode()} (liveness probe)",
                        lambda rn=rn: rn.propose(probe),  # type: ignore[misc]
                    ):
                        asked.add(key)
            self.settle_round()
        raise self.fail(f"liveness: no leader with a new commit applied everywhere within {max_ticks} ticks")

    def _leader(self) -> SimNode | None:
        best: SimNode | None = None
        for node in self.running():
            if node.rn.state == StateType.LEADER and (best is None or node.rn.term > best.rn.term):
                best = node
        return best

    def _probe_committed(self, probe: bytes) -> bool:
        return any(e.data == probe for e in self.committed.values())

    def _probe_everywhere(self, leader: SimNode, probe: bytes) -> bool:
        members = set(leader.conf().voters) | set(leader.conf().learners)
        for node_id in members:
            node = self.nodes.get(node_id)
            if node is None or not node.up:
                continue
            if probe not in node.payloads:
                return False
        return True

    def _check_nothing_acknowledged_lost(self, leader: SimNode) -> None:
        """Every running member's state machine holds exactly the committed payloads (which
        may have been acknowledged to clients) up to its applied index, in commit order; with
        the probe applied everywhere, that covers every write acknowledged before healing."""
        for node_id in sorted(set(leader.conf().voters) | set(leader.conf().learners)):
            node = self.nodes.get(node_id)
            if node is None or not node.up:
                continue
            want = [
                e.data
                for i, e in sorted(self.committed.items())
                if i <= node.applied_index and e.type == EntryType.NORMAL and e.data
            ]
            if node.payloads != want:
                lost = [p for p in want if p not in node.payloads]
                raise self.fail(f"node {node_id} lost acknowledged payloads {lost} (has {node.payloads})")


# -- the random walk -------------------------------------------------------------------------

PROGRESS_ACTIONS: dict[str, float] = {
    "deliver": 30,
    "ready": 12,
    "persist": 12,
    "handle_ready": 6,
    "tick_all": 7,
    "tick": 1,
}
"""Steps that move the cluster along, with their relative weights."""

FAULT_ACTIONS: dict[str, float] = {
    "propose": 8,
    "read_index": 6,
    "drop": 2,
    "duplicate": 1,
    "partition": 0.7,
    "split_leader": 1,
    "heal": 1.5,
    "crash": 0.6,
    "restart": 3,
    "compact": 1,
    "add_learner": 0.8,
    "promote": 1,
    "remove": 0.7,
    "transfer": 0.7,
}
"""Client calls, administration and faults, with their relative weights."""

FAULT_SHARE = 0.2
"""The share of steps taken from ``FAULT_ACTIONS``."""

_PROGRESS = (list(PROGRESS_ACTIONS), list(itertools.accumulate(PROGRESS_ACTIONS.values())))
_FAULTS = (list(FAULT_ACTIONS), list(itertools.accumulate(FAULT_ACTIONS.values())))


def random_step(sim: Sim, rng: random.Random) -> None:
    """One step chosen by ``rng``: with probability ``FAULT_SHARE`` a client call, admin call
    or fault (skipped if it cannot act), otherwise a step that moves the cluster along (redrawn
    until one can act; a tick always can). Nodes and messages are picked at random among the
    ones the step can act on; client calls favour the leader."""
    if rng.random() < FAULT_SHARE:
        _try_action(sim, rng, rng.choices(_FAULTS[0], cum_weights=_FAULTS[1])[0])
        return
    while not _try_action(sim, rng, rng.choices(_PROGRESS[0], cum_weights=_PROGRESS[1])[0]):
        pass


def _try_action(sim: Sim, rng: random.Random, action: str) -> bool:
    nodes = sim.nodes
    running = [i for i, n in nodes.items() if n.up]
    if action == "deliver":
        return sim.deliver(0 if rng.random() < 0.5 else rng.randrange(1 << 16))
    if action in ("ready", "handle_ready"):
        ready = [i for i in running if nodes[i].outstanding is None and nodes[i].rn.has_ready()]
        return bool(ready) and getattr(sim, action)(rng.choice(ready))
    if action == "persist":
        outstanding = [i for i in running if nodes[i].outstanding is not None]
        return bool(outstanding) and sim.persist(rng.choice(outstanding))
    if action == "tick_all":
        sim.tick_all()
        return True
    if action in ("drop", "duplicate"):
        return getattr(sim, action)(rng.randrange(1 << 16))
    if action == "partition":
        if sim.net.blocked:
            return False
        sim.partition([i for i in sorted(nodes) if rng.random() < 0.4])
        return True
    if action == "heal":
        if not sim.net.blocked:
            return False
        sim.heal()
        return True
    if action == "restart":
        down = [i for i, n in nodes.items() if not n.up and not n.removed]
        return bool(down) and sim.restart(rng.choice(down))
    if not running:
        return False
    if action == "tick":
        sim.tick(rng.choice(running))
        return True
    if action == "crash":
        return len(running) > 1 and sim.crash(rng.choice(running), rng.random())
    if action == "compact":
        return sim.compact(rng.choice(running), rng.random())
    leaders = [i for i in running if nodes[i].rn.state == StateType.LEADER]
    if action == "split_leader":
        if not leaders or sim.net.blocked:
            return False
        leader = rng.choice(leaders)
        voters = sorted(set(nodes[leader].conf().voters) - {leader})
        return sim.split_leader(leader, rng.sample(voters, max(0, len(voters) // 2 - 1)))
    client = rng.choice(leaders) if leaders and rng.random() < 0.7 else rng.choice(running)
    if action in ("propose", "read_index", "add_learner"):
        return getattr(sim, action)(client)
    if action in ("promote", "remove"):
        return getattr(sim, action)(client, rng.randrange(1 << 16))
    if action == "transfer":
        return sim.transfer(client, rng.choice(sorted(nodes)))
    raise AssertionError(f"unknown action {action}")


def run_random_walk(
    seed: int, steps: int, options: SimOptions | None = None, liveness_ticks: int = 300
) -> Sim:
    """Run ``steps`` random steps from ``seed``, heal, and check liveness. Raises SafetyViolation."""
    sim = Sim(seed, options)
    rng = random.Random(seed ^ 0x5EED)
    with sim.reporting():
        for _ in range(steps):
            random_step(sim, rng)
        sim.heal_all()
        sim.check_liveness(liveness_ticks)
    return sim
