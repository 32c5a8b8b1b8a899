"""protobuf <-> model, in both directions. Nothing else."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kine_py._pb.etcdserverpb import rpc_pb2 as pb
from kine_py._pb.mvccpb import kv_pb2
from kine_py.model import (
    Compare,
    CompareTarget,
    DeleteOp,
    DeleteResult,
    Event,
    KeyValue,
    Op,
    OpResult,
    PutOp,
    PutResult,
    RangeOp,
    RangeResult,
    TxnOp,
    TxnResult,
    WatchCreate,
    WatchReply,
)

_OPERAND_TARGET = {
    "version": CompareTarget.VERSION,
    "create_revision": CompareTarget.CREATE,
    "mod_revision": CompareTarget.MOD,
    "value": CompareTarget.VALUE,
    "lease": CompareTarget.LEASE,
}


def range_op(r: pb.RangeRequest) -> RangeOp:
    return RangeOp(
        key=r.key,
        range_end=r.range_end,
        limit=r.limit,
        revision=r.revision,
        sort_order=r.sort_order,
        sort_target=r.sort_target,
        serializable=r.serializable,
        keys_only=r.keys_only,
        count_only=r.count_only,
        min_mod_revision=r.min_mod_revision,
        max_mod_revision=r.max_mod_revision,
        min_create_revision=r.min_create_revision,
        max_create_revision=r.max_create_revision,
    )


def put_op(r: pb.PutRequest) -> PutOp:
    return PutOp(r.key, r.value, r.lease, r.prev_kv, r.ignore_value, r.ignore_lease)


def delete_op(r: pb.DeleteRangeRequest) -> DeleteOp:
    return DeleteOp(r.key, r.range_end, r.prev_kv)


def compare(c: pb.Compare) -> Compare:
    which = c.WhichOneof("target_union")
    operand = getattr(c, which) if which else None
    target = _OPERAND_TARGET[which] if which else None
    return Compare(c.key, c.target, c.result, operand, target, c.range_end)


def txn_op(r: pb.TxnRequest) -> TxnOp:
    return TxnOp(
        tuple(compare(c) for c in r.compare),
        tuple(request_op(o) for o in r.success),
        tuple(request_op(o) for o in r.failure),
    )


def request_op(o: pb.RequestOp) -> Op:
    which = o.WhichOneof("request")
    if which == "request_range":
        return range_op(o.request_range)
    if which == "request_put":
        return put_op(o.request_put)
    if which == "request_delete_range":
        return delete_op(o.request_delete_range)
    if which == "request_txn":
        return txn_op(o.request_txn)
    return None


def key_value(kv: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def range_response(r: RangeResult) -> pb.RangeResponse:
    return pb.RangeResponse(
        header=pb.ResponseHeader(revision=r.revision),
        kvs=[key_value(kv) for kv in r.kvs],
        more=r.more,
        count=r.count,
    )


def put_response(r: PutResult) -> pb.PutResponse:
    resp = pb.PutResponse(header=pb.ResponseHeader(revision=r.revision))
    if r.prev_kv is not None:
        resp.prev_kv.CopyFrom(key_value(r.prev_kv))
    return resp


def delete_response(r: DeleteResult) -> pb.DeleteRangeResponse:
    return pb.DeleteRangeResponse(
        header=pb.ResponseHeader(revision=r.revision),
        deleted=r.deleted,
        prev_kvs=[key_value(kv) for kv in r.prev_kvs],
    )


def txn_response(r: TxnResult) -> pb.TxnResponse:
    return pb.TxnResponse(
        header=pb.ResponseHeader(revision=r.revision),
        succeeded=r.succeeded,
        responses=[response_op(x) for x in r.responses],
    )


def response_op(r: OpResult) -> pb.ResponseOp:
    if isinstance(r, RangeResult):
        return pb.ResponseOp(response_range=range_response(r))
    if isinstance(r, PutResult):
        return pb.ResponseOp(response_put=put_response(r))
    if isinstance(r, DeleteResult):
        return pb.ResponseOp(response_delete_range=delete_response(r))
    return pb.ResponseOp(response_txn=txn_response(r))


def watch_create(r: pb.WatchCreateRequest) -> WatchCreate:
    return WatchCreate(
        key=r.key,
        range_end=r.range_end,
        start_revision=r.start_revision,
        progress_notify=r.progress_notify,
        filters=tuple(r.filters),
        prev_kv=r.prev_kv,
        watch_id=r.watch_id,
        fragment=r.fragment,
    )


def event(e: Event) -> kv_pb2.Event:
    out = kv_pb2.Event(type=int(e.type), kv=key_value(e.kv))  # type: ignore[arg-type]
    if e.prev_kv is not None:
        out.prev_kv.CopyFrom(key_value(e.prev_kv))
    return out


def watch_response(r: WatchReply) -> pb.WatchResponse:
    return pb.WatchResponse(
        header=pb.ResponseHeader(revision=r.revision),
        watch_id=r.watch_id,
        created=r.created,
        canceled=r.canceled,
        compact_revision=r.compact_revision,
        cancel_reason=r.cancel_reason,
        events=[event(e) for e in r.events],
    )


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint (negative int64 as its 64-bit two's complement)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _FieldCache(Generic[K, V]):
    """Serialized protobuf fields (with a value kept alongside), oldest evicted first,
    within a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._fields: dict[K, tuple[V, bytes]] = {}

    def get(self, key: K) -> tuple[V, bytes] | None:
        return self._fields.get(key)

    def put(self, key: K, pinned: V, field: bytes) -> None:
        fields = self._fields
        old = fields.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1]) + 100
        fields[key] = (pinned, field)
        self._bytes += len(field) + 100
        while self._bytes > self._max and fields:
            gone = next(iter(fields))
            self._bytes -= len(fields.pop(gone)[1]) + 100


