"""The Raft paper's rules, one test per group of sentences (the ideas of etcd-raft's
raft_paper_test.go). Each test names its section of "In Search of an Understandable
Consensus Algorithm" (Ongaro & Ousterhout, extended version).

Each test sets up a node (a real ``RawNode`` over a ``MemoryStorage``), steps messages into
its state machine, and checks the state and the messages it sends. ``Peer.process_ready``
persists every ``Ready`` at once, so a node's own vote and append ack count immediately.
"""

from __future__ import annotations

import pytest

from kine_py.raft import NONE, Entry, Message, MessageType, StateType
from kine_py.raft.raft import Raft

from .network import BLACK_HOLE, Network, Peer, entries_of_terms, new_peer

MT = MessageType


def _name(state: StateType) -> str:
    return state.name.lower()


def sent(p: Peer) -> list[Message]:
    """What the node sends now (after persisting), ordered by destination."""
    return sorted(p.process_ready(), key=lambda m: (m.to, m.type))


def make_leader(p: Peer) -> Raft:
    r = p.raft
    r.become_candidate()
    r.become_leader()
    return r


def accept_and_reply(m: Message) -> Message:
    """A follower's ack of append ``m``."""
    assert m.type == MT.APP
    return Message(MT.APP_RESP, to=m.from_, from_=m.to, term=m.term, index=m.index + len(m.entries))


def commit_noop_entry(p: Peer) -> None:
    """Have every follower ack the new leader's empty entry, and persist everything."""
    r = p.raft
    assert r.state == StateType.LEADER
    r.bcast_append()
    for m in p.process_ready():
        assert m.type == MT.APP and len(m.entries) == 1 and m.entries[0].data == b""
        r.step(accept_and_reply(m))
    p.process_ready()


# -- 5.1 Raft basics: terms -----------------------------------------------------------------------


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE, StateType.LEADER], ids=_name)
def test_update_term_from_message(state: StateType) -> None:
    """5.1: if one server's current term is smaller than the other's, it updates its current
    term to the larger value; a candidate or leader that discovers its term is out of date
    reverts to follower."""
    p = new_peer(1)
    r = p.raft
    if state == StateType.FOLLOWER:
        r.become_follower(1, 2)
    elif state == StateType.CANDIDATE:
        r.become_candidate()
    else:
        make_leader(p)
    r.step(Message(MT.APP, from_=2, to=1, term=2))
    assert (r.term, r.state, r.lead) == (2, StateType.FOLLOWER, 2)


def test_reject_stale_term_message() -> None:
    """5.1: if a server receives a request with a stale term number, it rejects the request
    (here: ignores it; without pre-vote or check-quorum nothing is sent back)."""
    p = new_peer(1, log_terms=[1], term=2)
    r = p.raft
    r.step(Message(MT.APP, from_=2, to=1, term=1, index=1, log_term=1, entries=(Entry(1, 2),), commit=2))
    assert (r.term, r.raft_log.last_index(), r.raft_log.committed) == (2, 1, 0)
    assert sent(p) == []


def test_stale_leader_is_told_the_term_with_pre_vote() -> None:
    """5.1 (with pre-vote / check-quorum, thesis 9.6): a node that ignores an old leader's
    append still answers, so the old leader learns the newer term."""
    p = new_peer(1, log_terms=[1], term=2, pre_vote=True)
    p.raft.step(Message(MT.HEARTBEAT, from_=2, to=1, term=1))
    assert [(m.type, m.to, m.term) for m in sent(p)] == [(MT.APP_RESP, 2, 2)]


# -- 5.2 Leader election ----------------------------------------------------------------------


def test_start_as_follower() -> None:
    """5.2: when servers start up, they begin as followers."""
    assert new_peer(1).raft.state == StateType.FOLLOWER


