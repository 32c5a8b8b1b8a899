"""A register workload for consistency tests: client and watcher threads recording a History.

``Workload`` runs against a list of etcd-API endpoints (kine-py replicas, a real etcd, later a
Raft cluster), each operation on a random endpoint, through the project's generated gRPC stubs:

* ``clients`` threads issue single-key put / get / delete / compare-and-swap on a few keys under
  ``prefix`` with unique values, each with a deadline of ``op_timeout``. A key takes at most
  ``ops_per_key`` operations, then its slot moves on to a fresh key (this keeps each key's
  linearizability search small). After an error a client drops its channel, waits
  ``retry_backoff`` and goes on (reconnecting, possibly to another endpoint).
* ``watchers`` threads watch the whole prefix from the revision the run started at; when a
  stream breaks they reopen it (on a random endpoint) at the last revision they reached + 1.

How a gRPC error becomes an outcome (``classify``): codes etcd returns before proposing
anything (invalid argument, failed precondition, ...) and UNAVAILABLE "failed to connect to all
addresses" (the request never left the client) are FAIL; everything else (deadline exceeded, a
connection lost mid-call, UNAVAILABLE from the server) is UNKNOWN.

Lifecycle, all from one controlling thread: ``start()``; let it run (kill or partition servers
meanwhile); ``finish()`` stops the clients, writes an end marker, waits until every watcher has
seen it, stops the watchers and reads the ground truth (a watch of every key from revision 1 up
to the marker) into ``history.ground_truth``. ``run(seconds)`` does all three. ``abort()``
stops every thread without the end phase.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py._pb.mvccpb import kv_pb2
from kine_py.testing.history import (
    KV,
    Event,
    EventType,
    History,
    Kind,
    Op,
    Outcome,
    WatchRecording,
    WatchResponse,
    WatchSession,
    prefix_end,
)

CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]

# Rejected by etcd before anything is proposed: the request certainly had no effect.
NOT_APPLIED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
    }
)


@dataclass(frozen=True)
class WorkloadConfig:
    endpoints: Sequence[str]
    prefix: bytes = b"/workload/"
    clients: int = 4
    keys: int = 4
    ops_per_key: int = 200
    watchers: int = 2
    op_timeout: float = 2.0
    mix: Sequence[tuple[Kind, int]] = ((Kind.GET, 4), (Kind.PUT, 3), (Kind.CAS, 2), (Kind.DELETE, 1))
    progress_interval: float | None = None  # send a WatchProgressRequest this often (None: never)
    progress_notify: bool = False  # ask for the server's periodic progress notifications
    retry_backoff: float = 0.05
    seed: int = 0


def classify(exc: grpc.RpcError) -> Outcome:
    """FAIL if the request certainly had no effect, else UNKNOWN (see module doc)."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code in NOT_APPLIED_CODES:
        return Outcome.FAIL
    details = exc.details() if isinstance(exc, grpc.Call) else ""
    if code is grpc.StatusCode.UNAVAILABLE and "failed to connect to all addresses" in (details or ""):
        return Outcome.FAIL
    return Outcome.UNKNOWN


def describe_error(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.Call):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


def _kv(kv: kv_pb2.KeyValue) -> KV:
    return KV(kv.value, kv.mod_revision, kv.create_revision, kv.version)


def to_event(event: kv_pb2.Event) -> Event:
    kv = event.kv
    kind = EventType.DELETE if event.type == kv_pb2.Event.DELETE else EventType.PUT
    return Event(kv.mod_revision, kind, kv.key, kv.value, kv.mod_revision, kv.create_revision, kv.version)


def is_progress(response: pb.WatchResponse) -> bool:
    return not (response.events or response.created or response.canceled or response.compact_revision)


class Keyspace:
    """Key slots under a prefix; a slot moves to a fresh key after ``ops_per_key`` operations."""

    def __init__(self, prefix: bytes, slots: int, ops_per_key: int) -> None:
        self.prefix, self.ops_per_key = prefix, ops_per_key
        self._counts = [0] * slots
        self._generations = [0] * slots
        self._lock = threading.Lock()

    def pick(self, rng: random.Random) -> bytes:
        slot = rng.randrange(len(self._counts))
        with self._lock:
            self._counts[slot] += 1
            if self._counts[slot] > self.ops_per_key:
                self._generations[slot] += 1
                self._counts[slot] = 1
            generation = self._generations[slot]
        return self.prefix + b"k%d-%d" % (slot, generation)


