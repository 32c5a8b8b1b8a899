"""The revision-replay checker: every answer checked against the store's own revision history.

etcd gives every change a unique, increasing revision and puts the store revision in every
response header, so a history can be checked in O(n log n) against the *ground truth*: the
complete list of events from revision 1, read by a watch at the end of the run. In order:

1. The ground truth itself: revisions never decrease, no (revision, key) twice, versions and
   create revisions chain as etcd's do, deletes only delete present keys, and (``gapless``)
   every revision from its first to its last has an event.
2. Writes: every acknowledged write appears exactly once, at its returned revision, with its
   value (``lost-write`` otherwise); a write that FAILED never appears; an UNKNOWN write is
   placed at the revision where its (unique) value appears, or is taken as not applied; every
   event is explained by some write (``phantom-write``/``phantom-delete``); no value lands twice
   (``duplicate-write``) and no two writes share a revision (``duplicate-revision``).
3. Real time: if A returned before B was invoked, rev(A) <= rev(B), strictly if B writes
   (``realtime-regression``); a read's rev is its header revision.
4. Replay: each read returns the key's state at its header revision (``stale-read``,
   ``future-read``, ``read-of-unwritten-value``, ``read-mismatch``), each ``prev_kv`` is the
   state just before the write (``prev-kv-mismatch``), each CAS's compare agrees with the state
   it was evaluated on (``cas-compare-wrong``).

Values must be unique per written key (the workload guarantees it); keys outside the history's
ops are ignored except for the gapless check. Entry point: ``check_revision_replay``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from kine_py.testing.history import (
    KV,
    Anomaly,
    CheckResult,
    Event,
    EventType,
    Kind,
    Op,
    Outcome,
    describe_state,
)


@dataclass(slots=True)
class Replay:
    """The ground truth indexed: each key's states after each of its events, in revision order."""

    revisions: dict[bytes, list[int]] = field(default_factory=dict)
    states: dict[bytes, list[KV | None]] = field(default_factory=dict)
    by_revision: dict[int, list[Event]] = field(default_factory=dict)
    last_revision: int = 0

    def state_at(self, key: bytes, revision: int) -> KV | None:
        """The key's state once every event up to ``revision`` is applied."""
        revs = self.revisions.get(key, [])
        index = bisect.bisect_right(revs, revision) - 1
        return None if index < 0 else self.states[key][index]

    def index_at(self, key: bytes, revision: int) -> int:
        return bisect.bisect_right(self.revisions.get(key, []), revision) - 1


def build_replay(events: Sequence[Event], anomalies: list[Anomaly], gapless: bool = True) -> Replay:
    """Index ``events`` and report where they are not a valid etcd history."""
    replay = Replay()
    current: dict[bytes, KV] = {}
    seen: set[tuple[int, bytes]] = set()
    for event in events:
        if event.revision < replay.last_revision:
            anomalies.append(
                Anomaly("history-out-of-order", f"{event.describe()} after {replay.last_revision}")
            )
        if (event.revision, event.key) in seen:
            anomalies.append(Anomaly("history-duplicate-event", f"{event.describe()} twice"))
        seen.add((event.revision, event.key))
        replay.last_revision = max(replay.last_revision, event.revision)
        replay.by_revision.setdefault(event.revision, []).append(event)
        state = _apply(current.get(event.key), event, anomalies)
        if state is None:
            current.pop(event.key, None)
        else:
            current[event.key] = state
        replay.revisions.setdefault(event.key, []).append(event.revision)
        replay.states.setdefault(event.key, []).append(state)
    if gapless and replay.by_revision:
        first = min(replay.by_revision)
        missing = [r for r in range(first, replay.last_revision + 1) if r not in replay.by_revision]
        if missing:
            anomalies.append(
                Anomaly("history-gap", f"no event at revisions {missing[:20]} (of {len(missing)})")
            )
    return replay


def _apply(before: KV | None, event: Event, anomalies: list[Anomaly]) -> KV | None:
    """The key's state after ``event``; reports an event that does not follow from ``before``."""
    if event.type is EventType.DELETE:
        if before is None or event.mod_revision != event.revision:
            anomalies.append(
                Anomaly("history-inconsistent", f"{event.describe()} of {describe_state(before)}")
            )
        return None
    after = KV(event.value, event.mod_revision, event.create_revision, event.version)
    expected = KV(
        event.value,
        event.revision,
        event.revision if before is None else before.create_revision,
        1 if before is None else before.version + 1,
    )
    if after != expected:
        anomalies.append(
            Anomaly(
                "history-inconsistent", f"{event.describe()} after {describe_state(before)}, not {expected}"
            )
        )
    return after


def _writes_by_value(ops: Iterable[Op]) -> dict[tuple[bytes, bytes], list[Op]]:
    out: dict[tuple[bytes, bytes], list[Op]] = {}
    for op in ops:
        if op.kind in (Kind.PUT, Kind.CAS) and op.value is not None:
            out.setdefault((op.key, op.value), []).append(op)
    return out


