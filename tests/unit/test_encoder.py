"""convert.Encoder builds Range and Watch responses from cached bytes: they must parse to
exactly the messages the plain protobuf conversion builds, for any field values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py.model import Event, EventType, KeyValue, RangeResult, WatchReply
from kine_py.server import convert
from kine_py.server.identity import Identity

IDENTITY = Identity(2**64 - 5, 12345, "n", ("http://x",), "3.5.13")
i64 = st.integers(-(2**63), 2**63 - 1)
revs = st.integers(0, 2**62)
key_values = st.builds(
    KeyValue,
    st.binary(min_size=1, max_size=20),
    revs,
    revs,
    st.integers(0, 2**40),
    st.binary(max_size=300),
    i64,
)
events = st.builds(Event, st.sampled_from(list(EventType)), key_values, st.none() | key_values)


@settings(max_examples=200, deadline=None)
# A Range never carries two different KeyValues with one (key, mod_revision): the cache key.
@given(
    revs,
    st.lists(key_values, max_size=5, unique_by=lambda kv: (kv.key, kv.mod_revision)),
    st.booleans(),
    st.integers(0, 2**40),
)
def test_range_bytes_equal_the_message(revision: int, kvs: list[KeyValue], more: bool, count: int) -> None:
    encoder = convert.Encoder(IDENTITY.fill, max_bytes=4096)  # small: evictions happen too
    result = RangeResult(revision, kvs, more, count)
    want = convert.range_response(result)
    IDENTITY.fill(want.header)
    for _ in range(2):  # built, then from the cache
        assert pb.RangeResponse.FromString(encoder.range_response(result)) == want


@settings(max_examples=200, deadline=None)
@given(revs, i64, st.lists(events, min_size=1, max_size=5))
def test_watch_bytes_equal_the_message(revision: int, watch_id: int, evs: list[Event]) -> None:
    encoder = convert.Encoder(IDENTITY.fill, max_bytes=4096)
    reply = WatchReply(watch_id, revision, events=evs)
    want = convert.watch_response(reply)
    IDENTITY.fill(want.header)
    for _ in range(2):
        assert pb.WatchResponse.FromString(encoder.events_response(reply)) == want


def test_an_event_without_prev_kv_is_not_confused_with_the_one_with_it() -> None:
    """Watchers without prev_kv get a copy of the ring's event sharing its KeyValue."""
    encoder = convert.Encoder(IDENTITY.fill)
    kv = KeyValue(b"k", 2, 5, 2, b"new", 0)
    prev = KeyValue(b"k", 2, 4, 1, b"old", 0)
    with_prev, without = Event(EventType.PUT, kv, prev), Event(EventType.PUT, kv, None)
    deleted = Event(EventType.DELETE, KeyValue(b"k", 0, 5, 0, b"", 0), None)
    for e in (with_prev, without, deleted, with_prev, without, deleted):
        got = pb.WatchResponse.FromString(encoder.events_response(WatchReply(1, 5, events=[e])))
        assert list(got.events) == [convert.event(e)]
