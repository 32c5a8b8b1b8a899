"""Consistency checkers for histories recorded by ``kine_py.testing.history``.

* ``linearizability``: Wing-Gong-Lowe search per key with an etcd register model (independent
  of the revision history; works on operations alone).
* ``revision_replay``: acknowledged writes against the final revision history, real-time order
  of revisions, and every read replayed at its header revision.
* ``watch``: etcd's six watch guarantees for every recorded watcher.

``check_history`` runs all three on a ``History`` that has its ``ground_truth``; each returns
a ``CheckResult`` (verdict OK, ILLEGAL or UNKNOWN, with the anomalies found).
"""

from __future__ import annotations

from collections.abc import Sequence

from kine_py.testing.checkers.linearizability import check_linearizability
from kine_py.testing.checkers.revision_replay import check_revision_replay
from kine_py.testing.checkers.watch import check_watches
from kine_py.testing.history import CheckResult, Event, EventType, History, Kind, Op, Outcome, Verdict


def check_history(
    history: History, *, prefix: bytes | None = None, timeout: float = 60.0, gapless: bool = True
) -> list[CheckResult]:
    """All checkers on ``history``. Watchers must have reached ``history.meta["final_revision"]``
    if it is set. Raises ValueError if the history has no ground truth."""
    if history.ground_truth is None:
        raise ValueError("the history has no ground truth (the final revision history) to check against")
    ops = history.finished_ops()
    final = history.meta.get("final_revision")
    return [
        check_linearizability(_without_unapplied(ops, history.ground_truth), timeout=timeout),
        check_revision_replay(ops, history.ground_truth, gapless=gapless, prefix=prefix),
        check_watches(history.watches, history.ground_truth, final_revision=final),
    ]


def _without_unapplied(ops: Sequence[Op], truth: Sequence[Event]) -> list[Op]:
    """Drop UNKNOWN puts and CAS whose (unique) value never appears in the revision history:
    they certainly had no effect, and every open-ended write multiplies the search. (The
    revision-replay checker separately checks the history against the acknowledged ops.)"""
    written = {(e.key, e.value) for e in truth if e.type is EventType.PUT}
    return [
        op
        for op in ops
        if not (
            op.outcome is Outcome.UNKNOWN
            and op.kind in (Kind.PUT, Kind.CAS)
            and (op.key, op.value) not in written
        )
    ]


def all_ok(results: Sequence[CheckResult]) -> bool:
    return all(result.verdict is Verdict.OK for result in results)


def summary(results: Sequence[CheckResult]) -> str:
    """Every checker's verdict, stats and anomalies, for a test failure message."""
    return "\n".join(result.report() for result in results)


__all__ = [
    "CheckResult",
    "Verdict",
    "all_ok",
    "check_history",
    "check_linearizability",
    "check_revision_replay",
    "check_watches",
    "summary",
]
