"""The consistency checkers on synthetic histories: correct ones pass, each kind of bug is caught.

Histories come from a sequential simulation of an etcd store (each op at its own linearization
point, revisions as etcd assigns them), so they are correct by construction; stretching every
interval around its point keeps them correct. With the intervals kept apart (no stretching) any
single mutation below is a real violation, and the checkers must say ILLEGAL.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kine_py.testing.checkers import all_ok, check_history, summary
from kine_py.testing.checkers.linearizability import check_linearizability
from kine_py.testing.checkers.revision_replay import check_revision_replay
from kine_py.testing.checkers.watch import check_watches
from kine_py.testing.history import (
    KV,
    Event,
    EventType,
    History,
    Kind,
    Op,
    Outcome,
    Verdict,
    WatchRecording,
    WatchResponse,
    WatchSession,
)

KEYS = [b"k0", b"k1", b"k2"]
SLOT = 100  # ns between linearization points; unstretched ops are [point - 10, point + 10]

steps = st.lists(
    st.tuples(st.sampled_from(list(Kind)), st.integers(0, len(KEYS) - 1), st.booleans()),
    min_size=1,
    max_size=60,
)
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Sim:
    """A sequential etcd: op i takes effect at time (i + 1) * SLOT."""

    revision: int = 1
    store: dict[bytes, KV] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    states: dict[bytes, list[tuple[int, KV | None]]] = field(default_factory=dict)

    def run(self, plan: list[tuple[Kind, int, bool]]) -> Sim:
        for kind, key_index, hit in plan:
            self.apply(kind, KEYS[key_index], hit)
        return self

    def apply(self, kind: Kind, key: bytes, hit: bool = True) -> Op:
        point = (len(self.ops) + 1) * SLOT
        op = Op(len(self.ops), len(self.ops) % 4, kind, key, invoke_ns=point - 10, return_ns=point + 10)
        op.outcome, op.observed, op.state = Outcome.OK, True, self.store.get(key)
        self.ops.append(op)
        if kind is Kind.GET:
            op.revision = self.revision
        elif kind is Kind.PUT:
            self._put(op, b"v%d" % op.id)
        elif kind is Kind.DELETE:
            self._delete(op)
        else:
            self._cas(op, hit)
        return op

    def _change(self, key: bytes, state: KV | None, event: Event) -> None:
        self.states.setdefault(key, [(1, None)]).append((self.revision, state))
        self.events.append(event)
        if state is None:
            del self.store[key]
        else:
            self.store[key] = state

    def _put(self, op: Op, value: bytes) -> None:
        prev = op.state
        self.revision += 1
        kv = KV(
            value,
            self.revision,
            prev.create_revision if prev else self.revision,
            prev.version + 1 if prev else 1,
        )
        op.value, op.revision = value, self.revision
        event = Event(
            self.revision, EventType.PUT, op.key, value, kv.mod_revision, kv.create_revision, kv.version
        )
        self._change(op.key, kv, event)

    def _delete(self, op: Op) -> None:
        if op.state is None:
            op.deleted, op.revision = 0, self.revision
            return
        self.revision += 1
        op.deleted, op.revision = 1, self.revision
        self._change(op.key, None, Event(self.revision, EventType.DELETE, op.key, b"", self.revision, 0, 0))

    def _cas(self, op: Op, hit: bool) -> None:
        current = 0 if op.state is None else op.state.mod_revision
        op.expected = current if hit else (1 if op.state is None else 0)
        if hit:
            op.succeeded = True
            self._put(op, b"v%d" % op.id)
        else:
            op.value = b"v%d" % op.id
            op.outcome, op.succeeded, op.revision = Outcome.FAIL, False, self.revision

    def history(self, watches: list[WatchRecording] | None = None) -> History:
        history = History(self.ops, watches or [], self.events)
        history.meta["final_revision"] = self.revision
        return history


def stretch(ops: list[Op], rng: random.Random, most: int) -> None:
    """Widen each interval randomly around its linearization point (still containing it)."""
    for op in ops:
        point = (op.id + 1) * SLOT
        assert op.return_ns is not None
        op.invoke_ns = point - rng.randint(0, most)
        op.return_ns = point + rng.randint(0, most)


def make_unknown(op: Op) -> None:
    """The client gave up on ``op``: it happened (or not), but nothing came back."""
    op.outcome, op.revision, op.observed, op.state, op.succeeded, op.deleted = (
        Outcome.UNKNOWN,
        None,
        False,
        None,
        None,
        None,
    )
    op.error = "DEADLINE_EXCEEDED"


def add_ghosts(sim: Sim, rng: random.Random, count: int) -> None:
    """Writes that timed out and never happened."""
    for n in range(count):
        key = rng.choice(KEYS)
        kind = rng.choice([Kind.PUT, Kind.CAS, Kind.DELETE])
        invoke = rng.randint(0, (len(sim.ops) + 1) * SLOT)
        value = None if kind is Kind.DELETE else b"ghost%d" % n
        expected = rng.randint(0, sim.revision) if kind is Kind.CAS else None
        op = Op(len(sim.ops), 9, kind, key, value, expected, invoke, invoke + 5, Outcome.UNKNOWN)
        if kind is Kind.DELETE and any(
            o.kind is Kind.DELETE and o.outcome is Outcome.UNKNOWN and o.key == key for o in sim.ops
        ):
            continue  # an unknown delete could explain another's event: keep the test unambiguous
        sim.ops.append(op)


def simulate_watchers(sim: Sim, rng: random.Random, watchers: int = 2) -> list[WatchRecording]:
    """Watchers of every key from revision 2: random batches, progress notifications and
    reconnections at the reached revision + 1, as a correct server and client would do."""
    out = []
    for number in range(watchers):
        recording = WatchRecording(number, b"k", b"l")
        reached = 1
        session = WatchSession("sim", 2, 0)
        recording.sessions.append(session)
        i, events = 0, sim.events
        while i < len(events):
            chunk = events[i : i + rng.randint(1, 3)]
            i += len(chunk)
            session.responses.append(WatchResponse(0, chunk[-1].revision, list(chunk)))
            reached = chunk[-1].revision
            if rng.random() < 0.3:
                reached = events[i].revision - 1 if i < len(events) else sim.revision
                session.responses.append(WatchResponse(0, reached, progress=True))
            if rng.random() < 0.2:
                session = WatchSession("sim", reached + 1, 0, error="UNAVAILABLE")
                recording.sessions.append(session)
        session.responses.append(WatchResponse(0, sim.revision, progress=True))
        out.append(recording)
    return out


def verdicts(history: History) -> dict[str, Verdict]:
    return {r.checker: r.verdict for r in check_history(history, timeout=10)}


# -- correct histories pass ----------------------------------------------------------------


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False), most=st.integers(0, 400))
def test_stretched_sequential_histories_are_ok(
    plan: list[tuple[Kind, int, bool]], rng: random.Random, most: int
) -> None:
    sim = Sim().run(plan)
    stretch(sim.ops, rng, most)
    results = check_history(sim.history(simulate_watchers(sim, rng)), timeout=10)
    assert all_ok(results), summary(results)


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False), most=st.integers(0, 300), ghosts=st.integers(0, 4))
def test_unknown_outcomes_that_happened_or_not_are_ok(
    plan: list[tuple[Kind, int, bool]], rng: random.Random, most: int, ghosts: int
) -> None:
    sim = Sim().run(plan)
    for op in sim.ops:
        if op.kind is not Kind.GET and rng.random() < 0.25:
            make_unknown(op)
    add_ghosts(sim, rng, ghosts)
    stretch(sim.ops, rng, most)
    results = check_history(sim.history(simulate_watchers(sim, rng)), timeout=10)
    assert all_ok(results), summary(results)


def test_unknown_write_applied_unseen_still_counts_in_versions() -> None:
    """A write that timed out may have bumped the version though nobody saw its value: both
    ways are fine."""
    for applied in (True, False):
        sim = Sim()
        sim.apply(Kind.PUT, b"k0")
        if applied:
            make_unknown(sim.apply(Kind.PUT, b"k0"))
        else:
            sim.ops.append(
                Op(1, 9, Kind.PUT, b"k0", b"ghost", None, 2 * SLOT - 10, 2 * SLOT + 10, Outcome.UNKNOWN)
            )
        sim.apply(Kind.PUT, b"k0").observed = False
        read = sim.apply(Kind.GET, b"k0")
        assert read.state is not None and read.state.version == (3 if applied else 2)
        results = check_history(sim.history(), timeout=10)
        assert all_ok(results), summary(results)


# -- every single mutation is caught -------------------------------------------------------


def mutated(plan: list[tuple[Kind, int, bool]]) -> Sim:
    """``plan`` between a put and a get of every key, so every mutation has a target."""
    writes = [(Kind.PUT, i, True) for i in range(len(KEYS))]
    reads = [(Kind.GET, i, True) for i in range(len(KEYS))]
    return Sim().run([*writes, *plan, *reads])


def last_write_before(sim: Sim, op: Op) -> Op | None:
    writes = [o for o in sim.ops[: op.id] if o.key == op.key and o.applied]
    return writes[-1] if writes else None


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_stale_read_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    sim = mutated(plan)
    reads = [op for op in sim.ops if op.kind is Kind.GET and last_write_before(sim, op) is not None]
    read = rng.choice(reads)
    history = [state for rev, state in sim.states[read.key] if rev <= (read.revision or 0)]
    read.state = history[-2]  # the key's state before its last write
    assert verdicts(sim.history()) == {
        "linearizability": "illegal",
        "revision-replay": "illegal",
        "watch": "ok",
    }
    assert "stale-read" in check_revision_replay(sim.ops, sim.events).kinds()


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_lost_write_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    """An acknowledged write missing from the revision history."""
    sim = mutated(plan)
    writes = [op for op in sim.ops if op.applied]
    lost = rng.choice(writes)
    sim.events = [e for e in sim.events if e.revision != lost.revision]
    result = check_revision_replay(sim.ops, sim.events)
    assert "lost-write" in result.kinds(), result.report()


def test_read_after_acknowledged_write_must_see_it() -> None:
    """The linearizability checker's view of a lost write: a later read misses it."""
    sim = Sim()
    sim.apply(Kind.PUT, b"k0")
    sim.apply(Kind.PUT, b"k0")
    read = sim.apply(Kind.GET, b"k0")
    read.state = sim.states[b"k0"][1][1]  # the first put's value
    result = check_linearizability(sim.ops)
    assert result.verdict is Verdict.ILLEGAL
    assert "Longest linearizable prefix (2 ops)" in result.text and f"#{read.id} " in result.text


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_duplicated_revision_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    sim = mutated(plan)
    writes = [op for op in sim.ops if op.applied]
    first, second = sorted(rng.sample(writes, 2), key=lambda op: op.id)
    second.revision = first.revision
    assert "duplicate-revision" in check_revision_replay(sim.ops, sim.events).kinds()
    if first.key == second.key:
        assert check_linearizability(sim.ops).verdict is Verdict.ILLEGAL


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_revision_going_backwards_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    """A read answered at a revision below that of a write that had already returned."""
    sim = mutated(plan)
    reads = [op for op in sim.ops if op.read_only and last_write_before(sim, op) is not None]
    read = rng.choice(reads)
    write = last_write_before(sim, read)
    assert write is not None and write.revision is not None
    read.revision = write.revision - 1
    assert "realtime-regression" in check_revision_replay(sim.ops, sim.events).kinds()
    assert check_linearizability(sim.ops).verdict is Verdict.ILLEGAL


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_read_of_a_value_never_written_is_illegal(
    plan: list[tuple[Kind, int, bool]], rng: random.Random
) -> None:
    sim = mutated(plan)
    reads = [op for op in sim.ops if op.kind is Kind.GET]
    read = rng.choice(reads)
    assert read.revision is not None
    read.state = KV(b"never", read.revision, read.revision, 1)
    assert "read-of-unwritten-value" in check_revision_replay(sim.ops, sim.events).kinds()
    assert check_linearizability(sim.ops).verdict is Verdict.ILLEGAL


