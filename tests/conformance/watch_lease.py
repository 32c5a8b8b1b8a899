"""Differential testing of Watch and Lease (with KV) against the real etcd 3.5.1.

One seeded sequence mixes the KV requests of :class:`.differential.RequestGenerator`
with Watch requests (creates with every option, cancels, empty requests) on a few
Watch streams, and with Lease requests (grant, revoke, time-to-live, leases,
keep-alive, Puts and Txns that use leases). The same sequence is sent to a
*reference* server (etcd) and a *candidate* (kine-py, or a second etcd for the
self-check). KV and Lease answers are compared as they come, in lockstep; the
first difference stops the run. Watch answers are asynchronous: for every watch
the harness records its control responses (created, canceled, compacted) and the
flat list of its events (the servers may batch events into responses
differently, so response boundaries are not compared), and compares them after
the run, once a final write inside the range of every open watch ("marker") has
reached it on both servers.

What is not compared, and why:

* ``cluster_id``, ``member_id`` and ``raft_term`` of every header (they differ
  between clusters), and the header of event responses (etcd stamps a live event
  with its txn's revision and a catch-up batch with the current revision). Control
  responses are compared with their header revision, including etcd's revision 0 in
  the cancellation of a watch whose start revision was compacted;
* pure progress notifications (timing dependent; kine-py's default interval is 5 s,
  etcd's 10 min), and WatchProgressRequest is never sent;
* ``TTL`` of LeaseTimeToLive may differ by 1 (it counts down in wall-clock seconds),
  the order of its ``keys`` (etcd lists them from a Go map) and the order of
  LeaseLeases (etcd sorts by expiry time);
* server-assigned lease ids (LeaseGrant with ID 0) differ between servers: the
  harness maps the candidate's id to the reference's by order of grant, translates
  later requests to the candidate and the candidate's answers back.

Timing is taken out of the comparison by waiting, never by tolerating:

* a create (or a cancel, or an empty request) completes when its ``created``
  response arrives (after a cancel or an empty request the harness sends a
  sentinel create with an empty range, whose error response follows any answer to
  the request on the stream);
* before a Compact, and before a cancel, every watch concerned is *settled*: it
  has received every event up to the current revision (known from a history watch
  on all keys opened first on each server), or its expected compacted
  cancellation. Watches created with a past start revision are also given time to
  be synced (etcd syncs unsynced watchers every 100 ms, and one that is still
  unsynced when a Compact passes its start revision is cancelled);
* a watch starting exactly at the compacted revision is only created once a
  non-physical compaction had time to finish (etcd then no longer has the
  tombstones at that revision, which its catch-up reads from the backend).

Request shapes that make etcd 3.5.1 itself nondeterministic are never sent: a
negative start_revision before the first compaction (etcd's watchable store then
reads events from a negative revision, which returns nothing for *every* unsynced
watcher of the server), and short lease TTLs in the main run (a lease with a short
TTL is revoked by the next request, before it can expire; expiry has its own test).

Run one seed by hand (starts a fresh etcd and a fresh kine-py unless endpoints are
given)::

    python -m tests.conformance.watch_lease --seed 3 --ops 2000 [--trace] [--self-check]
    python -m tests.conformance.watch_lease --script lease-expiry

``--avoid`` leaves out request shapes that hit a known mismatch, to look past it.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import difflib
import queue
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message

from kine_py._pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kine_py._pb.mvccpb import kv_pb2
from kine_py.testing.processes import etcd_process

from .differential import (
    KEYS,
    MISSING_KEYS,
    PREFIXES,
    Bounds,
    KVClient,
    Outcome,
    Request,
    RequestGenerator,
    StoreView,
    covers,
    final_request,
    flat_ops,
    normalise,
    prefix_end,
    started_servers,
    to_text,
    track_compaction,
)

M = TypeVar("M", bound=Message)

GrantResponse = rpc_pb2.LeaseGrantResponse
LeaseRequest = (
    rpc_pb2.LeaseGrantRequest
    | rpc_pb2.LeaseRevokeRequest
    | rpc_pb2.LeaseTimeToLiveRequest
    | rpc_pb2.LeaseLeasesRequest
    | rpc_pb2.LeaseKeepAliveRequest
)

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

#: Explicit lease ids. 7 and 1 << 40 are also ids the KV generator puts keys with, as
#: unknown leases; once granted here, those Puts succeed. Never (1 << 63) - 1, also in
#: that pool: the KV generator's compares aim at a key's lease + 2, which must fit an int64.
EXPLICIT_LEASES: tuple[int, ...] = (7, 1 << 40, *range(100, 112), (1 << 63) - 3, -5)
#: Lease ids never granted.
UNKNOWN_LEASES: tuple[int, ...] = (0, 3, 99, 1 << 50, -9)
#: TTLs long enough that no lease expires during a run, even on a slow machine (a run is
#: stopped by pytest's 600 s timeout first; 9e9 is etcd's MaxLeaseTTL).
LONG_TTLS: tuple[int, ...] = (900, 3600, 86400, 9_000_000_000)
#: TTLs at or under etcd's minimum (2 s): such a lease is revoked by the next request.
SHORT_TTLS: tuple[int, ...] = (-5, 0, 1, 2)
#: TTLs etcd rejects ("too large lease TTL").
TOO_LARGE_TTLS: tuple[int, ...] = (9_000_000_001, 1 << 62)
#: Explicit watch ids; small ones collide with the ids a stream assigns itself.
EXPLICIT_WATCH_IDS: tuple[int, ...] = (1, 2, 3, 5, 8, 13, 100, -3, 1 << 40)
#: Watch ids no watch has (cancelling them is answered by nothing).
UNKNOWN_WATCH_IDS: tuple[int, ...] = (999, -1, 12345)
Filter: TypeAlias = rpc_pb2.WatchCreateRequest.FilterType.ValueType
NOPUT, NODELETE = rpc_pb2.WatchCreateRequest.NOPUT, rpc_pb2.WatchCreateRequest.NODELETE
#: A filter value etcd does not know (and ignores).
UNKNOWN_FILTER = Filter(5)
#: The create the harness sends after a cancel or an empty request: its error response
#: ("watcher range is empty") comes after any answer to the request. Its explicit id is
#: never used otherwise; an error create must not take a stream's next automatic id.
SENTINEL = rpc_pb2.WatchCreateRequest(key=b"b", range_end=b"a", watch_id=1 << 62)
#: Request shapes that :class:`WatchLeaseGenerator` can be told to avoid, to look past a known
#: mismatch (for exploring by hand; the tests avoid nothing).
AVOIDABLE: dict[str, str] = {
    "error-auto-id": "creates with a bad range get an explicit watch id instead of an automatic one",
    "compacted-id": "no create or cancel with the id of a compacted watch; no small explicit watch ids",
    "put-then-delete": "no txn that deletes a key an earlier op of the txn put",
    "start-at-compacted": "no watch starting exactly at the compacted revision",
}
#: How long to wait for a response or for watches to settle, in seconds.
WAIT_TIMEOUT = 10.0
#: Time given to a watch with a past start revision to be synced before a Compact (etcd's
#: sync loop runs every 100 ms), and to a non-physical compaction to finish.
SYNC_GRACE = 0.5
#: gRPC channel options: watch responses of big values exceed the default 4 MiB.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]

# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KvOp:
    """A KV request (Range, Put, DeleteRange, Txn, Compact)."""

    request: Request


@dataclass(frozen=True)
class LeaseOp:
    """A Lease request; LeaseKeepAliveRequest is sent alone on a new KeepAlive stream."""

    request: LeaseRequest


@dataclass(frozen=True)
class WatchOp:
    """A WatchRequest sent on watch stream ``stream`` (1-based; stream 0 holds the history watch)."""

    stream: int
    request: rpc_pb2.WatchRequest


Op = KvOp | LeaseOp | WatchOp


@dataclass(frozen=True)
class Pause:
    """A script step: wait ``seconds`` of wall-clock time (lease TTLs count it)."""

    seconds: float


@dataclass(frozen=True)
class AwaitEvents:
    """A script step: wait until each server's history watch holds ``count`` events."""

    count: int
    timeout: float = 20.0


@dataclass(frozen=True)
class Settle:
    """A script step: wait until every watch on both servers has every event so far."""


