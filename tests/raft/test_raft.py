"""Scenarios on small clusters (the ideas of etcd-raft's raft_test.go, raft_flow_control_test.go,
raft_snap_test.go and rawnode_test.go): elections with pre-vote and check-quorum, commit
rules, replication flow control, ReadIndex, leader transfer, snapshots, membership changes,
the uncommitted-size limit, restarts, and the ``Ready`` contract of ``RawNode``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kine_py.raft import (
    NONE,
    CompactedError,
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProgressState,
    ProposalDroppedError,
    RaftInvariantError,
    RawNode,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SnapshotTemporarilyUnavailableError,
    StateType,
    StepLocalMessageError,
    StepPeerNotFoundError,
)
from kine_py.raft.codec import encode_conf_change
from kine_py.raft.raft import Raft

from .network import BLACK_HOLE, BlackHole, Network, Peer, config_for, new_peer

MT = MessageType
ADD, REMOVE, ADD_LEARNER = (
    ConfChangeType.ADD_NODE,
    ConfChangeType.REMOVE_NODE,
    ConfChangeType.ADD_LEARNER_NODE,
)


def log_terms(p: Peer) -> list[int]:
    return [t for _, t in p.log()]


def assert_same_logs(nt: Network, *ids: int) -> None:
    logs = {i: (nt.peer(i).log(), nt.raft(i).raft_log.committed) for i in ids}
    first = logs[ids[0]]
    assert all(v == first for v in logs.values()), logs


def elected(n: int = 3, leader: int = 1, **config: Any) -> Network:
    nt = Network(*([None] * n), **config)
    nt.campaign(leader)
    assert nt.raft(leader).state == StateType.LEADER
    return nt


def voted_peer(node_id: int, terms: list[int], **config: Any) -> Peer:
    """A node whose log holds entries of ``terms`` and whose term is the last of them."""
    return new_peer(node_id, (1, 2, 3, 4, 5), log_terms=terms, term=terms[-1], **config)


# -- elections ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
@pytest.mark.parametrize(
    ("make", "state", "term"),
    [
        (lambda: [None, None, None], StateType.LEADER, 1),
        (lambda: [None, None, BLACK_HOLE], StateType.LEADER, 1),
        (lambda: [None, BLACK_HOLE, BLACK_HOLE], StateType.CANDIDATE, 1),
        (lambda: [None, BLACK_HOLE, BLACK_HOLE, None], StateType.CANDIDATE, 1),
        (lambda: [None, BLACK_HOLE, BLACK_HOLE, None, None], StateType.LEADER, 1),
        # three logs further along, at the same term: they reject rather than ignore
        (
            lambda: [None, voted_peer(2, [1]), voted_peer(3, [1]), voted_peer(4, [1, 1]), None],
            StateType.FOLLOWER,
            1,
        ),
    ],
)
def test_leader_election(
    make: Callable[[], list[Peer | BlackHole | None]], state: StateType, term: int, pre_vote: bool
) -> None:
    """A campaign wins with a majority of votes; unreachable voters and voters with newer
    logs (which reject) make it fail. With pre-vote a failed campaign leaves the term."""
    peers = make()
    for p in peers:
        if isinstance(p, Peer):
            p.raft.pre_vote = pre_vote
    nt = Network(*peers, pre_vote=pre_vote)
    nt.campaign(1)
    r = nt.raft(1)
    if pre_vote and state == StateType.CANDIDATE:
        # Without a quorum of pre-votes the term never moves.
        state, term = StateType.PRE_CANDIDATE, 0
    assert (r.state, r.term) == (state, term)


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
def test_leader_cycle(pre_vote: bool) -> None:
    """Each node can become leader in turn, and the others follow it."""
    nt = Network(None, None, None, pre_vote=pre_vote)
    for campaigner in (1, 2, 3):
        nt.campaign(campaigner)
        for i in (1, 2, 3):
            r = nt.raft(i)
            assert r.state == (StateType.LEADER if i == campaigner else StateType.FOLLOWER)
            assert r.lead == campaigner


def test_dueling_candidates() -> None:
    nt = Network(None, None, None)
    nt.cut(1, 3)
    nt.campaign(1)
    nt.campaign(3)
    assert nt.raft(1).state == StateType.LEADER
    assert nt.raft(3).state == StateType.CANDIDATE  # a vote from itself, a rejection from 2
    nt.recover()
    # 3 campaigns at a higher term and deposes 1, but loses: its log is behind.
    nt.campaign(3)
    for i, log in ((1, [(1, 1)]), (2, [(1, 1)]), (3, [])):
        r = nt.raft(i)
        assert (r.state, r.term, nt.peer(i).log()) == (StateType.FOLLOWER, 2, log)
    assert nt.raft(1).raft_log.committed == 1


def test_dueling_pre_candidates() -> None:
    """With pre-vote the stale candidate cannot disrupt the leader: its term never moves."""
    nt = Network(None, None, None, pre_vote=True)
    nt.cut(1, 3)
    nt.campaign(1)
    nt.campaign(3)
    assert nt.raft(1).state == StateType.LEADER
    assert nt.raft(3).state == StateType.FOLLOWER  # pre-vote lost
    nt.recover()
    nt.campaign(3)
    assert [(nt.raft(i).state, nt.raft(i).term) for i in (1, 2, 3)] == [
        (StateType.LEADER, 1),
        (StateType.FOLLOWER, 1),
        (StateType.FOLLOWER, 1),
    ]


def test_candidate_concede() -> None:
    nt = Network(None, None, None)
    nt.isolate(1)
    nt.campaign(1)
    nt.campaign(3)
    nt.recover()
    nt.beat(3)
    nt.propose(3, b"force follower")
    nt.beat(3)
    r = nt.raft(1)
    assert (r.state, r.term) == (StateType.FOLLOWER, 1)
    assert nt.peer(1).log() == [(1, 1), (2, 1)] and r.raft_log.committed == 2
    assert_same_logs(nt, 1, 2, 3)


def test_single_node_commit() -> None:
    nt = Network(None)
    nt.campaign(1)
    nt.propose(1, b"some data")
    nt.propose(1, b"some data")
    assert nt.raft(1).raft_log.committed == 3
    assert nt.peer(1).applied_data() == [b"some data", b"some data"]


def test_old_messages_are_ignored() -> None:
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.campaign(2)
    nt.campaign(1)  # 1 leads at term 3
    # An old leader of term 2 tries to append: ignored.
    nt.send(Message(MT.APP, from_=2, to=1, term=2, entries=(Entry(term=2, index=3),)))
    nt.propose(1, b"somedata")
    assert nt.peer(1).log() == [(1, 1), (2, 2), (3, 3), (4, 3)]
    assert nt.raft(1).raft_log.committed == 4
    assert_same_logs(nt, 1, 2, 3)


@pytest.mark.parametrize(
    ("peers", "success"),
    [
        ([None, None, None], True),
        ([None, None, BLACK_HOLE], True),
        ([None, BLACK_HOLE, BLACK_HOLE], False),
        ([None, BLACK_HOLE, BLACK_HOLE, None], False),
        ([None, BLACK_HOLE, BLACK_HOLE, None, None], True),
    ],
)
def test_proposal_and_log_matching(peers: list[BlackHole | None], success: bool) -> None:
    """A proposal commits iff a majority is reachable; then every live log is identical."""
    nt = Network(*peers)
    nt.campaign(1)
    nt.propose(1, b"somedata")
    live = [i for i, p in nt.peers.items() if isinstance(p, Peer)]
    want = 2 if success else 0
    for i in live:
        assert nt.raft(i).raft_log.committed == want
    if success:
        assert_same_logs(nt, *live)
        assert nt.peer(1).applied_data() == [b"somedata"]


def test_proposal_by_proxy() -> None:
    """A follower forwards proposals to the leader."""
    nt = elected(3)
    nt.propose(2, b"somedata")
    assert_same_logs(nt, 1, 2, 3)
    assert nt.raft(1).raft_log.committed == 2
    assert all(nt.peer(i).applied_data() == [b"somedata"] for i in (1, 2, 3))


def test_proposal_dropped_without_leader_or_with_forwarding_disabled() -> None:
    p = new_peer(1)
    with pytest.raises(ProposalDroppedError):
        p.node.propose(b"x")
    nt = elected(3, disable_proposal_forwarding=True)
    with pytest.raises(ProposalDroppedError, match="forwarding"):
        nt.peer(2).node.propose(b"x")


# -- commit rules (Figure 8) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matches", "terms", "term", "want"),
    [
        # a single voter
        ([1], [1], 1, 1),
        ([1], [1], 2, 0),
        ([2], [1, 2], 2, 2),
        ([1], [2], 2, 1),
        # odd
        ([2, 1, 1], [1, 2], 1, 1),
        ([2, 1, 1], [1, 1], 2, 0),
        ([2, 1, 2], [1, 2], 2, 2),
        ([2, 1, 2], [1, 1], 2, 0),
        # even
        ([2, 1, 1, 1], [1, 2], 1, 1),
        ([2, 1, 1, 1], [1, 1], 2, 0),
        ([2, 1, 1, 2], [1, 2], 1, 1),
        ([2, 1, 1, 2], [1, 1], 2, 0),
        ([2, 1, 2, 2], [1, 2], 2, 2),
        ([2, 1, 2, 2], [1, 1], 2, 0),
    ],
)
def test_commit(matches: list[int], terms: list[int], term: int, want: int) -> None:
    """Commit = the largest index a quorum holds, and only if it is of the current term."""
    p = new_peer(1, range(1, len(matches) + 1), log_terms=terms, term=term)
    r = p.raft
    for node_id, match in enumerate(matches, start=1):
        r.trk.progress[node_id].match = match
        r.trk.progress[node_id].next = match + 1
    r.maybe_commit()
    assert r.raft_log.committed == want


def test_cannot_commit_without_new_term_entry() -> None:
    """Figure 8: a new leader does not commit entries of earlier terms by counting replicas,
    only together with an entry of its own term."""
    nt = Network(None, None, None, None, None)
    nt.campaign(1)
    for i in (3, 4, 5):
        nt.cut(1, i)
    nt.propose(1, b"some data")
    nt.propose(1, b"some data")
    assert nt.raft(1).raft_log.committed == 1
    nt.recover()
    nt.ignore(MT.APP)  # 2's empty entry of term 2 does not get out
    nt.campaign(2)
    assert nt.raft(2).state == StateType.LEADER
    assert nt.raft(2).raft_log.committed == 1  # entries 2 and 3 are replicated but not committed
    nt.recover()
    nt.beat(2)
    nt.propose(2, b"some data")
    assert nt.raft(2).raft_log.committed == 5


def test_commit_with_new_term_entry() -> None:
    nt = Network(None, None, None, None, None)
    nt.campaign(1)
    for i in (3, 4, 5):
        nt.cut(1, i)
    nt.propose(1, b"some data")
    nt.propose(1, b"some data")
    assert nt.raft(1).raft_log.committed == 1
    nt.recover()
    # The new leader's empty entry of term 2 commits everything before it.
    nt.campaign(2)
    assert nt.raft(2).raft_log.committed == 4


def test_leader_election_overwrite_newer_logs() -> None:
    """A leader elected with a shorter log of a higher last term overwrites the longer,
    uncommitted tails of other nodes."""
    nt = Network(
        voted_peer(1, [1]),  # won term 1 alone, wrote (1,1), crashed
        voted_peer(2, [1]),
        voted_peer(3, [2]),  # won term 2 alone, wrote (1,2)
        new_peer(4, (1, 2, 3, 4, 5), term=2, vote=3),
        new_peer(5, (1, 2, 3, 4, 5), term=2, vote=3),
    )
    nt.campaign(1)  # fails: 3, 4 and 5 voted at term 2, and 3's log is newer
    assert (nt.raft(1).state, nt.raft(1).term) == (StateType.FOLLOWER, 2)
    nt.campaign(1)  # term 3: 4 and 5 vote for it (their logs are empty)
    assert (nt.raft(1).state, nt.raft(1).term) == (StateType.LEADER, 3)
    for i in (1, 2, 3, 4, 5):
        assert nt.peer(i).log() == [(1, 1), (2, 3)], i


def test_fast_log_rejection_skips_whole_terms() -> None:
    """A follower with a long divergent tail is caught up in one rejected probe: it hints the
    last index with a term <= the probe's, and the leader skips to its own matching term."""
    leader = new_peer(1, log_terms=[1, 3, 3, 3, 5, 5, 5, 5, 5], term=5, commit=1)
    follower = new_peer(2, log_terms=[1, 1, 1, 1, 2, 2], term=5, commit=1)
    nt = Network(leader, follower, BLACK_HOLE)
    nt.campaign(1)
    assert leader.raft.state == StateType.LEADER
    rejects = [m for m in nt.delivered if m.type == MT.APP_RESP and m.reject]
    assert len(rejects) == 1
    assert follower.log() == leader.log()