def place_writes(
    ops: Sequence[Op], events: Sequence[Event], anomalies: list[Anomaly], in_scope: Callable[[bytes], bool]
) -> dict[int, int]:
    """Match put events to puts/CASes by (key, value): the revision of each applied one, by op id.

    Acknowledged writes must be at their revision; the remaining events place UNKNOWN writes;
    any event still left over is a FAILED write applied, a duplicate, or a phantom.
    """
    writers = _writes_by_value(ops)
    events_by_value: dict[tuple[bytes, bytes], list[Event]] = {}
    for event in events:
        if event.type is EventType.PUT:
            events_by_value.setdefault((event.key, event.value), []).append(event)
    placed: dict[int, int] = {}
    for key_value, group in writers.items():
        left = {e.revision: e for e in events_by_value.pop(key_value, [])}
        for op in group:
            if op.applied:
                _place_acked(op, left, placed, anomalies)
        for op in group:
            if op.outcome is Outcome.UNKNOWN and left:
                placed[op.id] = min(left)
                del left[placed[op.id]]
        failed = [op.id for op in group if op.outcome is Outcome.FAIL]
        for event in left.values():
            kind = "failed-write-applied" if failed else "duplicate-write"
            anomalies.append(
                Anomaly(kind, f"{event.describe()} is not explained by {group[0].describe()}", tuple(failed))
            )
    for (key, value), stray in events_by_value.items():
        if in_scope(key):
            for event in stray:
                anomalies.append(Anomaly("phantom-write", f"{event.describe()}: no client wrote {value!r}"))
    return placed


def _place_acked(op: Op, left: dict[int, Event], placed: dict[int, int], anomalies: list[Anomaly]) -> None:
    assert op.revision is not None
    if op.revision in left:
        placed[op.id] = op.revision
        del left[op.revision]
        return
    where = f"it is at revisions {sorted(left)}" if left else "its value is in no event"
    anomalies.append(
        Anomaly("lost-write", f"{op.describe()}: not in the history at {op.revision}; {where}", (op.id,))
    )


def place_deletes(
    ops: Sequence[Op], events: Sequence[Event], anomalies: list[Anomaly], in_scope: Callable[[bytes], bool]
) -> None:
    """Every acknowledged delete is a delete event at its revision; the other delete events are
    explained by UNKNOWN deletes of the same key (one each)."""
    deletes = {(e.key, e.revision) for e in events if e.type is EventType.DELETE}
    for op in ops:
        if op.kind is Kind.DELETE and op.applied:
            if (op.key, op.revision) in deletes:
                deletes.discard((op.key, op.revision))
            else:
                anomalies.append(
                    Anomaly("lost-write", f"{op.describe()}: no delete event at its revision", (op.id,))
                )
    unknown: dict[bytes, int] = {}
    for op in ops:
        if op.kind is Kind.DELETE and op.outcome is Outcome.UNKNOWN:
            unknown[op.key] = unknown.get(op.key, 0) + 1
    for key, revision in sorted(deletes, key=lambda kr: kr[1]):
        if not in_scope(key):
            continue
        if unknown.get(key, 0):
            unknown[key] -= 1
        else:
            anomalies.append(
                Anomaly("phantom-delete", f"delete of {key!r} at {revision}: no client deleted it")
            )


@dataclass(frozen=True, slots=True)
class _Timed:
    op: Op
    revision: int
    writes: bool
    invoke: int
    ret: float


def check_real_time(ops: Sequence[Op], revisions: dict[int, int], anomalies: list[Anomaly]) -> None:
    """A returned before B was invoked implies rev(A) <= rev(B), strictly if B wrote."""
    items = []
    for op in ops:
        if op.id in revisions:
            ret = op.return_ns if op.outcome is Outcome.OK and op.return_ns is not None else float("inf")
            items.append(_Timed(op, revisions[op.id], True, op.invoke_ns, ret))
        elif op.read_only:
            assert op.revision is not None and op.return_ns is not None
            items.append(_Timed(op, op.revision, False, op.invoke_ns, op.return_ns))
    returned = sorted((t for t in items if t.ret != float("inf")), key=lambda t: t.ret)
    before: _Timed | None = None
    j = 0
    for item in sorted(items, key=lambda t: t.invoke):
        while j < len(returned) and returned[j].ret < item.invoke:
            if before is None or returned[j].revision > before.revision:
                before = returned[j]
            j += 1
        if before is None:
            continue
        if item.revision < before.revision or (item.writes and item.revision == before.revision):
            anomalies.append(
                Anomaly(
                    "realtime-regression",
                    f"{item.op.describe()} at revision {item.revision}, invoked after "
                    f"{before.op.describe()} returned at revision {before.revision}",
                    (before.op.id, item.op.id),
                )
            )


