"""The parameters of one Raft node (etcd-raft's ``Config``, minus the storage, which
``RawNode`` takes as a separate argument)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from kine_py.raft.types import NONE


@dataclass(frozen=True, slots=True)
class Config:
    """How one node behaves. Times are in ticks (the driver calls ``RawNode.tick`` at a fixed
    interval); sizes in bytes of entry data plus a fixed per-entry overhead (see
    ``kine_py.raft.storage.entry_size``).

    ``id``: this node, never ``NONE`` (0).
    ``election_tick``: a follower that hears nothing from a leader for a randomized
    ``[election_tick, 2 * election_tick)`` ticks campaigns; must exceed ``heartbeat_tick``.
    ``heartbeat_tick``: a leader sends heartbeats every this many ticks.
    ``applied``: the last index the state machine applied, given on restart so committed
    entries up to it are not handed out again.
    ``max_size_per_msg``: the byte budget of one append message, and of the committed
    entries of one ``Ready`` (0: one entry per message).
    ``max_inflight_msgs``: how many append messages may be unacknowledged per follower.
    ``max_uncommitted_entries_size``: a leader drops proposals once its uncommitted tail holds
    this many bytes of entry data (0: no limit).
    ``check_quorum``: a leader steps down when a quorum was not active during an election
    timeout, and followers that heard from a leader recently ignore vote requests.
    ``pre_vote``: campaign with a pre-vote round first (Raft thesis 9.6).
    ``disable_proposal_forwarding``: followers drop proposals instead of forwarding them.
    ``step_down_on_removal``: a leader removed from (or demoted in) the configuration steps
    down when the change is applied.
    ``forwarder_read_ack``: a follower forwarding a ReadIndex request stamps it with its
    term, and a leader of that same term counts the request as that follower's heartbeat
    acknowledgement for the read (not in etcd-raft; the safety argument is in
    ``Raft._queue_read``). With three voters a follower's read then needs no heartbeat round:
    two messages instead of four. Off: etcd-raft's behaviour.
    ``drop_stale_acks``: a Ready leaves out append acks of an earlier term than the node's
    (a later message stepped before the Ready may have truncated what they acknowledge), so
    every ack sent is backed by the disk once the Ready is durable. Off: etcd-raft's
    behaviour, which sends them (safe, as the ack is a fact of its own term; dropping a
    message is always safe too).
    ``rand``: the only source of randomness (the election timeout); ``None`` means
    ``random.Random(id)``, so runs are reproducible.
    ``logger``: where the node logs; ``None`` means the ``kine_py.raft`` logger.
    """

    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_uncommitted_entries_size: int = 0
    check_quorum: bool = True
    pre_vote: bool = True
    disable_proposal_forwarding: bool = False
    step_down_on_removal: bool = True
    forwarder_read_ack: bool = True
    drop_stale_acks: bool = True
    rand: random.Random | None = None
    logger: logging.Logger | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.id == NONE or self.id < 0:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.applied < 0:
            raise ValueError("applied must not be negative")
        if self.max_size_per_msg < 0:
            raise ValueError("max size per msg must not be negative")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.max_uncommitted_entries_size < 0:
            raise ValueError("max uncommitted entries size must not be negative")

    def make_rand(self) -> random.Random:
        """The random source to use: ``rand``, or one seeded with the node id."""
        return self.rand if self.rand is not None else random.Random(self.id)

    def make_logger(self) -> logging.Logger:
        """The logger to use: ``logger``, or ``logging.getLogger("kine_py.raft")``."""
        return self.logger if self.logger is not None else logging.getLogger("kine_py.raft")