def test_fast_log_rejection_from_the_follower_side() -> None:
    """The follower side of fast backtracking: instead of probing 8, 7, 6, ... one by one."""
    leader = new_peer(1, log_terms=[1, 3, 3, 3, 3, 3, 3, 3, 7], term=7, commit=1)
    follower = new_peer(2, log_terms=[1, 3, 3, 4, 4, 5, 5, 5, 6], term=7, commit=1)
    nt = Network(leader, follower, BLACK_HOLE)
    nt.campaign(1)
    rejects = [
        (m.index, m.reject_hint, m.log_term) for m in nt.delivered if m.type == MT.APP_RESP and m.reject
    ]
    # The probe at 9 reveals term 6 at 9 (the leader jumps to its term-3 entries); the probe
    # at 8 (term 3) makes the follower skip its terms 4..6: the next probe, at 3, succeeds.
    assert rejects == [(9, 9, 6), (8, 3, 3)]
    assert follower.log() == leader.log()


# -- replication flow control --------------------------------------------------------------------


def two_node_leader(**config: Any) -> Peer:
    p = new_peer(1, (1, 2), **config)
    p.raft.become_candidate()
    p.raft.become_leader()
    p.process_ready()
    return p


def apps_to(msgs: list[Message], to: int) -> list[list[int]]:
    return [[e.index for e in m.entries] for m in msgs if m.type == MT.APP and m.to == to]