Step = Op | Pause | AwaitEvents | Settle


def op_text(op: Op, width: int = 400) -> str:
    """One line describing ``op``, cut to ``width`` characters."""
    if isinstance(op, WatchOp):
        text = f"[stream {op.stream}] " + to_text(op.request, one_line=True)
    else:
        text = to_text(op.request, one_line=True)
    return text if len(text) <= width else text[: width - 4] + " ..."


def watch_bounds(request: rpc_pb2.WatchCreateRequest) -> Bounds:
    """The watched range in :func:`.differential.covers` terms (an empty key is b"\\x00", as in etcd)."""
    return (request.key or b"\x00", request.range_end)


def is_progress(response: rpc_pb2.WatchResponse) -> bool:
    """A pure progress notification: no events, not created, not canceled, not compacted."""
    return not (response.events or response.created or response.canceled or response.compact_revision)


def bad_range(request: rpc_pb2.WatchCreateRequest) -> bool:
    """Whether etcd refuses the create's range as empty (key >= range_end)."""
    key, end = watch_bounds(request)
    return end not in (b"", b"\x00") and key >= end


def puts_then_deletes(request: Request) -> bool:
    """Whether a txn tree has a delete covering a key that an earlier op (in flat order) puts."""
    if not isinstance(request, rpc_pb2.TxnRequest):
        return False
    put: list[bytes] = []
    for op in flat_ops(request):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            put.append(op.request_put.key)
        elif kind == "request_delete_range":
            bounds = (op.request_delete_range.key, op.request_delete_range.range_end)
            if any(covers(bounds, key) for key in put):
                return True
    return False


def passes_filters(request: rpc_pb2.WatchCreateRequest, event: kv_pb2.Event) -> bool:
    """Whether a watch created by ``request`` keeps ``event`` (unknown filter values are ignored)."""
    if event.type == kv_pb2.Event.PUT:
        return NOPUT not in request.filters
    return NODELETE not in request.filters


# ---------------------------------------------------------------------------
# Lease ids chosen by the servers
# ---------------------------------------------------------------------------

#: Messages whose ``ID`` field is a lease id.
LEASE_ID_MESSAGES = (
    rpc_pb2.LeaseGrantRequest,
    rpc_pb2.LeaseRevokeRequest,
    rpc_pb2.LeaseTimeToLiveRequest,
    rpc_pb2.LeaseKeepAliveRequest,
    rpc_pb2.LeaseGrantResponse,
    rpc_pb2.LeaseTimeToLiveResponse,
    rpc_pb2.LeaseKeepAliveResponse,
    rpc_pb2.LeaseStatus,
)


def rewrite_lease_ids(message: Message, mapping: dict[int, int]) -> None:
    """In place, replace every lease id found in ``mapping``: KeyValue/PutRequest/Compare ``lease``
    and the ``ID`` of lease messages, at any depth."""
    if isinstance(message, kv_pb2.KeyValue | rpc_pb2.PutRequest):
        message.lease = mapping.get(message.lease, message.lease)
    elif isinstance(message, rpc_pb2.Compare):
        if message.WhichOneof("target_union") == "lease":
            message.lease = mapping.get(message.lease, message.lease)
    elif isinstance(message, LEASE_ID_MESSAGES):
        message.ID = mapping.get(message.ID, message.ID)
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        for item in value if descriptor.is_repeated else [value]:
            rewrite_lease_ids(item, mapping)


class LeaseIdMap:
    """Server-assigned lease ids: reference id <-> candidate id, learnt from grants with ID 0."""

    def __init__(self) -> None:
        self.to_candidate: dict[int, int] = {}
        self.to_reference: dict[int, int] = {}

    def learn(self, reference_id: int, candidate_id: int) -> None:
        """Record that the two servers assigned these ids to the same grant."""
        self.to_candidate[reference_id] = candidate_id
        self.to_reference[candidate_id] = reference_id

    def for_candidate(self, message: M) -> M:
        """A copy of a request with the reference's lease ids replaced by the candidate's."""
        return self._rewritten(message, self.to_candidate)

    def for_comparison(self, message: M) -> M:
        """A copy of a candidate's message with its lease ids replaced by the reference's."""
        return self._rewritten(message, self.to_reference)

    @staticmethod
    def _rewritten(message: M, mapping: dict[int, int]) -> M:
        """``message`` itself if there is nothing to map, else a rewritten copy."""
        if not mapping:
            return message
        copy = type(message)()
        copy.CopyFrom(message)
        rewrite_lease_ids(copy, mapping)
        return copy


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchInfo:
    """What the generator knows of one watch on the reference: its stream, id and state."""

    stream: int
    watch_id: int
    state: str  # "open", "compacted" or "canceled"