def test_leader_bcast_beat() -> None:
    """5.2: leaders send periodic heartbeats (appends without entries) to all followers to
    keep their authority; a heartbeat never carries a commit index past what the follower is
    known to hold."""
    hb = 1
    p = new_peer(1, heartbeat_tick=hb)
    r = make_leader(p)
    for _ in range(10):
        r.append_entry([Entry(0, 0)])
    p.process_ready()
    for _ in range(hb):
        p.node.tick()
    assert [(m.type, m.to, m.term, m.commit, m.entries) for m in sent(p)] == [
        (MT.HEARTBEAT, 2, 1, 0, ()),
        (MT.HEARTBEAT, 3, 1, 0, ()),
    ]


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE], ids=_name)
def test_nonleader_start_election(state: StateType) -> None:
    """5.2: a follower (or a candidate whose election timed out) that hears nothing for an
    election timeout increments its term, becomes candidate, votes for itself and asks every
    other server for its vote."""
    et = 10
    p = new_peer(1, election_tick=et)
    r = p.raft
    if state == StateType.FOLLOWER:
        r.become_follower(1, 2)
    else:
        r.become_candidate()
    for _ in range(1, 2 * et):
        p.node.tick()
    msgs = sent(p)
    assert (r.term, r.state, r.vote, r.trk.votes) == (2, StateType.CANDIDATE, 1, {1: True})
    assert [(m.type, m.from_, m.to, m.term, m.index, m.log_term) for m in msgs] == [
        (MT.VOTE, 1, 2, 2, 0, 0),
        (MT.VOTE, 1, 3, 2, 0, 0),
    ]


@pytest.mark.parametrize(
    ("size", "votes", "state"),
    [
        (1, {}, StateType.LEADER),
        (3, {2: True, 3: True}, StateType.LEADER),
        (3, {2: True}, StateType.LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, StateType.LEADER),
        (5, {2: True, 3: True, 4: True}, StateType.LEADER),
        (5, {2: True, 3: True}, StateType.LEADER),
        (3, {2: False, 3: False}, StateType.FOLLOWER),
        (5, {2: False, 3: False, 4: False, 5: False}, StateType.FOLLOWER),
        (5, {2: True, 3: False, 4: False, 5: False}, StateType.FOLLOWER),
        (3, {}, StateType.CANDIDATE),
        (5, {2: True}, StateType.CANDIDATE),
        (5, {2: False, 3: False}, StateType.CANDIDATE),
        (5, {}, StateType.CANDIDATE),
    ],
)
def test_leader_election_in_one_round_rpc(size: int, votes: dict[int, bool], state: StateType) -> None:
    """5.2: a candidate wins when a majority of the full cluster votes for it in the same
    term; it loses (back to follower) when a majority rejected it; otherwise it keeps
    waiting."""
    p = new_peer(1, range(1, size + 1))
    r = p.raft
    r.step(Message(MT.HUP, from_=1, to=1))
    p.process_ready()
    for node_id, granted in votes.items():
        r.step(Message(MT.VOTE_RESP, from_=node_id, to=1, term=r.term, reject=not granted))
        p.process_ready()
    assert (r.state, r.term) == (state, 1)


@pytest.mark.parametrize(
    ("vote", "candidate", "reject"),
    [(NONE, 2, False), (NONE, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True)],
)
def test_follower_vote(vote: int, candidate: int, reject: bool) -> None:
    """5.2: each server votes for at most one candidate in a given term, first come first
    served (asking again gets the same answer)."""
    p = new_peer(1, term=1, vote=vote)
    p.raft.step(Message(MT.VOTE, from_=candidate, to=1, term=1))
    assert [(m.type, m.to, m.term, m.reject) for m in sent(p)] == [(MT.VOTE_RESP, candidate, 1, reject)]


@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term: int) -> None:
    """5.2: a candidate that receives an append from a leader whose term is at least its own
    recognizes it and returns to follower."""
    p = new_peer(1)
    r = p.raft
    r.step(Message(MT.HUP, from_=1, to=1))
    assert r.state == StateType.CANDIDATE
    r.step(Message(MT.APP, from_=2, to=1, term=term))
    assert (r.state, r.term, r.lead) == (StateType.FOLLOWER, term, 2)


