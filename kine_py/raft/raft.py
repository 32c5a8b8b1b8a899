"""The Raft state machine (etcd-raft's ``raft``): terms, elections, replication, commit,
ReadIndex, leader transfer, snapshots and one-at-a-time membership changes.

It is pure: no I/O, no clock, no threads. Inputs are ``step(message)`` and ``tick()``;
outputs accumulate in ``msgs`` (send at once), ``msgs_after_append`` (send, or step if
addressed to this node, only once the log and hard state are durable), ``read_states``
and the log's unstable entries. ``RawNode`` turns them into ``Ready`` batches; tests may
drive a ``Raft`` directly.

``step`` first handles the message's term (stepping down, ignoring stale messages,
answering lease-protected vote requests), then votes and elections, and hands everything
else to the current role's table: ``_LEADER_STEPS``, ``_CANDIDATE_STEPS`` (also for
pre-candidates) or ``_FOLLOWER_STEPS``, one small method per message type. Unknown types
for a role are ignored, as etcd-raft does.

Errors: ``ProposalDroppedError`` for proposals that cannot be appended; storage errors
other than compaction / unavailability propagate (the node must stop); broken invariants
raise ``RaftInvariantError``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace

from kine_py.raft.codec import CodecError, decode_conf_change
from kine_py.raft.config import Config
from kine_py.raft.log import RaftLog, payloads_size
from kine_py.raft.read_only import ReadOnly, stamped_term, term_stamp
from kine_py.raft.storage import Storage
from kine_py.raft.tracker import Progress, ProgressTracker, VoteResult
from kine_py.raft.types import (
    EMPTY_SNAPSHOT,
    NONE,
    CompactedError,
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProgressState,
    ProgressStatus,
    ProposalDroppedError,
    RaftInvariantError,
    ReadState,
    Snapshot,
    SnapshotTemporarilyUnavailableError,
    SoftState,
    StateType,
    Status,
    UnavailableError,
)

MT = MessageType


class CampaignType(enum.Enum):
    PRE_ELECTION = "CampaignPreElection"
    """The pre-vote round of a normal election (when ``pre_vote`` is on)."""
    ELECTION = "CampaignElection"
    """A normal election, after an election timeout or a won pre-vote round."""
    TRANSFER = "CampaignTransfer"
    """An election asked for by the leader (TimeoutNow): no pre-vote, ignores leases."""


CAMPAIGN_TRANSFER_CONTEXT = CampaignType.TRANSFER.value.encode()
"""The context of vote requests of a transfer campaign (lets voters bypass their lease)."""

_VOTE_TYPES = frozenset({MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP})
_TERMLESS_TYPES = frozenset({MT.PROP, MT.READ_INDEX})
_PERSISTED_TYPES = frozenset({MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP})
_LEADER_MESSAGES = frozenset({MT.APP, MT.HEARTBEAT, MT.SNAP})

StepHandler = Callable[["Raft", Message], None]


def _removes_voter(cc: ConfChange) -> bool:
    """Whether ``cc`` takes its node out of the voters (if it is one)."""
    return cc.type in (ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER_NODE)


def vote_resp_type(t: MessageType) -> MessageType:
    """The response type of a vote request type."""
    if t == MT.VOTE:
        return MT.VOTE_RESP
    if t == MT.PRE_VOTE:
        return MT.PRE_VOTE_RESP
    raise RaftInvariantError(f"not a vote message: {t.name}")


class Raft:
    """One node's Raft state. Attributes are public for ``RawNode`` and tests; only the
    methods of this class change them."""

    __slots__ = (
        "_steps",
        "_tick",
        "check_quorum",
        "disable_proposal_forwarding",
        "drop_stale_acks",
        "election_elapsed",
        "election_timeout",
        "forwarder_read_ack",
        "heartbeat_elapsed",
        "heartbeat_timeout",
        "id",
        "is_learner",
        "lead",
        "lead_transferee",
        "logger",
        "max_msg_size",
        "max_uncommitted_size",
        "msgs",
        "msgs_after_append",
        "pending_conf_index",
        "pending_read_index_messages",
        "pre_vote",
        "raft_log",
        "rand",
        "randomized_election_timeout",
        "read_only",
        "read_states",
        "state",
        "step_down_on_removal",
        "term",
        "trk",
        "uncommitted_size",
        "vote",
    )

    def __init__(self, config: Config, storage: Storage) -> None:
        """Restore the node from ``storage`` (hard state, configuration, log) as a follower.
        Raises ValueError for an invalid config, RaftInvariantError for an inconsistent
        stored state."""
        config.validate()
        self.id = config.id
        self.logger = config.make_logger()
        self.rand = config.make_rand()
        self.raft_log = RaftLog(storage, self.logger, max(config.max_size_per_msg, 1))
        self.max_msg_size = config.max_size_per_msg
        self.max_uncommitted_size = config.max_uncommitted_entries_size
        self.trk = ProgressTracker(config.max_inflight_msgs)
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self.disable_proposal_forwarding = config.disable_proposal_forwarding
        self.step_down_on_removal = config.step_down_on_removal
        self.forwarder_read_ack = config.forwarder_read_ack
        self.drop_stale_acks = config.drop_stale_acks
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self._steps: dict[MessageType, StepHandler] = _FOLLOWER_STEPS
        self._tick: Callable[[], None] = self.tick_election
        self._restore_initial_state(storage, config.applied)

    def _restore_initial_state(self, storage: Storage, applied: int) -> None:
        hs, cs = storage.initial_state()
        self.trk.restore(cs, self.raft_log.last_index())
        self._switch_to_config()
        if not hs.is_empty():
            self.load_state(hs)
        if applied > 0:
            self.raft_log.applied_to(applied, 0)
        self.become_follower(self.term, NONE)
        self.logger.info(
            "newRaft %x [peers: [%s], term: %d, commit: %d, applied: %d, lastindex: %d, lastterm: %d]",
            self.id,
            ",".join(f"{i:x}" for i in self.trk.voter_nodes()),
            self.term,
            self.raft_log.committed,
            self.raft_log.applied,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
        )

    # -- state snapshots -------------------------------------------------------------------

    def has_leader(self) -> bool:
        return self.lead != NONE

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def status(self) -> Status:
        """The node's state; ``progress`` only on a leader."""
        progress: dict[int, ProgressStatus] = {}
        if self.state == StateType.LEADER:
            progress = {i: pr.status() for i, pr in self.trk.visit()}
        return Status(
            id=self.id,
            hard_state=self.hard_state(),
            soft_state=self.soft_state(),
            applied=self.raft_log.applied,
            lead_transferee=self.lead_transferee,
            progress=progress,
            conf_state=self.trk.conf_state(),
        )

    def load_state(self, hs: HardState) -> None:
        """Adopt a persisted hard state (on restart)."""
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise RaftInvariantError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # -- sending ----------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue ``m``: votes and append acks (which promise durable state) go to
        ``msgs_after_append``, everything else to ``msgs``. Fills in ``from_`` and the term."""
        if m.from_ == NONE:
            m = replace(m, from_=self.id)
        t = m.type
        if t in _VOTE_TYPES:
            if m.term == 0:
                raise RaftInvariantError(f"term should be set when sending {t.name}")
        elif t not in _TERMLESS_TYPES and m.term != self.term:
            m = replace(m, term=self.term)
        if t in _PERSISTED_TYPES:
            self.msgs_after_append.append(m)
            return
        if m.to == self.id:
            raise RaftInvariantError(f"message should not be self-addressed when sending {t.name}")
        self.msgs.append(m)

    def _reply(
        self,
        t: MessageType,
        to: int,
        *,
        index: int = 0,
        log_term: int = 0,
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        context: bytes = b"",
        entries: tuple[Entry, ...] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Send a message of this term from this node."""
        self.send(
            Message(
                t,
                to=to,
                from_=self.id,
                term=self.term,
                log_term=log_term,
                index=index,
                entries=entries,
                commit=commit,
                snapshot=snapshot,
                reject=reject,
                reject_hint=reject_hint,
                context=context,
            )
        )

    def send_append(self, to: int) -> None:
        """Send ``to`` the entries it is missing (or an empty append carrying the commit)."""
        self.maybe_send_append(to, send_if_empty=True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send an append (or a snapshot) to ``to`` if flow control allows; True if sent.
        Without ``send_if_empty`` an append with no entries is not sent."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.raft_log.term(prev_index)
        except (CompactedError, UnavailableError):
            return self.maybe_send_snapshot(to, pr)
        ents: list[Entry] = []
        if pr.state != ProgressState.REPLICATE or not pr.inflights.full():
            try:
                ents = self.raft_log.entries(pr.next, self.max_msg_size)
            except CompactedError:
                return self.maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        commit = self.raft_log.committed
        self.send(
            Message(
                MT.APP,
                to=to,
                from_=self.id,
                term=self.term,
                log_term=prev_term,
                index=prev_index,
                entries=tuple(ents),
                commit=commit,
            )
        )
        pr.sent_entries(len(ents))
        pr.sent_commit(commit)
        return True

    def maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        """Send ``to`` the latest snapshot (it needs compacted entries); True if sent."""
        if not pr.recent_active:
            self.logger.debug("ignore sending snapshot to %x since it is not recently active", to)
            return False
        try:
            snapshot = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            self.logger.debug(
                "%x failed to send snapshot to %x because it is temporarily unavailable", self.id, to
            )
            return False
        if snapshot.is_empty():
            raise RaftInvariantError("need non-empty snapshot")
        meta = snapshot.metadata
        self.logger.debug(
            "%x [firstindex: %d, commit: %d] sent snapshot[index: %d, term: %d] to %x [%r]",
            self.id,
            self.raft_log.first_index(),
            self.raft_log.committed,
            meta.index,
            meta.term,
            to,
            pr,
        )
        pr.become_snapshot(meta.index)
        self._reply(MT.SNAP, to, snapshot=snapshot)
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        """Heartbeat ``to``, carrying the commit index (never past what it is known to hold)."""
        pr = self.trk.progress[to]
        commit = min(pr.match, self.raft_log.committed)
        self._reply(MT.HEARTBEAT, to, commit=commit, context=ctx)
        pr.sent_commit(commit)

    def bcast_append(self) -> None:
        for node_id, _ in self.trk.visit():
            if node_id != self.id:
                self.send_append(node_id)

    def bcast_heartbeat(self) -> None:
        """Heartbeat every peer; the context confirms all queued ReadIndex requests."""
        ctx = self.read_only.heartbeat_ctx()
        for node_id, _ in self.trk.visit():
            if node_id != self.id:
                self.send_heartbeat(node_id, ctx)

    def send_timeout_now(self, to: int) -> None:
        self._reply(MT.TIMEOUT_NOW, to)

    # -- log positions ------------------------------------------------------------------------

    def applied_to(self, index: int, size: int) -> None:
        self.raft_log.applied_to(max(index, self.raft_log.applied), size)

    def applied_snap(self, snap: Snapshot) -> None:
        index = snap.metadata.index
        self.raft_log.stable_snap_to(index)
        self.applied_to(index, 0)

    def storage_appended(self, index: int, log_term: int, ready_term: int, snap: Snapshot | None) -> None:
        """The driver made durable the log up to ``(index, log_term)`` (0: no entries) and
        ``snap``, as handed out while the term was ``ready_term``."""
        if ready_term < self.term:
            if index != 0:
                self.logger.info(
                    "%x [term: %d] ignored entry appends from a storage write with lower term [term: %d]",
                    self.id,
                    self.term,
                    ready_term,
                )
        elif index != 0:
            self.raft_log.stable_to(index, log_term)
        if snap is not None:
            self.applied_snap(snap)

    def entries_applied(self, index: int, size: int, payload: int) -> None:
        """The driver applied the committed entries up to ``index`` it was handed."""
        self.applied_to(index, size)
        self.reduce_uncommitted_size(payload)

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum holds (entries of this term only)."""
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    # -- roles --------------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        """Start ``term`` (forgetting the vote if it is a new one) with fresh timers,
        progress, votes and read queue."""
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        prs = self.trk.progress
        for node_id, old in prs.items():
            pr = Progress(
                match=0, next=last + 1, max_inflight=self.trk.max_inflight, is_learner=old.is_learner
            )
            if node_id == self.id:
                pr.match = last
            prs[node_id] = pr
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: int) -> None:
        self._steps = _FOLLOWER_STEPS
        self.reset(term)
        self._tick = self.tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self.logger.info("%x became follower at term %d", self.id, self.term)

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise RaftInvariantError("invalid transition [leader -> candidate]")
        self._steps = _CANDIDATE_STEPS
        self.reset(self.term + 1)
        self._tick = self.tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self.logger.info("%x became candidate at term %d", self.id, self.term)

    def become_pre_candidate(self) -> None:
        """Ask for pre-votes without touching the term or the vote."""
        if self.state == StateType.LEADER:
            raise RaftInvariantError("invalid transition [leader -> pre-candidate]")
        self._steps = _CANDIDATE_STEPS
        self.trk.reset_votes()
        self._tick = self.tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self.logger.info("%x became pre-candidate at term %d", self.id, self.term)

    def become_leader(self) -> None:
        """Lead this term: everyone is probed, and an empty entry of the term is appended so
        that the commit rule can be met."""
        if self.state == StateType.FOLLOWER:
            raise RaftInvariantError("invalid transition [follower -> leader]")
        self._steps = _LEADER_STEPS
        self.reset(self.term)
        self._tick = self.tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # A conf change may hide in the uncommitted tail: refuse new ones until it is applied.
        self.pending_conf_index = self.raft_log.last_index()
        if not self.append_entry([Entry(term=0, index=0)]):
            raise RaftInvariantError("empty entry was dropped")
        self.logger.info("%x became leader at term %d", self.id, self.term)

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter, not restoring a snapshot."""
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_next_or_in_progress_snapshot()

    # -- ticks ---------------------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def tick_election(self) -> None:
        """Followers and candidates: campaign after the randomized election timeout."""
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.HUP, from_=self.id))

    def tick_heartbeat(self) -> None:
        """Leaders: heartbeat every heartbeat timeout; every election timeout check the quorum
        and give up a leader transfer that did not finish."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, from_=self.id))
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, from_=self.id))

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(self.election_timeout)

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # -- elections -----------------------------------------------------------------------------

    def hup(self, t: CampaignType) -> None:
        """Start an election unless leading, unable to campaign, or a committed conf change
        is not applied yet (it could change who may vote)."""
        if self.state == StateType.LEADER:
            self.logger.debug("%x ignoring MsgHup because already leader", self.id)
            return
        if not self.promotable():
            self.logger.warning("%x is unpromotable and can not campaign", self.id)
            return
        if self.has_unapplied_conf_changes():
            self.logger.warning(
                "%x cannot campaign at term %d since there are still pending configuration changes to apply",
                self.id,
                self.term,
            )
            return
        self.logger.info("%x is starting a new election at term %d", self.id, self.term)
        self.campaign(t)

    def has_unapplied_conf_changes(self) -> bool:
        log = self.raft_log
        lo, hi = log.applied + 1, log.committed + 1
        while lo < hi:
            ents = log.slice(lo, hi, log.max_applying_ents_size)
            if any(e.type == EntryType.CONF_CHANGE for e in ents):
                return True
            lo = ents[-1].index + 1
        return False

    def campaign(self, t: CampaignType) -> None:
        """Become (pre-)candidate and ask every voter; the own vote counts once durable."""
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_msg, term = MT.VOTE, self.term
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        ctx = CAMPAIGN_TRANSFER_CONTEXT if t == CampaignType.TRANSFER else b""
        for node_id in self.trk.voter_nodes():
            if node_id == self.id:
                self.send(Message(vote_resp_type(vote_msg), to=node_id, from_=self.id, term=term))
                continue
            self.logger.info(
                "%x [logterm: %d, index: %d] sent %s request to %x at term %d",
                self.id,
                last_term,
                last_index,
                vote_msg.name,
                node_id,
                self.term,
            )
            self.send(
                Message(
                    vote_msg,
                    to=node_id,
                    from_=self.id,
                    term=term,
                    log_term=last_term,
                    index=last_index,
                    context=ctx,
                )
            )

    def poll(self, node_id: int, t: MessageType, granted: bool) -> tuple[int, int, VoteResult]:
        if granted:
            self.logger.info("%x received %s from %x at term %d", self.id, t.name, node_id, self.term)
        else:
            self.logger.info(
                "%x received %s rejection from %x at term %d", self.id, t.name, node_id, self.term
            )
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()

    # -- step ------------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message (remote, or local such as HUP/BEAT with term 0)."""
        if m.term == 0:
            pass
        elif m.term > self.term:
            if not self._step_higher_term(m):
                return
        elif m.term < self.term:
            self._step_lower_term(m)
            return
        t = m.type
        if t == MT.HUP:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif t == MT.VOTE or t == MT.PRE_VOTE:
            self._step_vote(m)
        else:
            handler = self._steps.get(t)
            if handler is not None:
                handler(self, m)

    def _step_higher_term(self, m: Message) -> bool:
        """A message from a later term; returns False if it is to be ignored."""
        t = m.type
        if t == MT.VOTE or t == MT.PRE_VOTE:
            force = m.context == CAMPAIGN_TRANSFER_CONTEXT
            in_lease = (
                self.check_quorum and self.lead != NONE and self.election_elapsed < self.election_timeout
            )
            if not force and in_lease:
                # A node that heard from a leader within the minimum election timeout neither
                # updates its term nor grants a vote (thesis 4.2.3).
                self.logger.info(
                    "%x [logterm: %d, index: %d, vote: %x] ignored %s from %x [logterm: %d, index: %d] "
                    "at term %d: lease is not expired (remaining ticks: %d)",
                    self.id,
                    self.raft_log.last_term(),
                    self.raft_log.last_index(),
                    self.vote,
                    t.name,
                    m.from_,
                    m.log_term,
                    m.index,
                    self.term,
                    self.election_timeout - self.election_elapsed,
                )
                return False
        if t == MT.PRE_VOTE or (t == MT.PRE_VOTE_RESP and not m.reject):
            # Pre-votes never change the term: the request carries the term the candidate
            # would campaign at, a granted answer echoes it.
            return True
        self.logger.info(
            "%x [term: %d] received a %s message with higher term from %x [term: %d]",
            self.id,
            self.term,
            t.name,
            m.from_,
            m.term,
        )
        self.become_follower(m.term, m.from_ if t in _LEADER_MESSAGES else NONE)
        return True

    def _step_lower_term(self, m: Message) -> None:
        """A message from an earlier term: ignored, except that an old leader is told about
        the new term (with check-quorum or pre-vote a node may not learn it otherwise) and
        an old pre-candidate gets a rejection."""
        t = m.type
        if (self.check_quorum or self.pre_vote) and (t == MT.HEARTBEAT or t == MT.APP):
            self._reply(MT.APP_RESP, m.from_)
        elif t == MT.PRE_VOTE:
            self.logger.info(
                "%x [logterm: %d, index: %d, vote: %x] rejected %s from %x [logterm: %d, index: %d] "
                "at term %d",
                self.id,
                self.raft_log.last_term(),
                self.raft_log.last_index(),
                self.vote,
                t.name,
                m.from_,
                m.log_term,
                m.index,
                self.term,
            )
            self._reply(MT.PRE_VOTE_RESP, m.from_, reject=True)
        else:
            self.logger.info(
                "%x [term: %d] ignored a %s message with lower term from %x [term: %d]",
                self.id,
                self.term,
                t.name,
                m.from_,
                m.term,
            )

    def _step_vote(self, m: Message) -> None:
        """Grant a (pre-)vote if we may vote for the candidate and its log is up to date.
        Learners vote too: the candidate may know them as promoted already."""
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        last_term, last_index = self.raft_log.last_term(), self.raft_log.last_index()
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self.logger.info(
                "%x [logterm: %d, index: %d, vote: %x] cast %s for %x [logterm: %d, index: %d] at term %d",
                self.id,
                last_term,
                last_index,
                self.vote,
                m.type.name,
                m.from_,
                m.log_term,
                m.index,
                self.term,
            )
            # Answer with the request's term: for a pre-vote ours may be older, and the
            # pre-candidate ignores messages from older terms.
            self.send(Message(vote_resp_type(m.type), to=m.from_, from_=self.id, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.logger.info(
                "%x [logterm: %d, index: %d, vote: %x] rejected %s from %x [logterm: %d, index: %d] "
                "at term %d",
                self.id,
                last_term,
                last_index,
                self.vote,
                m.type.name,
                m.from_,
                m.log_term,
                m.index,
                self.term,
            )
            if self.term == 0:
                # Only a pre-vote gets here at term 0 (a vote moves us to its term first). A
                # rejection has no term to carry: etcd-raft nodes bootstrap at term 1, ours at
                # 0. Drop it; the pre-candidate retries after its election timeout.
                return
            self.send(Message(vote_resp_type(m.type), to=m.from_, from_=self.id, term=self.term, reject=True))

    # -- leader ------------------------------------------------------------------------------------

    def _leader_beat(self, m: Message) -> None:
        self.bcast_heartbeat()

    def _leader_check_quorum(self, m: Message) -> None:
        if not self.trk.quorum_active():
            self.logger.warning("%x stepped down to follower since quorum is not active", self.id)
            self.become_follower(self.term, NONE)
        for node_id, pr in self.trk.visit():
            if node_id != self.id:
                pr.recent_active = False

    def _leader_prop(self, m: Message) -> None:
        if not m.entries:
            raise RaftInvariantError(f"{self.id:x} stepped empty MsgProp")
        if self.id not in self.trk.progress:
            raise ProposalDroppedError("this node was removed from the configuration")
        if self.lead_transferee != NONE:
            self.logger.debug(
                "%x [term %d] transfer leadership to %x is in progress; dropping proposal",
                self.id,
                self.term,
                self.lead_transferee,
            )
            raise ProposalDroppedError("leadership transfer in progress")
        entries = list(m.entries)
        for i, e in enumerate(entries):
            if e.type != EntryType.CONF_CHANGE:
                continue
            refusal = self._conf_change_refusal(e)
            if refusal is None:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
                continue
            self.logger.info(
                "%x ignoring conf change at config %r: %s", self.id, self.trk.conf_state(), refusal
            )
            if m.from_ in (NONE, self.id):
                raise ProposalDroppedError(refusal)
            # A forwarded batch keeps its shape: the refused change becomes a no-op entry.
            entries[i] = Entry(term=0, index=0)
        if not self.append_entry(entries):
            raise ProposalDroppedError("uncommitted entries size limit reached")
        self.bcast_append()

    def _conf_change_refusal(self, e: Entry) -> str | None:
        """Why a proposed conf change is refused now, or None."""
        if self.pending_conf_index > self.raft_log.applied:
            return (
                f"possible unapplied conf change at index {self.pending_conf_index} "
                f"(applied to {self.raft_log.applied})"
            )
        try:
            cc = decode_conf_change(e.data)
        except CodecError as exc:
            return f"undecodable conf change: {exc}"
        if _removes_voter(cc) and self.trk.voters == {cc.node_id}:
            return "it would remove the last voter"
        return None

    def append_entry(self, entries: list[Entry]) -> bool:
        """Append proposals at this term; False if over the uncommitted size limit. The
        leader's own ack is queued to be stepped once the entries are durable."""
        li = self.raft_log.last_index()
        term = self.term
        es = [Entry(term=term, index=li + 1 + i, type=e.type, data=e.data) for i, e in enumerate(entries)]
        if not self.increase_uncommitted_size(es):
            self.logger.warning(
                "%x appending new entries to log would exceed uncommitted entry size limit; "
                "dropping proposal",
                self.id,
            )
            return False
        li = self.raft_log.append(es)
        self.send(Message(MT.APP_RESP, to=self.id, from_=self.id, term=term, index=li))
        return True

    def increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        """Account for new uncommitted entries; False if they would pass the limit. Entries
        without data, and anything when the tail is empty, are always accepted."""
        s = payloads_size(ents)
        limit = self.max_uncommitted_size
        if limit and self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > limit:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, s: int) -> None:
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    def _leader_read_index(self, m: Message) -> None:
        if not m.entries:
            return
        if self.trk.is_singleton():
            self._answer_read(m, self.raft_log.committed)
            return
        if not self.committed_entry_in_current_term():
            # The commit index of a new leader may be behind: wait for an entry of its term.
            self.pending_read_index_messages.append(m)
            return
        self._queue_read(m)

    def _queue_read(self, m: Message) -> None:
        """Queue a read at the current commit index and confirm it with a heartbeat round.

        A read forwarded by a voter whose term stamp is this leader's term also counts as
        that voter's acknowledgement (``Config.forwarder_read_ack``). Why that is safe: the
        follower stamped the request after the read began, at term T, so it had not voted
        in any later term when the read began; neither had this leader, still at T now. A
        leader of a later term needs the vote of a majority, so if a majority acknowledged
        (each ack sent at term T after the read began), no later leader existed before the
        read began and every write acknowledged before it was committed at T or earlier:
        at or below this commit index (this leader has committed an entry of its term). The
        heartbeat acks give the same guarantee from the other side: sent after the leader
        queued the read. If the stamp alone makes a majority, no heartbeat round is needed.
        """
        self.read_only.add_request(self.raft_log.committed, m)
        ctx = self.read_only.heartbeat_ctx()
        self.read_only.recv_ack(self.id, ctx)
        forwarded = m.from_ not in (NONE, self.id)
        if self.forwarder_read_ack and forwarded and stamped_term(m.context) == self.term:
            self.read_only.recv_ack(m.from_, ctx)
            for rs in self.read_only.maybe_advance(self.trk.voters):
                self._answer_read(rs.req, rs.index)
            if not self.read_only.unconfirmed_reads:
                return
        self.bcast_heartbeat()

    def release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self.committed_entry_in_current_term():
            return
        msgs, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in msgs:
            self._queue_read(m)

    def _answer_read(self, req: Message, read_index: int) -> None:
        """A confirmed read: a ``ReadState`` if it is ours, else a response to the follower."""
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=read_index, request_ctx=req.entries[0].data))
            return
        self._reply(MT.READ_INDEX_RESP, req.from_, index=read_index, entries=req.entries)

    def _peer(self, m: Message) -> Progress | None:
        pr = self.trk.progress.get(m.from_)
        if pr is None:
            self.logger.debug("%x no progress available for %x", self.id, m.from_)
        return pr

    def _leader_app_resp(self, m: Message) -> None:
        pr = self._peer(m)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            self._handle_append_rejection(m, pr)
            return
        if not (pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # Whatever snapshot the peer applied, the log can continue from there.
            self.logger.debug(
                "%x recovered from needing snapshot, resumed replication to %x", self.id, m.from_
            )
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.release_pending_read_index_messages()
            self.bcast_append()
        elif m.from_ != self.id and pr.can_bump_commit(self.raft_log.committed):
            self.send_append(m.from_)
        if m.from_ != self.id:
            while self.maybe_send_append(m.from_, send_if_empty=False):
                pass
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            self.logger.info("%x sent MsgTimeoutNow to %x after received MsgAppResp", self.id, m.from_)
            self.send_timeout_now(m.from_)

    def _handle_append_rejection(self, m: Message, pr: Progress) -> None:
        """Back off ``next`` after a rejected append. The peer hints ``(reject_hint,
        log_term)``: the largest index where its log has a term ``<=`` the probe's term.
        Every index of ours after the last one with a term ``<= log_term`` must mismatch
        too, so the next probe skips to it: at most one probe per term."""
        self.logger.debug(
            "%x received MsgAppResp(rejected, hint: (index %d, term %d)) from %x for index %d",
            self.id,
            m.reject_hint,
            m.log_term,
            m.from_,
            m.index,
        )
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            self.logger.debug("%x decreased progress of %x to [%r]", self.id, m.from_, pr)
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self.send_append(m.from_)

    def _leader_heartbeat_resp(self, m: Message) -> None:
        pr = self._peer(m)
        if pr is None:
            return
        pr.recent_active = True
        pr.msg_app_probes_paused = False
        # Also when all in-flight appends were lost (an empty append gets acked or rejected
        # and frees the window), and to move a caught-up probing peer back to REPLICATE.
        if pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
            self.send_append(m.from_)
        if not m.context:
            return
        self.read_only.recv_ack(m.from_, m.context)
        for rs in self.read_only.maybe_advance(self.trk.voters):
            self._answer_read(rs.req, rs.index)

    def _leader_snap_status(self, m: Message) -> None:
        pr = self._peer(m)
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            # Forget the snapshot first, or probing would resume after it.
            pr.pending_snapshot = 0
            pr.become_probe()
            self.logger.debug(
                "%x snapshot failed, resumed sending replication messages to %x", self.id, m.from_
            )
        else:
            pr.become_probe()
            self.logger.debug(
                "%x snapshot succeeded, resumed sending replication messages to %x", self.id, m.from_
            )
        # Wait for the peer's append response (or a heartbeat interval) before the next append.
        pr.msg_app_probes_paused = True

    def _leader_unreachable(self, m: Message) -> None:
        pr = self._peer(m)
        if pr is None:
            return
        # An append in flight was probably lost.
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()
        self.logger.debug(
            "%x failed to send message to %x because it is unreachable [%r]", self.id, m.from_, pr
        )

    def _leader_transfer_leader(self, m: Message) -> None:
        pr = self._peer(m)
        if pr is None:
            return
        if pr.is_learner:
            self.logger.debug("%x is learner. Ignored transferring leadership", m.from_)
            return
        transferee = m.from_
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                self.logger.info(
                    "%x [term %d] transfer leadership to %x is in progress, ignores request to same node %x",
                    self.id,
                    self.term,
                    transferee,
                    transferee,
                )
                return
            self.logger.info(
                "%x [term %d] abort previous transferring leadership to %x",
                self.id,
                self.term,
                self.lead_transferee,
            )
            self.abort_leader_transfer()
        if transferee == self.id:
            self.logger.debug("%x is already leader. Ignored transferring leadership to self", self.id)
            return
        self.logger.info("%x [term %d] starts to transfer leadership to %x", self.id, self.term, transferee)
        # The transfer must finish within an election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self.send_timeout_now(transferee)
            self.logger.info(
                "%x sends MsgTimeoutNow to %x immediately as %x already has up-to-date log",
                self.id,
                transferee,
                transferee,
            )
        else:
            self.send_append(transferee)

    # -- candidate (and pre-candidate) -----------------------------------------------------------

    def _candidate_prop(self, m: Message) -> None:
        self.logger.info("%x no leader at term %d; dropping proposal", self.id, self.term)
        raise ProposalDroppedError("no leader")

    def _candidate_app(self, m: Message) -> None:
        self.become_follower(m.term, m.from_)
        self.handle_append_entries(m)

    def _candidate_heartbeat(self, m: Message) -> None:
        self.become_follower(m.term, m.from_)
        self.handle_heartbeat(m)

    def _candidate_snap(self, m: Message) -> None:
        self.become_follower(m.term, m.from_)
        self.handle_snapshot(m)

    def _candidate_vote_resp(self, m: Message) -> None:
        # A candidate may still get pre-vote answers of its pre-candidate phase: skip them.
        mine = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type != mine:
            return
        granted, rejected, result = self.poll(m.from_, m.type, not m.reject)
        self.logger.info(
            "%x has received %d %s votes and %d vote rejections", self.id, granted, m.type.name, rejected
        )
        if result == VoteResult.WON:
            if self.state == StateType.PRE_CANDIDATE:
                self.campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
                self.bcast_append()
        elif result == VoteResult.LOST:
            # A rejected pre-vote may carry a later term; we stay at ours.
            self.become_follower(self.term, NONE)

    def _candidate_timeout_now(self, m: Message) -> None:
        self.logger.debug(
            "%x [term %d state %s] ignored MsgTimeoutNow from %x",
            self.id,
            self.term,
            self.state.name,
            m.from_,
        )

    # -- follower ----------------------------------------------------------------------------------

    def _follower_prop(self, m: Message) -> None:
        if self.lead == NONE:
            self.logger.info("%x no leader at term %d; dropping proposal", self.id, self.term)
            raise ProposalDroppedError("no leader")
        if self.disable_proposal_forwarding:
            self.logger.info(
                "%x not forwarding to leader %x at term %d; dropping proposal", self.id, self.lead, self.term
            )
            raise ProposalDroppedError("proposal forwarding is disabled")
        self.send(replace(m, to=self.lead))

    def _follower_app(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.from_
        self.handle_append_entries(m)

    def _follower_heartbeat(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.from_
        self.handle_heartbeat(m)

    def _follower_snap(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.from_
        self.handle_snapshot(m)

    def _follower_transfer_leader(self, m: Message) -> None:
        if self.lead == NONE:
            self.logger.info("%x no leader at term %d; dropping leader transfer msg", self.id, self.term)
            return
        self.send(replace(m, to=self.lead))

    def _follower_timeout_now(self, m: Message) -> None:
        self.logger.info(
            "%x [term %d] received MsgTimeoutNow from %x and starts an election to get leadership.",
            self.id,
            self.term,
            m.from_,
        )
        # The leader asked: no partition to recover from, so no pre-vote round.
        self.hup(CampaignType.TRANSFER)

    def _follower_read_index(self, m: Message) -> None:
        if self.lead == NONE:
            self.logger.info("%x no leader at term %d; dropping index reading msg", self.id, self.term)
            return
        stamp = term_stamp(self.term) if self.forwarder_read_ack else m.context
        self.send(replace(m, to=self.lead, context=stamp))

    def _follower_read_index_resp(self, m: Message) -> None:
        if len(m.entries) != 1:
            self.logger.error(
                "%x invalid format of MsgReadIndexResp from %x, entries count: %d",
                self.id,
                m.from_,
                len(m.entries),
            )
            return
        self.read_states.append(ReadState(index=m.index, request_ctx=m.entries[0].data))

    def forget_leader(self) -> None:
        """A follower forgets its leader (e.g. known to be gone), so it may grant votes at
        once instead of waiting out its lease; a no-op for other roles."""
        if self.state == StateType.FOLLOWER and self.lead != NONE:
            self.logger.info("%x forgetting leader %x at term %d", self.id, self.lead, self.term)
            self.lead = NONE

    # -- receiving the log -------------------------------------------------------------------------

    def handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            self._reply(MT.APP_RESP, m.from_, index=log.committed)
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._reply(MT.APP_RESP, m.from_, index=last_new)
            return
        self.logger.debug(
            "%x [logterm: %d, index: %d] rejected MsgApp [logterm: %d, index: %d] from %x",
            self.id,
            log.term_or_zero(m.index),
            m.index,
            m.log_term,
            m.index,
            m.from_,
        )
        # Hint where the logs may agree: the last index <= m.index whose term is <= the
        # probe's term, which skips our divergent tail of later terms in one round trip.
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._reply(
            MT.APP_RESP, m.from_, index=m.index, reject=True, reject_hint=hint_index, log_term=hint_term
        )

    def handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self._reply(MT.HEARTBEAT_RESP, m.from_, context=m.context)

    def handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot if m.snapshot is not None else EMPTY_SNAPSHOT
        meta = snap.metadata
        if self.restore(snap):
            self.logger.info(
                "%x [commit: %d] restored snapshot [index: %d, term: %d]",
                self.id,
                self.raft_log.committed,
                meta.index,
                meta.term,
            )
            self._reply(MT.APP_RESP, m.from_, index=self.raft_log.last_index())
        else:
            self.logger.info(
                "%x [commit: %d] ignored snapshot [index: %d, term: %d]",
                self.id,
                self.raft_log.committed,
                meta.index,
                meta.term,
            )
            self._reply(MT.APP_RESP, m.from_, index=self.raft_log.committed)

    def restore(self, snap: Snapshot) -> bool:
        """Adopt ``snap`` as the log's new base and its configuration; False if it is not
        newer than our commit index, or our log already contains its last entry (then only
        the commit index moves)."""
        meta = snap.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            self.logger.warning("%x attempted to restore snapshot as leader; should never happen", self.id)
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in cs.voters and self.id not in cs.learners:
            self.logger.warning(
                "%x attempted to restore snapshot but it is not in the ConfState %r; should never happen",
                self.id,
                cs,
            )
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            self.logger.info(
                "%x [commit: %d, lastindex: %d, lastterm: %d] fast-forwarded commit to snapshot "
                "[index: %d, term: %d]",
                self.id,
                self.raft_log.committed,
                self.raft_log.last_index(),
                self.raft_log.last_term(),
                meta.index,
                meta.term,
            )
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(snap)
        self.trk = ProgressTracker(self.trk.max_inflight)
        self.trk.restore(cs, self.raft_log.last_index())
        self._switch_to_config()
        self.logger.info(
            "%x [commit: %d, lastindex: %d, lastterm: %d] restored snapshot [index: %d, term: %d]",
            self.id,
            self.raft_log.committed,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
            meta.index,
            meta.term,
        )
        return True

    # -- membership --------------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change (one at a time, no joint consensus) and return the
        new configuration. ``node_id`` NONE means the application cancelled the change.
        Raises ConfChangeError (and changes nothing) if no voter would remain."""
        if cc.node_id != NONE:
            self._apply_simple_change(cc)
        return self._switch_to_config()

    def _apply_simple_change(self, cc: ConfChange) -> None:
        trk, node_id, t = self.trk, cc.node_id, cc.type
        if _removes_voter(cc) and trk.voters == {node_id}:
            raise ConfChangeError(f"{t.name} {node_id:x} would remove all voters")
        last = self.raft_log.last_index()
        if t == ConfChangeType.ADD_NODE:
            self._make_voter(node_id, last)
        elif t == ConfChangeType.ADD_LEARNER_NODE:
            self._make_learner(node_id, last)
        elif t == ConfChangeType.REMOVE_NODE:
            trk.voters.discard(node_id)
            trk.learners.discard(node_id)
            trk.progress.pop(node_id, None)

    def _make_voter(self, node_id: int, last_index: int) -> None:
        trk = self.trk
        pr = trk.progress.get(node_id)
        if pr is None:
            trk.init_progress(node_id, last_index, is_learner=False)
        elif node_id in trk.learners:
            trk.learners.remove(node_id)
            trk.voters.add(node_id)
            pr.is_learner = False

    def _make_learner(self, node_id: int, last_index: int) -> None:
        trk = self.trk
        pr = trk.progress.get(node_id)
        if pr is None:
            trk.init_progress(node_id, last_index, is_learner=True)
        elif node_id in trk.voters:
            trk.voters.remove(node_id)
            trk.learners.add(node_id)
            pr.is_learner = True

    def _switch_to_config(self) -> ConfState:
        """React to the configuration now in ``trk``: learner status, a removed leader steps
        down, a leader commits what the new quorum allows and probes new members."""
        cs = self.trk.conf_state()
        self.logger.info("%x switched to configuration %r", self.id, cs)
        pr = self.trk.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            self.release_pending_read_index_messages()
            self.bcast_append()
        else:
            for node_id, _ in self.trk.visit():
                if node_id != self.id:
                    self.maybe_send_append(node_id, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.trk.voters:
            self.abort_leader_transfer()
        return cs


_LEADER_STEPS: dict[MessageType, StepHandler] = {
    MT.BEAT: Raft._leader_beat,
    MT.CHECK_QUORUM: Raft._leader_check_quorum,
    MT.PROP: Raft._leader_prop,
    MT.READ_INDEX: Raft._leader_read_index,
    MT.APP_RESP: Raft._leader_app_resp,
    MT.HEARTBEAT_RESP: Raft._leader_heartbeat_resp,
    MT.SNAP_STATUS: Raft._leader_snap_status,
    MT.UNREACHABLE: Raft._leader_unreachable,
    MT.TRANSFER_LEADER: Raft._leader_transfer_leader,
}

_CANDIDATE_STEPS: dict[MessageType, StepHandler] = {
    MT.PROP: Raft._candidate_prop,
    MT.APP: Raft._candidate_app,
    MT.HEARTBEAT: Raft._candidate_heartbeat,
    MT.SNAP: Raft._candidate_snap,
    MT.VOTE_RESP: Raft._candidate_vote_resp,
    MT.PRE_VOTE_RESP: Raft._candidate_vote_resp,
    MT.TIMEOUT_NOW: Raft._candidate_timeout_now,
}

_FOLLOWER_STEPS: dict[MessageType, StepHandler] = {
    MT.PROP: Raft._follower_prop,
    MT.APP: Raft._follower_app,
    MT.HEARTBEAT: Raft._follower_heartbeat,
    MT.SNAP: Raft._follower_snap,
    MT.TRANSFER_LEADER: Raft._follower_transfer_leader,
    MT.TIMEOUT_NOW: Raft._follower_timeout_now,
    MT.READ_INDEX: Raft._follower_read_index,
    MT.READ_INDEX_RESP: Raft._follower_read_index_resp,
}