class _Channels:
    """One client's channels, one per endpoint, dropped after an error (so it reconnects)."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[grpc.Channel, rpc.KVStub]] = {}

    def kv(self, endpoint: str) -> rpc.KVStub:
        if endpoint not in self._open:
            channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
            self._open[endpoint] = (channel, rpc.KVStub(channel))
        return self._open[endpoint][1]

    def drop(self, endpoint: str) -> None:
        opened = self._open.pop(endpoint, None)
        if opened is not None:
            opened[0].close()

    def close(self) -> None:
        for endpoint in list(self._open):
            self.drop(endpoint)


def call(history: History, kv: rpc.KVStub, op: Op, timeout: float) -> bool:
    """Send ``op`` and record its answer in ``history``; False if it raised a gRPC error."""
    try:
        outcome, answer = _send(kv, op, timeout)
    except grpc.RpcError as exc:
        history.finish(op, classify(exc), error=describe_error(exc))
        return False
    history.finish(op, outcome, **answer)
    return True


def _send(kv: rpc.KVStub, op: Op, timeout: float) -> tuple[Outcome, dict[str, Any]]:
    if op.kind is Kind.GET:
        got = kv.Range(pb.RangeRequest(key=op.key), timeout=timeout)
        state = _kv(got.kvs[0]) if got.kvs else None
        return Outcome.OK, {"revision": got.header.revision, "observed": True, "state": state}
    if op.kind is Kind.PUT:
        put = kv.Put(pb.PutRequest(key=op.key, value=op.value or b"", prev_kv=True), timeout=timeout)
        state = _kv(put.prev_kv) if put.HasField("prev_kv") else None
        return Outcome.OK, {"revision": put.header.revision, "observed": True, "state": state}
    if op.kind is Kind.DELETE:
        deleted = kv.DeleteRange(pb.DeleteRangeRequest(key=op.key, prev_kv=True), timeout=timeout)
        state = _kv(deleted.prev_kvs[0]) if deleted.prev_kvs else None
        answer = {"revision": deleted.header.revision, "observed": True, "state": state}
        return Outcome.OK, {**answer, "deleted": deleted.deleted}
    return _send_cas(kv, op, timeout)


def _send_cas(kv: rpc.KVStub, op: Op, timeout: float) -> tuple[Outcome, dict[str, Any]]:
    compare = pb.Compare(
        key=op.key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=op.expected or 0
    )
    put = pb.RequestOp(request_put=pb.PutRequest(key=op.key, value=op.value or b"", prev_kv=True))
    read = pb.RequestOp(request_range=pb.RangeRequest(key=op.key))
    done = kv.Txn(pb.TxnRequest(compare=[compare], success=[put], failure=[read]), timeout=timeout)
    answer: dict[str, Any] = {"revision": done.header.revision, "observed": True, "succeeded": done.succeeded}
    if done.succeeded:
        response = done.responses[0].response_put
        answer["state"] = _kv(response.prev_kv) if response.HasField("prev_kv") else None
        return Outcome.OK, answer
    kvs = done.responses[0].response_range.kvs
    answer["state"] = _kv(kvs[0]) if kvs else None
    return Outcome.FAIL, answer


class _Client:
    """One client thread: random ops until ``stop`` is set."""

    def __init__(self, number: int, config: WorkloadConfig, keyspace: Keyspace, history: History) -> None:
        self.number, self.config, self.keyspace, self.history = number, config, keyspace, history
        self.rng = random.Random(config.seed * 7919 + number)
        self.known: dict[bytes, int] = {}  # last mod_revision this client saw per key (0: absent)
        self.kinds = [kind for kind, _ in config.mix]
        self.weights = [weight for _, weight in config.mix]

    def run(self, stop: threading.Event) -> None:
        channels = _Channels()
        try:
            for seq in itertools.count():
                if stop.is_set():
                    return
                endpoint = self.rng.choice(list(self.config.endpoints))
                op = self._invoke(seq)
                if not call(self.history, channels.kv(endpoint), op, self.config.op_timeout):
                    channels.drop(endpoint)
                    stop.wait(self.config.retry_backoff)
                self._learn(op)
        finally:
            channels.close()

    def _invoke(self, seq: int) -> Op:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        key = self.keyspace.pick(self.rng)
        value = b"c%d-%d" % (self.number, seq) if kind in (Kind.PUT, Kind.CAS) else None
        expected = self.known.get(key, 0) if kind is Kind.CAS else None
        return self.history.invoke(self.number, kind, key, value, expected)

    def _learn(self, op: Op) -> None:
        """Remember the key's mod_revision from the answer, for the next CAS on it."""
        if op.outcome is Outcome.UNKNOWN or op.revision is None:
            return
        if op.applied:
            self.known[op.key] = 0 if op.kind is Kind.DELETE else op.revision
        elif op.observed:
            self.known[op.key] = 0 if op.state is None else op.state.mod_revision


