"""Many watchers: each gets exactly its own events, whatever the others watch, in bounded memory.

The hub finds the watchers an event concerns through an index of watched keys and
ranges (exact keys, prefixes, other ranges); these tests check that index against the
plain definition of a match, and a real server with 1,000 watchers on distinct keys.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.etcdserverpb import rpc_pb2_grpc as rpc
from kine_py.mvcc.watch import WatcherIndex, _Watcher, prefix_end
from kine_py.testing.processes import ServerProcess

WATCHERS = 1000
STREAMS = 10


def watcher(key: bytes, end: bytes | None, number: int) -> _Watcher:
    return _Watcher(number, key, end, 1, False, False, False, False, False, session=None)  # type: ignore[arg-type]


def matches(w: _Watcher, key: bytes) -> bool:
    if w.end is None:
        return key == w.key
    return w.key <= key and (w.end == b"" or key < w.end)


small_keys = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 4 + 0xFC for x in b))


@st.composite
def watches(draw: Any) -> tuple[bytes, bytes | None]:
    key = draw(small_keys)
    kind = draw(st.sampled_from(["exact", "prefix", "from", "range"]))
    if kind == "exact":
        return key, None
    if kind == "prefix":
        end = prefix_end(key)
        return key, b"" if end == b"\0" else end
    if kind == "from":
        return key, b""
    end = draw(small_keys)
    return (key, end) if key < end else (end, key) if end < key else (key, None)


@settings(max_examples=200, deadline=None)
@given(st.lists(watches(), min_size=1, max_size=30), st.lists(small_keys, min_size=1, max_size=30))
def test_index_finds_exactly_the_matching_watchers(
    specs: list[tuple[bytes, bytes | None]], keys: list[bytes]
) -> None:
    """Keys near 0xff exercise prefix ends; half the watchers are removed again."""
    index = WatcherIndex()
    ws = [watcher(k, e, i) for i, (k, e) in enumerate(specs)]
    for w in ws:
        index.add(w)
    for w in ws[::2]:
        index.remove(w)
    live = ws[1::2]
    assert len(index) == len(live)
    for key in keys:
        found = list(index.matching(key))
        assert len(found) == len(set(found))
        assert {w.id for w in found} == {w.id for w in live if matches(w, key)}


def test_prefix_end_is_etcds() -> None:
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"/registry/pods/") == b"/registry/pods0"


def rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Streams:
    """Watch streams on one channel, each with a reader collecting (watch_id, revision, key)."""

    def __init__(self, channel: grpc.aio.Channel, count: int) -> None:
        self.calls = [rpc.WatchStub(channel).Watch() for _ in range(count)]
        self.created: list[dict[int, bytes]] = [{} for _ in range(count)]
        self.events: list[list[tuple[int, int, bytes]]] = [[] for _ in range(count)]

    async def create(self, s: int, requests: list[pb.WatchCreateRequest]) -> None:
        call = self.calls[s]
        for request in requests:
            await call.write(pb.WatchRequest(create_request=request))
        for request in requests:
            resp = await call.read()
            assert resp.created and not resp.canceled, resp
            self.created[s][resp.watch_id] = request.key

    async def read_until(self, s: int, count: int) -> None:
        while len(self.events[s]) < count:
            resp = await self.calls[s].read()
            assert not resp.canceled, resp
            self.events[s].extend((resp.watch_id, e.kv.mod_revision, e.kv.key) for e in resp.events)

    def close(self) -> None:
        for call in self.calls:
            call.cancel()


@pytest.mark.kine
async def test_a_thousand_watchers_on_distinct_keys_get_exactly_their_events(kine: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(kine.endpoint) as channel:
        kv = rpc.KVStub(channel)
        await kv.Put(pb.PutRequest(key=b"warm-up", value=b"x"))
        rss_before = rss_kib(kine)
        streams = Streams(channel, STREAMS)
        per = WATCHERS // STREAMS
        for s in range(STREAMS):
            await streams.create(
                s, [pb.WatchCreateRequest(key=b"k/%04d" % (s * per + i)) for i in range(per)]
            )
        # One more stream watches a prefix of 100 of those keys, and everything from k/0990.
        extra = Streams(channel, 1)
        await extra.create(
            0,
            [
                pb.WatchCreateRequest(key=b"k/01", range_end=prefix_end(b"k/01")),
                pb.WatchCreateRequest(key=b"k/0990", range_end=b"\0"),
            ],
        )
        rss_watching = rss_kib(kine)
        # Writes to every watched key once, in random order, mixed with unwatched keys.
        order = list(range(WATCHERS))
        random.Random(7).shuffle(order)
        revision_of: dict[bytes, int] = {}
        written: dict[bytes, int] = {}  # the unwatched keys (but for the from-key watch)
        for n, i in enumerate(order):
            if n % 3 == 0:
                other = b"other/%d" % n
                written[other] = (await kv.Put(pb.PutRequest(key=other, value=b"y"))).header.revision
            key = b"k/%04d" % i
            revision_of[key] = (await kv.Put(pb.PutRequest(key=key, value=b"v" * 64))).header.revision
        await asyncio.wait_for(
            asyncio.gather(
                *(streams.read_until(s, per) for s in range(STREAMS)),
                extra.read_until(0, 100 + 10 + len(written)),
            ),
            timeout=60,
        )
        for s in range(STREAMS):
            got = sorted(streams.events[s])
            want = sorted((wid, revision_of[key], key) for wid, key in streams.created[s].items())
            assert got == want
        prefix_id, from_id = sorted(extra.created[0])
        got_extra = sorted(extra.events[0])
        want_extra = sorted(
            [(prefix_id, revision_of[k], k) for k in revision_of if k.startswith(b"k/01")]
            + [(from_id, rev, k) for k, rev in {**revision_of, **written}.items() if k >= b"k/0990"]
        )
        assert got_extra == want_extra
        # Events arrive in revision order on each watcher.
        for events in streams.events + extra.events:
            by_watcher: dict[int, list[int]] = {}
            for wid, rev, _ in events:
                by_watcher.setdefault(wid, []).append(rev)
            assert all(revs == sorted(revs) for revs in by_watcher.values())
        streams.close()
        extra.close()
    # etcd budgets ~350 B per watcher and ~18 KiB per stream; allow far more, but not
    # anything per watcher per event (that would be ~1,000 x 1,000 x 64 B here).
    assert rss_watching - rss_before < 20_000, (rss_before, rss_watching)
    assert rss_kib(kine) - rss_before < 40_000, (rss_before, rss_kib(kine))