def ack(r: Raft, index: int, frm: int = 2) -> None:
    r.step(Message(MT.APP_RESP, from_=frm, to=r.id, term=r.term, index=index))


def test_progress_flow_control() -> None:
    """A probing follower gets one append per round trip; once it acked, appends are
    pipelined up to ``max_inflight_msgs`` messages of at most ``max_size_per_msg`` bytes;
    each ack frees room for more."""
    p = two_node_leader(max_inflight_msgs=3, max_size_per_msg=2100)
    r = p.raft
    r.trk.progress[2].become_probe()
    for _ in range(10):
        p.node.propose(b"a" * 1000)  # 1016 bytes counted per entry: two fit in a message
    # The first proposal went out at once with the empty entry; probing sends nothing more.
    assert apps_to(p.process_ready(), 2) == [[1, 2]]
    ack(r, 2)
    assert r.trk.progress[2].state == ProgressState.REPLICATE
    assert apps_to(p.process_ready(), 2) == [[3, 4], [5, 6], [7, 8]]  # window full
    p.node.propose(b"a" * 1000)
    assert apps_to(p.process_ready(), 2) == []
    ack(r, 4)
    assert apps_to(p.process_ready(), 2) == [[9, 10]]
    ack(r, 10)
    assert apps_to(p.process_ready(), 2) == [[11, 12]]


def test_full_window_recovers_after_lost_appends() -> None:
    """When every in-flight append was lost, a heartbeat response makes the leader send an
    empty append, whose rejection resets the window (etcd#14633)."""
    nt = elected(2, max_inflight_msgs=2, max_size_per_msg=0)
    nt.ignore(MT.APP)
    for i in range(5):
        nt.propose(1, b"x%d" % i)
    pr = nt.raft(1).trk.progress[2]
    assert pr.inflights.full() and pr.match == 1
    nt.recover()
    nt.delivered.clear()
    nt.beat(1)
    assert any(m.type == MT.APP and not m.entries for m in nt.delivered)
    nt.beat(1)
    assert_same_logs(nt, 1, 2)
    assert nt.raft(1).raft_log.committed == 6


def test_heartbeat_carries_commit_bounded_by_match() -> None:
    nt = elected(3)
    nt.isolate(3)
    nt.propose(1, b"x")
    nt.recover()
    nt.ignore(MT.APP)
    nt.delivered.clear()
    nt.beat(1)
    commits = {m.to: m.commit for m in nt.delivered if m.type == MT.HEARTBEAT}
    assert commits == {2: 2, 3: 1}


def test_report_unreachable_moves_replicating_peer_to_probe() -> None:
    nt = elected(3)
    nt.propose(1, b"x")
    pr = nt.raft(1).trk.progress[2]
    assert pr.state == ProgressState.REPLICATE
    nt.peer(1).node.report_unreachable(2)
    assert nt.raft(1).trk.progress[2].state == ProgressState.PROBE


# -- ReadIndex ------------------------------------------------------------------------------------


def test_read_index_on_leader_and_follower() -> None:
    nt = elected(3)
    nt.propose(1, b"x")
    for i, ctx in ((1, b"ctx1"), (2, b"ctx2"), (3, b"ctx3")):
        nt.peer(i).node.read_index(ctx)
        nt.flush(i)
        assert nt.peer(i).read_states == [ReadState(index=2, request_ctx=ctx)]


def test_read_index_waits_for_a_commit_in_the_leaders_term() -> None:
    """A new leader's commit index may lag: reads wait until an entry of its term commits."""
    peers = [new_peer(i, log_terms=[1, 1], term=1, commit=1 if i == 1 else 2) for i in (1, 2, 3)]
    nt = Network(*peers)
    nt.ignore(MT.APP)  # the new leader cannot commit its empty entry
    nt.campaign(1)
    leader = nt.peer(1)
    leader.node.read_index(b"ctx")
    nt.flush(1)
    assert leader.read_states == []
    nt.recover()
    for _ in range(leader.raft.heartbeat_timeout):
        leader.node.tick()  # heartbeats go out with the proposal's messages
    nt.propose(1, b"")
    assert leader.raft.raft_log.committed == 4
    assert leader.read_states == [ReadState(index=4, request_ctx=b"ctx")]
    leader.node.read_index(b"ctx2")
    nt.flush(1)
    assert leader.read_states[-1] == ReadState(index=4, request_ctx=b"ctx2")


def test_read_index_single_voter_answers_at_once() -> None:
    nt = Network(None)
    nt.campaign(1)
    p = nt.peer(1)
    p.node.read_index(b"ctx")
    rd = p.node.ready()
    assert rd.read_states == (ReadState(index=1, request_ctx=b"ctx"),) and rd.messages == ()
    p.node.advance()


def test_read_index_without_leader_is_dropped() -> None:
    p = new_peer(2)
    p.node.read_index(b"ctx")
    assert p.process_ready() == [] and p.read_states == []