class WatchLeaseGenerator:
    """A seeded source of KV, Watch and Lease operations.

    KV requests come from :class:`.differential.RequestGenerator` (seeded with the same
    seed); Watch and Lease operations from a second random stream. Choices depend on the
    reference's state only (its store view, its watches, its answers to lease requests), so
    the sequence is a function of the seed and of etcd's deterministic behaviour.
    """

    def __init__(self, seed: int, streams: int = 3, avoid: frozenset[str] = frozenset()) -> None:
        unknown = avoid - set(AVOIDABLE)
        if unknown:
            raise ValueError(f"unknown shapes to avoid: {sorted(unknown)}; known: {sorted(AVOIDABLE)}")
        self.avoid = avoid
        self.kv = RequestGenerator(seed)
        self.rng = random.Random(f"watch-lease-{seed}")
        self.streams = streams
        self.alive: dict[int, bool] = {}  # lease id (reference's) -> not yet revoked
        self.assigned: set[int] = set()  # ids the reference chose (grants with ID 0)
        self.view = StoreView(revision=1, compact_revision=0)
        self.watches: Sequence[WatchInfo] = ()

    # -- small helpers ------------------------------------------------------

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def pick(self, weights: dict[str, int]) -> str:
        """One of the names in ``weights``, drawn by weight."""
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def live_leases(self) -> list[int]:
        """Granted and not revoked lease ids, in grant order."""
        return [lease for lease, alive in self.alive.items() if alive]

    def dead_or_unknown_lease(self, attach: bool = False) -> int:
        """A revoked lease id, or one never granted (see :meth:`some_lease` for ``attach``)."""
        dead = [i for i, alive in self.alive.items() if not alive and not (attach and i in self.assigned)]
        return self.rng.choice(dead) if dead and self.chance(0.6) else self.rng.choice(UNKNOWN_LEASES[1:])

    def some_lease(self, p_live: float, attach: bool = False) -> int:
        """A live lease with probability ``p_live`` (if there is one), else a dead or unknown one.

        With ``attach`` (for Puts and compares) never a server-assigned id: keys with such a
        lease would make the KV generator compare leases by order, or with ids near them,
        which cannot be translated between the servers' different id spaces.
        """
        live = [lease for lease in self.live_leases() if not (attach and lease in self.assigned)]
        return self.rng.choice(live) if live and self.chance(p_live) else self.dead_or_unknown_lease(attach)

    def value(self) -> bytes:
        """A value for a Put."""
        return self.kv.value()

    # -- top level ----------------------------------------------------------

    def next_ops(self, view: StoreView, watches: Sequence[WatchInfo]) -> list[Op]:
        """The next operation(s), given the reference's store and watches right now."""
        self.view, self.watches = view, watches
        kind = self.pick({"kv": 144, "create": 12, "cancel": 6, "empty": 1, "lease": 37})
        if kind == "kv":
            return [KvOp(self.kv_request())]
        if kind == "create":
            return [self.watch_create()]
        if kind == "cancel":
            return [self.watch_cancel()]
        if kind == "empty":
            return [WatchOp(self.stream(), rpc_pb2.WatchRequest())]
        return self.lease_ops()

    def kv_request(self) -> Request:
        """The KV generator's next request (never a txn that deletes a key it put, if avoided)."""
        request = self.kv.next_request(self.view)
        while "put-then-delete" in self.avoid and puts_then_deletes(request):
            request = self.kv.next_request(self.view)
        return request

    def observe(self, op: Op, outcome: Outcome) -> None:
        """Learn from the reference's answer to ``op`` (which leases exist)."""
        if not isinstance(op, LeaseOp) or outcome.response is None:
            return
        if isinstance(outcome.response, rpc_pb2.LeaseGrantResponse):
            self.alive[outcome.response.ID] = True
            if isinstance(op.request, rpc_pb2.LeaseGrantRequest) and op.request.ID == 0:
                self.assigned.add(outcome.response.ID)
        elif isinstance(op.request, rpc_pb2.LeaseRevokeRequest):
            self.alive[op.request.ID] = False

    # -- Watch --------------------------------------------------------------

    def stream(self) -> int:
        """A watch stream number (1-based)."""
        return self.rng.randint(1, self.streams)

    def watch_create(self) -> WatchOp:
        """A create with a random range, start revision, options, filters and watch id."""
        stream = self.stream()
        key, end = self.watch_range()
        request = rpc_pb2.WatchCreateRequest(key=key, range_end=end, start_revision=self.start_revision())
        request.prev_kv = self.chance(0.4)
        request.progress_notify = self.chance(0.1)
        request.fragment = self.chance(0.1)
        request.filters.extend(self.filters())
        request.watch_id = self.watch_id(stream)
        if "error-auto-id" in self.avoid and not request.watch_id and bad_range(request):
            request.watch_id = 1 << 61
        return WatchOp(stream, rpc_pb2.WatchRequest(create_request=request))

    def watch_range(self) -> Bounds:
        """(key, range_end): a key, a missing key, a prefix, from-key, all keys, a span, or bad."""
        kind = self.pick(
            {"key": 30, "missing": 5, "prefix": 20, "from": 9, "all": 8, "span": 14, "empty": 5, "bad": 5}
        )
        if kind == "key":
            return self.rng.choice(KEYS), b""
        if kind == "missing":
            return self.rng.choice(MISSING_KEYS), b""
        if kind == "prefix":
            prefix = self.rng.choice(PREFIXES)
            return prefix, prefix_end(prefix)
        if kind == "from":
            return self.rng.choice(KEYS), b"\x00"
        if kind == "all":
            return b"\x00", b"\x00"
        if kind == "empty":
            return b"", self.rng.choice([b"", b"\x00", b"b"])
        first, second = sorted(self.rng.sample(KEYS, 2))
        if kind == "bad":
            return (second, first) if self.chance(0.7) else (first, first)
        return first, second

    def start_revision(self) -> int:
        """0, past, first, current, exactly compacted, compacted, future or negative (after a compaction)."""
        rev, compacted = self.view.revision, self.view.compact_revision
        kind = self.pick(
            {"zero": 56, "past": 18, "first": 3, "current": 4, "at": 5, "compacted": 6, "future": 6, "neg": 2}
        )
        if kind == "past":
            return self.rng.randint(max(1, compacted), rev)
        if kind == "first":
            return 1
        if kind == "current":
            return rev
        if kind == "at" and compacted > 0 and "start-at-compacted" not in self.avoid:
            return compacted
        if kind == "compacted" and compacted > 1:
            return self.rng.randint(1, compacted - 1)
        if kind == "future":
            return rev + self.rng.randint(1, 3)
        if kind == "neg" and compacted > 0:
            return -self.rng.randint(1, 3)
        return 0

    def filters(self) -> list[Filter]:
        """None, NOPUT, NODELETE, both, a repeated one, or an unknown filter value."""
        kind = self.pick({"none": 70, "noput": 10, "nodelete": 11, "both": 3, "twice": 3, "unknown": 3})
        choices: dict[str, list[Filter]] = {
            "none": [],
            "noput": [NOPUT],
            "nodelete": [NODELETE],
            "both": [NODELETE, NOPUT],
            "twice": [NOPUT, NOPUT],
            "unknown": [UNKNOWN_FILTER],
        }
        return choices[kind]

    def ids_on(self, stream: int, state: str) -> list[int]:
        """The ids of the reference's watches on ``stream`` in ``state``."""
        return [w.watch_id for w in self.watches if w.stream == stream and w.state == state]

    def watch_id(self, stream: int) -> int:
        """0 (server-assigned), an id in use on the stream (duplicate), a closed watch's id, or any."""
        kind = self.pick({"auto": 64, "open": 12, "closed": 9, "explicit": 15})
        avoid = "compacted-id" in self.avoid
        compacted = self.ids_on(stream, "compacted")
        taken = set(compacted) if avoid else set()
        candidates = {
            "open": self.ids_on(stream, "open"),
            "closed": ([] if avoid else compacted) + self.ids_on(stream, "canceled"),
        }.get(kind, [])
        candidates = [i for i in candidates if i not in taken]
        if candidates:
            return self.rng.choice(candidates)
        explicit = [i for i in EXPLICIT_WATCH_IDS if not (avoid and 0 <= i < 100) and i not in taken]
        return self.rng.choice(explicit) if kind != "auto" else 0

    def watch_cancel(self) -> WatchOp:
        """A cancel of an open watch, a compacted one, a canceled one, or an unknown id."""
        stream = self.stream()
        kind = self.pick({"open": 70, "compacted": 12, "canceled": 8, "unknown": 10})
        ids = self.ids_on(stream, kind) if kind != "unknown" else []
        if "compacted-id" in self.avoid:
            ids = [i for i in ids if i not in self.ids_on(stream, "compacted")]
        watch_id = self.rng.choice(ids) if ids else self.rng.choice(UNKNOWN_WATCH_IDS)
        return WatchOp(
            stream, rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id))
        )

    # -- Lease --------------------------------------------------------------

    def lease_ops(self) -> list[Op]:
        """One lease operation (two for a short-lived grant: the grant and its revocation)."""
        kind = self.pick(
            {
                "grant": 13,
                "grant_auto": 4,
                "grant_dup": 3,
                "grant_too_large": 2,
                "grant_short": 2,
                "revoke": 8,
                "ttl": 10,
                "leases": 4,
                "keepalive": 6,
                "put": 25,
                "put_ignore": 4,
                "txn": 8,
            }
        )
        makers: dict[str, Callable[[], list[Op]]] = {
            "grant": lambda: [
                LeaseOp(rpc_pb2.LeaseGrantRequest(ID=self.new_lease_id(), TTL=self.long_ttl()))
            ],
            "grant_auto": lambda: [LeaseOp(rpc_pb2.LeaseGrantRequest(ID=0, TTL=self.long_ttl()))],
            "grant_dup": self.grant_duplicate,
            "grant_too_large": lambda: [
                LeaseOp(
                    rpc_pb2.LeaseGrantRequest(ID=self.new_lease_id(), TTL=self.rng.choice(TOO_LARGE_TTLS))
                )
            ],
            "grant_short": self.grant_short,
            "revoke": lambda: [LeaseOp(rpc_pb2.LeaseRevokeRequest(ID=self.some_lease(0.75)))],
            "ttl": lambda: [
                LeaseOp(rpc_pb2.LeaseTimeToLiveRequest(ID=self.some_lease(0.75), keys=self.chance(0.6)))
            ],
            "leases": lambda: [LeaseOp(rpc_pb2.LeaseLeasesRequest())],
            "keepalive": lambda: [LeaseOp(rpc_pb2.LeaseKeepAliveRequest(ID=self.some_lease(0.8)))],
            "put": self.put_with_lease,
            "put_ignore": self.put_ignoring_lease,
            "txn": self.txn_with_lease,
        }
        return makers[kind]()

    def long_ttl(self) -> int:
        """A TTL no lease outlives a run with."""
        return self.rng.choice(LONG_TTLS)

    def new_lease_id(self) -> int:
        """An explicit id that is not a live lease (sometimes a revoked one: re-granting is allowed)."""
        free = [lease for lease in EXPLICIT_LEASES if not self.alive.get(lease, False)]
        return self.rng.choice(free) if free else 0

    def grant_duplicate(self) -> list[Op]:
        """A grant of a live lease's id (etcd: lease already exists)."""
        live = self.live_leases()
        lease = self.rng.choice(live) if live else self.new_lease_id()
        return [LeaseOp(rpc_pb2.LeaseGrantRequest(ID=lease, TTL=self.long_ttl()))]

    def grant_short(self) -> list[Op]:
        """A grant with a TTL at or under the minimum, revoked by the very next request."""
        lease = self.new_lease_id()
        grant = rpc_pb2.LeaseGrantRequest(ID=lease, TTL=self.rng.choice(SHORT_TTLS))
        if lease == 0:
            return [LeaseOp(rpc_pb2.LeaseLeasesRequest())]
        return [LeaseOp(grant), LeaseOp(rpc_pb2.LeaseRevokeRequest(ID=lease))]

    def put_with_lease(self) -> list[Op]:
        """A Put with a live, revoked or unknown lease."""
        request = rpc_pb2.PutRequest(key=self.rng.choice(KEYS), value=self.value())
        request.lease = self.some_lease(0.85, attach=True)
        request.prev_kv = self.chance(0.4)
        return [KvOp(request)]

    def leased_key(self) -> bytes:
        """A key that has a lease on the reference, if any (else any key)."""
        leased = [key for key, kv in self.view.kvs.items() if kv.lease]
        return self.rng.choice(leased) if leased and self.chance(0.85) else self.rng.choice(KEYS)

    def put_ignoring_lease(self) -> list[Op]:
        """A Put with ignore_lease, usually on a key that has a lease (it keeps it)."""
        request = rpc_pb2.PutRequest(key=self.leased_key(), value=self.value(), ignore_lease=True)
        request.prev_kv = self.chance(0.5)
        return [KvOp(request)]

    def txn_with_lease(self) -> list[Op]:
        """A Txn comparing a key's lease, putting with a lease in either branch."""
        key = self.leased_key()
        kv = self.view.kvs.get(key)
        actual = kv.lease if kv is not None else 0
        result = rpc_pb2.Compare.CompareResult.ValueType(self.rng.randrange(4))
        compare = rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.LEASE, result=result)
        compare.lease = actual if self.chance(0.6) else self.some_lease(0.5, attach=True)
        first, second = self.rng.sample([k for k in KEYS if k != key], 2)
        put = rpc_pb2.PutRequest(key=first, lease=self.some_lease(0.8, attach=True))
        other = rpc_pb2.PutRequest(key=second, value=b"f", lease=self.some_lease(0.8, attach=True))
        success = [rpc_pb2.RequestOp(request_put=put)]
        failure = [
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key)),
            rpc_pb2.RequestOp(request_put=other),
        ]
        return [KvOp(rpc_pb2.TxnRequest(compare=[compare], success=success, failure=failure))]