class _Watcher:
    """One watcher thread: watch the prefix from ``start``, reopening broken streams."""

    def __init__(self, config: WorkloadConfig, recording: WatchRecording, start: int, seed: int) -> None:
        self.config, self.recording = config, recording
        self.reached = start - 1
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = False
        self._call: Any = None
        self._requests: queue.Queue[pb.WatchRequest | None] | None = None

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            current, requests = self._call, self._requests
        if requests is not None:
            requests.put(None)
        if current is not None:
            current.cancel()

    def run(self) -> None:
        while not self._stopping:
            endpoint = self.rng.choice(list(self.config.endpoints))
            session = WatchSession(endpoint, self.reached + 1, time.monotonic_ns())
            self.recording.sessions.append(session)
            try:
                canceled = self._stream(endpoint, session)
            except grpc.RpcError as exc:
                session.error, canceled = describe_error(exc), False
            session.end_ns = time.monotonic_ns()
            if canceled:
                return
            if not self._stopping:
                time.sleep(self.config.retry_backoff)

    def _feed(self, requests: queue.Queue[pb.WatchRequest | None], start: int) -> Iterator[pb.WatchRequest]:
        create = pb.WatchCreateRequest(
            key=self.recording.key,
            range_end=self.recording.range_end,
            start_revision=start,
            progress_notify=self.config.progress_notify,
        )
        yield pb.WatchRequest(create_request=create)
        while True:
            try:
                request = requests.get(timeout=self.config.progress_interval)
            except queue.Empty:
                yield pb.WatchRequest(progress_request=pb.WatchProgressRequest())
                continue
            if request is None:
                return
            yield request

    def _stream(self, endpoint: str, session: WatchSession) -> bool:
        """Record one stream's responses; True if the server canceled the watch."""
        requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        try:
            responses: Any = rpc.WatchStub(channel).Watch(self._feed(requests, session.start_revision))
            with self._lock:
                if self._stopping:
                    responses.cancel()
                    return False
                self._call, self._requests = responses, requests
            return any(self._record(session, response) for response in responses)
        finally:
            with self._lock:
                self._call = self._requests = None
            requests.put(None)
            channel.close()

    def _record(self, session: WatchSession, response: pb.WatchResponse) -> bool:
        recorded = WatchResponse(
            time_ns=time.monotonic_ns(),
            header_revision=response.header.revision,
            events=[to_event(event) for event in response.events],
            progress=is_progress(response),
            created=response.created,
            canceled=response.canceled,
            compact_revision=response.compact_revision,
            cancel_reason=response.cancel_reason,
        )
        session.responses.append(recorded)
        if recorded.events:
            self.reached = max(self.reached, recorded.events[-1].revision)
        if recorded.progress:
            self.reached = max(self.reached, recorded.header_revision)
        return recorded.canceled