def _classify(replay: Replay, key: bytes, observed: KV | None, at: int) -> str:
    states = replay.states.get(key, [])
    now = replay.index_at(key, at)
    if observed is not None and all(s is None or s.value != observed.value for s in states):
        return "read-of-unwritten-value"
    matches = [i for i, s in enumerate(states) if s == observed]
    if observed is None and now >= 0:
        matches.append(-1)  # absent before the key's first event
    if any(i < now for i in matches):
        return "stale-read"
    if any(i > now for i in matches):
        return "future-read"
    return "read-mismatch"


def check_reads(
    ops: Sequence[Op], revisions: dict[int, int], replay: Replay, anomalies: list[Anomaly]
) -> None:
    """Replay: each answer agrees with the ground truth's state at the revision it was given at."""
    for op in ops:
        if op.read_only and op.revision is not None:
            _check_read(op, op.revision, replay, anomalies)
        revision = revisions.get(op.id)
        if revision is None:
            continue
        before = replay.state_at(op.key, revision - 1)
        if op.observed and op.outcome is Outcome.OK and before != op.state:
            message = f"{op.describe()}: the state before revision {revision} was {describe_state(before)}"
            anomalies.append(Anomaly("prev-kv-mismatch", message, (op.id,)))
        if op.kind is Kind.CAS and (0 if before is None else before.mod_revision) != op.expected:
            message = f"{op.describe()} applied at {revision} though the key was {describe_state(before)}"
            anomalies.append(Anomaly("cas-compare-wrong", message, (op.id,)))


def _check_read(op: Op, at: int, replay: Replay, anomalies: list[Anomaly]) -> None:
    if at > max(1, replay.last_revision):  # a fresh store is at revision 1, with no event
        message = f"{op.describe()}: the history ends at revision {replay.last_revision}"
        anomalies.append(Anomaly("read-beyond-history", message, (op.id,)))
    actual = replay.state_at(op.key, at)
    if op.kind is Kind.CAS and (0 if actual is None else actual.mod_revision) == op.expected:
        message = f"{op.describe()}: compare failed though the key was {describe_state(actual)} at {at}"
        anomalies.append(Anomaly("cas-compare-wrong", message, (op.id,)))
    observed = op.state if op.observed else actual
    if op.kind is Kind.DELETE:
        observed = None
    if observed != actual:
        kind = _classify(replay, op.key, observed, at)
        message = f"{op.describe()}: at revision {at} the key was {describe_state(actual)}"
        anomalies.append(Anomaly(kind, message, (op.id,)))


def write_revisions(ops: Sequence[Op], placed: dict[int, int]) -> dict[int, int]:
    """The revision of every write that took effect, by op id: acknowledged ones at the revision
    they were acknowledged at, UNKNOWN ones where the ground truth placed them."""
    revisions = {op.id: op.revision for op in ops if op.applied and op.revision is not None}
    revisions.update({op_id: rev for op_id, rev in placed.items() if op_id not in revisions})
    return revisions


def check_unique_revisions(ops: Sequence[Op], revisions: dict[int, int], anomalies: list[Anomaly]) -> None:
    owners: dict[int, Op] = {}
    for op in ops:
        revision = revisions.get(op.id)
        if revision is None:
            continue
        if revision in owners:
            message = f"{owners[revision].describe()} and {op.describe()} both at revision {revision}"
            anomalies.append(Anomaly("duplicate-revision", message, (owners[revision].id, op.id)))
        owners[revision] = op


def check_revision_replay(
    ops: Sequence[Op], ground_truth: Sequence[Event], *, gapless: bool = True, prefix: bytes | None = None
) -> CheckResult:
    """Run steps 1-4 of the module doc on ``ops`` against ``ground_truth`` (events from revision 1).

    Events explain writes only on keys some op touched or, if given, starting with ``prefix``.
    """
    result = CheckResult("revision-replay")
    anomalies = result.anomalies
    keys = {op.key for op in ops}

    def in_scope(key: bytes) -> bool:
        return key in keys or (prefix is not None and key.startswith(prefix))

    replay = build_replay(ground_truth, anomalies, gapless)
    placed = place_writes(ops, ground_truth, anomalies, in_scope)
    place_deletes(ops, ground_truth, anomalies, in_scope)
    revisions = write_revisions(ops, placed)
    check_unique_revisions(ops, revisions, anomalies)
    check_real_time(ops, revisions, anomalies)
    check_reads(ops, revisions, replay, anomalies)
    result.stats = {
        "events": len(ground_truth),
        "last_revision": replay.last_revision,
        "ops": len(ops),
        "writes_applied": len(revisions),
        "unknown_placed": sum(1 for op in ops if op.id in revisions and op.outcome is Outcome.UNKNOWN),
    }
    return result


__all__ = [
    "Replay",
    "build_replay",
    "check_reads",
    "check_real_time",
    "check_revision_replay",
    "place_writes",
    "write_revisions",
]