def _timeouts_seen(p: Peer, state: StateType, rounds: int) -> set[int]:
    r = p.raft
    seen = set()
    for _ in range(rounds):
        if state == StateType.FOLLOWER:
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        r.msgs.clear()
        r.msgs_after_append.clear()
        ticks = 0
        while not r.msgs:
            p.node.tick()
            ticks += 1
        seen.add(ticks)
    return seen


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE], ids=_name)
def test_election_timeout_randomized(state: StateType) -> None:
    """5.2: Raft uses randomized election timeouts, here every value of
    [election timeout, 2 * election timeout)."""
    et = 10
    p = new_peer(1, election_tick=et)
    assert _timeouts_seen(p, state, 50 * et) == set(range(et, 2 * et))


def test_election_timeout_is_deterministic_for_a_seed() -> None:
    """5.2 (this implementation): the randomness comes only from ``Config.rand``; the same
    seed gives the same timeouts."""

    def timeouts(p: Peer) -> list[int]:
        out = []
        for _ in range(20):
            p.raft.reset_randomized_election_timeout()
            out.append(p.raft.randomized_election_timeout)
        return out

    assert timeouts(new_peer(1)) == timeouts(new_peer(1))
    assert timeouts(new_peer(1)) != timeouts(new_peer(2))
    assert len(set(timeouts(new_peer(1)))) > 1


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE], ids=_name)
def test_election_timeout_nonconflict(state: StateType) -> None:
    """5.2: randomized timeouts spread servers out, so in most cases only a single server
    times out first (split votes are rare)."""
    et, size, rounds = 10, 5, 300
    peers = [new_peer(i, range(1, size + 1), election_tick=et) for i in range(1, size + 1)]
    conflicts = 0
    for _ in range(rounds):
        for p in peers:
            r = p.raft
            if state == StateType.FOLLOWER:
                r.become_follower(r.term + 1, NONE)
            else:
                r.become_candidate()
            r.msgs.clear()
            r.msgs_after_append.clear()
        timed_out = 0
        while timed_out == 0:
            for p in peers:
                p.node.tick()
                if p.raft.msgs:
                    timed_out += 1
        conflicts += timed_out > 1
    assert conflicts / rounds <= 0.3


# -- 5.3 Log replication ------------------------------------------------------------------------


def test_leader_start_replication() -> None:
    """5.3: the leader appends a command to its log as a new entry, then issues appends in
    parallel to each of the other servers to replicate it."""
    p = new_peer(1)
    r = make_leader(p)
    commit_noop_entry(p)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"some data"),)))
    assert r.raft_log.last_index() == li + 1
    assert [(e.index, e.term, e.data) for e in r.raft_log.next_unstable_ents()] == [(li + 1, 1, b"some data")]
    want = (Entry(term=1, index=li + 1, data=b"some data"),)
    assert [(m.type, m.to, m.term, m.index, m.log_term, m.entries, m.commit) for m in sent(p)] == [
        (MT.APP, 2, 1, li, 1, want, li),
        (MT.APP, 3, 1, li, 1, want, li),
    ]


def test_leader_commit_entry() -> None:
    """5.3: once the entry is replicated on a majority, the leader applies it and tells the
    followers the new commit index in later appends."""
    p = new_peer(1)
    r = make_leader(p)
    commit_noop_entry(p)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"some data"),)))
    for m in sent(p):
        r.step(accept_and_reply(m))
    msgs = sent(p)
    assert r.raft_log.committed == li + 1
    assert p.applied_data() == [b"some data"]
    assert [(m.type, m.to, m.commit) for m in msgs] == [(MT.APP, 2, li + 1), (MT.APP, 3, li + 1)]


@pytest.mark.parametrize(
    ("size", "acceptors", "committed"),
    [
        (1, [], True),
        (3, [], False),
        (3, [2], True),
        (3, [2, 3], True),
        (5, [], False),
        (5, [2], False),
        (5, [2, 3], True),
        (5, [2, 3, 4], True),
        (5, [2, 3, 4, 5], True),
    ],
)
def test_leader_acknowledge_commit(size: int, acceptors: list[int], committed: bool) -> None:
    """5.3: a log entry is committed once the leader that created it has replicated it on a
    majority of the servers (itself included)."""
    p = new_peer(1, range(1, size + 1))
    r = make_leader(p)
    commit_noop_entry(p)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"some data"),)))
    for m in sent(p):
        if m.to in acceptors:
            r.step(accept_and_reply(m))
    p.process_ready()
    assert (r.raft_log.committed > li) is committed