def test_one_heartbeat_round_confirms_all_queued_reads() -> None:
    nt = elected(3)
    nt.ignore(MT.HEARTBEAT_RESP)
    leader = nt.peer(1)
    for ctx in (b"a", b"b", b"c"):
        leader.node.read_index(ctx)
        nt.flush(1)
    assert leader.read_states == []
    nt.recover()
    nt.delivered.clear()
    nt.beat(1)
    assert [rs.request_ctx for rs in leader.read_states] == [b"a", b"b", b"c"]
    assert sum(m.type == MT.HEARTBEAT for m in nt.delivered) == 2


def test_forwarded_read_counts_as_the_forwarders_ack() -> None:
    """Config.forwarder_read_ack: with three voters a follower's read is answered without a
    heartbeat round (leader + the stamping forwarder are a majority)."""
    nt = elected(3, forwarder_read_ack=True)
    nt.propose(1, b"x")
    nt.delivered.clear()
    nt.peer(2).node.read_index(b"r")
    nt.flush(2)
    assert [m.type for m in nt.delivered] == [MT.READ_INDEX, MT.READ_INDEX_RESP]
    assert nt.peer(2).read_states == [ReadState(index=2, request_ctx=b"r")]


def test_forwarded_read_in_a_minority_is_never_answered() -> None:
    """Five voters; the leader and one follower cut off from the other three, which elect a
    new leader and commit. The follower's read, stamped with the old term, is one ack of the
    three the old leader needs: it is not answered (answering would miss the new commits)."""
    nt = elected(5, forwarder_read_ack=True)
    nt.propose(1, b"x")
    for a in (1, 2):
        for b in (3, 4, 5):
            nt.cut(a, b)
    nt.campaign(3)
    nt.propose(3, b"after")
    assert nt.raft(3).state == StateType.LEADER and nt.raft(3).raft_log.committed > 2
    nt.peer(2).node.read_index(b"stale?")
    nt.flush(2)
    nt.tick(1, nt.raft(1).heartbeat_timeout)
    assert nt.peer(2).read_states == []
    assert any(m.type == MT.READ_INDEX and m.to == 1 for m in nt.delivered)  # it got there


def test_forwarded_read_with_another_term_gets_a_heartbeat_round() -> None:
    """A stamp that is not the leader's term (or none: an older follower) is not an ack."""
    for stamp in (b"", (7).to_bytes(8, "little")):
        nt = elected(3, forwarder_read_ack=True)
        nt.propose(1, b"x")
        nt.ignore(MT.HEARTBEAT_RESP)
        read = Message(MT.READ_INDEX, to=1, from_=2, entries=(Entry(0, 0, data=b"r"),), context=stamp)
        nt.send(read)
        assert nt.peer(2).read_states == [], stamp
        nt.recover()
        nt.beat(1)
        assert nt.peer(2).read_states == [ReadState(index=2, request_ctx=b"r")]


def test_stale_heartbeat_acks_do_not_confirm_a_retried_read() -> None:
    """raft#397: acks of the heartbeat sent for a read confirm only reads queued before that
    heartbeat, even when a retry reuses the request context."""
    nt = elected(3)
    held: list[Message] = []

    def hold_read_acks(m: Message) -> bool:
        if m.type == MT.HEARTBEAT_RESP and m.context:
            held.append(m)
            return False
        return True

    nt.msg_hook = hold_read_acks
    leader = nt.peer(1)
    leader.node.read_index(b"same")
    nt.flush(1)
    first_index = leader.raft.raft_log.committed
    nt.propose(1, b"write")  # committed after the first read was queued
    leader.node.read_index(b"same")  # the retry
    nt.flush(1)
    stale = [m for m in held if m.context == held[0].context]
    assert len(stale) == 2
    nt.recover()
    nt.send(*stale)
    assert leader.read_states == [ReadState(index=first_index, request_ctx=b"same")]
    nt.beat(1)
    assert leader.read_states[1] == ReadState(index=first_index + 1, request_ctx=b"same")


def test_deposed_leader_cannot_confirm_reads() -> None:
    nt = elected(3)
    nt.isolate(1)
    old = nt.peer(1)
    old.node.read_index(b"stale?")
    nt.flush(1)
    nt.campaign(2)
    nt.propose(2, b"new")
    nt.recover()
    nt.beat(1)  # nobody confirms: 2 and 3 are at a later term
    assert old.read_states == []
    nt.beat(2)  # the old leader learns the new term and steps down
    assert old.raft.state == StateType.FOLLOWER
    nt.beat(1)
    assert old.read_states == []


# -- leader transfer ----------------------------------------------------------------------------


def transfer(nt: Network, to_leader: int, transferee: int) -> None:
    nt.send(Message(MT.TRANSFER_LEADER, from_=transferee, to=to_leader))


@pytest.mark.parametrize("protections", [False, True], ids=["plain", "pre-vote+check-quorum"])
def test_leader_transfer_to_up_to_date_node(protections: bool) -> None:
    """The transfer campaign skips pre-vote and the voters' leases."""
    nt = elected(3, pre_vote=protections, check_quorum=protections)
    nt.propose(1, b"x")
    transfer(nt, 1, 2)
    assert [(nt.raft(i).state, nt.raft(i).term, nt.raft(i).lead) for i in (1, 2, 3)] == [
        (StateType.FOLLOWER, 2, 2),
        (StateType.LEADER, 2, 2),
        (StateType.FOLLOWER, 2, 2),
    ]
    # Back again, asked on a follower (which forwards to the leader).
    transfer(nt, 1, 1)
    assert nt.raft(1).state == StateType.LEADER and nt.raft(1).term == 3


def test_leader_transfer_to_slow_follower_catches_it_up_first() -> None:
    nt = elected(3)
    nt.isolate(3)
    nt.propose(1, b"x")
    nt.recover()
    assert nt.raft(1).trk.progress[3].match == 1
    transfer(nt, 1, 3)
    assert nt.raft(3).state == StateType.LEADER and nt.raft(1).state == StateType.FOLLOWER
    assert_same_logs(nt, 1, 2, 3)


def test_leader_transfer_aborts_after_an_election_timeout() -> None:
    nt = elected(3)
    nt.isolate(3)
    r = nt.raft(1)
    transfer(nt, 1, 3)
    assert r.lead_transferee == 3
    for _ in range(r.heartbeat_timeout):
        r.tick()
    assert r.lead_transferee == 3
    for _ in range(r.election_timeout - r.heartbeat_timeout):
        r.tick()
    assert (r.lead_transferee, r.state) == (NONE, StateType.LEADER)


