"""Inflights, Progress state transitions, and the majority quorum maths (ideas of etcd-raft's
tracker/*_test.go and quorum tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kine_py.raft import ConfState, ProgressState, RaftInvariantError
from kine_py.raft.tracker import (
    Inflights,
    Progress,
    ProgressTracker,
    VoteResult,
    committed_index,
    vote_result,
)


def test_inflights_add_free_and_full() -> None:
    inf = Inflights(4)
    for i in (3, 5, 8):
        inf.add(i)
    assert (inf.count(), inf.full()) == (3, False)
    inf.add(10)
    assert inf.full()
    with pytest.raises(RaftInvariantError):
        inf.add(11)
    inf.free_le(4)
    assert inf.indexes() == [5, 8, 10] and not inf.full()
    inf.free_le(7)  # frees only messages that end at or before 7
    assert inf.indexes() == [8, 10]
    inf.free_le(100)
    assert inf.count() == 0
    inf.add(11)
    inf.reset()
    assert inf.count() == 0


def progress(state: ProgressState, match: int, next: int, **kw: object) -> Progress:
    pr = Progress(match=match, next=next, max_inflight=256)
    pr.state = state
    for k, v in kw.items():
        setattr(pr, k, v)
    return pr


@pytest.mark.parametrize(
    ("state", "match", "next", "pending_snapshot", "want_next"),
    [
        (ProgressState.REPLICATE, 1, 5, 0, 2),
        # after a snapshot, probe past it
        (ProgressState.SNAPSHOT, 1, 5, 10, 11),
        # after a failed snapshot (pending reset to 0), from match
        (ProgressState.SNAPSHOT, 1, 5, 0, 2),
    ],
)
def test_become_probe(
    state: ProgressState, match: int, next: int, pending_snapshot: int, want_next: int
) -> None:
    pr = progress(state, match, next, pending_snapshot=pending_snapshot)
    pr.become_probe()
    assert (pr.state, pr.match, pr.next, pr.pending_snapshot) == (ProgressState.PROBE, match, want_next, 0)


def test_become_replicate_and_snapshot() -> None:
    pr = progress(ProgressState.PROBE, 1, 5)
    pr.become_replicate()
    assert (pr.state, pr.next) == (ProgressState.REPLICATE, 2)
    pr.become_snapshot(10)
    assert (pr.state, pr.pending_snapshot, pr.is_paused()) == (ProgressState.SNAPSHOT, 10, True)


def test_maybe_update() -> None:
    pr = progress(ProgressState.PROBE, 3, 5)
    assert not pr.maybe_update(2)
    assert not pr.maybe_update(3)
    assert pr.maybe_update(4) and (pr.match, pr.next) == (4, 5)
    assert pr.maybe_update(6) and (pr.match, pr.next) == (6, 7)


@pytest.mark.parametrize(
    ("state", "match", "next", "rejected", "hint", "ok", "want_next"),
    [
        # replicate: a rejection at or below match is stale
        (ProgressState.REPLICATE, 5, 10, 5, 5, False, 10),
        (ProgressState.REPLICATE, 5, 10, 4, 4, False, 10),
        # replicate: a real one goes back to match + 1
        (ProgressState.REPLICATE, 5, 10, 9, 9, True, 6),
        # probe: only a rejection of next - 1 counts
        (ProgressState.PROBE, 0, 0, 0, 0, False, 0),
        (ProgressState.PROBE, 0, 10, 5, 5, False, 10),
        (ProgressState.PROBE, 0, 10, 9, 9, True, 9),
        # the hint moves next further back, never below match + 1
        (ProgressState.PROBE, 0, 2, 1, 1, True, 1),
        (ProgressState.PROBE, 0, 10, 9, 2, True, 3),
        (ProgressState.PROBE, 5, 10, 9, 2, True, 6),
    ],
)
def test_maybe_decr_to(
    state: ProgressState, match: int, next: int, rejected: int, hint: int, ok: bool, want_next: int
) -> None:
    pr = progress(state, match, next, msg_app_probes_paused=True)
    assert pr.maybe_decr_to(rejected, hint) is ok
    assert pr.next == want_next
    if ok and state == ProgressState.PROBE:
        assert not pr.msg_app_probes_paused


def test_is_paused_by_state() -> None:
    probe = progress(ProgressState.PROBE, 0, 1)
    assert not probe.is_paused()
    probe.sent_entries(1)
    assert probe.is_paused() and probe.next == 1  # probing does not move next
    rep = Progress(match=0, next=1, max_inflight=2)
    rep.become_replicate()
    rep.sent_entries(1)
    assert not rep.is_paused() and rep.next == 2
    rep.sent_entries(1)
    assert rep.is_paused() and rep.inflights.full()
    rep.inflights.free_le(1)
    assert not rep.is_paused()


def test_commit_tracking() -> None:
    pr = Progress(match=0, next=5, max_inflight=2)
    assert pr.can_bump_commit(3)
    pr.sent_commit(3)
    assert not pr.can_bump_commit(3) and pr.can_bump_commit(4)
    pr.sent_commit(10)
    assert pr.pending_commit == 4  # never past next - 1


@pytest.mark.parametrize(
    ("voters", "acked", "want"),
    [
        ([], {}, 0),
        ([1], {1: 12}, 12),
        ([1], {}, 0),
        ([1, 2], {1: 12, 2: 5}, 5),
        ([1, 2, 3], {1: 12, 2: 5, 3: 4}, 5),
        ([1, 2, 3], {1: 12}, 0),
        ([1, 2, 3], {1: 12, 2: 12}, 12),
        ([1, 2, 3, 4], {1: 12, 2: 10, 3: 8, 4: 6}, 8),
        ([1, 2, 3, 4, 5], {1: 12, 2: 10, 3: 8, 4: 6, 5: 1}, 8),
        # acks of non-voters do not count
        ([1, 2, 3], {1: 12, 7: 12, 8: 12}, 0),
    ],
)
def test_committed_index(voters: list[int], acked: dict[int, int], want: int) -> None:
    assert committed_index(voters, acked) == want


@given(st.dictionaries(st.integers(1, 9), st.integers(0, 50), min_size=1, max_size=9))
def test_committed_index_is_what_a_majority_has(acked: dict[int, int]) -> None:
    voters = sorted(acked)
    got = committed_index(voters, acked)
    quorum = len(voters) // 2 + 1
    assert sum(1 for v in voters if acked[v] >= got) >= quorum
    assert sum(1 for v in voters if acked[v] >= got + 1) < quorum


@pytest.mark.parametrize(
    ("voters", "votes", "want"),
    [
        ([], {}, VoteResult.WON),
        ([1], {}, VoteResult.PENDING),
        ([1], {1: False}, VoteResult.LOST),
        ([1], {1: True}, VoteResult.WON),
        ([1, 2, 3], {1: True}, VoteResult.PENDING),
        ([1, 2, 3], {1: True, 2: False}, VoteResult.PENDING),
        ([1, 2, 3], {1: True, 2: True}, VoteResult.WON),
        ([1, 2, 3], {1: False, 2: False}, VoteResult.LOST),
        ([1, 2, 3, 4], {1: True, 2: True}, VoteResult.PENDING),
        ([1, 2, 3, 4], {1: True, 2: True, 3: False, 4: False}, VoteResult.LOST),
        ([1, 2, 3, 4], {1: True, 2: True, 3: True}, VoteResult.WON),
        # votes of non-voters do not count
        ([1, 2, 3], {1: True, 8: True, 9: True}, VoteResult.PENDING),
    ],
)
def test_vote_result(voters: list[int], votes: dict[int, bool], want: VoteResult) -> None:
    assert vote_result(voters, votes) == want


def test_tracker_restore_votes_and_quorum_active() -> None:
    trk = ProgressTracker(8)
    trk.restore(ConfState(voters=(1, 2, 3), learners=(4,)), last_index=5)
    assert trk.conf_state() == ConfState(voters=(1, 2, 3), learners=(4,))
    assert [(i, pr.next, pr.is_learner, pr.recent_active) for i, pr in trk.visit()] == [
        (1, 5, False, True),
        (2, 5, False, True),
        (3, 5, False, True),
        (4, 5, True, True),
    ]
    trk.record_vote(1, True)
    trk.record_vote(4, True)  # a learner's vote does not count
    trk.record_vote(2, False)
    trk.record_vote(2, True)  # only the first answer counts
    assert trk.tally_votes() == (1, 1, VoteResult.PENDING)
    for i in (2, 3, 4):
        trk.progress[i].recent_active = False
    assert not trk.quorum_active()
    trk.progress[3].recent_active = True
    assert trk.quorum_active()
    with pytest.raises(RaftInvariantError):
        trk.restore(ConfState(voters=(1,), learners=(1,)), 0)


def test_tracker_committed_uses_voter_matches() -> None:
    trk = ProgressTracker(8)
    trk.restore(ConfState(voters=(1, 2, 3), learners=(4,)), last_index=1)
    for i, m in ((1, 9), (2, 3), (3, 1), (4, 9)):
        trk.progress[i].match = m
    assert trk.committed() == 3
    assert not trk.is_singleton()