def current_revision(endpoints: Sequence[str], timeout: float) -> int:
    """The store revision from the first endpoint that answers within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for endpoint in endpoints:
            with (
                grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel,
                contextlib.suppress(grpc.RpcError),
            ):
                got = rpc.KVStub(channel).Range(pb.RangeRequest(key=b"\0", count_only=True), timeout=2)
                return int(got.header.revision)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no endpoint of {list(endpoints)} answered within {timeout}s")
        time.sleep(0.1)


def read_revision_history(
    endpoints: Sequence[str], until: int, timeout: float = 30.0, key: bytes = b"\0", range_end: bytes = b"\0"
) -> list[Event]:
    """Every event of ``[key, range_end)`` from revision 1 to ``until`` (which must have an event
    in that range), read with a watch; retries on the next endpoint if a stream breaks."""
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    for endpoint in itertools.cycle(endpoints):
        if time.monotonic() > deadline:
            break
        try:
            return _read_events(endpoint, until, deadline, key, range_end)
        except grpc.RpcError as exc:
            errors.append(f"{endpoint}: {describe_error(exc)}")
            time.sleep(0.1)
    raise TimeoutError(f"revision history up to {until} not read within {timeout}s: {errors[-3:]}")


def _read_events(endpoint: str, until: int, deadline: float, key: bytes, range_end: bytes) -> list[Event]:
    done = threading.Event()

    def feed() -> Iterator[pb.WatchRequest]:
        create = pb.WatchCreateRequest(key=key, range_end=range_end, start_revision=1)
        yield pb.WatchRequest(create_request=create)
        done.wait()

    events: list[Event] = []
    with grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
        responses: Any = rpc.WatchStub(channel).Watch(feed(), timeout=max(0.1, deadline - time.monotonic()))
        try:
            for response in responses:
                if response.canceled:
                    raise RuntimeError(f"revision history watch canceled: {response.cancel_reason}")
                events += [to_event(event) for event in response.events]
                if events and events[-1].revision >= until:
                    return events
        finally:
            done.set()
            responses.cancel()
    raise RuntimeError(f"{endpoint} ended the revision history watch before revision {until}")


@dataclass
class Workload:
    """Clients and watchers recording into ``history`` (see module doc)."""

    config: WorkloadConfig
    history: History = field(default_factory=History)
    start_revision: int = 0
    _stop_clients: threading.Event = field(default_factory=threading.Event)
    _clients: list[threading.Thread] = field(default_factory=list)
    _watchers: list[tuple[_Watcher, threading.Thread]] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> None:
        """Start the watchers (from the current revision + 1), then the clients."""
        config = self.config
        self.start_revision = current_revision(config.endpoints, timeout) + 1
        self.history.meta.update(
            endpoints=list(config.endpoints),
            prefix=config.prefix.decode("latin-1"),
            start_revision=self.start_revision,
            seed=config.seed,
        )
        keyspace = Keyspace(config.prefix, config.keys, config.ops_per_key)
        for number in range(config.watchers):
            recording = self.history.new_watcher(config.prefix, prefix_end(config.prefix))
            watcher = _Watcher(config, recording, self.start_revision, config.seed * 104729 + number)
            self._watchers.append((watcher, _thread(watcher.run, f"watcher-{number}")))
        for number in range(config.clients):
            client = _Client(number, config, keyspace, self.history)
            self._clients.append(_thread(lambda c=client: c.run(self._stop_clients), f"client-{number}"))

    def stop_clients(self) -> None:
        """Stop the clients; each finishes (or times out) its current operation first."""
        self._stop_clients.set()
        for thread in self._clients:
            thread.join(self.config.op_timeout + 10)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop")

    def stop_watchers(self) -> None:
        for watcher, thread in self._watchers:
            watcher.stop()
            thread.join(10)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop")

    def abort(self) -> None:
        """Stop every thread; the history keeps what was recorded (no ground truth)."""
        self._stop_clients.set()
        with contextlib.suppress(RuntimeError):
            self.stop_clients()
        with contextlib.suppress(RuntimeError):
            self.stop_watchers()

    def finish(self, timeout: float = 30.0) -> int:
        """End the run (see module doc) and return the end marker's revision."""
        self.stop_clients()
        try:
            final = self._write_end_marker(timeout)
            self.history.meta["final_revision"] = final
            deadline = time.monotonic() + timeout
            while any(w.reached < final for w, _ in self._watchers) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            self.stop_watchers()
        self.history.ground_truth = read_revision_history(self.config.endpoints, final, timeout)
        return final

    def run(self, seconds: float, timeout: float = 30.0) -> History:
        self.start(timeout)
        try:
            time.sleep(seconds)
        except BaseException:
            self.abort()
            raise
        self.finish(timeout)
        return self.history

    def _write_end_marker(self, timeout: float) -> int:
        """Put a last key under the prefix (recorded like any op) until one is acknowledged."""
        deadline = time.monotonic() + timeout
        channels = _Channels()
        try:
            for attempt in itertools.count():
                endpoint = self.config.endpoints[attempt % len(self.config.endpoints)]
                value = b"end-%d" % attempt
                op = self.history.invoke(self.config.clients, Kind.PUT, self.config.prefix + b"~end", value)
                if call(self.history, channels.kv(endpoint), op, self.config.op_timeout):
                    assert op.revision is not None
                    return op.revision
                channels.drop(endpoint)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"end marker not written within {timeout}s: {op.error}")
                time.sleep(self.config.retry_backoff)
        finally:
            channels.close()
        raise AssertionError("unreachable")


def _thread(target: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