def test_proposals_are_dropped_while_transferring() -> None:
    nt = elected(3)
    nt.isolate(3)
    transfer(nt, 1, 3)
    with pytest.raises(ProposalDroppedError, match="transfer"):
        nt.peer(1).node.propose(b"x")


def test_leader_transfer_ignored_for_self_unknown_and_learner() -> None:
    nt = Network(*(new_peer(i, (1, 2), (3,)) for i in (1, 2, 3)))
    nt.campaign(1)
    r = nt.raft(1)
    for target in (1, 3, 9):
        transfer(nt, 1, target)
        assert (r.lead_transferee, r.state) == (NONE, StateType.LEADER)


def test_new_transfer_replaces_the_pending_one() -> None:
    nt = elected(3)
    nt.isolate(3)
    transfer(nt, 1, 3)
    assert nt.raft(1).lead_transferee == 3
    transfer(nt, 1, 2)
    assert nt.raft(2).state == StateType.LEADER


# -- snapshots -------------------------------------------------------------------------------------


def compact_leader(nt: Network, leader: int = 1) -> int:
    """The leader snapshots at its applied index and drops the log before it."""
    p = nt.peer(leader)
    index = p.raft.raft_log.applied
    p.storage.create_snapshot(index, p.raft.trk.conf_state(), b"state@%d" % index)
    p.storage.compact(index)
    return index


def test_lagging_follower_catches_up_by_snapshot() -> None:
    nt = elected(3)
    nt.isolate(3)
    for i in range(5):
        nt.propose(1, b"w%d" % i)
    snap_index = compact_leader(nt)
    nt.recover()
    nt.beat(1)
    nt.propose(1, b"after")
    follower = nt.peer(3)
    assert [s.metadata.index for s in follower.snapshots] == [snap_index]
    assert follower.snapshots[0].data == b"state@%d" % snap_index
    assert follower.applied_data() == [b"after"]
    assert follower.raft.raft_log.first_index() == snap_index + 1
    assert follower.log() == nt.peer(1).log()
    assert nt.raft(1).trk.progress[3].state == ProgressState.REPLICATE


def test_snapshot_is_not_sent_to_an_inactive_peer() -> None:
    nt = elected(3, check_quorum=True)
    nt.isolate(3)
    for i in range(3):
        nt.propose(1, b"w%d" % i)
    compact_leader(nt)
    r = nt.raft(1)
    r.trk.progress[3].recent_active = False
    assert not r.maybe_send_snapshot(3, r.trk.progress[3])


@pytest.mark.parametrize(("failed", "want_next"), [(True, 1), (False, 12)])
def test_report_snapshot(failed: bool, want_next: int) -> None:
    """After a failed snapshot the peer is probed from its match; after a delivered one from
    past the snapshot. Either way the next append waits (for a response or a heartbeat)."""
    p = two_node_leader()
    r = p.raft
    pr = r.trk.progress[2]
    pr.next = 1
    pr.become_snapshot(11)
    p.node.report_snapshot(2, failed=failed)
    pr = r.trk.progress[2]
    assert (pr.state, pr.pending_snapshot, pr.next, pr.msg_app_probes_paused) == (
        ProgressState.PROBE,
        0,
        want_next,
        True,
    )


def test_follower_restores_snapshot_and_its_configuration() -> None:
    p = new_peer(2, (1, 2))
    cs = ConfState(voters=(1, 2, 3))
    snap = Snapshot(SnapshotMetadata(cs, index=11, term=11))
    p.raft.step(Message(MT.SNAP, from_=1, to=2, term=11, snapshot=snap))
    rd = p.node.ready()
    assert rd.snapshot == snap and rd.committed_entries == ()
    assert [(m.type, m.index) for m in rd.persisted_messages] == [(MT.APP_RESP, 11)]
    p.persist(rd)
    p.node.advance()
    r = p.raft
    assert (r.raft_log.committed, r.raft_log.applied, r.trk.conf_state()) == (11, 11, cs)


def test_old_snapshot_is_ignored_and_known_one_fast_forwards_commit() -> None:
    p = new_peer(2, (1, 2), log_terms=[1, 1, 1], term=1, commit=1)
    r = p.raft
    old = Snapshot(SnapshotMetadata(ConfState(voters=(1, 2)), index=1, term=1))
    assert not r.restore(old)
    known = Snapshot(SnapshotMetadata(ConfState(voters=(1, 2)), index=2, term=1))
    assert not r.restore(known)
    assert r.raft_log.committed == 2 and r.raft_log.last_index() == 3


# -- membership -----------------------------------------------------------------------------------


def conf_change(nt: Network, node_id: int, t: ConfChangeType, target: int) -> None:
    nt.peer(node_id).node.propose_conf_change(ConfChange(t, target))
    nt.flush(node_id)


def test_add_node_joins_the_quorum() -> None:
    # The new member starts knowing the current members (as etcd's --initial-cluster does).
    nt = Network(new_peer(1, (1,)), new_peer(2, (1,)))
    nt.campaign(1)
    conf_change(nt, 1, ADD, 2)
    assert nt.raft(1).trk.conf_state() == ConfState(voters=(1, 2))
    nt.beat(1)
    assert nt.raft(2).trk.conf_state() == ConfState(voters=(1, 2))
    assert_same_logs(nt, 1, 2)
    nt.cut(1, 2)
    nt.propose(1, b"needs two")
    assert nt.raft(1).raft_log.committed == 2  # the new voter is needed now
    nt.recover()
    nt.beat(1)
    assert nt.raft(1).raft_log.committed == 3


def test_remove_node_shrinks_the_quorum_and_stops_its_campaigns() -> None:
    nt = elected(3)
    conf_change(nt, 1, REMOVE, 3)
    assert nt.raft(1).trk.conf_state() == ConfState(voters=(1, 2))
    removed = nt.peer(3)
    assert removed.raft.trk.conf_state() == ConfState(voters=(1, 2))
    nt.isolate(3)
    nt.propose(1, b"x")
    assert nt.peer(1).applied_data() == [b"x"]
    for _ in range(3 * removed.raft.election_timeout):
        removed.node.tick()
    assert removed.raft.state == StateType.FOLLOWER and removed.process_ready() == []


