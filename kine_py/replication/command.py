"""What a Raft-mode replica puts in the data of a NORMAL log entry, and reads back to apply.

A store's write batch is already decided when it is proposed: the proposing replica ran
etcd's rules against its index and produced rows (``kine_py.mvcc.log.Row``), exactly as it
would for a SQL database. The command carries those rows with the revision they expect to
follow; applying it is a compare-and-swap on the state machine's revision, so every replica
applies the same commands in the same order with the same outcome, and a command decided on
a stale view is a no-op whose proposer catches up and decides again.

Layout (little-endian, ``struct``): ``kind:u8 proposer:u64 seq:u64`` then, per kind,

- APPEND: ``expect:i64 revision:i64 n:u32 Row*n p:u32 (id:i64 ttl:i64 expiry:f64)*p d:u32 id:i64*d``,
  a Row being ``main:i64 sub:i64 create:i64 version:i64 lease:i64 deleted:u8 klen:u32 vlen:u32 key value``;
- COMPACT: ``revision:i64``;
- MEMBER: the member's JSON (``kine_py.replication.members.Member``), to publish client URLs.

An empty entry (the leader's no-op) carries no command.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from kine_py.mvcc.log import LeaseRow, Row

_HEAD = struct.Struct("<BQQ")
_APPEND = struct.Struct("<qqI")
_ROW = struct.Struct("<qqqqqBII")
_LEASE = struct.Struct("<qqd")
_COUNT = struct.Struct("<I")
_ID = struct.Struct("<q")


class Kind(enum.IntEnum):
    APPEND = 1
    COMPACT = 2
    MEMBER = 3


@dataclass(frozen=True, slots=True)
class Command:
    """One proposal. ``(proposer, seq)`` lets the proposing replica find its outcome."""

    kind: Kind
    proposer: int
    seq: int
    expect: int = 0
    revision: int = 0
    rows: tuple[Row, ...] = ()
    lease_puts: tuple[LeaseRow, ...] = ()
    lease_deletes: tuple[int, ...] = ()
    member: bytes = b""


def encode(cmd: Command) -> bytes:
    out = [_HEAD.pack(cmd.kind, cmd.proposer, cmd.seq)]
    if cmd.kind is Kind.APPEND:
        out.append(_APPEND.pack(cmd.expect, cmd.revision, len(cmd.rows)))
        for r in cmd.rows:
            out.append(
                _ROW.pack(r.main, r.sub, r.create, r.version, r.lease, r.deleted, len(r.key), len(r.value))
            )
            out.append(r.key)
            out.append(r.value)
        out.append(_COUNT.pack(len(cmd.lease_puts)))
        out.extend(_LEASE.pack(lease.id, lease.ttl, lease.expiry) for lease in cmd.lease_puts)
        out.append(_COUNT.pack(len(cmd.lease_deletes)))
        out.extend(_ID.pack(i) for i in cmd.lease_deletes)
    elif cmd.kind is Kind.COMPACT:
        out.append(_ID.pack(cmd.revision))
    else:
        out.append(cmd.member)
    return b"".join(out)


def decode(data: bytes) -> Command:
    """The command in an entry's data; ValueError if it is not one."""
    try:
        kind_value, proposer, seq = _HEAD.unpack_from(data, 0)
        kind = Kind(kind_value)
        off = _HEAD.size
        if kind is Kind.COMPACT:
            (revision,) = _ID.unpack_from(data, off)
            return Command(kind, proposer, seq, revision=revision)
        if kind is Kind.MEMBER:
            return Command(kind, proposer, seq, member=bytes(data[off:]))
        return _decode_append(data, off, proposer, seq)
    except struct.error as exc:
        raise ValueError(f"truncated command: {exc}") from exc


def _decode_append(data: bytes, off: int, proposer: int, seq: int) -> Command:
    expect, revision, n = _APPEND.unpack_from(data, off)
    off += _APPEND.size
    rows = []
    for _ in range(n):
        main, sub, create, version, lease, deleted, klen, vlen = _ROW.unpack_from(data, off)
        off += _ROW.size
        key, value = bytes(data[off : off + klen]), bytes(data[off + klen : off + klen + vlen])
        off += klen + vlen
        rows.append(Row(main, sub, key, value, create, version, lease, bool(deleted)))
    (p,) = _COUNT.unpack_from(data, off)
    off += _COUNT.size
    puts = []
    for _ in range(p):
        puts.append(LeaseRow(*_LEASE.unpack_from(data, off)))
        off += _LEASE.size
    (d,) = _COUNT.unpack_from(data, off)
    off += _COUNT.size
    deletes = [_ID.unpack_from(data, off + i * _ID.size)[0] for i in range(d)]
    if off + d * _ID.size != len(data):
        raise ValueError("command has trailing or missing bytes")
    return Command(Kind.APPEND, proposer, seq, expect, revision, tuple(rows), tuple(puts), tuple(deletes))