# ---------------------------------------------------------------------------
# Watch streams and their records
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class WatchRecord:
    """Everything one server answered to one create request (the same index on both servers)."""

    index: int
    op_index: int
    stream: int
    request: rpc_pb2.WatchCreateRequest
    compact_at_creation: int
    sentinel: bool = False
    controls: list[tuple[int, rpc_pb2.WatchResponse]] = field(default_factory=list)
    events: list[kv_pb2.Event] = field(default_factory=list)
    shapes: list[tuple[int, bool]] = field(default_factory=list)
    created_time: float = 0.0
    last_rev: int = 0
    closed: bool = False
    stuck: bool = False  # did not settle once: not waited for again
    # Settling: how far the history was scanned, and the last revision expected so far.
    scan_pos: int = 0
    target: int = 0

    @property
    def created(self) -> rpc_pb2.WatchResponse | None:
        """The created response, once it arrived."""
        return self.controls[0][1] if self.controls else None

    @property
    def is_open(self) -> bool:
        """Created successfully and neither canceled nor compacted."""
        return self.created is not None and not self.closed

    @property
    def start(self) -> int:
        """The first revision the watch reports (its start revision, or the create's revision + 1)."""
        created = self.created
        if self.request.start_revision:
            return self.request.start_revision
        return created.header.revision + 1 if created is not None else 0

    @property
    def started_in_the_past(self) -> bool:
        """Whether the start revision was at or below the revision at creation (an unsynced watch)."""
        created = self.created
        return created is not None and 0 < self.request.start_revision <= created.header.revision

    @property
    def expects_compaction(self) -> bool:
        """Whether the start revision was compacted when the watch was created."""
        return self.request.start_revision != 0 and self.request.start_revision < self.compact_at_creation

    def state(self) -> str:
        """One of open, compacted, canceled, error or pending (for :class:`WatchInfo`).

        Known without waiting: a watch is compacted if and only if its start revision was
        compacted at creation (others are synced before any later Compact), and a cancel is
        answered before the sentinel that follows it. The compacted response itself may still
        be on its way (etcd sends it from a 100 ms loop).
        """
        created = self.created
        if created is None:
            return "pending"
        if created.canceled:
            return "error"
        if any(r.canceled and not r.compact_revision for _, r in self.controls[1:]):
            return "canceled"
        return "compacted" if self.expects_compaction else "open"

    def settled(self) -> bool:
        """Created, and either closed or holding every event expected so far."""
        if self.created is None:
            return False
        if self.closed:
            return True
        return not self.expects_compaction and self.last_rev >= self.target

    def scan(self, history: Sequence[kv_pb2.Event]) -> None:
        """Raise ``target`` to the last revision of the history this watch must report.

        A delete at the revision the watch starts at is not expected when that revision was
        compacted: etcd's catch-up reads the backend, where compaction removed the tombstone.
        """
        start, bounds = self.start, watch_bounds(self.request)
        for event in history[self.scan_pos :]:
            rev = event.kv.mod_revision
            if rev < start or not covers(bounds, event.kv.key) or not passes_filters(self.request, event):
                continue
            if event.type == kv_pb2.Event.DELETE and rev <= self.compact_at_creation:
                continue
            self.target = max(self.target, rev)
        self.scan_pos = len(history)


class WatchStream:
    """One Watch stream to one server: requests from a queue, responses read by a thread."""

    def __init__(self, side: Side, number: int, channel: grpc.Channel) -> None:
        self.side = side
        self.number = number
        self.requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self.pending: collections.deque[WatchRecord] = collections.deque()
        self.bound: dict[int, WatchRecord] = {}
        self.orphans: list[tuple[int, rpc_pb2.WatchResponse]] = []
        self.progress = 0
        self.error = ""
        self.call = rpc_pb2_grpc.WatchStub(channel).Watch(self._feed())
        self.thread = threading.Thread(target=self._read, name=f"{side.name}-watch-{number}", daemon=True)
        self.thread.start()

    def _feed(self) -> Iterator[rpc_pb2.WatchRequest]:
        while (request := self.requests.get()) is not None:
            yield request

    def send(self, request: rpc_pb2.WatchRequest, record: WatchRecord | None = None) -> None:
        """Send ``request``; a create's ``record`` receives the response that answers it."""
        if record is not None:
            with self.side.cond:
                self.pending.append(record)
        self.requests.put(request)

    def close(self) -> None:
        """End the stream and its reader thread."""
        self.requests.put(None)
        self.call.cancel()  # type: ignore[no-untyped-call]
        self.thread.join(WAIT_TIMEOUT)

    def _read(self) -> None:
        try:
            for response in self.call:
                self._handle(response)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{error.code().name}: {error.details()}"
        except Exception as error:  # a reader thread must never raise
            self.error = f"reader failed: {error!r}"
        finally:
            with self.side.cond:
                self.side.cond.notify_all()

    def _handle(self, response: rpc_pb2.WatchResponse) -> None:
        """File one response under the record it belongs to (created responses answer in order)."""
        with self.side.cond:
            op_index = self.side.op_index
            if is_progress(response):
                self.progress += 1
            elif response.created:
                self._created(op_index, response)
            elif (record := self.bound.get(response.watch_id)) is not None:
                self._deliver(record, op_index, response)
            else:
                self.orphans.append((op_index, response))
            self.side.cond.notify_all()

    def _created(self, op_index: int, response: rpc_pb2.WatchResponse) -> None:
        if not self.pending:
            self.orphans.append((op_index, response))
            return
        record = self.pending.popleft()
        record.controls.append((op_index, response))
        record.created_time = time.monotonic()
        if response.canceled:
            record.closed = True
        else:
            self.bound[response.watch_id] = record

    def _deliver(self, record: WatchRecord, op_index: int, response: rpc_pb2.WatchResponse) -> None:
        if response.events:
            record.events.extend(response.events)
            record.shapes.append((len(response.events), response.fragment))
            record.last_rev = max(record.last_rev, response.events[-1].kv.mod_revision)
        if response.canceled or response.compact_revision:
            record.controls.append((op_index, response))
            record.closed = True
            if not response.compact_revision:  # etcd keeps a compacted watch's id until it is canceled
                del self.bound[response.watch_id]