def test_learner_replicates_but_neither_counts_nor_campaigns() -> None:
    nt = Network(*(new_peer(i, (1, 2), (3,)) for i in (1, 2, 3)))
    nt.campaign(1)
    nt.propose(1, b"x")
    assert nt.peer(3).applied_data() == [b"x"]
    nt.isolate(3)
    nt.propose(1, b"y")
    assert nt.peer(1).applied_data() == [b"x", b"y"]
    learner = nt.peer(3)
    assert learner.raft.is_learner and not learner.raft.promotable()
    for _ in range(3 * learner.raft.election_timeout):
        learner.node.tick()
    assert learner.raft.state == StateType.FOLLOWER and learner.raft.msgs == []


def test_learner_votes_when_asked() -> None:
    """A learner may have been promoted without knowing it yet: it must vote."""
    p = new_peer(3, (1, 2), (3,))
    p.raft.step(Message(MT.VOTE, from_=1, to=3, term=2))
    assert [(m.type, m.reject) for m in p.process_ready()] == [(MT.VOTE_RESP, False)]


def test_promote_learner() -> None:
    nt = Network(*(new_peer(i, (1, 2), (3,)) for i in (1, 2, 3)))
    nt.campaign(1)
    conf_change(nt, 1, ADD, 3)
    nt.beat(1)
    for i in (1, 2, 3):
        assert nt.raft(i).trk.conf_state() == ConfState(voters=(1, 2, 3)), i
    assert not nt.raft(3).is_learner
    nt.campaign(3)
    assert nt.raft(3).state == StateType.LEADER


def test_demote_voter_to_learner() -> None:
    nt = elected(3)
    conf_change(nt, 1, ADD_LEARNER, 3)
    nt.beat(1)
    assert nt.raft(3).is_learner and nt.raft(1).trk.conf_state() == ConfState(voters=(1, 2), learners=(3,))


def test_one_conf_change_at_a_time() -> None:
    nt = elected(3)
    leader = nt.peer(1).node
    nt.ignore(MT.APP)  # keep the first change uncommitted
    leader.propose_conf_change(ConfChange(ADD, 4))
    with pytest.raises(ProposalDroppedError, match="unapplied conf change"):
        leader.propose_conf_change(ConfChange(ADD, 5))
    nt.recover()
    nt.beat(1)
    assert nt.raft(1).trk.conf_state().voters == (1, 2, 3, 4)
    leader.propose_conf_change(ConfChange(ADD, 5))  # accepted once the first is applied


def test_forwarded_conf_change_refused_becomes_a_no_op_entry() -> None:
    nt = elected(3)
    nt.ignore(MT.APP)
    nt.peer(1).node.propose_conf_change(ConfChange(ADD, 4))
    nt.peer(2).node.propose_conf_change(ConfChange(ADD, 5))  # forwarded; refused by the leader
    nt.flush(2)
    last = nt.raft(1).raft_log.all_entries()[-1]
    assert (last.type, last.data) == (EntryType.NORMAL, b"")


def test_cannot_remove_the_last_voter() -> None:
    nt = Network(None)
    nt.campaign(1)
    node = nt.peer(1).node
    with pytest.raises(ProposalDroppedError, match="last voter"):
        node.propose_conf_change(ConfChange(REMOVE, 1))
    with pytest.raises(ConfChangeError):
        node.apply_conf_change(ConfChange(REMOVE, 1))
    assert nt.raft(1).trk.conf_state() == ConfState(voters=(1,))


def test_cancelled_conf_change_is_a_no_op() -> None:
    nt = elected(3)
    assert nt.peer(1).node.apply_conf_change(ConfChange(REMOVE, NONE)) == ConfState(voters=(1, 2, 3))


@pytest.mark.parametrize("step_down", [True, False])
def test_removed_leader(step_down: bool) -> None:
    nt = elected(3, step_down_on_removal=step_down)
    conf_change(nt, 1, REMOVE, 1)
    r = nt.raft(1)
    if step_down:
        assert r.state == StateType.FOLLOWER
        nt.campaign(2)
        assert nt.raft(2).state == StateType.LEADER
    else:
        assert r.state == StateType.LEADER
        with pytest.raises(ProposalDroppedError, match="removed"):
            nt.peer(1).node.propose(b"x")


def test_campaign_waits_for_committed_conf_change_to_apply() -> None:
    p = new_peer(1, (1, 2))
    r = p.raft
    cc = Entry(term=1, index=1, type=EntryType.CONF_CHANGE, data=encode_conf_change(ConfChange(ADD, 3)))
    r.step(Message(MT.APP, from_=2, to=1, term=1, entries=(cc,), commit=1))
    r.step(Message(MT.HUP, from_=1))
    before = p.node.state  # committed but not applied yet: no campaign
    p.process_ready()
    r.step(Message(MT.HUP, from_=1))
    assert (before, p.node.state) == (StateType.FOLLOWER, StateType.CANDIDATE)


# -- uncommitted size limit ------------------------------------------------------------------


def test_uncommitted_entry_limit() -> None:
    nt = elected(3, max_uncommitted_entries_size=1000)
    nt.isolate(2)
    nt.isolate(3)
    leader = nt.peer(1).node
    for _ in range(10):
        leader.propose(b"x" * 100)
    with pytest.raises(ProposalDroppedError, match="size limit"):
        leader.propose(b"x" * 100)
    leader.propose(b"")  # empty entries are always accepted
    nt.recover()
    nt.beat(1)
    assert nt.raft(1).uncommitted_size == 0
    leader.propose(b"x" * 100)


def test_uncommitted_limit_accepts_anything_on_an_empty_tail() -> None:
    nt = elected(3, max_uncommitted_entries_size=100)
    nt.isolate(2)
    nt.isolate(3)
    nt.peer(1).node.propose(b"x" * 5000)
    with pytest.raises(ProposalDroppedError):
        nt.peer(1).node.propose(b"x")


# -- check-quorum and pre-vote --------------------------------------------------------------------


def test_leader_steps_down_without_active_quorum() -> None:
    p = new_peer(1, check_quorum=True)
    p.raft.become_candidate()
    p.raft.become_leader()
    for _ in range(p.raft.election_timeout + 1):
        p.node.tick()
    assert p.raft.state == StateType.FOLLOWER


def test_leader_keeps_leading_with_active_quorum() -> None:
    nt = elected(3, check_quorum=True)
    nt.isolate(3)
    nt.tick(1, 3 * nt.raft(1).election_timeout)
    assert nt.raft(1).state == StateType.LEADER


