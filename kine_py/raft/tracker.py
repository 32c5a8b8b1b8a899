"""What a leader knows about each peer (``Progress``, with its ``Inflights`` window), the
configuration (voters and learners) and the majority quorum maths (etcd-raft's ``tracker``
and ``quorum`` packages, for a single majority: membership changes are one at a time).

The Raft state machine owns one ``ProgressTracker`` and is the only one that mutates it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping

from kine_py.raft.types import ConfState, ProgressState, ProgressStatus, RaftInvariantError


class VoteResult(enum.Enum):
    PENDING = 0
    """Not decided yet: enough voters have not answered to either win or lose."""
    LOST = 1
    WON = 2


def committed_index(voters: Iterable[int], acked: Mapping[int, int]) -> int:
    """The largest index acknowledged by a majority of ``voters`` (a voter missing from
    ``acked`` counts as 0). No voters: 0."""
    ids = list(voters)
    n = len(ids)
    if n == 0:
        return 0
    if n == 1:
        return acked.get(ids[0], 0)
    srt = sorted(acked.get(i, 0) for i in ids)
    return srt[n - (n // 2 + 1)]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority of ``voters`` granted, LOST once a majority can no longer grant.
    No voters: WON (by convention, as in etcd-raft)."""
    granted = missing = total = 0
    for v in voters:
        total += 1
        vote = votes.get(v)
        if vote is None:
            missing += 1
        elif vote:
            granted += 1
    if total == 0:
        return VoteResult.WON
    quorum = total // 2 + 1
    if granted >= quorum:
        return VoteResult.WON
    if granted + missing >= quorum:
        return VoteResult.PENDING
    return VoteResult.LOST