# ---------------------------------------------------------------------------
# One server
# ---------------------------------------------------------------------------

#: The watch opened first on every server, on stream 0: every event, with prev_kv.
HISTORY_WATCH = rpc_pb2.WatchCreateRequest(key=b"\x00", range_end=b"\x00", prev_kv=True)


class Side:
    """One server: a KV client, a Lease stub, watch streams and every watch record."""

    def __init__(self, name: str, endpoint: str, streams: int) -> None:
        self.name = name
        self.endpoint = endpoint
        self.kv = KVClient(endpoint)
        self.channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.cond = threading.Condition()
        self.op_index = -1
        self.records: list[WatchRecord] = []
        self.streams = [WatchStream(self, number, self.channel) for number in range(streams + 1)]

    def close(self) -> None:
        """Close every stream and channel."""
        for stream in self.streams:
            stream.close()
        self.channel.close()
        self.kv.close()

    @property
    def history(self) -> WatchRecord:
        """The history watch (record 0)."""
        return self.records[0]

    def create(
        self,
        op_index: int,
        stream: int,
        request: rpc_pb2.WatchCreateRequest,
        compact_revision: int,
        sentinel: bool = False,
    ) -> WatchRecord:
        """Send a create on ``stream`` and return its (still empty) record."""
        record = WatchRecord(len(self.records), op_index, stream, request, compact_revision, sentinel)
        self.records.append(record)
        self.streams[stream].send(rpc_pb2.WatchRequest(create_request=request), record)
        return record

    def wait_created(self, record: WatchRecord, timeout: float = WAIT_TIMEOUT) -> bool:
        """Wait for the created response of ``record``."""
        with self.cond:
            return self.cond.wait_for(lambda: record.created is not None, timeout)

    def revision(self) -> int:
        """The current revision (a serializable Range)."""
        request = rpc_pb2.RangeRequest(key=b"\x00", count_only=True, serializable=True)
        return int(self.kv.stub.Range(request, timeout=self.kv.timeout).header.revision)

    def settle(self, records: Sequence[WatchRecord], timeout: float = WAIT_TIMEOUT) -> list[WatchRecord]:
        """Wait until every record is settled (see :meth:`WatchRecord.settled`); the ones that are not."""
        revision = self.revision()
        deadline = time.monotonic() + timeout
        with self.cond:
            history = self.history
            complete = history.stuck or revision <= 1
            if not complete and not self.cond.wait_for(lambda: history.last_rev >= revision, timeout):
                history.stuck = True  # it missed events: expect less of every watch from now on
                return [history]
            records = [r for r in records if not r.stuck]
            for record in records:
                record.scan(history.events)
            remaining = max(0.0, deadline - time.monotonic())
            self.cond.wait_for(lambda: all(r.settled() for r in records), remaining)
            unsettled = [r for r in records if not r.settled()]
            for record in unsettled:
                record.stuck = True
            return unsettled

    def call_lease(self, request: LeaseRequest) -> Outcome:
        """Send a Lease request; KeepAlive as the only request of a new stream."""
        try:
            if isinstance(request, rpc_pb2.LeaseKeepAliveRequest):
                responses = list(self.lease.LeaseKeepAlive(iter([request]), timeout=WAIT_TIMEOUT))
                if len(responses) != 1:
                    return Outcome(
                        code=grpc.StatusCode.UNKNOWN, details=f"{len(responses)} keep-alive answers"
                    )
                return Outcome(response=normalise(responses[0]))
            methods: dict[type[Message], Callable[..., Message]] = {
                rpc_pb2.LeaseGrantRequest: self.lease.LeaseGrant,
                rpc_pb2.LeaseRevokeRequest: self.lease.LeaseRevoke,
                rpc_pb2.LeaseTimeToLiveRequest: self.lease.LeaseTimeToLive,
                rpc_pb2.LeaseLeasesRequest: self.lease.LeaseLeases,
            }
            response = methods[type(request)](request, timeout=WAIT_TIMEOUT)
        except grpc.RpcError as error:
            return Outcome(code=error.code(), details=error.details() or "")
        return Outcome(response=normalise(response))


# ---------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------


def comparable_lease(response: Message, reference: Message | None) -> Message:
    """A copy of a lease response in comparable form: keys and leases sorted, and (for a candidate)
    a TimeToLive TTL within 1 s of the reference's set to the reference's."""
    copy = type(response)()
    copy.CopyFrom(response)
    if isinstance(copy, rpc_pb2.LeaseTimeToLiveResponse):
        copy.keys[:] = sorted(copy.keys)
        if isinstance(reference, rpc_pb2.LeaseTimeToLiveResponse) and abs(copy.TTL - reference.TTL) <= 1:
            copy.TTL = reference.TTL
    elif isinstance(copy, rpc_pb2.LeaseLeasesResponse):
        copy.leases.sort(key=lambda status: status.ID)
    return copy


def comparable_control(response: rpc_pb2.WatchResponse) -> rpc_pb2.WatchResponse:
    """A control response (created, canceled, compacted) without cluster ids."""
    clean = normalise(response)
    assert isinstance(clean, rpc_pb2.WatchResponse)
    return clean


def serialized(messages: Sequence[Message]) -> list[bytes]:
    """Deterministic bytes of each message, for a fast comparison."""
    return [message.SerializeToString(deterministic=True) for message in messages]


def message_lines(messages: Sequence[Message]) -> list[str]:
    """One line per message, for diffs."""
    return [to_text(message, one_line=True) for message in messages]