def test_follower_in_lease_ignores_vote_requests() -> None:
    nt = elected(3, check_quorum=True)
    nt.campaign(3)
    assert nt.raft(1).state == StateType.LEADER
    assert (nt.raft(2).term, nt.raft(2).vote) == (1, 1)
    assert nt.raft(3).state == StateType.CANDIDATE


def test_forget_leader_ends_the_lease() -> None:
    nt = elected(3, check_quorum=True)
    nt.isolate(1)
    nt.peer(2).node.forget_leader()
    nt.peer(3).node.forget_leader()
    nt.campaign(3)
    assert nt.raft(3).state == StateType.LEADER


def test_free_stuck_candidate_with_check_quorum() -> None:
    """A node whose term ran ahead in a partition answers the leader's heartbeat with its
    term; the leader steps down so that a new election can include the stuck node."""
    nt = elected(3, check_quorum=True)
    nt.isolate(1)
    nt.campaign(3)
    nt.campaign(3)
    assert nt.raft(3).state == StateType.CANDIDATE and nt.raft(3).term == 3
    nt.recover()
    nt.send(Message(MT.HEARTBEAT, from_=1, to=3, term=nt.raft(1).term))
    assert nt.raft(1).state == StateType.FOLLOWER and nt.raft(1).term == 3
    nt.campaign(3)
    assert nt.raft(3).state == StateType.LEADER


def test_pre_vote_keeps_a_partitioned_node_from_inflating_its_term() -> None:
    nt = elected(3, pre_vote=True, check_quorum=True)
    nt.isolate(3)
    for _ in range(3):
        nt.campaign(3)
    assert (nt.raft(3).state, nt.raft(3).term) == (StateType.PRE_CANDIDATE, 1)
    nt.recover()
    nt.beat(1)
    assert [(nt.raft(i).state, nt.raft(i).term) for i in (1, 3)] == [
        (StateType.LEADER, 1),
        (StateType.FOLLOWER, 1),
    ]


def test_pre_vote_granted_to_a_future_term_without_changing_ours() -> None:
    p = new_peer(1, pre_vote=True, term=1, vote=2)
    p.raft.step(Message(MT.PRE_VOTE, from_=3, to=1, term=2))
    assert [(m.type, m.term, m.reject) for m in p.process_ready()] == [(MT.PRE_VOTE_RESP, 2, False)]
    assert (p.raft.term, p.raft.vote) == (1, 2)


def test_elections_by_ticking() -> None:
    """With randomized timeouts some node campaigns and wins without help."""
    nt = Network(None, None, None, pre_vote=True, check_quorum=True)
    for _ in range(30):
        nt.tick_all()
    leaders = [i for i in (1, 2, 3) if nt.raft(i).state == StateType.LEADER]
    assert len(leaders) == 1
    assert all(nt.raft(i).lead == leaders[0] for i in (1, 2, 3))


def test_runs_are_deterministic() -> None:
    def run() -> list[Message]:
        nt = Network(None, None, None, None, None, pre_vote=True, check_quorum=True, seed=7)
        nt.drop(1, 2, 0.3)
        nt.drop(3, 4, 0.5)
        for k in range(60):
            nt.tick_all()
            if k % 7 == 0:
                for i in (1, 2, 3, 4, 5):
                    if nt.raft(i).state == StateType.LEADER:
                        nt.propose(i, b"w%d" % k)
        return nt.delivered

    assert run() == run()


# -- restart and the Ready contract -------------------------------------------------------------


def test_restart_keeps_term_vote_commit_and_log() -> None:
    nt = elected(3)
    nt.propose(1, b"x")
    before = nt.peer(2)
    hs = (before.raft.term, before.raft.vote, before.raft.raft_log.committed)
    after = before.restart()
    r = after.raft
    assert (r.term, r.vote, r.raft_log.committed) == hs == (1, 1, 2)
    assert after.log() == before.log()
    assert not after.node.has_ready()  # nothing is handed out again (applied given)
    # No second vote in the same term.
    r.step(Message(MT.VOTE, from_=3, to=2, term=1, index=5, log_term=1))
    assert [(m.type, m.reject) for m in after.process_ready()] == [(MT.VOTE_RESP, True)]


def test_single_node_counts_itself_only_after_advance() -> None:
    storage = MemoryStorage(ConfState(voters=(1,)))
    node = RawNode(Config(id=1), storage)
    node.campaign()
    rd = node.ready()
    assert rd.soft_state is not None and rd.soft_state.raft_state == StateType.PRE_CANDIDATE
    assert rd.hard_state is None and not rd.must_sync
    node.advance()  # the own pre-vote counts: real campaign
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0) and rd.must_sync
    storage.set_hard_state(rd.hard_state)
    node.advance()
    rd = node.ready()
    assert node.state == StateType.LEADER
    assert [e.index for e in rd.entries] == [1] and rd.committed_entries == () and rd.must_sync
    storage.append(rd.entries)
    node.advance()  # the leader's own append ack: now it commits
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [1]
    assert rd.hard_state == HardState(term=1, vote=1, commit=1) and not rd.must_sync
    node.advance()
    assert not node.has_ready()