@pytest.mark.parametrize("terms", [[], [2], [1, 2], [1]])
def test_leader_commit_preceding_entries(terms: list[int]) -> None:
    """5.3: committing an entry of its term also commits all preceding entries, including
    those created by previous leaders."""
    p = new_peer(1, log_terms=terms, term=2)
    r = make_leader(p)
    r.step(Message(MT.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"some data"),)))
    for m in sent(p):
        r.step(accept_and_reply(m))
    p.process_ready()
    li = len(terms)
    assert [(e.index, e.term, e.data) for e in p.applied] == [
        *[(i + 1, t, b"") for i, t in enumerate(terms)],
        (li + 1, 3, b""),
        (li + 2, 3, b"some data"),
    ]


@pytest.mark.parametrize(
    ("entries", "commit"),
    [
        ([(1, 1, b"some data")], 1),
        ([(1, 1, b"some data"), (2, 1, b"some data2")], 2),
        ([(1, 1, b"some data2"), (2, 1, b"some data")], 2),
        ([(1, 1, b"some data"), (2, 1, b"some data2")], 1),
    ],
)
def test_follower_commit_entry(entries: list[tuple[int, int, bytes]], commit: int) -> None:
    """5.3: once a follower learns that a log entry is committed, it applies the entry to its
    state machine (in log order)."""
    p = new_peer(1)
    p.raft.become_follower(1, 2)
    ents = tuple(Entry(term=t, index=i, data=d) for i, t, d in entries)
    p.raft.step(Message(MT.APP, from_=2, to=1, term=1, entries=ents, commit=commit))
    p.process_ready()
    assert p.raft.raft_log.committed == commit
    assert p.applied == list(ents[:commit])


@pytest.mark.parametrize(
    ("log_term", "index", "want_index", "reject", "hint", "hint_term"),
    [
        (0, 0, 1, False, 0, 0),  # before the committed entries: acked at the commit index
        (1, 1, 1, False, 0, 0),  # matches a committed entry
        (2, 2, 2, False, 0, 0),  # matches an uncommitted entry
        (1, 2, 2, True, 1, 1),  # conflicts with an existing entry
        (3, 3, 3, True, 2, 2),  # entry not in the log
    ],
)
def test_follower_check_msg_app(
    log_term: int, index: int, want_index: int, reject: bool, hint: int, hint_term: int
) -> None:
    """5.3: if the follower does not find an entry with the same index and term as the one
    preceding the new entries, it refuses them (hinting where the logs may agree)."""
    p = new_peer(1, log_terms=[1, 2], commit=1)
    p.raft.become_follower(2, 2)
    p.raft.step(Message(MT.APP, from_=2, to=1, term=2, log_term=log_term, index=index))
    assert [(m.type, m.term, m.index, m.reject, m.reject_hint, m.log_term) for m in sent(p)] == [
        (MT.APP_RESP, 2, want_index, reject, hint, hint_term)
    ]


@pytest.mark.parametrize(
    ("index", "term", "new", "want", "want_unstable"),
    [
        (2, 2, [(3, 3)], [(1, 1), (2, 2), (3, 3)], [(3, 3)]),
        (1, 1, [(2, 3), (3, 4)], [(1, 1), (2, 3), (3, 4)], [(2, 3), (3, 4)]),
        (0, 0, [(1, 1)], [(1, 1), (2, 2)], []),
        (0, 0, [(1, 3)], [(1, 3)], [(1, 3)]),
    ],
)
def test_follower_append_entries(
    index: int,
    term: int,
    new: list[tuple[int, int]],
    want: list[tuple[int, int]],
    want_unstable: list[tuple[int, int]],
) -> None:
    """5.3: if an existing entry conflicts with a new one (same index, different terms), the
    follower deletes it and all that follow, then appends the new entries."""
    p = new_peer(1, log_terms=[1, 2])
    r = p.raft
    r.become_follower(2, 2)
    ents = tuple(Entry(term=t, index=i) for i, t in new)
    r.step(Message(MT.APP, from_=2, to=1, term=2, log_term=term, index=index, entries=ents))
    assert [(e.index, e.term) for e in r.raft_log.all_entries()] == want
    assert [(e.index, e.term) for e in r.raft_log.next_unstable_ents()] == want_unstable