@dataclass
class Report:
    """The outcome of one run: mismatches (empty when the servers agreed), problems and counts."""

    label: str  # "seed=N", or "script=NAME"
    names: tuple[str, str]
    mismatches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No mismatch and no harness problem."""
        return not self.mismatches and not self.problems

    def text(self, full: int | None = None, headlines: int = 40) -> str:
        """A readable report: counts, problems, then the first ``full`` mismatches in full (all if
        None) and the headlines of up to ``headlines`` more."""
        stats = ", ".join(f"{name}={count}" for name, count in sorted(self.counts.items()))
        parts = [f"{self.label}: {len(self.mismatches)} mismatches; {stats}; {self.seconds:.1f}s"]
        parts += [f"HARNESS PROBLEM {self.label}: {problem}" for problem in self.problems]
        shown = len(self.mismatches) if full is None else full
        parts += self.mismatches[:shown]
        rest = self.mismatches[shown:]
        parts += [mismatch.splitlines()[0] for mismatch in rest[:headlines]]
        if len(rest) > headlines:
            parts.append(f"... and {len(rest) - headlines} more mismatches")
        return "\n".join(parts)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


class WatchLeaseRun:
    """Sends one seed's sequence to both servers and compares everything."""

    def __init__(
        self,
        seed: int,
        reference: str,
        candidate: str,
        names: tuple[str, str] = ("etcd", "candidate"),
        streams: int = 3,
        trace: Callable[[int, Op], None] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> None:
        self.label = f"seed={seed}"
        self.names = names
        self.generator = WatchLeaseGenerator(seed, streams, avoid)
        self.ids = LeaseIdMap()
        self.trace = trace
        self.report = Report(self.label, names)
        self.ops: list[Op] = []
        self.pre_revisions: list[int] = []  # the reference's revision before each op
        self.compact_revision = 0
        self.compacted_at = (0.0, True)  # when the last compaction was answered, and if physical
        self.compare_shapes = False  # compare how a fragment watch's events were split into responses
        self.sides = (Side(names[0], reference, streams), Side(names[1], candidate, streams))

    # -- driving ------------------------------------------------------------

    def run(self, ops: int) -> Report:
        """``ops`` generated operations, then the markers and final reads; returns the report."""
        return self.run_body(lambda: self.drive(ops))

    def run_script(self, steps: Sequence[Step]) -> Report:
        """A fixed script of operations, pauses and waits, then the markers and final reads."""
        return self.run_body(lambda: self.play(steps))

    def run_body(self, body: Callable[[], bool]) -> Report:
        """Open the history watch, run ``body``, finish if it succeeded, close, compare watches."""
        started = time.monotonic()
        try:
            self.open_history()
            if body():
                self.finish()
        finally:
            for side in self.sides:
                side.close()
        self.compare_watches()
        self.report.seconds = time.monotonic() - started
        return self.report

    def play(self, steps: Sequence[Step]) -> bool:
        """Execute a script; False once a KV or Lease answer differed."""
        for step in steps:
            if isinstance(step, Pause):
                self.pause(step.seconds)
            elif isinstance(step, AwaitEvents):
                self.await_events(step)
            elif isinstance(step, Settle):
                self.settle_all()
            else:
                self.pre_revisions.append(self.sides[0].revision())
                if not self.execute(step):
                    return False
        return True

    def await_events(self, step: AwaitEvents) -> None:
        """Wait until the history watch of each server holds ``step.count`` events."""
        for side in self.sides:
            history = side.history

            def enough(history: WatchRecord = history) -> bool:
                return len(history.events) >= step.count

            with side.cond:
                arrived = side.cond.wait_for(enough, step.timeout)
            if not arrived:
                got, index = len(history.events), len(self.ops)
                self.report.problems.append(f"{side.name}: {got}/{step.count} events by op #{index}")

    def open_history(self) -> None:
        """Create the history watch (record 0, stream 0) on both servers."""
        for side in self.sides:
            side.create(-1, 0, HISTORY_WATCH, 0)
            if not side.wait_created(side.history):
                self.report.problems.append(f"{side.name}: no answer to the history watch")

    def drive(self, ops: int) -> bool:
        """Generate and execute ``ops`` operations; False once a KV or Lease answer differed."""
        ref = self.sides[0]
        while len(self.ops) < ops:
            view = ref.kv.view(self.compact_revision)
            for op in self.generator.next_ops(view, self.watch_infos()):
                self.pre_revisions.append(view.revision)
                if not self.execute(op):
                    return False
        return True

    def watch_infos(self) -> list[WatchInfo]:
        """The reference's watches, for the generator."""
        ref = self.sides[0]
        infos = []
        with ref.cond:
            for record in ref.records:
                state, created = record.state(), record.created
                if created is not None and state != "error" and not record.sentinel and record.stream > 0:
                    infos.append(WatchInfo(record.stream, created.watch_id, state))
        return infos

    def execute(self, op: Op) -> bool:
        """Execute one operation on both servers; False if a KV or Lease answer differed."""
        index = len(self.ops)
        self.ops.append(op)
        for side in self.sides:
            with side.cond:
                side.op_index = index
        if self.trace is not None:
            self.trace(index, op)
        if isinstance(op, WatchOp):
            self.report.counts["watch_ops"] += 1
            self.execute_watch(index, op)
            return True
        if isinstance(op, KvOp):
            self.report.counts["kv_ops"] += 1
            return self.execute_kv(index, op)
        self.report.counts["lease_ops"] += 1
        return self.execute_lease(index, op)

    # -- KV and Lease ---------------------------------------------------------

    def execute_kv(self, index: int, op: KvOp) -> bool:
        """Send a KV request to both servers and compare the answers."""
        request = op.request
        if isinstance(request, rpc_pb2.CompactionRequest) and self.compacts(request.revision):
            self.settle_before_compaction(request.revision)
        ref, cand = self.sides
        ref_out = ref.kv.call(op.request)
        cand_out = cand.kv.call(self.ids.for_candidate(op.request))
        if cand_out.response is not None:
            cand_out = Outcome(response=self.ids.for_comparison(cand_out.response))
        before = self.compact_revision
        self.compact_revision = track_compaction(before, op.request, ref_out)
        if self.compact_revision != before:
            assert isinstance(op.request, rpc_pb2.CompactionRequest)
            self.compacted_at = (time.monotonic(), op.request.physical)
        return self.check(index, op, ref_out, cand_out)

    def execute_lease(self, index: int, op: LeaseOp) -> bool:
        """Send a Lease request to both servers, learn server-assigned ids, compare the answers."""
        ref, cand = self.sides
        ref_out = ref.call_lease(op.request)
        cand_out = cand.call_lease(self.ids.for_candidate(op.request))
        grant = isinstance(op.request, rpc_pb2.LeaseGrantRequest) and op.request.ID == 0
        ref_grant, cand_grant = ref_out.response, cand_out.response
        if grant and isinstance(ref_grant, GrantResponse) and isinstance(cand_grant, GrantResponse):
            self.ids.learn(ref_grant.ID, cand_grant.ID)
        self.generator.observe(op, ref_out)
        if ref_out.response is not None:
            ref_out = Outcome(response=comparable_lease(ref_out.response, None))
        if cand_out.response is not None:
            translated = self.ids.for_comparison(cand_out.response)
            cand_out = Outcome(response=comparable_lease(translated, ref_out.response))
        return self.check(index, op, ref_out, cand_out)

    def check(self, index: int, op: Op, ref_out: Outcome, cand_out: Outcome) -> bool:
        """Compare two outcomes; on a difference (or a reference failure) record it and return False."""
        if ref_out.is_transport_failure():
            self.report.problems.append(f"{self.names[0]} stopped answering at op #{index}: {ref_out.text()}")
            return False
        if ref_out.signature() == cand_out.signature():
            return True
        self.report.mismatches.append(self.answer_mismatch(index, op, ref_out, cand_out))
        return False

    def answer_mismatch(self, index: int, op: Op, ref_out: Outcome, cand_out: Outcome) -> str:
        """The report of a KV or Lease answer that differed."""
        ref_name, cand_name = self.names
        diff = difflib.unified_diff(
            ref_out.text().splitlines(), cand_out.text().splitlines(), ref_name, cand_name, lineterm=""
        )
        return (
            f"MISMATCH {self.label} op={index}\n"
            f"--- request #{index}:\n{to_text(op.request)}\n"
            f"--- {ref_name}:\n{ref_out.text()}\n--- {cand_name}:\n{cand_out.text()}\n"
            f"--- diff:\n" + "\n".join(diff) + "\n"
            f"--- previous requests:\n{self.recent(index)}\n"
        )

    def recent(self, index: int, count: int = 6) -> str:
        """The ``count`` operations before ``index``, one per line."""
        first = max(0, index - count)
        lines = [f"#{i} {op_text(self.ops[i])}" for i in range(first, min(index, len(self.ops)))]
        return "\n".join(lines) or "(none)"

    # -- Watch ----------------------------------------------------------------

    def execute_watch(self, index: int, op: WatchOp) -> None:
        """Send a WatchRequest on both servers and wait until each has answered it."""
        which = op.request.WhichOneof("request_union")
        if which == "create_request":
            self.wait_for_compaction_to_finish(op.request.create_request)
        elif which == "cancel_request":
            self.settle_stream(op.stream)
        waited: list[tuple[Side, WatchRecord]] = []
        for side in self.sides:
            if which == "create_request":
                record = side.create(index, op.stream, op.request.create_request, self.compact_revision)
            else:
                side.streams[op.stream].send(op.request)
                record = side.create(index, op.stream, SENTINEL, self.compact_revision, sentinel=True)
            waited.append((side, record))
        for side, record in waited:
            if not side.wait_created(record):
                self.report.problems.append(f"{side.name}: no created response for op #{index}")

    def compacts(self, revision: int) -> bool:
        """Whether a Compact at ``revision`` will succeed (and may cancel unsynced watches)."""
        current = self.pre_revisions[-1] if self.pre_revisions else 1
        return self.compact_revision < revision <= current

    def wait_for_compaction_to_finish(self, request: rpc_pb2.WatchCreateRequest) -> None:
        """Before a create starting at the compacted revision, give a non-physical compaction time
        to remove the tombstones at that revision, if there are any in the watched range."""
        when, physical = self.compacted_at
        compacted = self.compact_revision
        if physical or request.start_revision != compacted or compacted == 0:
            return
        ref = self.sides[0]
        bounds = watch_bounds(request)
        with ref.cond:
            tombstones = [
                event
                for event in ref.history.events
                if event.kv.mod_revision == compacted
                and event.type == kv_pb2.Event.DELETE
                and covers(bounds, event.kv.key)
            ]
        if tombstones:
            self.pause(when + SYNC_GRACE - time.monotonic())

    def settle_stream(self, stream: int) -> None:
        """Settle the watches of one stream on both servers (before a cancel)."""
        for side in self.sides:
            with side.cond:
                records = [r for r in side.records if r.stream == stream]
            self.settle(side, records)

    def settle_before_compaction(self, revision: int) -> None:
        """Settle every watch on both servers before a Compact at ``revision``.

        A watch started in the past is synced once it has received its last expected event
        (etcd moves it to its synced group as it sends the last catch-up batch). One that
        expects no event at all gets time for etcd's sync loop to sync it.
        """
        latest = 0.0
        for side in self.sides:
            with side.cond:
                records = list(side.records)
            self.settle(side, records)
            with side.cond:
                at_risk = [
                    r.created_time
                    for r in records
                    if r.is_open and r.started_in_the_past and r.start < revision and r.target == 0
                ]
            latest = max([latest, *at_risk])
        self.pause(latest + SYNC_GRACE - time.monotonic())

    def settle_all(self) -> None:
        """Settle every watch on both servers."""
        for side in self.sides:
            with side.cond:
                records = list(side.records)
            self.settle(side, records)

    def pause(self, seconds: float) -> None:
        """Sleep (if ``seconds`` > 0), counting the time spent in the report."""
        if seconds > 0:
            time.sleep(seconds)
            self.report.counts["paused_ms"] += round(seconds * 1000)

    def settle(self, side: Side, records: Sequence[WatchRecord]) -> None:
        """Settle ``records``; a reference that cannot settle is a harness problem."""
        unsettled = side.settle(records)
        self.report.counts["settles"] += 1
        if unsettled and side is self.sides[0]:
            numbers = ", ".join(f"#{r.index}" for r in unsettled)
            self.report.problems.append(
                f"{side.name}: watches {numbers} did not settle by op #{len(self.ops)}"
            )

    # -- the end --------------------------------------------------------------

    def finish(self) -> None:
        """Write a marker into every open watch's range, settle everything, read the final state."""
        for op in self.marker_ops():
            self.pre_revisions.append(self.sides[0].revision())
            if not self.execute(op):
                return
        self.settle_all()
        leases = sorted({*self.generator.alive, *EXPLICIT_LEASES})
        finals: list[Op] = [KvOp(final_request()), LeaseOp(rpc_pb2.LeaseLeasesRequest())]
        finals += [LeaseOp(rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=True)) for lease in leases]
        for op in finals:
            self.pre_revisions.append(self.sides[0].revision())
            if not self.execute(op):
                return

    def marker_ops(self) -> list[Op]:
        """A Put (and, for a NOPUT watch, a delete) of its key for every watch open on either server."""
        open_records: set[int] = set()
        for side in self.sides:
            with side.cond:
                open_records |= {r.index for r in side.records if r.state() == "open"}
        ops: list[Op] = []
        for index in sorted(open_records):
            request = self.sides[0].records[index].request
            if NOPUT in request.filters and NODELETE in request.filters:
                continue
            key = request.key or b"\x00"
            ops.append(KvOp(rpc_pb2.PutRequest(key=key, value=b"marker-%d" % index)))
            if NOPUT in request.filters:
                ops.append(KvOp(rpc_pb2.DeleteRangeRequest(key=key)))
        return ops

    # -- comparing watches ----------------------------------------------------

    def compare_watches(self) -> None:
        """Compare every watch record, orphan responses and stream errors of the two servers."""
        ref, cand = self.sides
        with ref.cond, cand.cond:
            self.report.counts["watches"] = len(ref.records)
            self.report.counts["events"] = sum(len(r.events) for r in ref.records)
            self.report.counts["progress_notifications"] = sum(s.progress for s in cand.streams)
            if len(ref.records) != len(cand.records):
                self.report.problems.append(f"record counts differ: {len(ref.records)} / {len(cand.records)}")
            for ref_record, cand_record in zip(ref.records, cand.records, strict=False):
                self.compare_record(ref_record, cand_record)
            for ref_stream, cand_stream in zip(ref.streams, cand.streams, strict=True):
                self.compare_stream(ref_stream, cand_stream)

    def compare_record(self, ref: WatchRecord, cand: WatchRecord) -> None:
        """Compare the control responses, then the events, of one watch."""
        ref_controls = [comparable_control(r) for _, r in ref.controls]
        cand_controls = [comparable_control(r) for _, r in cand.controls]
        if serialized(ref_controls) != serialized(cand_controls):
            ref_lines, cand_lines = message_lines(ref_controls), message_lines(cand_controls)
            self.report.mismatches.append(self.control_mismatch(ref, cand, ref_lines, cand_lines))
            return
        cand_events = [self.ids.for_comparison(e) for e in cand.events]
        if serialized(ref.events) != serialized(cand_events):
            ref_lines, cand_lines = message_lines(ref.events), message_lines(cand_events)
            self.report.mismatches.append(self.event_mismatch(ref, cand, ref_lines, cand_lines))
        elif self.compare_shapes and ref.request.fragment and ref.shapes != cand.shapes:
            ref_name, cand_name = self.names
            self.report.mismatches.append(
                self.watch_head(ref, "fragments differ (events per response, fragment flag)")
                + f"--- {ref_name}: {ref.shapes}\n--- {cand_name}: {cand.shapes}\n"
            )

    def watch_head(self, record: WatchRecord, what: str) -> str:
        """The first lines of a watch mismatch report."""
        kind = "sentinel after" if record.sentinel else "created by"
        return (
            f"WATCH MISMATCH {self.label} watch #{record.index} (stream {record.stream}, {kind} "
            f"op #{record.op_index}): {what}\n"
            f"--- create request: {to_text(record.request, one_line=True)}\n"
            f"--- operation #{record.op_index}: {self.op_line(record.op_index)}\n"
            f"--- previous operations:\n{self.recent(record.op_index)}\n"
        )

    def op_line(self, index: int) -> str:
        """One operation, or a note for the harness's own create."""
        return op_text(self.ops[index]) if 0 <= index < len(self.ops) else "(none: a harness create)"

    def control_mismatch(
        self, ref: WatchRecord, cand: WatchRecord, ref_lines: list[str], cand_lines: list[str]
    ) -> str:
        """The report of differing created/canceled/compacted responses."""
        ref_name, cand_name = self.names
        ops = [f"#{i} {self.op_line(i)}" for i, _ in [*ref.controls, *cand.controls]]
        return (
            self.watch_head(ref, "control responses differ")
            + f"--- {ref_name}:\n"
            + "\n".join(ref_lines)
            + f"\n--- {cand_name}:\n"
            + "\n".join(cand_lines)
            + "\n--- received during:\n"
            + "\n".join(dict.fromkeys(ops))
            + "\n"
        )

    def event_mismatch(
        self, ref: WatchRecord, cand: WatchRecord, ref_lines: list[str], cand_lines: list[str]
    ) -> str:
        """The report of differing event lists: the first difference and the ops that wrote it."""
        ref_name, cand_name = self.names
        first = next(
            (i for i, (a, b) in enumerate(zip(ref_lines, cand_lines, strict=False)) if a != b),
            min(len(ref_lines), len(cand_lines)),
        )
        writers = ""
        for name, events in ((ref_name, ref.events), (cand_name, cand.events)):
            if first < len(events):
                writer = self.writer_of(events[first].kv.mod_revision)
                writers += f"--- {name}'s event #{first} was written by op #{writer} {self.op_line(writer)}\n"
        return (
            self.watch_head(
                ref, f"events differ from event #{first} ({len(ref_lines)} / {len(cand_lines)} events)"
            )
            + writers
            + f"--- {ref_name} events #{first}..:\n"
            + "\n".join(ref_lines[first : first + 3] or ["(none)"])
            + f"\n--- {cand_name} events #{first}..:\n"
            + "\n".join(cand_lines[first : first + 3] or ["(none)"])
            + "\n"
        )

    def writer_of(self, revision: int) -> int:
        """The index of the operation that created ``revision`` on the reference (-1: none)."""
        index = bisect.bisect_left(self.pre_revisions, revision) - 1
        return index if 0 <= index < len(self.ops) else -1

    def compare_stream(self, ref: WatchStream, cand: WatchStream) -> None:
        """Compare responses that belonged to no watch, and how each stream ended."""
        ref_lines = message_lines([comparable_control(r) for _, r in ref.orphans])
        cand_lines = message_lines([comparable_control(self.ids.for_comparison(r)) for _, r in cand.orphans])
        if ref_lines != cand_lines or ref.error != cand.error:
            ref_name, cand_name = self.names
            ops = [f"#{i} {self.op_line(i)}" for i, _ in [*ref.orphans, *cand.orphans]]
            self.report.mismatches.append(
                f"STREAM MISMATCH {self.label} stream {ref.number}: orphan responses or errors\n"
                f"--- {ref_name} (error {ref.error!r}):\n" + "\n".join(ref_lines) + "\n"
                f"--- {cand_name} (error {cand.error!r}):\n" + "\n".join(cand_lines) + "\n"
                "--- received during:\n" + "\n".join(dict.fromkeys(ops)) + "\n"
            )