def test_votes_and_append_acks_are_persisted_messages() -> None:
    p = new_peer(2)
    p.node.step(Message(MT.VOTE, from_=1, to=2, term=1))
    rd = p.node.ready()
    assert rd.messages == () and [m.type for m in rd.persisted_messages] == [MT.VOTE_RESP]
    assert rd.must_sync and rd.hard_state == HardState(term=1, vote=1)
    p.persist(rd)
    p.node.advance()
    ents = (Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b"))
    p.node.step(Message(MT.APP, from_=1, to=2, term=1, entries=ents, commit=2))
    rd = p.node.ready()
    # Committed entries may be those of the same Ready: applied after they are persisted.
    assert rd.entries == ents and rd.committed_entries == ents
    assert rd.messages == () and [(m.type, m.index) for m in rd.persisted_messages] == [(MT.APP_RESP, 2)]
    p.node.advance()


def test_ready_contract_errors() -> None:
    p = new_peer(1)
    p.node.campaign()
    p.node.ready()
    with pytest.raises(RuntimeError, match="advance"):
        p.node.ready()
    p.node.advance()
    p.node.advance()  # a no-op
    with pytest.raises(StepLocalMessageError):
        p.node.step(Message(MT.HUP, from_=1, to=1))
    with pytest.raises(StepPeerNotFoundError):
        p.node.step(Message(MT.APP_RESP, from_=9, to=1, term=1))


def test_status() -> None:
    nt = elected(3)
    st = nt.peer(1).node.status()
    assert (st.id, st.hard_state, st.soft_state.raft_state, st.applied) == (
        1,
        HardState(1, 1, 1),
        StateType.LEADER,
        1,
    )
    assert sorted(st.progress) == [1, 2, 3] and st.progress[2].match == 1
    assert st.conf_state == ConfState(voters=(1, 2, 3))
    assert nt.peer(2).node.status().progress == {}
    node = nt.peer(2).node
    assert (node.id, node.lead, node.state, node.term) == (2, 1, StateType.FOLLOWER, 1)


class FailingStorage(MemoryStorage):
    """A storage whose reads fail with an I/O error once armed."""

    armed = False

    def term(self, i: int) -> int:
        if self.armed:
            raise OSError("disk on fire")
        return super().term(i)


def test_storage_errors_stop_the_node() -> None:
    storage = FailingStorage(ConfState(voters=(1, 2, 3)))
    storage.append([Entry(1, 1)])
    node = RawNode(config_for(2), storage)
    storage.armed = True
    with pytest.raises(OSError, match="disk on fire"):
        node.step(Message(MT.APP, from_=1, to=2, term=1, index=1, log_term=1, commit=1))


def test_compacted_storage_entries_are_not_fatal() -> None:
    nt = elected(3)
    nt.isolate(3)
    nt.propose(1, b"x")
    nt.propose(1, b"y")
    compact_leader(nt)
    r = nt.raft(1)
    with pytest.raises(CompactedError):
        r.raft_log.entries(1, None)
    nt.recover()
    nt.beat(1)
    assert_same_logs(nt, 1, 3)


class SlowSnapshotStorage(MemoryStorage):
    """A storage whose snapshot is being prepared for the first ``busy`` requests."""

    busy = 1

    def snapshot(self) -> Snapshot:
        if self.busy > 0:
            self.busy -= 1
            raise SnapshotTemporarilyUnavailableError("preparing")
        return super().snapshot()


def test_snapshot_temporarily_unavailable_is_retried_later() -> None:
    storage = SlowSnapshotStorage(ConfState(voters=(1, 2, 3)))
    leader = Peer(RawNode(config_for(1), storage), storage)
    nt = Network(leader, None, None)
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1, b"x")
    compact_leader(nt)
    nt.recover()
    nt.beat(1)  # the snapshot is not ready: nothing is sent, the peer stays probing
    assert nt.peer(3).snapshots == []
    assert nt.raft(1).trk.progress[3].state == ProgressState.PROBE
    nt.beat(1)
    assert len(nt.peer(3).snapshots) == 1
    assert_same_logs(nt, 1, 3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": 0}, "none as id"),
        ({"id": 1, "heartbeat_tick": 0}, "heartbeat tick"),
        ({"id": 1, "election_tick": 1, "heartbeat_tick": 1}, "election tick"),
        ({"id": 1, "max_inflight_msgs": 0}, "inflight"),
        ({"id": 1, "max_size_per_msg": -1}, "size per msg"),
        ({"id": 1, "max_uncommitted_entries_size": -1}, "uncommitted"),
    ],
)
def test_config_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawNode(Config(**fields), MemoryStorage(ConfState(voters=(1,))))


def test_restart_with_applied_past_commit_is_refused() -> None:
    storage = MemoryStorage(ConfState(voters=(1,)))
    storage.append([Entry(1, 1), Entry(1, 2)])
    storage.set_hard_state(HardState(term=1, commit=1))
    with pytest.raises(RaftInvariantError):
        RawNode(config_for(1, applied=2), storage)


def test_follower_read_state_arrives_in_a_later_ready() -> None:
    nt = elected(3)
    follower = nt.peer(2).node
    follower.read_index(b"rid")
    rd = follower.ready()
    assert rd.read_states == () and [(m.type, m.to) for m in rd.messages] == [(MT.READ_INDEX, 1)]
    follower.advance()
    nt.send(*rd.messages)
    assert nt.peer(2).read_states == [ReadState(index=1, request_ctx=b"rid")]


def test_package_exports_the_whole_vocabulary() -> None:
    import kine_py.raft as package
    from kine_py.raft import types

    public = {
        n for n in vars(types) if not n.startswith("_") and getattr(types, n).__class__ is not type(types)
    }
    public -= {"annotations", "dataclass", "field", "enum"}
    assert public | {"Config", "MemoryStorage", "RawNode", "Storage"} == set(package.__all__)
    assert all(hasattr(package, n) for n in package.__all__)


def test_pre_vote_rejected_at_term_zero_is_dropped() -> None:
    """A node still at term 0 (its log reached the disk, its hard state did not) cannot
    reject with a term: it stays silent instead of failing."""
    p = new_peer(2, log_terms=[1], pre_vote=True)
    p.raft.step(Message(MT.PRE_VOTE, from_=3, to=2, term=1, log_term=0, index=0))
    assert p.process_ready() == []
    assert (p.raft.term, p.raft.state) == (0, StateType.FOLLOWER)


@pytest.mark.parametrize("drop", [True, False])
def test_append_ack_of_an_earlier_term_is_dropped_from_the_ready(drop: bool) -> None:
    """Found by the simulator: a follower acks a duplicate append of its term-2 leader (index
    5, durable), then, before its next Ready, a term-3 leader's append truncates its log to 3.
    Sent after that Ready is durable, the term-2 ack would state an index the disk no longer
    holds. ``drop_stale_acks`` (the default) leaves it out; etcd-raft sends it."""
    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    storage.append([Entry(term=2, index=i) for i in range(1, 6)])
    storage.set_hard_state(HardState(term=2, vote=1, commit=2))
    rn = RawNode(Config(id=2, drop_stale_acks=drop), storage)
    rn.step(Message(MessageType.APP, to=2, from_=1, term=2, log_term=2, index=5, commit=2))
    rn.step(
        Message(
            MessageType.APP,
            to=2,
            from_=3,
            term=3,
            log_term=2,
            index=2,
            commit=2,
            entries=(Entry(term=3, index=3),),
        )
    )
    rd = rn.ready()
    acks = [(m.to, m.term, m.index) for m in rd.persisted_messages if m.type is MessageType.APP_RESP]
    assert [e.index for e in rd.entries] == [3]
    assert acks == ([(3, 3, 3)] if drop else [(1, 2, 5), (3, 3, 3)])