def test_concurrent_writes_are_ordered_by_revision() -> None:
    """Two overlapping puts at revisions 2 and 3: a read after both must see the one at 3."""
    a = Op(0, 0, Kind.PUT, b"k", b"a", None, 0, 100, Outcome.OK, 2, True, None)
    b = Op(1, 1, Kind.PUT, b"k", b"b", None, 10, 90, Outcome.OK, 3, True, KV(b"a", 2, 2, 1))
    read = Op(2, 2, Kind.GET, b"k", None, None, 200, 210, Outcome.OK, 3, True, KV(b"b", 3, 2, 2))
    assert check_linearizability([a, b, read]).verdict is Verdict.OK
    stale = replace(read, revision=3, state=KV(b"a", 2, 2, 1))
    assert check_linearizability([a, b, stale]).verdict is Verdict.ILLEGAL
    backwards = replace(b, revision=1, state=None)  # b before a in revision order, but a saw nothing
    assert (
        check_linearizability([a, backwards, replace(read, state=KV(b"b", 1, 1, 1))]).verdict
        is Verdict.ILLEGAL
    )


# -- unknown and failed outcomes -------------------------------------------------------------


def unknown_put_history(read_at: tuple[int, int]) -> tuple[list[Op], list[Event]]:
    """An unknown put of b"x" invoked at 100, and a read of it during ``read_at``."""
    put = Op(0, 0, Kind.PUT, b"k", b"x", None, 100, 150, Outcome.UNKNOWN, error="DEADLINE_EXCEEDED")
    read = Op(1, 1, Kind.GET, b"k", None, None, *read_at, Outcome.OK, 2, True, KV(b"x", 2, 2, 1))
    return [put, read], [Event(2, EventType.PUT, b"k", b"x", 2, 2, 1)]