def _length_delimited(tag: bytes, raw: bytes) -> bytes:
    return tag + _varint(len(raw)) + raw


# Field tags (field number << 3 | wire type 0 varint, 2 length-delimited) of the responses
# built from bytes: ResponseHeader header = 1 in both; RangeResponse kvs = 2, more = 3,
# count = 4; WatchResponse watch_id = 2, events = 11.
_HEADER_TAG = b"\x0a"
_KVS_TAG, _MORE_TRUE, _COUNT_TAG = b"\x12", b"\x18\x01", b"\x20"
_WATCH_ID_TAG, _EVENT_TAG = b"\x10", b"\x5a"


class Encoder:
    """Serialized Range and Watch responses, built by concatenating protobuf fields.

    Each KeyValue and Event is serialized once and its bytes reused for every response
    that carries it: every watcher of a key, every page of a list. A KeyValue of a
    top-level Range is identified by (key, mod_revision, value length): a key may change
    twice in one revision (a Txn's nested Put and Delete), but only its last change of a
    revision is ever visible to a Range at a committed revision, and keys_only ones have
    no value. An Event is identified by its KeyValue objects (the ring's events are
    shared by every watcher; the variants without prev_kv share the same KeyValue), which
    the cache keeps alive so that their ids cannot be reused. The gRPC
    methods must send ``bytes`` as they are (``MethodTable`` does). One per server,
    used from the event loop only. ``fill_header`` is ``Identity.fill``; headers are
    built once per revision.
    """

    def __init__(self, fill_header: Callable[[pb.ResponseHeader], None], max_bytes: int = 32 << 20) -> None:
        self._fill = fill_header
        self._kvs: _FieldCache[tuple[bytes, int, int], None] = _FieldCache(max_bytes // 2)
        self._events: _FieldCache[tuple[int, int, int], Event] = _FieldCache(max_bytes // 2)
        self._header_rev = -1
        self._header = b""

    def _header_field(self, revision: int) -> bytes:
        if revision != self._header_rev:
            header = pb.ResponseHeader(revision=revision)
            self._fill(header)
            self._header = _length_delimited(_HEADER_TAG, header.SerializeToString())
            self._header_rev = revision
        return self._header

    def _kv_field(self, kv: KeyValue) -> bytes:
        key = (kv.key, kv.mod_revision, len(kv.value))  # keys_only KeyValues have no value
        found = self._kvs.get(key)
        if found is not None:
            return found[1]
        field = _length_delimited(_KVS_TAG, key_value(kv).SerializeToString())
        self._kvs.put(key, None, field)
        return field

    def _event_field(self, e: Event) -> bytes:
        key = (id(e.kv), id(e.prev_kv), int(e.type))
        found = self._events.get(key)
        if found is not None and found[0].kv is e.kv and found[0].prev_kv is e.prev_kv:
            return found[1]
        field = _length_delimited(_EVENT_TAG, event(e).SerializeToString())
        self._events.put(key, e, field)
        return field

    def range_response(self, r: RangeResult) -> bytes:
        """The serialized top-level RangeResponse (header filled as ``Identity.fill`` does)."""
        parts = [self._header_field(r.revision)]
        parts.extend(self._kv_field(kv) for kv in r.kvs)
        if r.more:
            parts.append(_MORE_TRUE)
        if r.count:
            parts.append(_COUNT_TAG + _varint(r.count))
        return b"".join(parts)

    def events_response(self, reply: WatchReply) -> bytes:
        """The serialized WatchResponse of a reply that only carries events."""
        parts = [self._header_field(reply.revision)]
        if reply.watch_id:
            parts.append(_WATCH_ID_TAG + _varint(reply.watch_id))
        parts.extend(self._event_field(e) for e in reply.events)
        return b"".join(parts)
