"""The Raft codec: every type round-trips; damaged input raises CodecError, never garbage."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kine_py.raft import codec
from kine_py.raft.codec import CodecError
from kine_py.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
small_bytes = st.binary(max_size=64)
ids = st.lists(u64, max_size=5).map(tuple)

entries = st.builds(Entry, term=u64, index=u64, type=st.sampled_from(EntryType), data=small_bytes)
hard_states = st.builds(HardState, term=u64, vote=u64, commit=u64)
conf_states = st.builds(ConfState, voters=ids, learners=ids)
snapshot_metadata = st.builds(SnapshotMetadata, conf_state=conf_states, index=u64, term=u64)
snapshots = st.builds(Snapshot, metadata=snapshot_metadata, data=small_bytes)
conf_changes = st.builds(ConfChange, type=st.sampled_from(ConfChangeType), node_id=u64, context=small_bytes)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=small_bytes,
)

Pair = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
CODECS: dict[str, tuple[Pair, st.SearchStrategy[Any]]] = {
    "entry": ((codec.encode_entry, codec.decode_entry), entries),
    "hard_state": ((codec.encode_hard_state, codec.decode_hard_state), hard_states),
    "conf_state": ((codec.encode_conf_state, codec.decode_conf_state), conf_states),
    "snapshot_metadata": (
        (codec.encode_snapshot_metadata, codec.decode_snapshot_metadata),
        snapshot_metadata,
    ),
    "snapshot": ((codec.encode_snapshot, codec.decode_snapshot), snapshots),
    "conf_change": ((codec.encode_conf_change, codec.decode_conf_change), conf_changes),
    "message": ((codec.encode_message, codec.decode_message), messages),
    "messages": ((codec.encode_messages, codec.decode_messages), st.lists(messages, max_size=4)),
}


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    (encode, decode), strategy = CODECS[name]
    value = data.draw(strategy)
    encoded = encode(value)
    assert isinstance(encoded, bytes)
    decoded = decode(encoded)
    assert decoded == value
    # Enum fields come back as enums, not bare ints.
    if isinstance(value, Message):
        assert type(decoded.type) is MessageType
        assert all(type(e.type) is EntryType for e in decoded.entries)
    # Decoding accepts any bytes-like buffer.
    assert decode(memoryview(bytearray(encoded))) == value


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_truncation_raises(name: str, data: st.DataObject) -> None:
    (encode, decode), strategy = CODECS[name]
    encoded = encode(data.draw(strategy))
    for cut in range(len(encoded)):
        with pytest.raises(CodecError):
            decode(encoded[:cut])


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_trailing_bytes_raise(name: str, data: st.DataObject) -> None:
    (encode, decode), strategy = CODECS[name]
    extra = data.draw(st.binary(min_size=1, max_size=9))
    with pytest.raises(CodecError, match="trailing"):
        decode(encode(data.draw(strategy)) + extra)


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_corruption_raises_or_decodes_to_a_valid_value(name: str, data: st.DataObject) -> None:
    """A flipped byte either makes decoding fail with CodecError or still decodes completely
    (e.g. a changed term); it never leaks IndexError/struct.error or a half-built value."""
    (encode, decode), strategy = CODECS[name]
    encoded = bytearray(encode(data.draw(strategy)))
    pos = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        value = decode(bytes(encoded))
    except CodecError:
        return
    assert encode(value) == bytes(encoded)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_other_version_and_kind_are_refused(name: str) -> None:
    (encode, decode), _ = CODECS[name]
    samples: dict[str, Any] = {
        "entry": Entry(1, 2),
        "hard_state": HardState(1, 2, 3),
        "conf_state": ConfState((1,), (2,)),
        "snapshot_metadata": SnapshotMetadata(ConfState((1,)), 4, 2),
        "snapshot": Snapshot(SnapshotMetadata(ConfState((1,)), 4, 2), b"d"),
        "conf_change": ConfChange(ConfChangeType.ADD_NODE, 3),
        "message": Message(MessageType.HEARTBEAT, 2, 1, 3),
        "messages": [Message(MessageType.HEARTBEAT, 2, 1, 3)],
    }
    good = encode(samples[name])
    with pytest.raises(CodecError, match="version 2"):
        decode(bytes([2]) + good[1:])
    with pytest.raises(CodecError, match="kind"):
        decode(good[:1] + bytes([good[1] % 8 + 1]) + good[2:])


def test_unknown_enum_values_and_flags_raise() -> None:
    entry = bytearray(codec.encode_entry(Entry(1, 2, EntryType.NORMAL, b"x")))
    entry[2 + 16] = 9  # the type byte
    with pytest.raises(CodecError, match="unknown entry type 9"):
        codec.decode_entry(bytes(entry))

    msg = bytearray(codec.encode_message(Message(MessageType.APP, 2, 1)))
    msg[2] = 77
    with pytest.raises(CodecError, match="unknown message type 77"):
        codec.decode_message(bytes(msg))
    msg = bytearray(codec.encode_message(Message(MessageType.APP, 2, 1)))
    msg[2 + 1 + 6 * 8] = 0x80  # the flags byte
    with pytest.raises(CodecError, match="flags"):
        codec.decode_message(bytes(msg))

    cc = bytearray(codec.encode_conf_change(ConfChange(ConfChangeType.ADD_NODE, 3)))
    cc[2] = 4
    with pytest.raises(CodecError, match="conf change type 4"):
        codec.decode_conf_change(bytes(cc))


def test_huge_counts_are_refused_before_allocating() -> None:
    header = codec.encode_messages([])[:2]
    with pytest.raises(CodecError, match="cannot fit"):
        codec.decode_messages(header + struct.pack("<I", 0xFFFFFFFF))
    msg = codec.encode_message(Message(MessageType.APP, 2, 1))
    # Replace the entry count (right after the fixed part) with 2**32-1.
    at = 2 + struct.calcsize("<BQQQQQQBQ")
    with pytest.raises(CodecError, match="cannot fit"):
        codec.decode_message(msg[:at] + struct.pack("<I", 0xFFFFFFFF) + msg[at + 4 :])
    cs = codec.encode_conf_state(ConfState())
    with pytest.raises(CodecError, match="run past the end"):
        codec.decode_conf_state(cs[:2] + struct.pack("<I", 1 << 30) + cs[6:])


@pytest.mark.parametrize(
    "value, encode",
    [
        (Entry(-1, 0), codec.encode_entry),
        (HardState(1 << 64, 0, 0), codec.encode_hard_state),
        (ConfState((-5,)), codec.encode_conf_state),
        (Message(MessageType.APP, to=-1), codec.encode_message),
    ],
)
def test_unencodable_values_raise(value: Any, encode: Callable[[Any], bytes]) -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        encode(value)


def test_conf_change_encoding_is_stable() -> None:
    """The bytes of a conf change entry are part of the on-disk log: pin them."""
    encoded = codec.encode_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 5, b"u"))
    assert encoded.hex() == "0106" + "03" + "0500000000000000" + "01000000" + "75"


def test_msgapp_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    """Printed, not asserted: encode + decode of a 100-entry MsgApp with 300-byte entries."""
    msg = Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=7,
        log_term=7,
        index=1000,
        entries=tuple(Entry(7, 1001 + i, EntryType.NORMAL, bytes(300)) for i in range(100)),
        commit=999,
    )
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        encoded = codec.encode_messages([msg])
    encode_s = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for _ in range(rounds):
        decoded = codec.decode_messages(encoded)
    decode_s = (time.perf_counter() - start) / rounds
    assert decoded == [msg]
    with capsys.disabled():
        print(
            f"\n100-entry MsgApp ({len(encoded)} B): encode {encode_s * 1e6:.0f} us, "
            f"decode {decode_s * 1e6:.0f} us, {100 / (encode_s + decode_s):,.0f} entries/s round trip"
        )
