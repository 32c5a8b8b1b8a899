"""The randomized cluster simulator (``tests/raft/sim.py``) run against the Raft core.

Two drivers over the same ``Sim`` steps, with every safety property checked after every
step and liveness checked after healing:

* a plain seeded random walk, ``KINE_RAFT_SIM_SEEDS`` seeds (default below) of
  ``KINE_RAFT_SIM_STEPS`` steps each, alternating 3- and 5-node clusters; a failure prints the
  seed and the last steps, and ``run_random_walk(seed, steps)`` replays it exactly;
* a hypothesis ``RuleBasedStateMachine`` (``KINE_RAFT_SIM_EXAMPLES`` examples), so a failure
  shrinks to a short sequence of steps. It is derandomized (the same examples every run)
  unless ``KINE_RAFT_SIM_RANDOM=1``.

The mutant tests break the driver on purpose (a node that forgets its vote on restart, a
transport that corrupts vote requests) and require the end-to-end checks to catch it, so the checks
are known to be able to fail.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kine_py.raft import (
    NONE,
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    ReadState,
    StateType,
)
from tests.raft.sim import SafetyViolation, Sim, SimOptions, random_step, run_random_walk

SEEDS = int(os.environ.get("KINE_RAFT_SIM_SEEDS", "2000"))
STEPS = int(os.environ.get("KINE_RAFT_SIM_STEPS", "600"))
EXAMPLES = int(os.environ.get("KINE_RAFT_SIM_EXAMPLES", "60"))
CHUNKS = 8


def options_for(seed: int) -> SimOptions:
    """3 and 5 nodes; one seed in four with etcd-raft's ReadIndex (no forwarder ack); one in
    three without check-quorum (etcd-raft's default), where a leader cut off from the majority
    keeps leading until it hears a higher term, so reads at deposed leaders are common."""
    return SimOptions(
        nodes=5 if seed % 2 else 3, forwarder_read_ack=seed % 4 != 3, check_quorum=seed % 3 != 2
    )


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_walk(chunk: int) -> None:
    started = time.monotonic()
    for seed in range(chunk, SEEDS, CHUNKS):
        run_random_walk(seed, STEPS, options_for(seed))
    print(f"chunk {chunk}: {len(range(chunk, SEEDS, CHUNKS))} seeds in {time.monotonic() - started:.1f}s")


def test_same_seed_same_run() -> None:
    a = run_random_walk(7, 200, options_for(7))
    b = run_random_walk(7, 200, options_for(7))
    assert a.trace_lines() == b.trace_lines()
    assert a.committed == b.committed


def test_random_walk_makes_progress() -> None:
    """The walk is not vacuous: over a few seeds it commits, reads, elects, crashes and
    reconfigures."""
    totals = {"committed": 0, "reads": 0, "terms": 0, "restarts": 0, "conf": 0}
    for seed in range(20):
        sim = run_random_walk(seed, STEPS, options_for(seed))
        totals["committed"] += sum(1 for e in sim.committed.values() if e.data.startswith(b"p"))
        totals["reads"] += sim.acked_reads
        totals["terms"] += len(sim.leaders)
        totals["restarts"] += sum(n.incarnation - 1 for n in sim.nodes.values())
        totals["conf"] += len(sim.nodes) - sim.opts.nodes
    assert all(v > 0 for v in totals.values()), totals


# -- hypothesis ------------------------------------------------------------------------------

node_ids = st.integers(1, 7)
picks = st.integers(0, 1 << 16)


class RaftCluster(RuleBasedStateMachine):
    """The same steps as the random walk, chosen by hypothesis."""

    sim: Sim

    @initialize(seed=st.integers(0, 1 << 16), five=st.booleans())
    def start(self, seed: int, five: bool) -> None:
        self.sim = Sim(seed, SimOptions(nodes=5 if five else 3))

    @rule(k=picks)
    def deliver(self, k: int) -> None:
        self.sim.deliver(k)

    @rule(n=node_ids)
    def ready(self, n: int) -> None:
        self.sim.ready(n)

    @rule(n=node_ids)
    def persist(self, n: int) -> None:
        self.sim.persist(n)

    @rule(n=node_ids)
    def handle_ready(self, n: int) -> None:
        self.sim.handle_ready(n)

    @rule()
    def tick_all(self) -> None:
        self.sim.tick_all()

    @rule(n=node_ids, times=st.integers(1, 12))
    def tick(self, n: int, times: int) -> None:
        for _ in range(times):
            self.sim.tick(n)

    @rule(n=node_ids)
    def propose(self, n: int) -> None:
        self.sim.propose(n)

    @rule(k=picks)
    def drop(self, k: int) -> None:
        self.sim.drop(k)

    @rule(k=picks)
    def duplicate(self, k: int) -> None:
        self.sim.duplicate(k)

    @rule(side=st.sets(node_ids, max_size=3))
    def partition(self, side: set[int]) -> None:
        self.sim.partition(sorted(side))

    @rule()
    def heal(self) -> None:
        self.sim.heal()

    @rule(n=node_ids, keep=st.floats(0, 1))
    def crash(self, n: int, keep: float) -> None:
        self.sim.crash(n, keep)

    @rule(n=node_ids)
    def restart(self, n: int) -> None:
        self.sim.restart(n)

    @rule(n=node_ids, fraction=st.floats(0, 1))
    def compact(self, n: int, fraction: float) -> None:
        self.sim.compact(n, fraction)

    @rule(n=node_ids)
    def add_learner(self, n: int) -> None:
        self.sim.add_learner(n)

    @rule(n=node_ids, k=picks)
    def promote(self, n: int, k: int) -> None:
        self.sim.promote(n, k)

    @rule(n=node_ids, k=picks)
    def remove(self, n: int, k: int) -> None:
        self.sim.remove(n, k)

    @rule(n=node_ids, to=node_ids)
    def transfer(self, n: int, to: int) -> None:
        self.sim.transfer(n, to)

    @rule(n=node_ids)
    def read_index(self, n: int) -> None:
        self.sim.read_index(n)

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def safe(self) -> None:
        self.sim.check()

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            with self.sim.reporting():
                self.sim.heal_all()
                self.sim.check_liveness(300)


TestRaftCluster = RaftCluster.TestCase
TestRaftCluster.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=60,
    deadline=None,
    derandomize=os.environ.get("KINE_RAFT_SIM_RANDOM", "") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- mutants: the checks must catch a broken driver ------------------------------------------


class VoteAmnesiaSim(Sim):
    """A driver that does not keep the vote across restarts (the term it does keep).

    The history of durable votes is forgotten too, so only the end-to-end properties (one
    leader per term, log matching, state machine safety, ...) can notice."""

    def restart(self, node_id: int) -> bool:
        node = self.nodes.get(node_id)
        if node is not None and not node.up and not node.removed:
            hs = node.disk.synced.hard_state
            node.disk.synced.hard_state = HardState(hs.term, NONE, hs.commit)
            self.durable_votes = {k: v for k, v in self.durable_votes.items() if k[0] != node_id}
        return super().restart(node_id)

    def _durable_hs(self, node_id: int, hs: HardState) -> None:
        pass  # the durable-vote check would flag the driver itself


class BoastfulCandidateSim(Sim):
    """A transport that corrupts (pre-)vote requests so every candidate claims a log from a
    far later term: voters then elect candidates that lack committed entries."""

    def _send(self, m: Message) -> None:
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            m = replace(m, log_term=m.log_term + 1000)
        super()._send(m)


class HastyReadSim(Sim):
    """A leader that answers ReadIndex at once with its commit index (once it has committed an
    entry of its term, as a real one must), its own reads and forwarded ones, without
    confirming it is still the leader — what a read lease with no bound on clock drift would
    do: a deposed leader then serves stale reads. The walk did not catch this in 300 seeds
    before it had the ``split_leader`` step and seeds without check-quorum."""

    def _hasty(self, node_id: int) -> int | None:
        node = self.nodes.get(node_id)
        if node is None or not node.up:
            return None
        r = node.rn.raft
        if r.state != StateType.LEADER or not r.committed_entry_in_current_term():
            return None
        return r.raft_log.committed

    def read_index(self, node_id: int) -> bool:
        commit = self._hasty(node_id)
        if commit is None:
            return super().read_index(node_id)
        self.steps += 1
        ctx = self.new_read(node_id)
        self.nodes[node_id].rn.raft.read_states.append(ReadState(index=commit, request_ctx=ctx))
        return True

    def _send(self, m: Message) -> None:
        commit = self._hasty(m.to) if m.type == MessageType.READ_INDEX else None
        if commit is not None:
            m = Message(
                MessageType.READ_INDEX_RESP,
                to=m.from_,
                from_=m.to,
                term=self.nodes[m.to].rn.term,
                index=commit,
                entries=m.entries,
            )
        super()._send(m)


def _first_violation(cls: type[Sim], seeds: int) -> tuple[int, SafetyViolation] | None:
    """Run ``cls`` over seeds with frequent crashes that lose every unsynced write."""
    for seed in range(seeds):
        sim = cls(seed, options_for(seed))
        rng = random.Random(seed)
        try:
            with sim.reporting():
                for _ in range(600):
                    random_step(sim, rng)
                    if rng.random() < 0.03:
                        victim = rng.choice(sorted(sim.nodes))
                        sim.crash(victim, 0.0)
                        sim.restart(victim)
                sim.heal_all()
                sim.check_liveness(300)
        except SafetyViolation as exc:
            return seed, exc
    return None


@pytest.mark.parametrize(
    "mutant", [VoteAmnesiaSim, BoastfulCandidateSim, HastyReadSim], ids=lambda c: c.__name__
)
def test_checks_catch_a_broken_driver(mutant: type[Sim]) -> None:
    found = _first_violation(mutant, 300)
    assert found is not None, f"{mutant.__name__} ran 300 seeds without a safety violation"
    seed, violation = found
    what = str(violation).split("\n")[0]
    print(f"{mutant.__name__}: seed {seed}: {what}")
    assert not what.startswith("unexpected"), str(violation)  # one of the checks, not a crash
    assert f"seed={seed}" in str(violation)


# -- core bugs the simulator found (kept as regressions; the expectation is the right behaviour) --


def test_node_at_term_zero_answers_a_pre_vote_it_rejects() -> None:
    """Found by the random walk (seed 1177, 400 steps): a node restarted at term 0 with a
    non-empty log (its entries reached the disk, its hard state did not) got a pre-vote from a
    candidate with a shorter log. Rejecting it raised RaftInvariantError ("term should be set
    when sending PRE_VOTE_RESP") out of ``RawNode.step``: a peer's message crashed the node.
    etcd-raft has the same check but its nodes never hold a log at term 0 (they bootstrap at
    term 1); this core bootstraps at term 0, so the rejection must be sent (or dropped), not
    raise."""
    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    storage.append([Entry(term=1, index=1)])
    rn = RawNode(Config(id=2, pre_vote=True, check_quorum=True), storage)
    assert rn.term == 0
    rn.step(Message(MessageType.PRE_VOTE, to=2, from_=3, term=1, log_term=0, index=0))
    rd = rn.ready()
    answers = [(m.type, m.to, m.reject) for m in (*rd.messages, *rd.persisted_messages)]
    assert answers in ([(MessageType.PRE_VOTE_RESP, 3, True)], [])
    assert rn.term == 0 and rn.state == StateType.FOLLOWER
