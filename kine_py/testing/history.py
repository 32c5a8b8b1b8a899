"""A record of what clients asked an etcd-compatible server and what it answered.

``History`` is filled by client threads (``kine_py.testing.workload``) or built by hand in
tests, then handed to the checkers in ``kine_py.testing.checkers``. It holds three things:

* ``ops``: single-key KV operations (put, get, delete, compare-and-swap), each with the
  ``time.monotonic_ns`` of its invocation and return, and an outcome: ``OK``; ``FAIL`` (it
  certainly did not change anything: a compare that failed, or a request that never left the
  client); or ``UNKNOWN`` (a timeout or a lost connection: it may or may not have happened, so
  the checkers treat its return time as +infinity).
* ``watches``: per watcher, its key range and its sessions (one per stream it opened, each with
  the start revision and every response received, progress notifications included).
* ``ground_truth``: the keyspace's complete revision history, as the events of a watch from
  revision 1 read at the end of the run, once nothing else writes.

Thread safety: ``invoke``/``finish``/``new_watcher`` take a lock, so any number of threads
may record at once. An ``Op`` belongs to the thread that invoked it until it is finished; a
``WatchRecording`` belongs to the thread that watches. Read the history (check or save it) only
after those threads have stopped.

Everything here serialises to JSON (``to_json``/``save``/``load``), so a failing run can be kept
next to the test's temporary directory and checked again later. Keys and values are bytes, stored
in JSON as latin-1 strings (a lossless one-to-one mapping that keeps ASCII readable).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Kind(enum.StrEnum):
    """The single-key operations the workload issues."""

    PUT = "put"  # Put with prev_kv
    GET = "get"  # linearizable Range of one key
    DELETE = "delete"  # DeleteRange of one key with prev_kv
    CAS = "cas"  # Txn: if mod_revision(key) == expected then Put(prev_kv) else Range(key)


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"  # certainly not applied
    UNKNOWN = "unknown"  # may or may not have been applied; return time is +infinity


@dataclass(frozen=True, slots=True)
class KV:
    """A key's state as a client saw it (a Range result or a ``prev_kv``)."""

    value: bytes
    mod_revision: int
    create_revision: int
    version: int

    def describe(self) -> str:
        return f"{_text(self.value)}@{self.mod_revision}(c{self.create_revision},v{self.version})"


def describe_state(kv: KV | None) -> str:
    return "absent" if kv is None else kv.describe()


@dataclass(slots=True)
class Op:
    """One client operation on one key.

    ``revision`` is the response header's revision: for an applied write its revision, for a read
    (a get, a delete that deleted nothing, a CAS whose compare failed) the revision it read at.
    ``observed`` says whether ``state`` carries information: for a get the value read; for put,
    delete and a successful CAS the ``prev_kv`` (the key's state just before the write); for a CAS
    whose compare failed the state its failure branch read. ``state`` None then means absent.
    For a CAS, ``expected`` is the compared mod_revision (0: the key must be absent) and
    ``succeeded`` which branch ran. ``return_ns`` of an UNKNOWN op is when the client gave up.
    """

    id: int
    client: int
    kind: Kind
    key: bytes
    value: bytes | None = None
    expected: int | None = None
    invoke_ns: int = 0
    return_ns: int | None = None
    outcome: Outcome | None = None
    revision: int | None = None
    observed: bool = False
    state: KV | None = None
    succeeded: bool | None = None
    deleted: int | None = None
    error: str | None = None

    @property
    def is_write(self) -> bool:
        return self.kind in (Kind.PUT, Kind.DELETE, Kind.CAS)

    @property
    def applied(self) -> bool:
        """An acknowledged change: OK put, OK CAS, or a delete that deleted the key."""
        if self.outcome is not Outcome.OK:
            return False
        return self.kind is not Kind.GET and not (self.kind is Kind.DELETE and not self.deleted)

    @property
    def read_only(self) -> bool:
        """Answered without changing anything, at ``revision``: a get, a delete of an absent key,
        a CAS whose compare failed (when the server answered it)."""
        if self.revision is None:
            return False
        if self.outcome is Outcome.OK:
            return not self.applied
        return self.kind is Kind.CAS and self.outcome is Outcome.FAIL and self.succeeded is False

    def describe(self) -> str:
        """One line: ``#id c<client> <op> -> <outcome>``, times in ms."""
        args = _text(self.key)
        if self.kind is Kind.CAS:
            args += f" if mod=={self.expected}"
        if self.value is not None:
            args += f" := {_text(self.value)}"
        out = str(self.outcome)
        if self.revision is not None:
            out += f" rev {self.revision}"
        if self.kind is Kind.CAS and self.succeeded is not None:
            out += " succeeded" if self.succeeded else " compare-failed"
        if self.deleted is not None:
            out += f" deleted {self.deleted}"
        if self.observed:
            out += f" {'read' if self.kind is Kind.GET else 'saw'} {describe_state(self.state)}"
        if self.error:
            out += f" ({self.error[:80]})"
        end = "inf" if self.return_ns is None or self.outcome is Outcome.UNKNOWN else _ms(self.return_ns)
        return f"#{self.id} c{self.client} {self.kind} {args} -> {out} [{_ms(self.invoke_ns)}..{end}]"