class Inflights:
    """The window of append messages sent to one peer and not yet acknowledged: the last
    index of each message, oldest first. Full at ``capacity`` messages."""

    __slots__ = ("_queue", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queue: deque[int] = deque()

    def add(self, index: int) -> None:
        """Record a message whose last entry is ``index`` (indexes must increase)."""
        if len(self._queue) >= self.capacity:
            raise RaftInvariantError("cannot add into a full inflights")
        self._queue.append(index)

    def free_le(self, to: int) -> None:
        """Forget the messages whose last index is ``<= to`` (acknowledged)."""
        q = self._queue
        while q and q[0] <= to:
            q.popleft()

    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def count(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()

    def indexes(self) -> list[int]:
        """The last indexes of the messages in flight, oldest first."""
        return list(self._queue)


class Progress:
    """The leader's view of one peer's log.

    ``match``: the highest index known to be in the peer's log. ``next``: the next index to
    send; entries in ``(match, next)`` are in flight. Invariant: ``match < next``.
    In PROBE the leader sends one append per heartbeat interval until it finds where the logs
    agree; in REPLICATE it pipelines appends up to the ``inflights`` window; in SNAPSHOT it
    sends nothing until the snapshot at ``pending_snapshot`` is reported or the peer
    acknowledges an index from which the log can continue.
    ``msg_app_probes_paused``: set after each append; while set a PROBE peer gets nothing
    more, and a REPLICATE peer nothing while its window is full (a heartbeat response clears
    it). ``pending_commit``: the highest commit index sent (``< next``).
    ``recent_active``: heard from since the last check-quorum round.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_probes_paused",
        "next",
        "pending_commit",
        "pending_snapshot",
        "recent_active",
        "state",
    )

    def __init__(
        self,
        *,
        match: int,
        next: int,
        max_inflight: int,
        is_learner: bool = False,
        recent_active: bool = False,
    ) -> None:
        self.match = match
        self.next = next
        self.pending_commit = 0
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = recent_active
        self.msg_app_probes_paused = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        parts = [f"{self.state.name} match={self.match} next={self.next}"]
        if self.is_learner:
            parts.append("learner")
        if self.is_paused():
            parts.append("paused")
        if self.pending_snapshot > 0:
            parts.append(f"pendingSnap={self.pending_snapshot}")
        if not self.recent_active:
            parts.append("inactive")
        n = self.inflights.count()
        if n > 0:
            parts.append(f"inflight={n}" + ("[full]" if self.inflights.full() else ""))
        return " ".join(parts)

    def reset_state(self, state: ProgressState) -> None:
        self.msg_app_probes_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Probe from ``match + 1`` (or past the snapshot that was just sent)."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1
            self.pending_commit = min(self.pending_commit, self.match)

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1
        self.pending_commit = min(self.pending_commit, self.match)

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, count: int) -> None:
        """An append carrying ``count`` entries from ``next`` was sent."""
        if self.state == ProgressState.REPLICATE and count > 0:
            self.next += count
            self.inflights.add(self.next - 1)
        self.msg_app_probes_paused = True

    def can_bump_commit(self, index: int) -> bool:
        """Whether sending commit index ``index`` could advance the peer's commit index."""
        return self.pending_commit < min(index, self.next - 1)

    def sent_commit(self, commit: int) -> None:
        self.pending_commit = min(max(self.pending_commit, commit), self.next - 1)

    def maybe_update(self, n: int) -> bool:
        """The peer acknowledged index ``n``; False if that is old news."""
        if n <= self.match:
            return False
        self.match = n
        self.next = max(self.next, n + 1)
        return True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected an append at ``rejected``, hinting its log may match up to
        ``match_hint``. Lowers ``next``; False if the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self.pending_commit = min(self.pending_commit, self.match)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.pending_commit = min(self.pending_commit, self.next - 1)
        self.msg_app_probes_paused = False
        return True

    def is_paused(self) -> bool:
        """Whether appends to this peer are throttled right now."""
        if self.state == ProgressState.PROBE:
            return self.msg_app_probes_paused
        if self.state == ProgressState.REPLICATE:
            return self.msg_app_probes_paused and self.inflights.full()
        return True

    def status(self) -> ProgressStatus:
        return ProgressStatus(
            match=self.match,
            next=self.next,
            state=self.state,
            is_learner=self.is_learner,
            recent_active=self.recent_active,
        )


class ProgressTracker:
    """The configuration (voters, learners), a ``Progress`` per member and the votes of the
    current election. Voters and learners are disjoint."""

    __slots__ = ("learners", "max_inflight", "progress", "voters", "votes")

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def conf_state(self) -> ConfState:
        return ConfState(voters=tuple(sorted(self.voters)), learners=tuple(sorted(self.learners)))

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def committed(self) -> int:
        """The largest index a majority of voters have in their logs."""
        prs = self.progress
        return committed_index(self.voters, {i: prs[i].match for i in self.voters if i in prs})

    def visit(self) -> list[tuple[int, Progress]]:
        """Every member's progress, by increasing id (a deterministic order)."""
        return sorted(self.progress.items())

    def quorum_active(self) -> bool:
        """Whether a majority of voters were recently active."""
        prs = self.progress
        votes = {i: prs[i].recent_active for i in self.voters if i in prs and not prs[i].is_learner}
        return vote_result(self.voters, votes) == VoteResult.WON

    def voter_nodes(self) -> list[int]:
        return sorted(self.voters)

    def learner_nodes(self) -> list[int]:
        return sorted(self.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Record ``node_id``'s answer; only its first answer counts."""
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result) among the voters."""
        granted = rejected = 0
        for node_id, vote in self.votes.items():
            if node_id not in self.voters:
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, vote_result(self.voters, self.votes)

    def init_progress(self, node_id: int, last_index: int, is_learner: bool) -> None:
        """Add a member (a voter unless ``is_learner``), probed from the last index."""
        (self.learners if is_learner else self.voters).add(node_id)
        self.progress[node_id] = Progress(
            match=0,
            next=max(last_index, 1),
            max_inflight=self.max_inflight,
            is_learner=is_learner,
            recent_active=True,
        )

    def restore(self, cs: ConfState, last_index: int) -> None:
        """Replace the configuration by ``cs`` (from a snapshot or the initial state)."""
        if set(cs.voters) & set(cs.learners):
            raise RaftInvariantError(f"voters and learners overlap in {cs}")
        self.voters = set()
        self.learners = set()
        self.progress = {}
        self.votes = {}
        for node_id in cs.voters:
            self.init_progress(node_id, last_index, is_learner=False)
        for node_id in cs.learners:
            self.init_progress(node_id, last_index, is_learner=True)