def run_watch_lease(
    seed: int,
    ops: int,
    reference: str,
    candidate: str,
    names: tuple[str, str] = ("etcd", "candidate"),
    trace: Callable[[int, Op], None] | None = None,
    avoid: frozenset[str] = frozenset(),
) -> Report:
    """Run one seed of ``ops`` operations against both endpoints and return the report."""
    return WatchLeaseRun(seed, reference, candidate, names, trace=trace, avoid=avoid).run(ops)


def run_script(
    name: str,
    steps: Sequence[Step],
    reference: str,
    candidate: str,
    names: tuple[str, str] = ("etcd", "candidate"),
    compare_shapes: bool = False,
) -> Report:
    """Run a fixed script against both endpoints (two watch streams besides the history's)."""
    run = WatchLeaseRun(-1, reference, candidate, names, streams=2)
    run.label = run.report.label = f"script={name}"
    run.compare_shapes = compare_shapes
    return run.run_script(steps)


# ---------------------------------------------------------------------------
# Scripts: what a random sequence cannot do
# ---------------------------------------------------------------------------


def put(key: bytes, value: bytes = b"v", **fields: object) -> KvOp:
    """A Put as a script step."""
    return KvOp(rpc_pb2.PutRequest(key=key, value=value, **fields))  # type: ignore[arg-type]


