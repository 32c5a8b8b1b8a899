"""Compact, versioned binary encodings of the Raft vocabulary (``kine_py.raft.types``).

Pure: standard library only, no I/O. Used by the core (conf change entries), by the
write-ahead log (``kine_py.replication.wal``) and by the peer transport (message batches).

Layout. Every top-level encoding starts with a two-byte header ``(FORMAT_VERSION, kind)``
so a reader can tell what it holds and refuse a format it does not know; nested values
(the entries of a message, the metadata of a snapshot, ...) carry no header of their own.
All integers are little-endian and fixed-width (``struct``): ids, terms and indexes are
unsigned 64-bit, enum values one byte, counts and byte-string lengths unsigned 32-bit.
Fixed widths cost a few bytes over varints but decode with one ``unpack_from`` per value,
which is what matters in pure Python::

    Entry            term:u64 index:u64 type:u8 len:u32 data
    HardState        term:u64 vote:u64 commit:u64
    ConfState        n:u32 voter:u64*n m:u32 learner:u64*m
    SnapshotMetadata ConfState index:u64 term:u64
    Snapshot         SnapshotMetadata len:u32 data
    ConfChange       type:u8 node_id:u64 len:u32 context
    Message          type:u8 to from term log_term index commit:u64 flags:u8 reject_hint:u64
                     n:u32 Entry*n [Snapshot if flags&2] len:u32 context   (flags&1 = reject)
    Messages         n:u32 Message*n

Errors. Decoders raise ``CodecError`` (a ``ValueError``) for truncated input, trailing
bytes, an unknown version, kind, enum value or flag, and never return a partial value.
Encoders raise ``CodecError`` for values that do not fit the layout (negative or too large
integers, byte strings of 4 GiB or more).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

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

__all__ = [
    "FORMAT_VERSION",
    "CodecError",
    "decode_conf_change",
    "decode_conf_state",
    "decode_entry",
    "decode_hard_state",
    "decode_message",
    "decode_messages",
    "decode_snapshot",
    "decode_snapshot_metadata",
    "encode_conf_change",
    "encode_conf_state",
    "encode_entry",
    "encode_hard_state",
    "encode_message",
    "encode_messages",
    "encode_snapshot",
    "encode_snapshot_metadata",
]

FORMAT_VERSION: Final = 1


class CodecError(ValueError):
    """Input that cannot be decoded (truncated, corrupt, unknown version) or a value that
    cannot be encoded."""


# Kinds of top-level encodings (second header byte).
_KIND_ENTRY: Final = 1
_KIND_HARD_STATE: Final = 2
_KIND_CONF_STATE: Final = 3
_KIND_SNAPSHOT_METADATA: Final = 4
_KIND_SNAPSHOT: Final = 5
_KIND_CONF_CHANGE: Final = 6
_KIND_MESSAGE: Final = 7
_KIND_MESSAGES: Final = 8

_HEADER = struct.Struct("<BB")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ENTRY = struct.Struct("<QQBI")
_HARD_STATE = struct.Struct("<QQQ")
_INDEX_TERM = struct.Struct("<QQ")
_CONF_CHANGE = struct.Struct("<BQI")
_MESSAGE = struct.Struct("<BQQQQQQBQ")

_FLAG_REJECT: Final = 1
_FLAG_SNAPSHOT: Final = 2
_KNOWN_FLAGS: Final = _FLAG_REJECT | _FLAG_SNAPSHOT

_ENTRY_TYPES: Final = {int(t): t for t in EntryType}
_MESSAGE_TYPES: Final = {int(t): t for t in MessageType}
_CONF_CHANGE_TYPES: Final = {int(t): t for t in ConfChangeType}

# -- writing ---------------------------------------------------------------------------------
# Writers append the pieces of one value to a list; the caller joins once.


def _put_bytes(out: list[bytes], data: bytes) -> None:
    out.append(_U32.pack(len(data)))
    out.append(data)


def _put_entry(out: list[bytes], e: Entry) -> None:
    out.append(_ENTRY.pack(e.term, e.index, e.type, len(e.data)))
    out.append(e.data)


def _put_ids(out: list[bytes], ids: tuple[int, ...]) -> None:
    out.append(_U32.pack(len(ids)))
    if ids:
        out.append(struct.pack(f"<{len(ids)}Q", *ids))


def _put_conf_state(out: list[bytes], cs: ConfState) -> None:
    _put_ids(out, cs.voters)
    _put_ids(out, cs.learners)


def _put_snapshot_metadata(out: list[bytes], m: SnapshotMetadata) -> None:
    _put_conf_state(out, m.conf_state)
    out.append(_INDEX_TERM.pack(m.index, m.term))


def _put_snapshot(out: list[bytes], s: Snapshot) -> None:
    _put_snapshot_metadata(out, s.metadata)
    _put_bytes(out, s.data)


def _put_message(out: list[bytes], m: Message) -> None:
    flags = (_FLAG_REJECT if m.reject else 0) | (_FLAG_SNAPSHOT if m.snapshot is not None else 0)
    out.append(
        _MESSAGE.pack(m.type, m.to, m.from_, m.term, m.log_term, m.index, m.commit, flags, m.reject_hint)
    )
    out.append(_U32.pack(len(m.entries)))
    for e in m.entries:
        out.append(_ENTRY.pack(e.term, e.index, e.type, len(e.data)))
        out.append(e.data)
    if m.snapshot is not None:
        _put_snapshot(out, m.snapshot)
    _put_bytes(out, m.context)


_T = TypeVar("_T")


def _encode(kind: int, put: Callable[[list[bytes], _T], None], value: _T) -> bytes:
    out = [_HEADER.pack(FORMAT_VERSION, kind)]
    try:
        put(out, value)
    except struct.error as exc:
        raise CodecError(f"cannot encode {type(value).__name__}: {exc}") from None
    return b"".join(out)


# -- reading ---------------------------------------------------------------------------------
# Readers take (buffer, offset) and return (value, new offset). They raise struct.error or
# CodecError; the public decoders turn struct.error into CodecError.


def _get_bytes(buf: bytes, off: int) -> tuple[bytes, int]:
    (n,) = _U32.unpack_from(buf, off)
    off += 4
    end = off + n
    if end > len(buf):
        raise CodecError(f"byte string of {n} bytes at offset {off} runs past the end ({len(buf)})")
    return buf[off:end], end


def _get_entry(buf: bytes, off: int) -> tuple[Entry, int]:
    term, index, typ, n = _ENTRY.unpack_from(buf, off)
    off += 21
    end = off + n
    if end > len(buf):
        raise CodecError(f"entry data of {n} bytes at offset {off} runs past the end ({len(buf)})")
    etype = _ENTRY_TYPES.get(typ)
    if etype is None:
        raise CodecError(f"unknown entry type {typ} at offset {off - 21}")
    return Entry(term, index, etype, buf[off:end]), end


def _get_ids(buf: bytes, off: int) -> tuple[tuple[int, ...], int]:
    (n,) = _U32.unpack_from(buf, off)
    off += 4
    end = off + 8 * n
    if end > len(buf):
        raise CodecError(f"{n} node ids at offset {off} run past the end ({len(buf)})")
    return struct.unpack_from(f"<{n}Q", buf, off), end


def _get_conf_state(buf: bytes, off: int) -> tuple[ConfState, int]:
    voters, off = _get_ids(buf, off)
    learners, off = _get_ids(buf, off)
    return ConfState(voters, learners), off


def _get_snapshot_metadata(buf: bytes, off: int) -> tuple[SnapshotMetadata, int]:
    cs, off = _get_conf_state(buf, off)
    index, term = _INDEX_TERM.unpack_from(buf, off)
    return SnapshotMetadata(cs, index, term), off + 16


def _get_snapshot(buf: bytes, off: int) -> tuple[Snapshot, int]:
    meta, off = _get_snapshot_metadata(buf, off)
    data, off = _get_bytes(buf, off)
    return Snapshot(meta, data), off


def _get_conf_change(buf: bytes, off: int) -> tuple[ConfChange, int]:
    typ, node_id, n = _CONF_CHANGE.unpack_from(buf, off)
    cctype = _CONF_CHANGE_TYPES.get(typ)
    if cctype is None:
        raise CodecError(f"unknown conf change type {typ} at offset {off}")
    off += 13
    end = off + n
    if end > len(buf):
        raise CodecError(f"conf change context of {n} bytes at offset {off} runs past the end")
    return ConfChange(cctype, node_id, buf[off:end]), end


def _get_message(buf: bytes, off: int) -> tuple[Message, int]:
    start = off
    typ, to, frm, term, log_term, index, commit, flags, hint = _MESSAGE.unpack_from(buf, off)
    mtype = _MESSAGE_TYPES.get(typ)
    if mtype is None:
        raise CodecError(f"unknown message type {typ} at offset {start}")
    if flags & ~_KNOWN_FLAGS:
        raise CodecError(f"unknown message flags {flags:#x} at offset {start}")
    off += _MESSAGE.size
    (count,) = _U32.unpack_from(buf, off)
    off += 4
    if off + 21 * count > len(buf):
        raise CodecError(f"{count} entries at offset {off} cannot fit in {len(buf)} bytes")
    entries = []
    size = len(buf)
    unpack_entry = _ENTRY.unpack_from
    for _ in range(count):  # _get_entry, inlined: this loop is the hot path of MsgApp decoding
        e_term, e_index, e_type, n = unpack_entry(buf, off)
        off += 21
        end = off + n
        etype = _ENTRY_TYPES.get(e_type)
        if etype is None:
            raise CodecError(f"unknown entry type {e_type} at offset {off - 21}")
        if end > size:
            raise CodecError(f"entry data of {n} bytes at offset {off} runs past the end ({size})")
        entries.append(Entry(e_term, e_index, etype, buf[off:end]))
        off = end
    snapshot = None
    if flags & _FLAG_SNAPSHOT:
        snapshot, off = _get_snapshot(buf, off)
    context, off = _get_bytes(buf, off)
    msg = Message(
        mtype,
        to,
        frm,
        term,
        log_term,
        index,
        tuple(entries),
        commit,
        snapshot,
        bool(flags & 1),
        hint,
        context,
    )
    return msg, off


def _get_messages(buf: bytes, off: int) -> tuple[list[Message], int]:
    (count,) = _U32.unpack_from(buf, off)
    off += 4
    if off + (_MESSAGE.size + 8) * count > len(buf):
        raise CodecError(f"{count} messages at offset {off} cannot fit in {len(buf)} bytes")
    msgs = []
    for _ in range(count):
        msg, off = _get_message(buf, off)
        msgs.append(msg)
    return msgs, off


def _decode(kind: int, get: Callable[[bytes, int], tuple[_T, int]], data: bytes, what: str) -> _T:
    buf = data if type(data) is bytes else bytes(data)
    try:
        version, got = _HEADER.unpack_from(buf, 0)
        if version != FORMAT_VERSION:
            raise CodecError(f"unsupported format version {version} (this reader: {FORMAT_VERSION})")
        if got != kind:
            raise CodecError(f"holds kind {got}, expected {kind}")
        value, end = get(buf, 2)
        if end != len(buf):
            raise CodecError(f"{len(buf) - end} trailing bytes after offset {end}")
    except struct.error as exc:
        raise CodecError(f"{what}: truncated input of {len(buf)} bytes ({exc})") from None
    except CodecError as exc:
        raise CodecError(f"{what}: {exc}") from None
    return value


# -- public API ------------------------------------------------------------------------------


def encode_entry(entry: Entry) -> bytes:
    return _encode(_KIND_ENTRY, _put_entry, entry)


def decode_entry(data: bytes) -> Entry:
    return _decode(_KIND_ENTRY, _get_entry, data, "Entry")


def encode_hard_state(hs: HardState) -> bytes:
    return _encode(
        _KIND_HARD_STATE, lambda out, v: out.append(_HARD_STATE.pack(v.term, v.vote, v.commit)), hs
    )


def _get_hard_state(buf: bytes, off: int) -> tuple[HardState, int]:
    term, vote, commit = _HARD_STATE.unpack_from(buf, off)
    return HardState(term, vote, commit), off + _HARD_STATE.size


def decode_hard_state(data: bytes) -> HardState:
    return _decode(_KIND_HARD_STATE, _get_hard_state, data, "HardState")


def encode_conf_state(cs: ConfState) -> bytes:
    return _encode(_KIND_CONF_STATE, _put_conf_state, cs)


def decode_conf_state(data: bytes) -> ConfState:
    return _decode(_KIND_CONF_STATE, _get_conf_state, data, "ConfState")


def encode_snapshot_metadata(meta: SnapshotMetadata) -> bytes:
    return _encode(_KIND_SNAPSHOT_METADATA, _put_snapshot_metadata, meta)


def decode_snapshot_metadata(data: bytes) -> SnapshotMetadata:
    return _decode(_KIND_SNAPSHOT_METADATA, _get_snapshot_metadata, data, "SnapshotMetadata")


def encode_snapshot(snap: Snapshot) -> bytes:
    return _encode(_KIND_SNAPSHOT, _put_snapshot, snap)


def decode_snapshot(data: bytes) -> Snapshot:
    return _decode(_KIND_SNAPSHOT, _get_snapshot, data, "Snapshot")


def _put_conf_change(out: list[bytes], cc: ConfChange) -> None:
    out.append(_CONF_CHANGE.pack(cc.type, cc.node_id, len(cc.context)))
    out.append(cc.context)


def encode_conf_change(cc: ConfChange) -> bytes:
    """The ``data`` of a CONF_CHANGE entry."""
    return _encode(_KIND_CONF_CHANGE, _put_conf_change, cc)


def decode_conf_change(data: bytes) -> ConfChange:
    """Reverse ``encode_conf_change``; raises ``CodecError``."""
    return _decode(_KIND_CONF_CHANGE, _get_conf_change, data, "ConfChange")


def encode_message(msg: Message) -> bytes:
    return _encode(_KIND_MESSAGE, _put_message, msg)


def decode_message(data: bytes) -> Message:
    return _decode(_KIND_MESSAGE, _get_message, data, "Message")


def _put_messages(out: list[bytes], msgs: list[Message]) -> None:
    out.append(_U32.pack(len(msgs)))
    for m in msgs:
        _put_message(out, m)


def encode_messages(msgs: Iterable[Message]) -> bytes:
    """One frame for the peer transport: all messages to one peer from one Ready."""
    return _encode(_KIND_MESSAGES, _put_messages, list(msgs))


def decode_messages(data: bytes) -> list[Message]:
    return _decode(_KIND_MESSAGES, _get_messages, data, "Messages")