@pytest.mark.parametrize(
    "follower_terms",
    [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],
        [1, 1, 1, 4],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        [1, 1, 1, 4, 4, 4, 4],
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ],
)
def test_leader_sync_follower_log(follower_terms: list[int]) -> None:
    """5.3 (Figure 7): the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own, whatever they lack or have extra."""
    leader_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    term = 8
    lead = new_peer(1, log_terms=leader_terms, term=term, commit=len(leader_terms))
    follower = new_peer(2, log_terms=follower_terms, term=term - 1)
    # Three members, so that the leader needs the black hole's vote, sent by hand.
    nt = Network(lead, follower, BLACK_HOLE)
    nt.campaign(1)
    nt.send(Message(MT.VOTE_RESP, from_=3, to=1, term=term + 1))
    nt.propose(1, b"")
    assert lead.raft.state == StateType.LEADER
    assert follower.log() == lead.log()
    assert follower.raft.raft_log.committed == lead.raft.raft_log.committed


# -- 5.4 Safety ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("terms", "want_term"), [([1], 2), ([1, 2], 3)])
def test_vote_request(terms: list[int], want_term: int) -> None:
    """5.4.1: the vote request includes information about the candidate's log (the index and
    term of its last entry)."""
    p = new_peer(1)
    r = p.raft
    ents = tuple(entries_of_terms(terms))
    r.step(Message(MT.APP, from_=2, to=1, term=want_term - 1, entries=ents))
    p.process_ready()
    for _ in range(1, 2 * r.election_timeout):
        r.tick_election()
    assert [(m.type, m.to, m.term, m.index, m.log_term) for m in sent(p)] == [
        (MT.VOTE, 2, want_term, ents[-1].index, ents[-1].term),
        (MT.VOTE, 3, want_term, ents[-1].index, ents[-1].term),
    ]


@pytest.mark.parametrize(
    ("terms", "log_term", "index", "reject"),
    [
        # same last term: the longer (or equal) log wins
        ([1], 1, 1, False),
        ([1], 1, 2, False),
        ([1, 1], 1, 1, True),
        # the candidate's last term is higher
        ([1], 2, 1, False),
        ([1], 2, 2, False),
        ([1, 1], 2, 1, False),
        # the voter's last term is higher
        ([2], 1, 1, True),
        ([2], 1, 2, True),
        ([2, 1], 1, 1, True),
    ],
)
def test_voter(terms: list[int], log_term: int, index: int, reject: bool) -> None:
    """5.4.1: the voter denies its vote if its own log is more up to date than the
    candidate's (later last term, or same last term and longer)."""
    p = new_peer(1, (1, 2), log_terms=terms)
    p.raft.step(Message(MT.VOTE, from_=2, to=1, term=3, log_term=log_term, index=index))
    assert [(m.type, m.reject) for m in sent(p)] == [(MT.VOTE_RESP, reject)]


@pytest.mark.parametrize(("index", "want_commit"), [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term(index: int, want_commit: int) -> None:
    """5.4.2: Raft never commits log entries from previous terms by counting replicas; only
    entries of the leader's current term are, and earlier ones come along with them."""
    p = new_peer(1, (1, 2), log_terms=[1, 2], term=2)
    r = make_leader(p)
    p.process_ready()
    r.step(Message(MT.PROP, from_=1, to=1, entries=(Entry(0, 0),)))
    r.step(Message(MT.APP_RESP, from_=2, to=1, term=r.term, index=index))
    assert r.raft_log.committed == want_commit