def test_unknown_write_read_later_is_ok_read_earlier_is_illegal() -> None:
    ops, events = unknown_put_history((400, 500))
    assert check_linearizability(ops).verdict is Verdict.OK
    assert check_revision_replay(ops, events).verdict is Verdict.OK
    ops, events = unknown_put_history((10, 50))  # returned before the put was even sent
    assert check_linearizability(ops).verdict is Verdict.ILLEGAL
    assert "realtime-regression" in check_revision_replay(ops, events).kinds()


def test_failed_write_that_shows_up_is_illegal() -> None:
    ops, events = unknown_put_history((400, 500))
    ops[0].outcome, ops[0].error = Outcome.FAIL, "UNAVAILABLE: failed to connect to all addresses"
    assert check_linearizability(ops).verdict is Verdict.ILLEGAL
    assert "failed-write-applied" in check_revision_replay(ops, events).kinds()


def test_phantom_events_are_illegal() -> None:
    ops, events = unknown_put_history((400, 500))
    extra = [
        *events,
        Event(3, EventType.PUT, b"k", b"y", 3, 2, 2),
        Event(4, EventType.DELETE, b"k", b"", 4, 0, 0),
    ]
    assert {"phantom-write", "phantom-delete"} <= check_revision_replay(ops, extra).kinds()