class EventType(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """A watch event. For a delete, value is empty and create_revision and version are 0."""

    revision: int
    type: EventType
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    version: int

    def describe(self) -> str:
        if self.type is EventType.DELETE:
            return f"{self.revision}:delete {_text(self.key)}"
        kv = KV(self.value, self.mod_revision, self.create_revision, self.version)
        return f"{self.revision}:put {_text(self.key)}={kv.describe()}"


@dataclass(slots=True)
class WatchResponse:
    """One WatchResponse: its events, or a progress notification (no events, not created or
    canceled) whose ``header_revision`` says every event up to it has been sent."""

    time_ns: int
    header_revision: int
    events: list[Event] = field(default_factory=list)
    progress: bool = False
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""


@dataclass(slots=True)
class WatchSession:
    """One Watch stream opened from ``start_revision``; ``error`` says how it ended, if it broke."""

    endpoint: str
    start_revision: int
    start_ns: int
    responses: list[WatchResponse] = field(default_factory=list)
    end_ns: int | None = None
    error: str | None = None

    def events(self) -> list[Event]:
        return [event for response in self.responses for event in response.events]


@dataclass(slots=True)
class WatchRecording:
    """Everything one watcher saw of ``[key, range_end)`` (etcd's range_end rules), one session
    per stream; a watcher resumes a broken stream at the last revision it reached + 1."""

    watcher: int
    key: bytes
    range_end: bytes
    sessions: list[WatchSession] = field(default_factory=list)

    def covers(self, key: bytes) -> bool:
        return in_range(key, self.key, self.range_end)


def in_range(key: bytes, start: bytes, range_end: bytes) -> bool:
    """etcd's range rule: empty ``range_end`` is the single key, ``b"\\0"`` is every key >= start."""
    if not range_end:
        return key == start
    if range_end == b"\0":
        return key >= start
    return start <= key < range_end


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class Verdict(enum.StrEnum):
    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"  # the checker could not decide (time budget, watchers not converged)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One thing a checker found wrong. ``kind`` is a stable name tests can match on; ``ops`` are
    the ids of the operations involved. Kinds in ``UNDECIDED_KINDS`` do not prove a bug."""

    kind: str
    message: str
    ops: tuple[int, ...] = ()


UNDECIDED_KINDS = frozenset({"budget-exceeded", "watch-not-converged"})


@dataclass(slots=True)
class CheckResult:
    """What one checker concluded. ILLEGAL if any anomaly proves a violation, else UNKNOWN if
    it could not decide, else OK."""

    checker: str
    anomalies: list[Anomaly] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    text: str = ""

    @property
    def verdict(self) -> Verdict:
        if any(a.kind not in UNDECIDED_KINDS for a in self.anomalies):
            return Verdict.ILLEGAL
        return Verdict.UNKNOWN if self.anomalies else Verdict.OK

    def kinds(self) -> set[str]:
        return {a.kind for a in self.anomalies}

    def report(self, limit: int = 20) -> str:
        lines = [f"{self.checker}: {self.verdict} {self.stats}"]
        lines += [f"  [{a.kind}] {a.message}" for a in self.anomalies[:limit]]
        if len(self.anomalies) > limit:
            lines.append(f"  ... and {len(self.anomalies) - limit} more")
        if self.text:
            lines.append(self.text)
        return "\n".join(lines)


class History:
    """Operations, watch recordings and the final revision history of one run (see module doc)."""

    def __init__(
        self,
        ops: Iterable[Op] = (),
        watches: Iterable[WatchRecording] = (),
        ground_truth: Sequence[Event] | None = None,
    ) -> None:
        self.ops: list[Op] = list(ops)
        self.watches: list[WatchRecording] = list(watches)
        self.ground_truth: list[Event] | None = None if ground_truth is None else list(ground_truth)
        self.meta: dict[str, Any] = {}
        self._lock = threading.Lock()

    def invoke(
        self,
        client: int,
        kind: Kind,
        key: bytes,
        value: bytes | None = None,
        expected: int | None = None,
    ) -> Op:
        """Record that ``client`` is about to send an operation; finish it with ``finish``."""
        with self._lock:
            op = Op(len(self.ops), client, kind, key, value, expected)
            self.ops.append(op)
            op.invoke_ns = time.monotonic_ns()
        return op

    def finish(self, op: Op, outcome: Outcome, **answer: Any) -> Op:
        """Record the return of ``op`` now, with its outcome and the answer's fields
        (``revision``, ``observed``, ``state``, ``succeeded``, ``deleted``, ``error``)."""
        now = time.monotonic_ns()
        with self._lock:
            for name, value in answer.items():
                setattr(op, name, value)
            op.outcome = outcome
            op.return_ns = now
        return op

    def new_watcher(self, key: bytes, range_end: bytes) -> WatchRecording:
        with self._lock:
            recording = WatchRecording(len(self.watches), key, range_end)
            self.watches.append(recording)
        return recording

    def finished_ops(self) -> list[Op]:
        """Ops with an outcome (ops still pending when the run stopped count as UNKNOWN)."""
        with self._lock:
            for op in self.ops:
                if op.outcome is None:
                    op.outcome, op.error = Outcome.UNKNOWN, "still pending when the history was read"
            return list(self.ops)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "kine-py-history/1",
            "meta": self.meta,
            "ops": [_op_to_json(op) for op in self.finished_ops()],
            "watches": [_watch_to_json(w) for w in self.watches],
            "ground_truth": None
            if self.ground_truth is None
            else [_event_to_json(e) for e in self.ground_truth],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        truth = data.get("ground_truth")
        history = cls(
            [_op_from_json(o) for o in data["ops"]],
            [_watch_from_json(w) for w in data["watches"]],
            None if truth is None else [_event_from_json(e) for e in truth],
        )
        history.meta = dict(data.get("meta", {}))
        return history

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> History:
        return cls.from_json(json.loads(path.read_text()))


def _text(data: bytes) -> str:
    return repr(data.decode("latin-1"))


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _b(data: bytes) -> str:
    return data.decode("latin-1")


def _ub(text: str) -> bytes:
    return text.encode("latin-1")


def _kv_to_json(kv: KV | None) -> list[Any] | None:
    return None if kv is None else [_b(kv.value), kv.mod_revision, kv.create_revision, kv.version]


def _kv_from_json(data: list[Any] | None) -> KV | None:
    return None if data is None else KV(_ub(data[0]), data[1], data[2], data[3])


def _op_to_json(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": op.id,
        "client": op.client,
        "kind": str(op.kind),
        "key": _b(op.key),
        "invoke_ns": op.invoke_ns,
        "return_ns": op.return_ns,
        "outcome": None if op.outcome is None else str(op.outcome),
    }
    optional: dict[str, Any] = {
        "value": None if op.value is None else _b(op.value),
        "expected": op.expected,
        "revision": op.revision,
        "succeeded": op.succeeded,
        "deleted": op.deleted,
        "error": op.error,
    }
    out.update({name: value for name, value in optional.items() if value is not None})
    if op.observed:
        out["state"] = _kv_to_json(op.state)
    return out


def _op_from_json(data: dict[str, Any]) -> Op:
    value = data.get("value")
    return Op(
        id=data["id"],
        client=data["client"],
        kind=Kind(data["kind"]),
        key=_ub(data["key"]),
        value=None if value is None else _ub(value),
        expected=data.get("expected"),
        invoke_ns=data["invoke_ns"],
        return_ns=data["return_ns"],
        outcome=None if data["outcome"] is None else Outcome(data["outcome"]),
        revision=data.get("revision"),
        observed="state" in data,
        state=_kv_from_json(data.get("state")),
        succeeded=data.get("succeeded"),
        deleted=data.get("deleted"),
        error=data.get("error"),
    )


def _event_to_json(e: Event) -> list[Any]:
    return [e.revision, str(e.type), _b(e.key), _b(e.value), e.mod_revision, e.create_revision, e.version]


def _event_from_json(d: list[Any]) -> Event:
    return Event(d[0], EventType(d[1]), _ub(d[2]), _ub(d[3]), d[4], d[5], d[6])


def _response_to_json(r: WatchResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"t": r.time_ns, "rev": r.header_revision}
    if r.events:
        out["events"] = [_event_to_json(e) for e in r.events]
    flags = {"progress": r.progress, "created": r.created, "canceled": r.canceled}
    out.update({name: True for name, on in flags.items() if on})
    if r.compact_revision:
        out["compact_revision"] = r.compact_revision
    if r.cancel_reason:
        out["cancel_reason"] = r.cancel_reason
    return out


def _response_from_json(d: dict[str, Any]) -> WatchResponse:
    return WatchResponse(
        time_ns=d["t"],
        header_revision=d["rev"],
        events=[_event_from_json(e) for e in d.get("events", [])],
        progress=d.get("progress", False),
        created=d.get("created", False),
        canceled=d.get("canceled", False),
        compact_revision=d.get("compact_revision", 0),
        cancel_reason=d.get("cancel_reason", ""),
    )


def _watch_to_json(w: WatchRecording) -> dict[str, Any]:
    sessions = [
        {
            "endpoint": s.endpoint,
            "start_revision": s.start_revision,
            "start_ns": s.start_ns,
            "end_ns": s.end_ns,
            "error": s.error,
            "responses": [_response_to_json(r) for r in s.responses],
        }
        for s in w.sessions
    ]
    return {"watcher": w.watcher, "key": _b(w.key), "range_end": _b(w.range_end), "sessions": sessions}


def _watch_from_json(d: dict[str, Any]) -> WatchRecording:
    sessions = [
        WatchSession(
            endpoint=s["endpoint"],
            start_revision=s["start_revision"],
            start_ns=s["start_ns"],
            end_ns=s["end_ns"],
            error=s["error"],
            responses=[_response_from_json(r) for r in s["responses"]],
        )
        for s in d["sessions"]
    ]
    return WatchRecording(d["watcher"], _ub(d["key"]), _ub(d["range_end"]), sessions)