def watch(stream: int, key: bytes, end: bytes, **fields: object) -> WatchOp:
    """A watch create as a script step."""
    create = rpc_pb2.WatchCreateRequest(key=key, range_end=end, **fields)  # type: ignore[arg-type]
    return WatchOp(stream, rpc_pb2.WatchRequest(create_request=create))


def lease_expiry_script() -> list[Step]:
    """Leases that really expire: A (TTL 1, raised to etcd's minimum 2) with two keys, B (TTL 4,
    kept alive once) with one, C (TTL 60) that outlives the script. Every expiry deletes the
    lease's keys in one revision (watch events with prev_kv); afterwards the expired leases are
    unknown to TimeToLive, KeepAlive, Revoke and Put. A expires about 3 s before B, so the
    order of revocations cannot differ."""
    a, b, c = 201, 202, 203
    grant = rpc_pb2.LeaseGrantRequest
    ttl = rpc_pb2.LeaseTimeToLiveRequest
    return [
        watch(1, b"e/", b"e0", prev_kv=True),
        watch(2, b"e/", b"e0", filters=[NOPUT]),
        LeaseOp(grant(ID=a, TTL=1)),
        LeaseOp(grant(ID=b, TTL=4)),
        LeaseOp(grant(ID=c, TTL=60)),
        put(b"e/1", lease=a),
        put(b"e/2", lease=a),
        put(b"e/3", lease=b),
        put(b"e/4", lease=c),
        put(b"e/5"),
        put(b"e/2", b"w", ignore_lease=True, prev_kv=True),
        LeaseOp(ttl(ID=a, keys=True)),
        Pause(1.0),
        LeaseOp(rpc_pb2.LeaseKeepAliveRequest(ID=b)),
        AwaitEvents(8),  # 6 puts, then A's expiry deletes e/1 and e/2
        LeaseOp(ttl(ID=a, keys=True)),
        LeaseOp(rpc_pb2.LeaseKeepAliveRequest(ID=a)),
        put(b"e/6", lease=a),
        LeaseOp(rpc_pb2.LeaseRevokeRequest(ID=a)),
        LeaseOp(ttl(ID=b, keys=True)),
        LeaseOp(rpc_pb2.LeaseLeasesRequest()),
        AwaitEvents(9),  # B's expiry deletes e/3
        LeaseOp(ttl(ID=b)),
        LeaseOp(rpc_pb2.LeaseLeasesRequest()),
        LeaseOp(ttl(ID=c, keys=True)),
        LeaseOp(grant(ID=a, TTL=60)),  # an expired lease's id can be granted again
        put(b"e/1", lease=a),
        KvOp(rpc_pb2.RangeRequest(key=b"e/", range_end=b"e0")),
    ]


#: Values big enough that a catch-up batch of them exceeds the fragment limit.
BIG = 1_000_000


def fragment_script() -> list[Step]:
    """Watch responses too big for one message, with and without ``fragment``: a catch-up batch
    of four 1 MB events, and a live txn overwriting three of them (with prev_kv, 4.5 MB)."""
    big = [put(b"f/%d" % i, bytes([65 + i]) * BIG) for i in range(4)]
    overwrite = rpc_pb2.TxnRequest(
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"f/%d" % i, value=b"n" * (BIG // 2)))
            for i in range(3)
        ]
    )
    return [
        *big,
        watch(1, b"f/", b"f0", start_revision=2, fragment=True),
        watch(2, b"f/", b"f0", start_revision=2),
        Settle(),  # the catch-up batch must not take in the txn below
        watch(1, b"f/", b"f0", prev_kv=True, fragment=True),
        watch(2, b"f/", b"f0", prev_kv=True),
        KvOp(overwrite),
        AwaitEvents(7),
        # Every watch holds the txn before the delete: a watcher still sending the txn's
        # 4.5 MB when the delete commits may take both revisions in one response (kine-py's
        # pull; etcd does the same for a watcher that fell behind), which would make the
        # compared shapes depend on timing.
        Settle(),
        KvOp(rpc_pb2.DeleteRangeRequest(key=b"f/", range_end=b"f0")),
    ]


#: The scripts by name, each with whether fragment shapes are compared.
SCRIPTS: dict[str, tuple[Callable[[], list[Step]], bool]] = {
    "lease-expiry": (lease_expiry_script, False),
    "fragment": (fragment_script, True),
}


# ---------------------------------------------------------------------------
# Command line: run one seed by hand
# ---------------------------------------------------------------------------


def print_op(index: int, op: Op) -> None:
    """Trace callback: one line per operation."""
    print(f"#{index} {op_text(op)}", flush=True)


@contextmanager
def servers(reference: str | None, candidate: str | None, self_check: bool) -> Iterator[tuple[str, str]]:
    """The given endpoints, or fresh servers: etcd, and kine-py (or, for a self-check, a second etcd)."""
    if not self_check or candidate is not None:
        with started_servers(reference, candidate) as endpoints:
            yield endpoints
        return
    with (
        tempfile.TemporaryDirectory(prefix="kine-wl-") as tmp,
        started_servers(reference, "unused") as (ref, _),
    ):
        other = etcd_process(Path(tmp) / "etcd-2").start()
        try:
            yield ref, other.endpoint
        finally:
            other.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one seed against etcd and kine-py (or given endpoints); print the report."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--reference", help="host:port of the reference etcd (default: start one)")
    parser.add_argument("--candidate", help="host:port of the server under test (default: start kine-py)")
    parser.add_argument("--trace", action="store_true", help="print every operation as it is sent")
    parser.add_argument("--self-check", action="store_true", help="compare etcd with a second etcd")
    parser.add_argument("--script", choices=sorted(SCRIPTS), help="run a fixed script instead of a seed")
    shapes = "; ".join(f"{name}: {text}" for name, text in AVOIDABLE.items())
    parser.add_argument("--avoid", default="", help=f"comma-separated request shapes not to send ({shapes})")
    args = parser.parse_args(argv)
    avoid = frozenset(name for name in args.avoid.split(",") if name)
    names = ("etcd", "etcd-2" if args.self_check else "kine")
    with servers(args.reference, args.candidate, args.self_check) as (reference, candidate):
        trace = print_op if args.trace else None
        if args.script:
            make, shapes_too = SCRIPTS[args.script]
            report = run_script(args.script, make(), reference, candidate, names, shapes_too)
        else:
            report = run_watch_lease(args.seed, args.ops, reference, candidate, names, trace, avoid)
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
