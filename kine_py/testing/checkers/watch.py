"""The watch checker: etcd's six watch guarantees, per watcher, against the revision history.

Each ``WatchRecording`` is checked session by session (a session is one stream, opened at its
``start_revision``) against the ground truth (every event from revision 1) filtered to the
watcher's range. "Reached" is the highest revision a session has shown complete: its last event
or its last progress notification, whichever is higher.

* Ordered: event revisions never decrease in a session (``watch-unordered``).
* Unique: no (revision, key) twice in a session (``watch-duplicate``).
* Atomic: the events of one revision come in one response (``watch-split-revision``).
* Reliable: a session delivers exactly the ground truth's events from its start revision up to
  what it reached, each equal to the ground truth's (``watch-gap``, ``watch-phantom-event``,
  ``watch-event-mismatch``, ``watch-before-start``).
* Resumable: a session reopened at the previous one's reached + 1 continues exactly: its first
  events are the next ones (``watch-resume-gap``); reopening later than that skips events
  (``watch-resume-skipped``).
* Bookmarkable: after a progress notification at R no event at or below R arrives
  (``watch-event-after-bookmark``).

Also: all watchers agree on each (revision, key) they both saw (``watch-disagreement``); a
canceled watch (compaction) is reported (``watch-canceled``); and with ``final_revision`` a
watcher that never reached it makes the verdict UNKNOWN (``watch-not-converged``).
Entry point: ``check_watches``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kine_py.testing.history import Anomaly, CheckResult, Event, WatchRecording, WatchSession


@dataclass(slots=True)
class _Agreement:
    """What the first watcher to see each (revision, key) saw."""

    seen: dict[tuple[int, bytes], tuple[Event, int]] = field(default_factory=dict)

    def check(self, event: Event, watcher: int, anomalies: list[Anomaly]) -> None:
        first = self.seen.setdefault((event.revision, event.key), (event, watcher))
        if first[0] != event:
            message = (
                f"watcher {watcher} got {event.describe()}, watcher {first[1]} got {first[0].describe()}"
            )
            anomalies.append(Anomaly("watch-disagreement", message))


@dataclass(slots=True)
class _SessionCheck:
    """Checks one session's responses in order; ``reached`` grows as they prove completeness."""

    name: str
    session: WatchSession
    truth: dict[tuple[int, bytes], Event]
    anomalies: list[Anomaly]
    agreement: _Agreement
    watcher: int
    reached: int = 0
    bookmark: int = 0
    last: int = 0
    delivered: set[tuple[int, bytes]] = field(default_factory=set)
    response_of: dict[int, int] = field(default_factory=dict)

    def run(self) -> int:
        self.reached = self.session.start_revision - 1
        for index, response in enumerate(self.session.responses):
            if response.canceled:
                reason = f"compacted at {response.compact_revision}" if response.compact_revision else ""
                self._report("watch-canceled", f"canceled: {response.cancel_reason or reason}")
                break
            if response.progress:
                self.bookmark = max(self.bookmark, response.header_revision)
                self.reached = max(self.reached, response.header_revision)
            for event in response.events:
                self._event(index, event)
        return self.reached

    def _report(self, kind: str, message: str) -> None:
        self.anomalies.append(Anomaly(kind, f"{self.name}: {message}"))

    def _event(self, index: int, event: Event) -> None:
        where = (event.revision, event.key)
        if event.revision < self.session.start_revision:
            self._report(
                "watch-before-start", f"{event.describe()} before start {self.session.start_revision}"
            )
        if event.revision < self.last:
            self._report("watch-unordered", f"{event.describe()} after revision {self.last}")
        if event.revision <= self.bookmark:
            self._report(
                "watch-event-after-bookmark", f"{event.describe()} after progress at {self.bookmark}"
            )
        if where in self.delivered:
            self._report("watch-duplicate", f"{event.describe()} delivered twice")
        if self.response_of.setdefault(event.revision, index) != index:
            self._report("watch-split-revision", f"revision {event.revision} split across responses")
        expected = self.truth.get(where)
        if expected is None:
            self._report("watch-phantom-event", f"{event.describe()} is not in the revision history")
        elif expected != event:
            self._report("watch-event-mismatch", f"{event.describe()}, the history has {expected.describe()}")
        self.agreement.check(event, self.watcher, self.anomalies)
        self.delivered.add(where)
        self.last = max(self.last, event.revision)
        self.reached = max(self.reached, event.revision)


def _check_reliable(check: _SessionCheck, expected: Sequence[Event], resumed: bool) -> None:
    """Every ground-truth event from the start revision up to what the session reached came."""
    start, reached = check.session.start_revision, check.reached
    wanted = [e for e in expected if start <= e.revision <= reached]
    missing = [e for e in wanted if (e.revision, e.key) not in check.delivered]
    if not missing:
        return
    kind = "watch-resume-gap" if resumed and missing[0] is wanted[0] else "watch-gap"
    shown = ", ".join(e.describe() for e in missing[:5])
    check._report(kind, f"{len(missing)} events missing up to revision {reached}: {shown}")


def check_watcher(
    recording: WatchRecording, ground_truth: Sequence[Event], agreement: _Agreement, anomalies: list[Anomaly]
) -> int:
    """Check one watcher's sessions; return the revision it reached last."""
    expected = [e for e in ground_truth if recording.covers(e.key)]
    truth = {(e.revision, e.key): e for e in expected}
    reached: int | None = None
    for number, session in enumerate(recording.sessions):
        name = f"watcher {recording.watcher} session {number} (from {session.start_revision})"
        if reached is not None and session.start_revision > reached + 1:
            message = f"{name}: reopened after reaching {reached}, skipping the revisions in between"
            anomalies.append(Anomaly("watch-resume-skipped", message))
        check = _SessionCheck(name, session, truth, anomalies, agreement, recording.watcher)
        session_reached = check.run()
        _check_reliable(check, expected, resumed=number > 0)
        reached = session_reached if reached is None else max(reached, session_reached)
    return 0 if reached is None else reached


def check_watches(
    watches: Sequence[WatchRecording], ground_truth: Sequence[Event], *, final_revision: int | None = None
) -> CheckResult:
    """Check every watcher against ``ground_truth`` and against each other (see module doc)."""
    result = CheckResult("watch")
    agreement = _Agreement()
    events = 0
    for recording in watches:
        reached = check_watcher(recording, ground_truth, agreement, result.anomalies)
        events += sum(len(s.events()) for s in recording.sessions)
        if final_revision is not None and reached < final_revision:
            message = f"watcher {recording.watcher} reached only {reached} of {final_revision}"
            result.anomalies.append(Anomaly("watch-not-converged", message))
    sessions = sum(len(w.sessions) for w in watches)
    result.stats = {"watchers": len(watches), "sessions": sessions, "events": events}
    return result


__all__ = ["check_watcher", "check_watches"]