def test_budget_exceeded_is_unknown_not_a_hang() -> None:
    """40 concurrent writes that may or may not have happened, then an impossible read: the
    search would need ~2^40 states to prove it illegal."""
    ops = [
        Op(i, i, Kind.PUT, b"k", b"w%d" % i, None, i, None, Outcome.UNKNOWN, error="timeout")
        for i in range(40)
    ]
    ops.append(Op(40, 40, Kind.GET, b"k", None, None, 100, 200, Outcome.OK, 50, True, KV(b"never", 9, 9, 9)))
    started = time.monotonic()
    result = check_linearizability(ops, timeout=0.3)
    assert time.monotonic() - started < 3
    assert result.verdict is Verdict.UNKNOWN and result.kinds() == {"budget-exceeded"}


# -- watch guarantees ------------------------------------------------------------------------


def watched(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> tuple[Sim, list[WatchRecording]]:
    sim = mutated(plan)
    return sim, simulate_watchers(sim, rng, watchers=1)


def responses_with_events(recording: WatchRecording) -> list[WatchResponse]:
    return [r for s in recording.sessions for r in s.responses if r.events]


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_watch_gap_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    sim, watches = watched(plan, rng)
    response = rng.choice(responses_with_events(watches[0]))
    response.events.pop(rng.randrange(len(response.events)))
    kinds = check_watches(watches, sim.events, final_revision=sim.revision).kinds()
    assert kinds & {"watch-gap", "watch-resume-gap", "watch-resume-skipped"}, kinds


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_duplicate_watch_event_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    sim, watches = watched(plan, rng)
    session = rng.choice([s for s in watches[0].sessions if s.events()])
    delivered = session.events()
    session.responses.append(WatchResponse(0, sim.revision, [rng.choice(delivered)]))
    kinds = check_watches(watches, sim.events).kinds()
    assert "watch-duplicate" in kinds, kinds


@fast
@given(plan=steps, rng=st.randoms(use_true_random=False))
def test_event_after_bookmark_is_illegal(plan: list[tuple[Kind, int, bool]], rng: random.Random) -> None:
    sim, watches = watched(plan, rng)
    responses = watches[0].sessions[0].responses
    positions = [i for i, r in enumerate(responses) if r.events]
    where = rng.choice(positions)
    bookmark = WatchResponse(0, responses[where].events[0].revision, progress=True)
    responses.insert(where, bookmark)
    kinds = check_watches(watches, sim.events).kinds()
    assert "watch-event-after-bookmark" in kinds, kinds


def two_event_history() -> list[Event]:
    return [
        Event(2, EventType.PUT, b"a", b"1", 2, 2, 1),
        Event(2, EventType.PUT, b"b", b"1", 2, 2, 1),
        Event(3, EventType.PUT, b"a", b"2", 3, 2, 2),
        Event(4, EventType.DELETE, b"a", b"", 4, 0, 0),
    ]


def one_session(*responses: WatchResponse, start: int = 2) -> WatchRecording:
    return WatchRecording(0, b"a", b"c", [WatchSession("e", start, 0, list(responses))])


def test_watch_atomic_ordered_and_mismatch() -> None:
    truth = two_event_history()
    ok = one_session(WatchResponse(0, 4, truth[:2]), WatchResponse(0, 4, truth[2:]))
    assert check_watches([ok], truth, final_revision=4).verdict is Verdict.OK
    split = one_session(WatchResponse(0, 4, truth[:1]), WatchResponse(0, 4, truth[1:]))
    assert check_watches([split], truth).kinds() == {"watch-split-revision"}
    unordered = one_session(
        WatchResponse(0, 4, truth[:2]), WatchResponse(0, 4, [truth[3]]), WatchResponse(0, 4, [truth[2]])
    )
    assert "watch-unordered" in check_watches([unordered], truth).kinds()
    changed = replace(truth[2], value=b"other")
    wrong = one_session(WatchResponse(0, 4, truth[:2]), WatchResponse(0, 4, [changed, truth[3]]))
    other = copy.deepcopy(ok)
    other.watcher = 1
    kinds = check_watches([other, wrong], truth).kinds()
    assert kinds == {"watch-event-mismatch", "watch-disagreement"}, kinds


def test_watch_resume_and_convergence() -> None:
    truth = two_event_history()
    first = WatchSession("e", 2, 0, [WatchResponse(0, 4, truth[:2])], error="UNAVAILABLE")
    resumed = WatchSession("e", 3, 0, [WatchResponse(0, 4, truth[2:])])
    recording = WatchRecording(0, b"a", b"c", [first, resumed])
    assert check_watches([recording], truth, final_revision=4).verdict is Verdict.OK
    resumed.responses = [WatchResponse(0, 4, [truth[3]])]
    assert check_watches([recording], truth).kinds() == {"watch-resume-gap"}
    skipped = WatchSession("e", 4, 0, [WatchResponse(0, 4, [truth[3]])])
    recording.sessions = [first, skipped]
    assert check_watches([recording], truth).kinds() == {"watch-resume-skipped"}
    recording.sessions = [first]
    result = check_watches([recording], truth, final_revision=4)
    assert result.verdict is Verdict.UNKNOWN and result.kinds() == {"watch-not-converged"}
    canceled = WatchResponse(0, 4, canceled=True, compact_revision=3)
    assert "watch-canceled" in check_watches([one_session(canceled)], truth).kinds()


def test_inconsistent_revision_history_is_illegal() -> None:
    truth = two_event_history()
    bad_version = [*truth[:2], replace(truth[2], version=5)]
    assert "history-inconsistent" in check_revision_replay([], bad_version).kinds()
    assert "history-gap" in check_revision_replay([], [truth[0], truth[3]]).kinds()
    assert "history-out-of-order" in check_revision_replay([], [truth[2], truth[0]]).kinds()


# -- recording, serialisation, speed ---------------------------------------------------------


def test_history_survives_json(tmp_path: Path) -> None:
    rng = random.Random(7)
    sim = Sim().run([(rng.choice(list(Kind)), rng.randrange(3), rng.random() < 0.5) for _ in range(80)])
    make_unknown(sim.ops[5])
    history = sim.history(simulate_watchers(sim, rng))
    loaded = History.load(history.save(tmp_path / "history.json"))
    assert loaded.to_json() == history.to_json()
    assert [op.describe() for op in loaded.ops] == [op.describe() for op in history.ops]
    assert [r.report() for r in check_history(loaded)] == [r.report() for r in check_history(history)]


def test_recorder_is_thread_safe_and_marks_pending_ops_unknown() -> None:
    import threading

    history = History()

    def client(n: int) -> None:
        for i in range(200):
            op = history.invoke(n, Kind.PUT, b"k", b"%d-%d" % (n, i))
            history.finish(op, Outcome.OK, revision=i)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pending = history.invoke(9, Kind.GET, b"k")
    ops = history.finished_ops()
    assert [op.id for op in ops] == list(range(801))
    assert all(op.invoke_ns <= (op.return_ns or 0) for op in ops[:-1])
    assert pending.outcome is Outcome.UNKNOWN


def test_a_few_thousand_ops_check_quickly() -> None:
    """3000 ops on 10 keys (300 each), heavily overlapping, some unknown: well within budget."""
    rng = random.Random(1)
    sim = Sim()
    keys = [b"k%d" % i for i in range(10)]
    for _ in range(3000):
        sim.apply(
            rng.choice([Kind.GET, Kind.GET, Kind.PUT, Kind.CAS, Kind.DELETE]),
            rng.choice(keys),
            rng.random() < 0.6,
        )
    for op in sim.ops:
        if op.kind is not Kind.GET and rng.random() < 0.03:
            make_unknown(op)
    stretch(sim.ops, rng, 4 * SLOT)
    started = time.monotonic()
    results = check_history(sim.history(simulate_watchers(sim, rng)), timeout=30)
    elapsed = time.monotonic() - started
    assert all_ok(results), summary(results)
    assert elapsed < 15, f"checking took {elapsed:.1f}s"


@pytest.mark.parametrize("kind", [Kind.PUT, Kind.CAS, Kind.DELETE])
def test_acknowledged_write_with_wrong_prev_kv_is_illegal(kind: Kind) -> None:
    sim = Sim()
    sim.apply(Kind.PUT, b"k0")
    write = sim.apply(kind, b"k0")
    write.state = KV(b"elsewhere", 2, 2, 1)
    assert check_linearizability(sim.ops).verdict is Verdict.ILLEGAL
    assert "prev-kv-mismatch" in check_revision_replay(sim.ops, sim.events).kinds()
